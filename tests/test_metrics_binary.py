"""Binary-attribute metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score

from facecore import metrics as M


def _random(seed: int, n: int = 400, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(n, generator=g) < 0.4
    # probabilities correlated with the label, some exact 0 / 1 and ties
    p = (0.3 * torch.rand(n, generator=g, dtype=torch.float64) + 0.5 * y).clamp(0, 1)
    p[:10] = torch.tensor(
        [0.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25, 0.0, 1.0, 0.75], dtype=torch.float64
    )
    return p.to(dtype), y


# ------------------------------------------------------------------ accuracy


def test_accuracy_matches_sklearn_and_threshold_rule():
    p, y = _random(0)
    for th in (0.25, 0.5, 0.7):
        ref = accuracy_score(y.numpy(), (p >= th).numpy())
        assert M.accuracy(p, y, threshold=th) == pytest.approx(ref)
    # hard decisions: threshold ignored
    hard = (p > 0.5).long()
    assert M.accuracy(hard, y.long(), threshold=0.99) == pytest.approx(
        accuracy_score(y.numpy(), hard.numpy())
    )
    # the rule is >=: a probability equal to the threshold is positive
    assert M.accuracy(torch.tensor([0.5]), torch.tensor([1])) == 1.0
    # logits with threshold 0
    assert M.accuracy(
        torch.tensor([-2.0, 0.3, 0.0]), torch.tensor([0, 1, 0]), threshold=0.0
    ) == pytest.approx(2 / 3)


def test_accuracy_at_roc_thresholds_equals_the_roc_point():
    p, y = _random(1)
    roc = M.roc_curve(p, y)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    for fpr, tpr, th in list(zip(roc.fpr, roc.tpr, roc.thresholds))[1:]:
        expect = (tpr * n_pos + (1 - fpr) * n_neg) / (n_pos + n_neg)
        assert M.accuracy(p, y, threshold=float(th)) == pytest.approx(float(expect))


def test_accuracy_bad_inputs():
    with pytest.raises(ValueError, match=r"pred must be binary \(bool, or 0 / 1\), got 2"):
        M.accuracy(torch.tensor([0, 2]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="target must be binary"):
        M.accuracy(torch.tensor([0.2, 0.9]), torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError, match="same length"):
        M.accuracy(torch.tensor([0.2, 0.9]), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="pred contains NaN"):
        M.accuracy(torch.tensor([0.2, float("nan")]), torch.tensor([0, 1]))


# ------------------------------------------------------------------- ROC AUC


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_roc_auc_matches_sklearn_with_ties(data):
    n = data.draw(st.integers(2, 60))
    y = data.draw(
        st.lists(st.booleans(), min_size=n, max_size=n).filter(lambda v: 0 < sum(v) < len(v))
    )
    # few distinct values: many ties within and across classes
    s = data.draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))
    ours = M.roc_auc(torch.tensor(s, dtype=torch.float32), torch.tensor(y))
    assert ours == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_roc_auc_large_random_and_dtypes():
    p, y = _random(2, n=20000)
    ref = roc_auc_score(y.numpy(), p.numpy())
    assert M.roc_auc(p, y) == pytest.approx(ref, abs=1e-12)
    assert M.roc_auc(p.float(), y.long()) == pytest.approx(
        roc_auc_score(y.numpy(), p.float().numpy()), abs=1e-12
    )
    s16 = p.half()
    assert M.roc_auc(s16, y) == pytest.approx(
        roc_auc_score(y.numpy(), s16.float().numpy()), abs=1e-12
    )
    # integer scores and a monotone transform (logit) leave the AUC unchanged
    assert M.roc_auc((p * 100).round().long(), y) == pytest.approx(
        roc_auc_score(y.numpy(), (p * 100).round().numpy()), abs=1e-12
    )
    assert M.roc_auc(torch.logit(p.clamp(1e-6, 1 - 1e-6)), y) == pytest.approx(
        M.roc_auc(p.clamp(1e-6, 1 - 1e-6), y), abs=1e-12
    )


def test_roc_auc_worked_example():
    # pos {0.8, 0.5}, neg {0.5, 0.1}: pairs (0.8>0.5) 1, (0.8>0.1) 1, (0.5=0.5) 1/2, (0.5>0.1) 1
    assert M.roc_auc(torch.tensor([0.8, 0.5, 0.5, 0.1]), torch.tensor([1, 1, 0, 0])) == 3.5 / 4


def test_roc_auc_single_class_is_an_error():
    with pytest.raises(ValueError, match="one class only.*3 positives and 0 negatives"):
        M.roc_auc(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([1, 1, 1]))
    with pytest.raises(ValueError, match="scores is empty"):
        M.roc_auc(torch.tensor([]), torch.tensor([], dtype=torch.bool))
    with pytest.raises(ValueError, match="scores contains NaN"):
        M.roc_auc(torch.tensor([0.1, float("nan")]), torch.tensor([1, 0]))


# ---------------------------------------------------------------- calibration


@pytest.mark.parametrize("n_bins", [1, 4, 10, 15])
def test_calibration_bins_match_sklearn(n_bins):
    p, y = _random(3)
    bins = M.calibration_bins(p, y, n_bins=n_bins)
    prob_true, prob_pred = calibration_curve(
        y.numpy(), p.numpy(), n_bins=n_bins, strategy="uniform"
    )
    nonempty = bins.counts > 0
    np.testing.assert_allclose(bins.frequency[nonempty].numpy(), prob_true, rtol=1e-12)
    np.testing.assert_allclose(bins.confidence[nonempty].numpy(), prob_pred, rtol=1e-12)
    assert int(bins.counts.sum()) == p.shape[0]
    assert torch.isnan(bins.confidence[~nonempty]).all()
    torch.testing.assert_close(bins.edges, torch.arange(n_bins + 1, dtype=torch.float64) / n_bins)


def test_calibration_bin_edges_are_right_closed():
    p = torch.tensor([0.0, 0.25, 0.2500001, 0.5, 0.75, 1.0], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 1, 1])
    bins = M.calibration_bins(p, y, n_bins=4)
    # (0, .25] holds 0 and .25; (.25, .5] holds .2500001 and .5; (.5,.75] .75; (.75, 1] 1
    assert bins.counts.tolist() == [2, 2, 1, 1]


def test_ece_mce_worked_example():
    p = torch.tensor([0.1, 0.2, 0.8, 0.9])
    y = torch.tensor([0, 1, 1, 1])
    # bins of width .5: [.1, .2] conf .15 freq .5 gap .35; [.8, .9] conf .85 freq 1 gap .15
    assert M.expected_calibration_error(p, y, n_bins=2) == pytest.approx(0.5 * 0.35 + 0.5 * 0.15)
    assert M.max_calibration_error(p, y, n_bins=2) == pytest.approx(0.35)
    # one bin: |mean(p) - mean(y)| = |0.5 - 0.75|
    assert M.expected_calibration_error(p, y, n_bins=1) == pytest.approx(0.25)


def test_ece_matches_formula_on_sklearn_bins():
    p, y = _random(4)
    prob_true, prob_pred = calibration_curve(y.numpy(), p.numpy(), n_bins=10)
    counts = M.calibration_bins(p, y, n_bins=10).counts
    w = counts[counts > 0].numpy() / len(p)
    assert M.expected_calibration_error(p, y, n_bins=10) == pytest.approx(
        float((w * np.abs(prob_true - prob_pred)).sum()), abs=1e-12
    )
    assert M.max_calibration_error(p, y, n_bins=10) == pytest.approx(
        float(np.abs(prob_true - prob_pred).max()), abs=1e-12
    )


def test_perfectly_calibrated_predictor_has_small_ece():
    g = torch.Generator().manual_seed(5)
    p = torch.rand(200_000, generator=g, dtype=torch.float64)
    y = torch.rand(200_000, generator=g, dtype=torch.float64) < p
    assert M.expected_calibration_error(p, y) < 0.01
    assert M.expected_calibration_error(torch.full_like(p, 0.9), y) == pytest.approx(0.4, abs=0.01)


# ------------------------------------------------------- Brier and log loss


@pytest.mark.parametrize("seed", range(3))
def test_brier_and_log_loss_match_sklearn(seed):
    p, y = _random(seed)
    assert M.brier_score(p, y) == pytest.approx(brier_score_loss(y.numpy(), p.numpy()), rel=1e-12)
    # p contains exact 0 and 1: both clip at float64 eps
    assert M.log_loss(p, y) == pytest.approx(
        log_loss(y.numpy(), p.numpy(), labels=[0, 1]), rel=1e-12
    )
    p32 = p.float()
    assert M.log_loss(p32, y) == pytest.approx(
        log_loss(y.numpy(), p32.numpy(), labels=[0, 1]), rel=1e-6
    )


def test_log_loss_worked_example_and_clipping():
    assert M.log_loss(torch.tensor([0.8, 0.4]), torch.tensor([1, 0])) == pytest.approx(
        -(np.log(0.8) + np.log(0.6)) / 2, rel=1e-6
    )
    # a confident mistake is large but finite
    v = M.log_loss(torch.tensor([0.0], dtype=torch.float64), torch.tensor([1]))
    assert v == pytest.approx(-np.log(np.finfo(np.float64).eps))
    assert M.log_loss(torch.tensor([0.0]), torch.tensor([1]), eps=1e-3) == pytest.approx(
        -np.log(1e-3)
    )
    with pytest.raises(ValueError, match=r"eps must be in \[0, 0.5\)"):
        M.log_loss(torch.tensor([0.5]), torch.tensor([1]), eps=0.7)


@pytest.mark.parametrize(
    "fn", [M.brier_score, M.log_loss, M.expected_calibration_error, M.max_calibration_error]
)
def test_probability_metrics_reject_bad_inputs(fn):
    with pytest.raises(ValueError, match=r"probs must be probabilities in \[0, 1\], got 1.5"):
        fn(torch.tensor([0.2, 1.5]), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="probs must be floating-point"):
        fn(torch.tensor([0, 1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="probs is empty"):
        fn(torch.tensor([]), torch.tensor([]))
    with pytest.raises(ValueError, match="same length"):
        fn(torch.tensor([0.2, 0.5]), torch.tensor([1]))
    with pytest.raises(ValueError, match="probs contains NaN"):
        fn(torch.tensor([0.2, float("nan")]), torch.tensor([0, 1]))


def test_n_bins_validation():
    with pytest.raises(ValueError, match="n_bins must be >= 1"):
        M.calibration_bins(torch.tensor([0.5]), torch.tensor([1]), n_bins=0)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    p, y = _random(6, n=5000)
    pc, yc = p.cuda(), y.cuda()
    for fn in (
        M.roc_auc,
        M.brier_score,
        M.log_loss,
        M.expected_calibration_error,
        M.max_calibration_error,
    ):
        assert fn(pc, yc) == pytest.approx(fn(p, y), rel=1e-12)
    assert M.accuracy(pc, yc) == M.accuracy(p, y)
    bins = M.calibration_bins(pc, yc)
    assert bins.counts.device.type == "cuda"
    assert bins.counts.cpu().tolist() == M.calibration_bins(p, y).counts.tolist()
