r"""Face verification and identification metrics.

Verification (1:1) works on pairs: ``scores`` ``[N]`` and ``same`` ``[N]``
(bool, or 0 / 1; true = the two faces are the same person).

``kind`` says what the scores are:

* ``'similarity'`` (default): higher = more alike (cosine similarity). A pair
  is accepted as "same" at threshold ``t`` iff ``score >= t``.
* ``'distance'``: lower = more alike (Euclidean distance). A pair is accepted
  iff ``distance <= t``.

Every threshold returned is in the units and direction of the input. Internally
distances are negated into similarities, so both kinds give identical rates.

Rules, stated once:

* ROC: one operating point per distinct score plus the "accept nothing" point,
  exactly ``sklearn.metrics.roc_curve(same, scores, drop_intermediate=False)``.
* EER: linear interpolation of the ROC where ``FPR = 1 - TPR``.
* TAR@FAR: the largest TPR among ROC operating points with ``FPR <= far``
  (no interpolation: every reported TAR is achieved by a real threshold;
  among equal TPRs, the lowest FPR).
* LFW accuracy: 10 folds in pair-list order, threshold chosen on the other 9
  folds (see :func:`lfw_accuracy`).

Identification (1:N) works on a probe x gallery score matrix (see
:func:`cmc_curve`). All inputs: no NaN (``ValueError``), non-empty, one device.
Rates are float64; returned tensors live on the input's device.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from facecore.metrics import _validation as V
from facecore.metrics.binary import _mann_whitney_auc

__all__ = [
    "roc_curve",
    "RocCurve",
    "verification_auc",
    "equal_error_rate",
    "EqualErrorRate",
    "tar_at_far",
    "TarAtFar",
    "lfw_accuracy",
    "FoldAccuracy",
    "cmc_curve",
    "rank_k_accuracy",
]

_KINDS = ("similarity", "distance")


def _pairs(scores: object, same: object, kind: str):
    """(oriented similarity scores, same as bool, sign) with the checks."""
    V.choice(kind, "kind", _KINDS)
    s = V.vector(scores, "scores")
    if s.dtype == torch.bool:
        raise TypeError("scores must hold numbers, got dtype torch.bool")
    V.no_nan(s, "scores")
    y = V.binary_target(same, "same")
    V.same_length(s, "scores", y, "same")
    s = s if s.is_floating_point() else s.double()
    s = V.sort_precision(s)
    sign = 1.0 if kind == "similarity" else -1.0
    return (s if sign > 0 else -s), y, sign


def _both_classes(y: torch.Tensor, what: str) -> tuple[int, int]:
    n_pos = int(y.sum())
    n_neg = y.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"{what} needs both same and different pairs, got {n_pos} same and {n_neg} different"
        )
    return n_pos, n_neg


class RocCurve(NamedTuple):
    """``fpr``, ``tpr`` (float64, non-decreasing, from 0 to 1) and ``thresholds``
    (the scores' floating dtype): point ``i`` accepts the pairs with
    ``score >= thresholds[i]`` (similarity; ``distance <= thresholds[i]`` for
    distances). ``thresholds[0]`` is ``+inf`` (``-inf`` for distances): accept nothing."""

    fpr: torch.Tensor
    tpr: torch.Tensor
    thresholds: torch.Tensor


class _Roc(NamedTuple):
    fps: torch.Tensor  # int64 counts of accepted different / same pairs per point
    tps: torch.Tensor
    fpr: torch.Tensor
    tpr: torch.Tensor
    thresholds: torch.Tensor


def _roc(s: torch.Tensor, y: torch.Tensor) -> _Roc:
    order = torch.argsort(s, descending=True, stable=True)
    s_sorted = s[order]
    y_sorted = y[order]
    n = s.shape[0]
    last_of_group = torch.nonzero(s_sorted[1:] != s_sorted[:-1]).squeeze(1)
    idx = torch.cat([last_of_group, torch.tensor([n - 1], device=s.device)])
    tps = torch.cumsum(y_sorted.long(), 0)[idx]
    fps = idx + 1 - tps
    zero = torch.zeros(1, dtype=torch.int64, device=s.device)
    tps = torch.cat([zero, tps])
    fps = torch.cat([zero, fps])
    inf = torch.full((1,), float("inf"), dtype=s.dtype, device=s.device)
    thresholds = torch.cat([inf, s_sorted[idx]])
    fpr = fps.double() / float(fps[-1])
    tpr = tps.double() / float(tps[-1])
    return _Roc(fps, tps, fpr, tpr, thresholds)


def roc_curve(scores: object, same: object, *, kind: str = "similarity") -> RocCurve:
    """Receiver operating characteristic of a verifier, without dropping points.

    Same conventions as ``sklearn.metrics.roc_curve(same, scores,
    drop_intermediate=False)``: thresholds are the distinct scores in
    decreasing order preceded by ``+inf``; ``fpr[i]`` / ``tpr[i]`` are the
    fractions of different / same pairs with ``score >= thresholds[i]``.
    For ``kind='distance'`` the thresholds are distances in increasing order
    preceded by ``-inf`` and a pair is accepted iff ``distance <= threshold``.

    Raises ``ValueError`` if ``same`` holds one class only (sklearn would warn
    and return NaN rates).
    """
    s, y, sign = _pairs(scores, same, kind)
    _both_classes(y, "roc_curve")
    r = _roc(s, y)
    return RocCurve(r.fpr, r.tpr, r.thresholds if sign > 0 else -r.thresholds)


def verification_auc(scores: object, same: object, *, kind: str = "similarity") -> float:
    """Area under the ROC of :func:`roc_curve`: the Mann-Whitney statistic with
    ties counted one half (equal to the trapezoidal area under the curve and to
    ``sklearn.metrics.roc_auc_score(same, scores)``; for distances, of
    ``-distances``). ``ValueError`` if ``same`` holds one class only."""
    s, y, _ = _pairs(scores, same, kind)
    n_pos, n_neg = _both_classes(y, "verification_auc")
    return _mann_whitney_auc(s, y, n_pos, n_neg)


class EqualErrorRate(NamedTuple):
    """``eer``: the interpolated rate where FPR = FNR. ``threshold``: the threshold of
    the first ROC operating point with ``FPR >= FNR`` (a real operating point;
    its own FPR / FNR straddle ``eer`` at most by one step of the ROC)."""

    eer: float
    threshold: float


def equal_error_rate(scores: object, same: object, *, kind: str = "similarity") -> EqualErrorRate:
    r"""Equal error rate: where the false accept rate equals the false reject rate.

    Interpolation rule: the ROC of :func:`roc_curve` is taken as the polyline
    through its operating points. With ``FNR = 1 - TPR`` and
    ``d = FPR - FNR`` (``d = -1`` at the first point, ``+1`` at the last,
    strictly increasing in between), let ``i`` be the first point with
    ``d_i >= 0`` (decided exactly on the integer counts, so a crossing at an
    operating point is found despite rounding); on the segment from point
    ``i-1`` to ``i`` both rates are linear in ``t = d_{i-1} / (d_{i-1} - d_i)``
    and they meet at

    .. math::
        \mathrm{EER} = \mathrm{FPR}_{i-1} + t\,(\mathrm{FPR}_i - \mathrm{FPR}_{i-1})
                     = \mathrm{FNR}_{i-1} + t\,(\mathrm{FNR}_i - \mathrm{FNR}_{i-1}).

    Example: same-pair scores ``[0.8, 0.5]`` and different-pair scores
    ``[0.5, 0.1]`` give the points (FPR, FNR) = (0, 1), (0, 0.5), (0.5, 0),
    (1, 0); the crossing is halfway along the tied segment: EER = 0.25.
    """
    s, y, sign = _pairs(scores, same, kind)
    n_pos, n_neg = _both_classes(y, "equal_error_rate")
    r = _roc(s, y)
    # d scaled by n_pos * n_neg, in exact integers: FPR - FNR = D / (n_pos n_neg)
    D = r.fps * n_pos - (n_pos - r.tps) * n_neg
    i = int(torch.nonzero(D >= 0)[0, 0])  # exists: D[-1] > 0; i >= 1 since D[0] < 0
    d0, d1 = int(D[i - 1]), int(D[i])
    if d1 == 0:  # the crossing is an operating point
        eer = float(r.fpr[i])
    else:
        t = d0 / (d0 - d1)
        eer = float(r.fpr[i - 1]) + t * float(r.fpr[i] - r.fpr[i - 1])
    return EqualErrorRate(eer, sign * float(r.thresholds[i]))


class TarAtFar(NamedTuple):
    """``tar``: true accept rate; ``far``: the false accept rate actually achieved
    (``<=`` the target); ``threshold``: the operating point's threshold. Floats for
    a single target FAR, float64 tensors for a sequence of targets."""

    tar: float | torch.Tensor
    far: float | torch.Tensor
    threshold: float | torch.Tensor


def tar_at_far(scores: object, same: object, far: object, *, kind: str = "similarity") -> TarAtFar:
    """True accept rate at a target false accept rate.

    Rule: among the operating points of :func:`roc_curve` with ``FPR <= far``,
    the largest TPR; if several points reach it, the one with the lowest FPR
    (highest similarity / lowest distance threshold). No interpolation, so the TAR is achieved
    by accepting ``score >= threshold`` (``distance <= threshold``). The
    "accept nothing" point (TAR 0, threshold ``+inf`` / ``-inf``) always
    qualifies, so every target in ``[0, 1]`` has an answer.

    ``far``: a number or a 1-D sequence / tensor of numbers in ``[0, 1]``.
    """
    s, y, sign = _pairs(scores, same, kind)
    _both_classes(y, "tar_at_far")
    targets, single = V.scalar_or_vector(far, "far")
    if bool(((targets < 0) | (targets > 1)).any()):
        raise ValueError(f"far must be in [0, 1], got {targets.tolist()}")
    r = _roc(s, y)
    last = torch.searchsorted(r.fpr, targets.to(r.fpr.device), right=True) - 1
    tar = r.tpr[last]
    # among the qualifying points with that TPR, the first: lowest FPR, highest threshold
    idx = torch.searchsorted(r.tpr, tar, right=False)
    achieved, th = r.fpr[idx], sign * r.thresholds[idx].double()
    if single:
        return TarAtFar(float(tar[0]), float(achieved[0]), float(th[0]))
    return TarAtFar(tar, achieved, th)


class FoldAccuracy(NamedTuple):
    """``mean`` / ``std`` (population, ddof=0) of the held-out fold accuracies;
    ``accuracies`` and ``thresholds`` are ``[n_folds]`` float64 tensors, fold by fold
    (thresholds in the input's units and direction; ``+-inf`` = accept all / none)."""

    mean: float
    std: float
    accuracies: torch.Tensor
    thresholds: torch.Tensor


def _best_threshold(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The accuracy-maximising threshold on (s, y), accepting ``s >= threshold``.

    Candidates, ascending: ``-inf`` (accept all), the midpoints between
    consecutive distinct scores, ``+inf`` (accept none). Ties: the first
    (lowest) candidate with the maximal accuracy."""
    u, inverse = torch.unique(s, sorted=True, return_inverse=True)
    pos = torch.zeros(u.shape[0], dtype=torch.int64, device=s.device).index_add_(
        0, inverse, y.long()
    )
    neg = torch.zeros_like(pos).index_add_(0, inverse, (~y).long())
    zero = torch.zeros(1, dtype=torch.int64, device=s.device)
    # candidate j accepts the groups j.. : correct = pos in groups >= j + neg in groups < j
    neg_below = torch.cat([zero, torch.cumsum(neg, 0)])
    pos_at_or_above = int(pos.sum()) - torch.cat([zero, torch.cumsum(pos, 0)])
    j = int(torch.argmax(neg_below + pos_at_or_above))  # first maximum
    if j == 0:
        return torch.tensor(float("-inf"), dtype=torch.float64, device=s.device)
    if j == u.shape[0]:
        return torch.tensor(float("inf"), dtype=torch.float64, device=s.device)
    lo, hi = u[j - 1].double(), u[j].double()
    mid = lo / 2 + hi / 2
    # adjacent floats: the midpoint may round onto lo, which would accept lo
    return torch.where(mid > lo, mid, hi)


def lfw_accuracy(
    scores: object, same: object, *, kind: str = "similarity", n_folds: int = 10
) -> FoldAccuracy:
    """Verification accuracy by the LFW protocol (k-fold with a learned threshold).

    Folds follow the pair-list order: fold ``i`` is pairs
    ``i*N//n_folds .. (i+1)*N//n_folds - 1`` (give the pairs in the order of
    ``pairs.txt``: LFW's 10 sets of 300 same + 300 different pairs are then the
    10 folds). For each fold, the threshold is chosen on the other folds to
    maximise their accuracy: candidates are the midpoints between consecutive
    distinct training scores plus the extremes (accept all / accept none);
    ties go to the lowest similarity (= largest distance) threshold. The
    accuracy of ``score >= threshold`` (``distance <= threshold``) on the
    held-out fold is that fold's accuracy.

    Requires ``N >= n_folds >= 2``.
    """
    s, y, sign = _pairs(scores, same, kind)
    k = V.positive_int(n_folds, "n_folds", minimum=2)
    n = s.shape[0]
    if n < k:
        raise ValueError(f"lfw_accuracy needs at least n_folds={k} pairs, got {n}")
    bounds = [i * n // k for i in range(k + 1)]
    accs, thresholds = [], []
    for i in range(k):
        test = torch.zeros(n, dtype=torch.bool, device=s.device)
        test[bounds[i] : bounds[i + 1]] = True
        th = _best_threshold(s[~test], y[~test])
        accepted = s[test].double() >= th
        accs.append((accepted == y[test]).double().mean())
        thresholds.append(sign * th)
    acc = torch.stack(accs)
    return FoldAccuracy(
        float(acc.mean()), float(acc.std(unbiased=False)), acc, torch.stack(thresholds)
    )


_MISSING = ("error", "ignore", "miss")


def cmc_curve(
    scores: object,
    probe_labels: object,
    gallery_labels: object,
    *,
    kind: str = "similarity",
    max_rank: int | None = None,
    missing: str = "error",
) -> torch.Tensor:
    r"""Cumulative match characteristic of closed-set identification.

    ``scores`` is ``[P, G]`` (probe x gallery); ``probe_labels`` ``[P]`` and
    ``gallery_labels`` ``[G]`` are integer identities (a gallery may hold several
    images per identity). The rank of a probe is the position of its best-scoring
    same-identity gallery image in the gallery sorted by score, with ties counted
    against the probe (pessimistic):

    .. math::
        r_p = 1 + \#\{g : \mathrm{id}_g \ne \mathrm{id}_p,\ s_{pg} \ge \max_{g': \mathrm{id}_{g'} = \mathrm{id}_p} s_{pg'}\}

    (for distances, ``<=`` and ``min``), and ``cmc[k-1]`` is the fraction of
    probes with ``r_p <= k``, for ``k = 1 .. max_rank`` (default ``G``).

    ``missing`` handles probes whose identity has no gallery image:
    ``'error'`` (default) raises ``ValueError``; ``'ignore'`` leaves them out
    of the denominator (closed-set rates over the enrolled probes);
    ``'miss'`` keeps them, never matched, so they lower every point.

    Returns a ``[max_rank]`` float64 tensor, non-decreasing.
    """
    V.choice(kind, "kind", _KINDS)
    V.choice(missing, "missing", _MISSING)
    s = V.as_tensor(scores, "scores")
    if s.dim() != 2:
        raise ValueError(f"scores must be 2-D of shape [P, G], got shape {list(s.shape)}")
    if s.dtype == torch.bool:
        raise TypeError("scores must hold numbers, got dtype torch.bool")
    pl = V.labels(probe_labels, "probe_labels")
    gl = V.labels(gallery_labels, "gallery_labels")
    if s.shape[0] != pl.shape[0] or s.shape[1] != gl.shape[0]:
        raise ValueError(
            f"scores must be [P, G] = [{pl.shape[0]}, {gl.shape[0]}] (len(probe_labels), "
            f"len(gallery_labels)), got shape {list(s.shape)}"
        )
    V.same_device(s, "scores", pl, "probe_labels")
    V.same_device(s, "scores", gl, "gallery_labels")
    V.no_nan(s, "scores")
    G = gl.shape[0]
    R = G if max_rank is None else V.positive_int(max_rank, "max_rank")
    if R > G:
        raise ValueError(f"max_rank must be <= the gallery size {G}, got {R}")
    s = s.double()
    if kind == "distance":
        s = -s
    match = pl.unsqueeze(1) == gl.unsqueeze(0)
    enrolled = match.any(1)
    n_missing = int((~enrolled).sum())
    if n_missing and missing == "error":
        first = int(torch.nonzero(~enrolled)[0, 0])
        raise ValueError(
            f"{n_missing} of {pl.shape[0]} probes have no gallery image of their identity "
            f"(first: probe {first}, identity {int(pl[first])}); pass missing='ignore' to "
            "leave them out or missing='miss' to count them as never matched"
        )
    best = torch.where(match, s, torch.full_like(s, float("-inf"))).amax(1)
    rank = 1 + ((~match) & (s >= best.unsqueeze(1))).sum(1)
    rank = torch.where(enrolled, rank, torch.full_like(rank, G + 1))
    if missing == "ignore":
        rank = rank[enrolled]
        if rank.numel() == 0:
            raise ValueError("no probe has a gallery image of its identity: CMC is undefined")
    ks = torch.arange(1, R + 1, device=s.device)
    return (rank.unsqueeze(0) <= ks.unsqueeze(1)).double().mean(1)


def rank_k_accuracy(
    scores: object,
    probe_labels: object,
    gallery_labels: object,
    k: int = 1,
    *,
    kind: str = "similarity",
    missing: str = "error",
) -> float:
    """Rank-``k`` identification rate: ``cmc_curve(...)[k-1]`` (rank-1 accuracy for
    ``k=1``). Same conventions as :func:`cmc_curve`; ``1 <= k <= G``."""
    k = V.positive_int(k, "k")
    cmc = cmc_curve(scores, probe_labels, gallery_labels, kind=kind, max_rank=k, missing=missing)
    return float(cmc[k - 1])
