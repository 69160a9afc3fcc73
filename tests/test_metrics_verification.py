"""Verification and identification metrics against scikit-learn, brute force
and hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from facecore import metrics as M


def _pairs(seed: int, n: int = 600, dtype=torch.float32):
    """Cosine-like similarities: same pairs higher on average, rounded to make ties."""
    g = torch.Generator().manual_seed(seed)
    same = torch.rand(n, generator=g) < 0.5
    s = torch.randn(n, generator=g, dtype=torch.float64) * 0.2 + torch.where(same, 0.5, 0.1)
    return (s * 50).round().div(50).to(dtype), same


pair_lists = st.integers(2, 50).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(-4, 4), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n).filter(lambda v: 0 < sum(v) < len(v)),
    )
)

# ----------------------------------------------------------------------- ROC


@settings(max_examples=150, deadline=None)
@given(pair_lists)
def test_roc_curve_matches_sklearn(pair):
    s, y = pair
    roc = M.roc_curve(torch.tensor(s, dtype=torch.float64), torch.tensor(y))
    fpr, tpr, thr = sk_roc_curve(y, np.asarray(s, dtype=np.float64), drop_intermediate=False)
    np.testing.assert_array_equal(roc.fpr.numpy(), fpr)
    np.testing.assert_array_equal(roc.tpr.numpy(), tpr)
    np.testing.assert_array_equal(roc.thresholds.numpy(), thr)


def test_roc_curve_float32_and_distances():
    s, y = _pairs(0)
    roc = M.roc_curve(s, y)
    fpr, tpr, thr = sk_roc_curve(y.numpy(), s.numpy(), drop_intermediate=False)
    np.testing.assert_array_equal(roc.fpr.numpy(), fpr)
    np.testing.assert_array_equal(roc.tpr.numpy(), tpr)
    np.testing.assert_array_equal(roc.thresholds.numpy(), thr)
    assert roc.thresholds.dtype == torch.float32
    # distances d = 1 - s: same rates, thresholds in distance units, ascending, -inf first
    d = 1 - s
    droc = M.roc_curve(d, y, kind="distance")
    torch.testing.assert_close(droc.fpr, roc.fpr, rtol=0, atol=0)
    torch.testing.assert_close(droc.tpr, roc.tpr, rtol=0, atol=0)
    assert droc.thresholds[0] == float("-inf")
    assert bool((droc.thresholds[1:].diff() > 0).all())
    # each distance threshold's point: fraction of pairs with d <= t
    for i in (1, 5, 20):
        t = droc.thresholds[i]
        assert float(((d <= t) & ~y).sum() / (~y).sum()) == pytest.approx(float(droc.fpr[i]))
        assert float(((d <= t) & y).sum() / y.sum()) == pytest.approx(float(droc.tpr[i]))


def test_roc_curve_int_scores_give_float_thresholds():
    roc = M.roc_curve(torch.tensor([3, 1, 2]), torch.tensor([1, 0, 1]))
    assert roc.thresholds.tolist() == [math.inf, 3.0, 2.0, 1.0]
    assert roc.tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    assert roc.fpr.tolist() == [0.0, 0.0, 0.0, 1.0]


# ----------------------------------------------------------------------- AUC


@settings(max_examples=100, deadline=None)
@given(pair_lists)
def test_verification_auc_matches_sklearn_and_trapezoid(pair):
    s, y = pair
    st_, yt = torch.tensor(s, dtype=torch.float64), torch.tensor(y)
    auc = M.verification_auc(st_, yt)
    assert auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    roc = M.roc_curve(st_, yt)
    assert auc == pytest.approx(float(torch.trapezoid(roc.tpr, roc.fpr)), abs=1e-12)
    assert M.verification_auc(-st_, yt, kind="distance") == pytest.approx(auc, abs=1e-12)


# ----------------------------------------------------------------------- EER


@pytest.mark.parametrize(
    "same_scores, diff_scores, eer, threshold",
    [
        # points (FPR, FNR): (0,1) (0,.5) (.5,0) (1,0): halfway along the tied segment
        ([0.8, 0.5], [0.5, 0.1], 0.25, 0.5),
        # (0,1) (0,2/3) (.5,0) (1,0): t = (2/3) / (2/3 + 1/2) = 4/7, EER = 4/7 * 1/2
        ([0.8, 0.5, 0.5], [0.5, 0.1], 2 / 7, 0.5),
        # the crossing is an operating point: FPR = FNR = 1/3 at threshold 0.7
        ([0.9, 0.8, 0.4], [0.7, 0.3, 0.2], 1 / 3, 0.7),
        # perfect separation / perfectly wrong
        ([0.9, 0.8], [0.2, 0.1], 0.0, 0.8),
        # (0,1) (.5,1) (1,1): FPR = FNR = 1 first at threshold 0.8
        ([0.1, 0.2], [0.8, 0.9], 1.0, 0.8),
    ],
)
def test_eer_worked_examples(same_scores, diff_scores, eer, threshold):
    s = torch.tensor(same_scores + diff_scores, dtype=torch.float64)
    y = torch.tensor([True] * len(same_scores) + [False] * len(diff_scores))
    r = M.equal_error_rate(s, y)
    assert r.eer == pytest.approx(eer, abs=1e-15)
    assert r.threshold == pytest.approx(threshold)
    rd = M.equal_error_rate(1 - s, y, kind="distance")
    assert rd.eer == pytest.approx(eer, abs=1e-15)
    assert rd.threshold == pytest.approx(1 - threshold)


@settings(max_examples=150, deadline=None)
@given(pair_lists)
def test_eer_is_the_interpolated_crossing_of_sklearns_roc(pair):
    # along the ROC, FPR - FNR strictly increases, so np.interp inverts it exactly
    s, y = pair
    fpr, tpr, _ = sk_roc_curve(y, np.asarray(s, dtype=np.float64), drop_intermediate=False)
    d = fpr - (1 - tpr)
    assert np.all(np.diff(d) > 0)
    ref = np.interp(0.0, d, fpr)
    assert M.equal_error_rate(
        torch.tensor(s, dtype=torch.float64), torch.tensor(y)
    ).eer == pytest.approx(ref, abs=1e-12)


# ------------------------------------------------------------------- TAR@FAR


def test_tar_at_far_worked_example():
    same = [0.9, 0.8, 0.6, 0.4]
    diff = [0.7, 0.5, 0.3, 0.2]
    s = torch.tensor(same + diff, dtype=torch.float64)
    y = torch.tensor([1] * 4 + [0] * 4)
    # operating points (threshold: FPR, TPR): .9: (0,.25) .8: (0,.5) .7: (.25,.5)
    # .6: (.25,.75) .5: (.5,.75) .4: (.5,1) .3: (.75,1) .2: (1,1)
    r = M.tar_at_far(s, y, 0.0)
    assert (r.tar, r.far, r.threshold) == (0.5, 0.0, 0.8)
    r = M.tar_at_far(s, y, 0.25)
    assert (r.tar, r.far, r.threshold) == (0.75, 0.25, 0.6)
    r = M.tar_at_far(s, y, 0.3)  # no interpolation towards the FPR .5 point
    assert (r.tar, r.far, r.threshold) == (0.75, 0.25, 0.6)
    assert M.tar_at_far(s, y, torch.tensor(0.25)) == M.tar_at_far(s, y, np.float32(0.25))
    assert M.tar_at_far(s, y, np.float64(0.25)).tar == 0.75
    r = M.tar_at_far(s, y, [0.1, 0.5, 1.0])
    assert r.tar.tolist() == [0.5, 1.0, 1.0]
    assert r.far.tolist() == [0.0, 0.5, 0.5]
    assert r.threshold.tolist() == [0.8, 0.4, 0.4]
    # distances: thresholds are distances, pairs accepted iff distance <= threshold
    r = M.tar_at_far(1 - s, y, 0.25, kind="distance")
    assert r.tar == 0.75 and r.far == 0.25 and r.threshold == pytest.approx(0.4)
    # a target FAR below every nonzero FPR with no FPR-0 point above TAR 0
    r = M.tar_at_far(torch.tensor([0.5, 0.9]), torch.tensor([1, 0]), 0.1)
    assert (r.tar, r.far, r.threshold) == (0.0, 0.0, math.inf)


@settings(max_examples=100, deadline=None)
@given(pair_lists, st.floats(0, 1))
def test_tar_at_far_is_best_tpr_within_far(pair, far):
    s, y = pair
    fpr, tpr, thr = sk_roc_curve(y, np.asarray(s, dtype=np.float64), drop_intermediate=False)
    ok = fpr <= far
    r = M.tar_at_far(torch.tensor(s, dtype=torch.float64), torch.tensor(y), far)
    assert r.tar == tpr[ok].max()
    assert r.far <= far
    # the threshold realises the reported rates
    st_, yt = torch.tensor(s, dtype=torch.float64), torch.tensor(y)
    acc = st_ >= r.threshold
    assert float((acc & yt).sum() / yt.sum()) == pytest.approx(r.tar)
    assert float((acc & ~yt).sum() / (~yt).sum()) == pytest.approx(r.far)


def test_tar_at_far_bad_far():
    s, y = torch.tensor([0.1, 0.9]), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"far must be in \[0, 1\]"):
        M.tar_at_far(s, y, 1.5)
    with pytest.raises(ValueError, match=r"far must be in \[0, 1\]"):
        M.tar_at_far(s, y, [0.1, -0.1])


# --------------------------------------------------------- LFW 10-fold protocol

PATTERN_SAME = [0.9, 0.8, 0.7, 0.6, 0.35]
PATTERN_DIFF = [0.5, 0.4, 0.3, 0.2, 0.1]


def _fold(same_scores, diff_scores):
    return same_scores + diff_scores, [True] * len(same_scores) + [False] * len(diff_scores)


def test_lfw_known_best_threshold():
    # every fold is the same 10 pairs; on them, accepting >= 0.55 is the unique best
    # rule (9 / 10: only the same pair at 0.35 is wrong)
    s, y = [], []
    for _ in range(10):
        fs, fy = _fold(PATTERN_SAME, PATTERN_DIFF)
        s += fs
        y += fy
    r = M.lfw_accuracy(torch.tensor(s), torch.tensor(y))
    assert r.mean == pytest.approx(0.9)
    assert r.std == pytest.approx(0.0, abs=1e-15)
    torch.testing.assert_close(r.thresholds, torch.full((10,), 0.55, dtype=torch.float64))
    rd = M.lfw_accuracy(1 - torch.tensor(s, dtype=torch.float64), torch.tensor(y), kind="distance")
    assert rd.mean == pytest.approx(0.9)
    torch.testing.assert_close(rd.thresholds, torch.full((10,), 0.45, dtype=torch.float64))


def test_lfw_threshold_comes_from_the_other_folds_in_pair_list_order():
    # fold 0 differs: its same pairs score 0.52, just under the 0.55 the other folds learn.
    s, y = _fold([0.52] * 5, [0.1] * 5)
    for _ in range(9):
        fs, fy = _fold(PATTERN_SAME, PATTERN_DIFF)
        s += fs
        y += fy
    r = M.lfw_accuracy(torch.tensor(s, dtype=torch.float64), torch.tensor(y))
    # fold 0, trained on folds 1-9: threshold 0.55 rejects its 5 same pairs -> 0.5.
    # folds 1-9, trained on fold 0 + 8 pattern folds: 0.51 (37 + 45 = 82 of 90 correct)
    # beats 0.56 (32 + 45 = 77) -> on a pattern fold still 9 / 10.
    assert r.accuracies.tolist() == pytest.approx([0.5] + [0.9] * 9)
    assert r.thresholds.tolist() == pytest.approx([0.55] + [0.51] * 9)
    assert r.mean == pytest.approx((0.5 + 9 * 0.9) / 10)
    assert r.std == pytest.approx(float(np.std([0.5] + [0.9] * 9)))
    # moving fold 0 to the end moves its low accuracy with it: folds follow list order
    n = len(s)
    rolled = M.lfw_accuracy(torch.tensor(s[10:] + s[:10]), torch.tensor(y[10:] + y[:10]))
    assert rolled.accuracies.tolist() == pytest.approx([0.9] * 9 + [0.5])
    assert n == 100


def test_lfw_tie_rule_takes_the_lowest_threshold():
    # 2 folds. Fold 0 (training for fold 1): same {0.2, 0.8}, different {0.5}.
    # Candidates: -inf 2/3, 0.35 1/3, 0.65 2/3, +inf 1/3 -> tie, the lowest (-inf) wins.
    s = [0.2, 0.8, 0.5, 0.6, 0.1, 0.7]
    y = [True, True, False, True, False, False]
    r = M.lfw_accuracy(torch.tensor(s), torch.tensor(y), n_folds=2)
    assert r.thresholds[1] == -math.inf
    assert r.accuracies[1] == pytest.approx(1 / 3)  # fold 1 with "accept all"
    # Fold 0 trained on fold 1 (same {0.6}, different {0.1, 0.7}): candidates -inf 1/3,
    # 0.35 2/3, 0.65 1/3, +inf 2/3 -> tie, the lowest (0.35) wins.
    assert r.thresholds[0] == pytest.approx(0.35)
    assert r.accuracies[0] == pytest.approx(1 / 3)  # accepts 0.5 and 0.8, rejects 0.2


def _brute_force_lfw(s, y, k):
    """Naive O(n^2) protocol in plain Python (independent oracle)."""
    n = len(s)
    accs, ths = [], []
    for i in range(k):
        lo, hi = i * n // k, (i + 1) * n // k
        tr = [(s[j], y[j]) for j in range(n) if not lo <= j < hi]
        u = sorted({v for v, _ in tr})
        cands = [-math.inf] + [(a + b) / 2 for a, b in zip(u, u[1:])] + [math.inf]
        best, best_t = -1, None
        for t in cands:
            c = sum((v >= t) == lab for v, lab in tr)
            if c > best:
                best, best_t = c, t
        te = [(s[j], y[j]) for j in range(lo, hi)]
        accs.append(sum((v >= best_t) == lab for v, lab in te) / len(te))
        ths.append(best_t)
    return accs, ths


@pytest.mark.parametrize("seed, n, k", [(0, 600, 10), (1, 97, 10), (2, 30, 3), (3, 10, 10)])
def test_lfw_matches_brute_force(seed, n, k):
    s, y = _pairs(seed, n=n, dtype=torch.float64)
    r = M.lfw_accuracy(s, y, n_folds=k)
    accs, ths = _brute_force_lfw(s.tolist(), y.tolist(), k)
    assert r.accuracies.tolist() == pytest.approx(accs)
    assert r.thresholds.tolist() == pytest.approx(ths)
    assert r.mean == pytest.approx(float(np.mean(accs)))
    assert r.std == pytest.approx(float(np.std(accs)))


def test_lfw_midpoint_of_adjacent_floats():
    # 1.0 and the next float32 above it: their midpoint rounds onto one of them in float32
    # but is computed in float64, so the rule still separates them
    hi = float(np.nextafter(np.float64(1.0), 2.0))
    s = torch.tensor([1.0, hi] * 2, dtype=torch.float64)
    y = torch.tensor([False, True] * 2)
    r = M.lfw_accuracy(s, y, n_folds=2)
    assert r.accuracies.tolist() == [1.0, 1.0]
    assert bool((r.thresholds > 1.0).all()) and bool((r.thresholds <= hi).all())


def test_lfw_bad_inputs():
    s, y = torch.tensor([0.1, 0.9, 0.5]), torch.tensor([0, 1, 1])
    with pytest.raises(ValueError, match="at least n_folds=10 pairs, got 3"):
        M.lfw_accuracy(s, y)
    with pytest.raises(ValueError, match="n_folds must be >= 2"):
        M.lfw_accuracy(s, y, n_folds=1)
    with pytest.raises(
        ValueError, match="kind must be one of 'similarity', 'distance', got 'cosine'"
    ):
        M.lfw_accuracy(s, y, kind="cosine")


# --------------------------------------------------------------- identification


def _ident_example():
    gallery = torch.tensor([0, 1, 2, 0])
    probes = torch.tensor([0, 1, 2])
    scores = torch.tensor(
        [
            [0.9, 0.1, 0.2, 0.3],  # genuine best 0.9: rank 1
            [0.8, 0.5, 0.6, 0.1],  # genuine 0.5 under 0.8 and 0.6: rank 3
            [0.4, 0.4, 0.4, 0.1],  # genuine 0.4 tied with two impostors: rank 3 (pessimistic)
        ]
    )
    return scores, probes, gallery


def test_cmc_worked_example():
    scores, probes, gallery = _ident_example()
    cmc = M.cmc_curve(scores, probes, gallery)
    torch.testing.assert_close(cmc, torch.tensor([1 / 3, 1 / 3, 1.0, 1.0], dtype=torch.float64))
    assert M.rank_k_accuracy(scores, probes, gallery) == pytest.approx(1 / 3)
    assert M.rank_k_accuracy(scores, probes, gallery, 3) == pytest.approx(1.0)
    assert M.cmc_curve(scores, probes, gallery, max_rank=2).tolist() == pytest.approx(
        [1 / 3, 1 / 3]
    )
    dist = M.cmc_curve(1 - scores.double(), probes, gallery, kind="distance")
    torch.testing.assert_close(dist, cmc)


def test_cmc_probes_missing_from_gallery():
    scores, probes, gallery = _ident_example()
    scores = torch.cat([scores, torch.tensor([[0.9, 0.9, 0.9, 0.9]])])
    probes = torch.cat([probes, torch.tensor([7])])
    with pytest.raises(
        ValueError, match=r"1 of 4 probes have no gallery image.*probe 3, identity 7"
    ):
        M.cmc_curve(scores, probes, gallery)
    ignored = M.cmc_curve(scores, probes, gallery, missing="ignore")
    assert ignored.tolist() == pytest.approx([1 / 3, 1 / 3, 1.0, 1.0])
    missed = M.cmc_curve(scores, probes, gallery, missing="miss")
    assert missed.tolist() == pytest.approx([1 / 4, 1 / 4, 3 / 4, 3 / 4])
    with pytest.raises(ValueError, match="no probe has a gallery image"):
        M.cmc_curve(scores[3:], probes[3:], gallery, missing="ignore")


def test_cmc_matches_argsort_brute_force():
    g = torch.Generator().manual_seed(0)
    P, G, ids = 50, 40, 12
    gallery = torch.arange(G) % ids
    probes = torch.randint(0, ids, (P,), generator=g)
    scores = torch.rand(P, G, generator=g, dtype=torch.float64)  # continuous: no ties
    cmc = M.cmc_curve(scores, probes, gallery)
    ranks = []
    for p in range(P):
        order = torch.argsort(scores[p], descending=True)
        ranks.append(1 + next(i for i, gi in enumerate(order) if gallery[gi] == probes[p]))
    expect = [sum(r <= k for r in ranks) / P for k in range(1, G + 1)]
    assert cmc.tolist() == pytest.approx(expect)
    assert bool((cmc.diff() >= 0).all()) and cmc[-1] == 1.0


def test_cmc_bad_inputs():
    scores, probes, gallery = _ident_example()
    with pytest.raises(ValueError, match=r"scores must be \[P, G\] = \[3, 3\]"):
        M.cmc_curve(scores, probes, gallery[:3])
    with pytest.raises(ValueError, match="max_rank must be <= the gallery size 4"):
        M.cmc_curve(scores, probes, gallery, max_rank=5)
    with pytest.raises(ValueError, match="k must be >= 1"):
        M.rank_k_accuracy(scores, probes, gallery, 0)
    with pytest.raises(TypeError, match="probe_labels must be an integer tensor"):
        M.cmc_curve(scores, probes.float(), gallery)
    with pytest.raises(ValueError, match="scores contains NaN"):
        M.cmc_curve(scores.index_fill(1, torch.tensor([2]), float("nan")), probes, gallery)
    with pytest.raises(ValueError, match="missing must be one of"):
        M.cmc_curve(scores, probes, gallery, missing="skip")
    with pytest.raises(ValueError, match=r"2-D of shape \[P, G\]"):
        M.cmc_curve(scores[0], probes, gallery)


# ------------------------------------------------------- shared edge cases


@pytest.mark.parametrize(
    "fn",
    [
        M.roc_curve,
        M.verification_auc,
        M.equal_error_rate,
        lambda s, y: M.tar_at_far(s, y, 0.1),
    ],
)
def test_verification_input_errors(fn):
    with pytest.raises(ValueError, match="needs both same and different pairs, got 3 same and 0"):
        fn(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([1, 1, 1]))
    with pytest.raises(ValueError, match="scores is empty"):
        fn(torch.tensor([]), torch.tensor([]))
    with pytest.raises(ValueError, match="scores and same must have the same length, got 2 and 3"):
        fn(torch.tensor([0.1, 0.2]), torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match="scores contains NaN"):
        fn(torch.tensor([0.1, float("nan")]), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="same must be binary"):
        fn(torch.tensor([0.1, 0.2]), torch.tensor([1, 2]))


@pytest.mark.cuda
def test_cuda_matches_cpu():
    s, y = _pairs(7, n=3000)
    sc, yc = s.cuda(), y.cuda()
    roc, rocc = M.roc_curve(s, y), M.roc_curve(sc, yc)
    assert rocc.fpr.device.type == "cuda"
    for a, b in zip(roc, rocc):
        torch.testing.assert_close(b.cpu(), a, rtol=0, atol=0)
    assert M.verification_auc(sc, yc) == pytest.approx(M.verification_auc(s, y), abs=1e-12)
    assert M.equal_error_rate(sc, yc) == M.equal_error_rate(s, y)
    assert M.tar_at_far(sc, yc, 0.01) == M.tar_at_far(s, y, 0.01)
    a, b = M.lfw_accuracy(s, y), M.lfw_accuracy(sc, yc)
    torch.testing.assert_close(b.accuracies.cpu(), a.accuracies)
    torch.testing.assert_close(b.thresholds.cpu(), a.thresholds)
    scores, probes, gallery = _ident_example()
    torch.testing.assert_close(
        M.cmc_curve(scores.cuda(), probes.cuda(), gallery.cuda()).cpu(),
        M.cmc_curve(scores, probes, gallery),
    )
