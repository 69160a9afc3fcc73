r"""Binary-attribute metrics (e.g. gender): accuracy, ROC AUC, calibration,
Brier score and log loss.

Conventions
-----------
* ``target``: ``[N]`` binary labels, bool or numbers equal to 0 / 1 (1 is the
  positive class).
* ``scores``: ``[N]`` real values, higher = more likely positive (probabilities,
  logits or any monotone score). ``probs``: ``[N]`` floating-point
  probabilities ``P(y = 1)`` in ``[0, 1]``.
* ``N >= 1``; empty inputs, mismatched lengths, NaN, probabilities outside
  ``[0, 1]`` and non-binary targets are ``ValueError``; wrong dtypes are
  ``TypeError``. Scalars come back as Python floats, per-bin values as float64
  tensors on the input's device. Everything is computed in float64.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from facecore.metrics import _validation as V

__all__ = [
    "accuracy",
    "roc_auc",
    "calibration_bins",
    "CalibrationBins",
    "expected_calibration_error",
    "max_calibration_error",
    "brier_score",
    "log_loss",
]


def _scores_and_target(scores: object, target: object, name: str = "scores"):
    s = V.vector(scores, name)
    if s.dtype == torch.bool:
        raise TypeError(f"{name} must hold numbers, got dtype torch.bool")
    V.no_nan(s, name)
    y = V.binary_target(target, "target")
    V.same_length(s, name, y, "target")
    return s, y


def _probs_and_target(probs: object, target: object):
    p = V.probabilities(probs, "probs")
    y = V.binary_target(target, "target")
    V.same_length(p, "probs", y, "target")
    return p, y


def accuracy(pred: object, target: object, *, threshold: float = 0.5) -> float:
    r"""Fraction of correct binary decisions.

    ``pred`` is either hard decisions (bool, or integers equal to 0 / 1; then
    ``threshold`` is ignored) or real-valued scores / probabilities, decided
    positive iff ``score >= threshold`` (the same rule as the operating points
    of :func:`facecore.metrics.roc_curve`, so a threshold read off the ROC
    gives that point's accuracy). For logits use ``threshold=0``.
    Matches ``sklearn.metrics.accuracy_score`` on the decisions.
    """
    y = V.binary_target(target, "target")
    p = V.vector(pred, "pred")
    if p.is_floating_point():
        V.no_nan(p, "pred")
        th = V.finite_number(threshold, "threshold")
        decided = p >= th
    else:
        decided = V.binary_target(p, "pred")
    V.same_length(decided, "pred", y, "target")
    return float((decided == y).double().mean())


def roc_auc(scores: object, target: object) -> float:
    r"""Area under the ROC curve, as the Mann-Whitney statistic.

    .. math::
        \mathrm{AUC} = \frac{1}{n_+ n_-} \sum_{i: y_i=1} \sum_{j: y_j=0}
        \Big([s_i > s_j] + \tfrac12 [s_i = s_j]\Big)

    computed in :math:`O(N \log N)` from average ranks, so tied scores count
    one half, exactly like ``sklearn.metrics.roc_auc_score`` (and equal to the
    trapezoidal area under :func:`facecore.metrics.roc_curve`).

    Raises ``ValueError`` when ``target`` holds only one class (AUC undefined).
    """
    s, y = _scores_and_target(scores, target)
    s = V.sort_precision(s)
    n_pos = int(y.sum())
    n_neg = y.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"roc_auc is undefined when target holds one class only "
            f"(got {n_pos} positives and {n_neg} negatives)"
        )
    return _mann_whitney_auc(s, y, n_pos, n_neg)


def _mann_whitney_auc(s: torch.Tensor, y: torch.Tensor, n_pos: int, n_neg: int) -> float:
    # Group tied scores; per group g: U += pos_g * (negatives below g + neg_g / 2).
    _, inverse, _ = torch.unique(s, sorted=True, return_inverse=True, return_counts=True)
    groups = int(inverse.max()) + 1
    pos = torch.zeros(groups, dtype=torch.float64, device=s.device).index_add_(
        0, inverse, y.double()
    )
    neg = torch.zeros_like(pos).index_add_(0, inverse, (~y).double())
    neg_below = torch.cumsum(neg, 0) - neg
    u = float((pos * (neg_below + 0.5 * neg)).sum())
    return u / (n_pos * n_neg)


class CalibrationBins(NamedTuple):
    """Reliability-diagram data over ``B`` equal-width bins of ``[0, 1]``.

    edges:      ``[B+1]`` bin edges ``k / B``.
    counts:     ``[B]`` int64, samples per bin.
    confidence: ``[B]`` mean predicted probability per bin (NaN if empty).
    frequency:  ``[B]`` observed fraction of positives per bin (NaN if empty).
    """

    edges: torch.Tensor
    counts: torch.Tensor
    confidence: torch.Tensor
    frequency: torch.Tensor


def calibration_bins(probs: object, target: object, *, n_bins: int = 15) -> CalibrationBins:
    r"""Bin probabilities into ``n_bins`` equal-width bins and compare the mean
    predicted probability with the observed frequency of positives in each.

    Bin ``b`` is ``(b/B, (b+1)/B]`` and the first bin also holds 0, i.e.
    ``b = #{interior edges < p}``: the convention of
    ``sklearn.calibration.calibration_curve(strategy='uniform')``, whose
    ``(prob_true, prob_pred)`` are ``frequency`` and ``confidence`` of the
    non-empty bins. ``probs`` are ``P(y = 1)`` (the positive class, not the
    top-label confidence).
    """
    p, y = _probs_and_target(probs, target)
    B = V.positive_int(n_bins, "n_bins")
    edges = torch.arange(B + 1, dtype=torch.float64, device=p.device) / B
    ids = torch.bucketize(p, edges[1:-1], right=False)
    counts = torch.zeros(B, dtype=torch.int64, device=p.device).index_add_(
        0, ids, torch.ones_like(ids)
    )
    sum_p = torch.zeros(B, dtype=torch.float64, device=p.device).index_add_(0, ids, p)
    sum_y = torch.zeros(B, dtype=torch.float64, device=p.device).index_add_(0, ids, y.double())
    n = counts.double()
    nan = torch.full_like(n, float("nan"))
    nonempty = counts > 0
    confidence = torch.where(nonempty, sum_p / n.clamp(min=1), nan)
    frequency = torch.where(nonempty, sum_y / n.clamp(min=1), nan)
    return CalibrationBins(edges, counts, confidence, frequency)


def expected_calibration_error(probs: object, target: object, *, n_bins: int = 15) -> float:
    r"""Expected calibration error over equal-width bins (Naeini et al. 2015; Guo et al. 2017):

    .. math::
        \mathrm{ECE} = \sum_b \frac{n_b}{N}\, \big|\mathrm{freq}_b - \mathrm{conf}_b\big|

    with the bins of :func:`calibration_bins` (empty bins contribute 0).
    """
    bins = calibration_bins(probs, target, n_bins=n_bins)
    nonempty = bins.counts > 0
    gap = (bins.frequency - bins.confidence).abs()[nonempty]
    weight = bins.counts[nonempty].double() / bins.counts.sum()
    return float((weight * gap).sum())


def max_calibration_error(probs: object, target: object, *, n_bins: int = 15) -> float:
    r"""Maximum calibration error: :math:`\max_b |\mathrm{freq}_b - \mathrm{conf}_b|`
    over the non-empty bins of :func:`calibration_bins`."""
    bins = calibration_bins(probs, target, n_bins=n_bins)
    nonempty = bins.counts > 0
    return float((bins.frequency - bins.confidence).abs()[nonempty].max())


def brier_score(probs: object, target: object) -> float:
    r"""Brier score :math:`\frac1N \sum_i (p_i - y_i)^2` (``sklearn.metrics.brier_score_loss``)."""
    p, y = _probs_and_target(probs, target)
    return float(((p - y.double()) ** 2).mean())


def log_loss(probs: object, target: object, *, eps: float | None = None) -> float:
    r"""Mean binary cross-entropy :math:`-\frac1N \sum_i [y_i \log p_i + (1 - y_i)\log(1 - p_i)]`.

    Probabilities are clipped to ``[eps, 1 - eps]`` first; the default ``eps``
    is the machine epsilon of ``probs``' dtype, as ``sklearn.metrics.log_loss``
    does, so a confident mistake costs a large finite amount, not ``inf``.
    """
    raw = V.as_tensor(probs, "probs")
    p, y = _probs_and_target(raw, target)
    if eps is None:
        eps = torch.finfo(raw.dtype).eps
    eps = V.finite_number(eps, "eps")
    if not 0.0 <= eps < 0.5:
        raise ValueError(f"eps must be in [0, 0.5), got {eps}")
    p = p.clamp(eps, 1 - eps)
    ll = torch.where(y, torch.log(p), torch.log1p(-p))
    return float(-ll.mean())
