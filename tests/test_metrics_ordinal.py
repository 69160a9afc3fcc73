"""Ordinal metrics against scikit-learn, numpy and hand-computed values."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score, mean_absolute_error, root_mean_squared_error

import facecore
from facecore import metrics as M

# ---------------------------------------------------------------- MAE / RMSE


def test_mae_rmse_worked_example():
    pred = torch.tensor([0, 2, 5])
    true = torch.tensor([1, 2, 3])
    assert M.mae(pred, true) == pytest.approx(1.0)  # (1 + 0 + 2) / 3
    assert M.rmse(pred, true) == pytest.approx(math.sqrt(5 / 3))
    # labels in decades, ages = 16 + 10 * label: errors scale by 10, offset cancels
    assert M.mae(pred, true, offset=16, scale=10) == pytest.approx(10.0)
    assert M.rmse(pred, true, offset=16, scale=10) == pytest.approx(10 * math.sqrt(5 / 3))


@pytest.mark.parametrize("seed", range(5))
def test_mae_rmse_match_sklearn(seed):
    g = torch.Generator().manual_seed(seed)
    true = torch.randint(0, 9, (257,), generator=g)
    pred_labels = torch.randint(0, 9, (257,), generator=g)
    pred_expected = torch.rand(257, generator=g, dtype=torch.float64) * 8  # expected rank
    offset, scale = 3.0, 2.5
    for pred in (pred_labels, pred_expected):
        a_pred = offset + scale * pred.double().numpy()
        a_true = offset + scale * true.double().numpy()
        assert M.mae(pred, true, offset=offset, scale=scale) == pytest.approx(
            mean_absolute_error(a_true, a_pred), rel=1e-12
        )
        assert M.rmse(pred, true, offset=offset, scale=scale) == pytest.approx(
            root_mean_squared_error(a_true, a_pred), rel=1e-12
        )


def test_float32_inputs_are_summed_in_float64():
    # 1e6 errors of 0.1: a float32 running sum drifts, float64 does not
    pred = torch.full((1_000_000,), 0.1, dtype=torch.float32)
    true = torch.zeros(1_000_000, dtype=torch.float32)
    assert M.mae(pred, true) == pytest.approx(float(np.float32(0.1)), rel=1e-12)


def test_accepts_numpy_and_lists():
    assert M.mae(np.array([1, 2]), [1, 4]) == pytest.approx(1.0)


# ---------------------------------------------------------- cumulative score


def test_cumulative_score_worked_example():
    pred = torch.tensor([0, 2, 5, 7])
    true = torch.tensor([0, 3, 3, 3])  # |errors| = 0, 1, 2, 4
    assert M.cumulative_score(pred, true, 0) == pytest.approx(0.25)
    assert M.cumulative_score(pred, true, 1.5) == pytest.approx(0.5)
    curve = M.cumulative_score(pred, true, [0, 1, 2, 3, 4])
    assert isinstance(curve, torch.Tensor) and curve.dtype == torch.float64
    torch.testing.assert_close(
        curve, torch.tensor([0.25, 0.5, 0.75, 0.75, 1.0], dtype=torch.float64)
    )
    # numpy scalars and 0-d tensors count as single thresholds
    assert M.cumulative_score(pred, true, np.int64(1)) == pytest.approx(0.5)
    assert M.cumulative_score(pred, true, torch.tensor(2.0)) == pytest.approx(0.75)
    torch.testing.assert_close(
        M.cumulative_score(pred, true, np.array([0, 4])),
        torch.tensor([0.25, 1.0], dtype=torch.float64),
    )
    # theta in years with 5-year bins: error 1 bin = 5 years
    assert M.cumulative_score(pred, true, 5.0, scale=5.0) == pytest.approx(0.5)
    assert M.cumulative_score(pred, true, 4.99, scale=5.0) == pytest.approx(0.25)


def test_cumulative_score_boundary_after_scaling():
    # 3 * 0.1 = 0.30000000000000004 > 0.3 in floating point; the error equals theta exactly
    assert M.cumulative_score(torch.tensor([3]), torch.tensor([0]), 0.3, scale=0.1) == 1.0
    assert M.cumulative_score(torch.tensor([3]), torch.tensor([0]), 0.2999, scale=0.1) == 0.0


def test_cumulative_score_matches_numpy_on_random_data():
    g = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 70, (500,), generator=g)
    true = torch.randint(0, 70, (500,), generator=g)
    thetas = torch.arange(0, 11)
    err = np.abs(pred.numpy() - true.numpy())
    expect = [(err <= t).mean() for t in thetas.tolist()]
    torch.testing.assert_close(
        M.cumulative_score(pred, true, thetas), torch.tensor(expect, dtype=torch.float64)
    )


def test_cumulative_score_bad_theta():
    p = torch.tensor([1, 2])
    with pytest.raises(ValueError, match="theta must be finite and >= 0"):
        M.cumulative_score(p, p, -1)
    with pytest.raises(ValueError, match="theta"):
        M.cumulative_score(p, p, [1.0, float("nan")])
    with pytest.raises(TypeError, match="theta"):
        M.cumulative_score(p, p, "5")


# ------------------------------------------------------------- off by one


def test_off_by_one_accuracy():
    pred = torch.tensor([0, 2, 4, 8, 5])
    true = torch.tensor([1, 2, 2, 7, 3])  # diffs 1, 0, 2, 1, 2
    assert M.off_by_one_accuracy(pred, true) == pytest.approx(3 / 5)
    with pytest.raises(TypeError, match="pred must be an integer tensor"):
        M.off_by_one_accuracy(pred.float(), true)


# ------------------------------------------------------------------- kappa


@settings(max_examples=100, deadline=None)
@given(
    k=st.integers(2, 8),
    data=st.data(),
)
def test_qwk_matches_sklearn(k, data):
    n = data.draw(st.integers(1, 40))
    true = data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    pred = data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    ours = M.quadratic_weighted_kappa(torch.tensor(pred), torch.tensor(true), k)
    with warnings.catch_warnings():  # sklearn warns on the degenerate draws
        warnings.simplefilter("ignore")
        ref = cohen_kappa_score(true, pred, weights="quadratic", labels=list(range(k)))
    if math.isnan(ref):
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(ref, abs=1e-12)


def test_qwk_worked_example():
    # K = 3, true [0, 1, 2, 2], pred [0, 2, 2, 1]
    # O: (0,0)=1, (1,2)=1, (2,2)=1, (2,1)=1 ; sum w O = 0 + 1 + 0 + 1 = 2
    # rows r = [1, 1, 2], cols c = [1, 1, 2], E = r c^T / 4
    # sum w E = (1*1*1 + 1*2*4 + 1*1*1 + 1*2*1 + 2*1*4 + 2*1*1) / 4 = 22 / 4
    kappa = M.quadratic_weighted_kappa(torch.tensor([0, 2, 2, 1]), torch.tensor([0, 1, 2, 2]), 3)
    assert kappa == pytest.approx(1 - 2 / (22 / 4))


def test_qwk_uses_all_classes_not_only_present_ones():
    # class 2 of K = 4 never occurs: the distance between 1 and 3 is 2, not 1
    true = [0, 1, 3, 3, 1]
    pred = [1, 0, 3, 1, 3]
    ours = M.quadratic_weighted_kappa(torch.tensor(pred), torch.tensor(true), 4)
    full = cohen_kappa_score(true, pred, weights="quadratic", labels=[0, 1, 2, 3])
    present_only = cohen_kappa_score(true, pred, weights="quadratic")
    assert ours == pytest.approx(full)
    assert abs(full - present_only) > 1e-3


def test_qwk_degenerate_and_extremes():
    same = torch.tensor([2, 2, 2])
    assert math.isnan(M.quadratic_weighted_kappa(same, same, 4))
    assert M.quadratic_weighted_kappa(same, same, 4, undefined=1.0) == 1.0
    # constant but different prediction: observed = expected disagreement -> 0
    assert M.quadratic_weighted_kappa(torch.tensor([0, 0, 0]), same, 4) == pytest.approx(0.0)
    perfect = torch.tensor([0, 1, 2, 3])
    assert M.quadratic_weighted_kappa(perfect, perfect, 4) == pytest.approx(1.0)
    assert M.quadratic_weighted_kappa(perfect.flip(0), perfect, 4) == pytest.approx(-1.0)


def test_qwk_bad_inputs():
    p = torch.tensor([0, 1, 4])
    with pytest.raises(ValueError, match=r"pred must hold classes in \[0, 3\].*got 4 at index 2"):
        M.quadratic_weighted_kappa(p, torch.tensor([0, 1, 2]), 4)
    with pytest.raises(ValueError, match=r"target must hold classes in \[0, 2\]"):
        M.quadratic_weighted_kappa(torch.tensor([0, 1, 2]), torch.tensor([0, -1, 2]), 3)
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        M.quadratic_weighted_kappa(p, p, 1)
    with pytest.raises(TypeError, match="num_classes must be an int"):
        M.quadratic_weighted_kappa(p, p, 5.0)


# ------------------------------------------------------- rank inconsistency


def test_rank_inconsistency_worked_example():
    cum = torch.tensor(
        [
            [0.9, 0.8, 0.3, 0.1],  # consistent: 0
            [0.9, 0.95, 0.5, 0.6],  # two increases: 1
            [0.5, 0.500004, 0.500008, 0.2],  # increases of 4e-6 stay below the 1e-5 slack
            [0.2, 0.3, 0.4, 0.5],  # 3
        ],
        dtype=torch.float64,
    )
    r = M.rank_inconsistency(cum)
    assert r.counts.tolist() == [0, 2, 0, 3]
    assert r.counts.dtype == torch.int64
    assert r.mean == pytest.approx(5 / 4)
    assert r.fraction == pytest.approx(2 / 4)
    assert M.rank_inconsistency(cum, tol=0.0).counts.tolist() == [0, 2, 2, 3]


def test_rank_inconsistency_of_facecore_heads():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 9, generator=g) * 3
    cum = facecore.ordinal_probs(logits, "coral").cum_probs
    r = M.rank_inconsistency(cum)
    brute = [
        sum(1 for k in range(cum.shape[1] - 1) if cum[i, k + 1].item() > cum[i, k].item() + 1e-5)
        for i in range(cum.shape[0])
    ]
    assert r.counts.tolist() == brute
    assert r.fraction > 0.5  # random independent logits are mostly inconsistent
    # CORN's cumulative probabilities are products of probabilities: never increasing
    corn = M.rank_inconsistency(facecore.ordinal_probs(logits, "corn").cum_probs)
    assert corn.mean == 0.0 and corn.fraction == 0.0
    # CORAL with shared weight and decreasing biases is consistent by construction
    biases = torch.linspace(2, -2, 9)
    z = torch.randn(300, 1, generator=g)
    assert M.rank_inconsistency(torch.sigmoid(z + biases)).fraction == 0.0


def test_rank_inconsistency_bad_inputs():
    with pytest.raises(ValueError, match="not logits"):
        M.rank_inconsistency(torch.tensor([[2.0, -1.0]]))
    with pytest.raises(ValueError, match=r"2-D of shape \[N, K-1\]"):
        M.rank_inconsistency(torch.tensor([0.5, 0.4]))
    with pytest.raises(ValueError, match="non-empty"):
        M.rank_inconsistency(torch.zeros(0, 4))
    with pytest.raises(TypeError, match="floating-point"):
        M.rank_inconsistency(torch.zeros(2, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="cum_probs contains NaN"):
        M.rank_inconsistency(torch.tensor([[0.5, float("nan")]]))
    with pytest.raises(ValueError, match="tol must be >= 0"):
        M.rank_inconsistency(torch.tensor([[0.5, 0.4]]), tol=-1.0)


# ---------------------------------------------------------- median baseline


def test_median_baseline_mae():
    train = torch.tensor([1, 2, 3, 10])  # even count: median (2 + 3) / 2 = 2.5
    test = torch.tensor([0, 1])  # |0 - 2.5| and |1 - 2.5|: (2.5 + 1.5) / 2
    assert M.median_baseline_mae(train, test) == pytest.approx(2.0)
    assert M.median_baseline_mae(train, test, offset=16, scale=2) == pytest.approx(4.0)
    g = torch.Generator().manual_seed(1)
    for n in (7, 8):  # odd and even counts against numpy's median
        train = torch.randint(0, 9, (n,), generator=g)
        test = torch.randint(0, 9, (31,), generator=g)
        med = np.median(train.numpy())
        ref = mean_absolute_error(test.numpy(), np.full(31, med))
        assert M.median_baseline_mae(train, test) == pytest.approx(ref)


# -------------------------------------------------------------- edge cases


@pytest.mark.parametrize("fn", [M.mae, M.rmse, M.off_by_one_accuracy])
def test_shared_input_errors(fn):
    with pytest.raises(ValueError, match="pred is empty"):
        fn(torch.tensor([], dtype=torch.int64), torch.tensor([], dtype=torch.int64))
    with pytest.raises(ValueError, match="same length, got 3 and 2"):
        fn(torch.tensor([1, 2, 3]), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"must be 1-D of shape \[N\], got shape \[2, 2\]"):
        fn(torch.ones(2, 2, dtype=torch.int64), torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="pred must be a tensor"):
        fn(None, torch.tensor([1]))


def test_nan_and_scale_errors():
    with pytest.raises(
        ValueError, match=r"pred contains NaN \(1 of 3 entries, first at flat index 1\)"
    ):
        M.mae(torch.tensor([1.0, float("nan"), 2.0]), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="scale must be > 0"):
        M.mae(torch.tensor([1]), torch.tensor([1]), scale=0)
    with pytest.raises(ValueError, match="offset must be finite"):
        M.mae(torch.tensor([1]), torch.tensor([1]), offset=float("inf"))
    with pytest.raises(TypeError, match="torch.bool"):
        M.mae(torch.tensor([True]), torch.tensor([1]))


@pytest.mark.cuda
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 9, (1000,), generator=g)
    true = torch.randint(0, 9, (1000,), generator=g)
    cum = torch.rand(1000, 8, generator=g)
    for fn, args in [
        (M.mae, ()),
        (M.rmse, ()),
        (M.off_by_one_accuracy, ()),
        (M.quadratic_weighted_kappa, (9,)),
        (M.median_baseline_mae, ()),
    ]:
        assert fn(pred.cuda(), true.cuda(), *args) == pytest.approx(
            fn(pred, true, *args), rel=1e-12
        )
    cs = M.cumulative_score(pred.cuda(), true.cuda(), [0, 1, 2])
    assert cs.device.type == "cuda"
    torch.testing.assert_close(cs.cpu(), M.cumulative_score(pred, true, [0, 1, 2]))
    r_gpu, r_cpu = M.rank_inconsistency(cum.cuda()), M.rank_inconsistency(cum)
    assert r_gpu.counts.tolist() == r_cpu.counts.tolist()
    with pytest.raises(ValueError, match="same device"):
        M.mae(pred.cuda(), true)
