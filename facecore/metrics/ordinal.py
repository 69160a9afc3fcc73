r"""Ordinal (age) metrics: MAE, RMSE, cumulative score, off-by-one accuracy,
quadratic weighted kappa, rank inconsistency and the median baseline.

Conventions
-----------
* Inputs are 1-D tensors (or array-likes) of equal length ``N >= 1`` on one
  device (CPU or CUDA); scalar results are Python floats, vector results are
  float64 tensors on the input's device. Sums are taken in float64.
* ``pred`` / ``target`` are predicted and true labels (class indices, e.g.
  ``facecore.ordinal_labels(logits)``), or real values (e.g. the expected rank
  ``facecore.ordinal_probs(logits).expected``) where the metric allows it.
* ``offset`` / ``scale`` convert labels to ages before comparing:
  ``age = offset + scale * label`` for *both* ``pred`` and ``target``
  (e.g. ``offset=16`` for MORPH-style labels ``age - 16``, ``scale=10`` for
  decade bins). ``offset`` cancels in every difference (errors are computed
  as ``scale * (pred - target)``), so only ``scale`` changes the value;
  ``offset`` is accepted (and checked to be finite) so a model's label metadata
  can be passed as is. ``scale`` must be positive.
* Empty inputs, mismatched lengths and NaN are ``ValueError``; wrong dtypes are
  ``TypeError``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from facecore.metrics import _validation as V

__all__ = [
    "mae",
    "rmse",
    "cumulative_score",
    "off_by_one_accuracy",
    "quadratic_weighted_kappa",
    "rank_inconsistency",
    "RankInconsistency",
    "median_baseline_mae",
]


def _abs_errors(pred: object, target: object, offset: float, scale: float) -> torch.Tensor:
    p = V.real(pred, "pred")
    t = V.real(target, "target")
    V.same_length(p, "pred", t, "target")
    scale = V.finite_number(scale, "scale")
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    V.finite_number(offset, "offset")  # cancels: a(p) - a(t) = scale * (p - t)
    return (scale * (p - t)).abs()


def mae(pred: object, target: object, *, offset: float = 0.0, scale: float = 1.0) -> float:
    r"""Mean absolute error :math:`\frac1N \sum_i |a(\hat y_i) - a(y_i)|`,
    with :math:`a(y) = \mathrm{offset} + \mathrm{scale}\cdot y`.

    ``pred`` may be integer labels or real values (expected rank). Matches
    ``sklearn.metrics.mean_absolute_error`` on the converted values.
    """
    return float(_abs_errors(pred, target, offset, scale).mean())


def rmse(pred: object, target: object, *, offset: float = 0.0, scale: float = 1.0) -> float:
    r"""Root mean squared error :math:`\sqrt{\frac1N \sum_i (a(\hat y_i) - a(y_i))^2}`
    (same conventions as :func:`mae`)."""
    e = _abs_errors(pred, target, offset, scale)
    return float(torch.sqrt((e * e).mean()))


def cumulative_score(
    pred: object,
    target: object,
    theta: object,
    *,
    offset: float = 0.0,
    scale: float = 1.0,
) -> float | torch.Tensor:
    r"""Cumulative score :math:`\mathrm{CS}(\theta) = \frac1N \#\{i : |a(\hat y_i) - a(y_i)| \le \theta\}`.

    ``theta`` is in the converted units (years when ``scale`` converts labels
    to years) and must be ``>= 0``. A number gives a float; a 1-D sequence or
    tensor of thresholds gives a float64 tensor of the same length (the CS
    curve), on the input's device. Comparisons allow a relative slack of
    ``1e-9 * max(1, theta)`` so that errors that equal ``theta`` in exact
    arithmetic but not after ``scale`` is applied in float64 (e.g.
    ``3 * 0.1`` vs ``0.3``) still count.
    """
    e = _abs_errors(pred, target, offset, scale)
    th, single = V.scalar_or_vector(theta, "theta")
    if not bool(torch.isfinite(th).all()) or bool((th < 0).any()):
        raise ValueError(f"theta must be finite and >= 0, got {th.tolist()}")
    th = th.to(e.device)
    slack = 1e-9 * torch.clamp(th, min=1.0)
    hits = (e.unsqueeze(0) <= (th + slack).unsqueeze(1)).double().mean(1)
    return float(hits[0]) if single else hits


def off_by_one_accuracy(pred: object, target: object) -> float:
    r"""Fraction of samples whose predicted class is within one class of the
    truth, :math:`\frac1N \#\{i : |\hat y_i - y_i| \le 1\}`.

    Both arguments must be integer class labels (this is a statement about
    adjacent classes, e.g. age groups, so no ``scale``).
    """
    p = V.labels(pred, "pred")
    t = V.labels(target, "target")
    V.same_length(p, "pred", t, "target")
    return float(((p - t).abs() <= 1).double().mean())


def quadratic_weighted_kappa(
    pred: object,
    target: object,
    num_classes: int,
    *,
    undefined: float = float("nan"),
) -> float:
    r"""Cohen's kappa with quadratic weights over the classes ``0 .. num_classes-1``.

    With the confusion matrix :math:`O_{ij}` (``i`` true, ``j`` predicted),
    the chance matrix :math:`E_{ij} = r_i c_j / N` from its row and column sums
    and :math:`w_{ij} = (i - j)^2`:

    .. math::
        \kappa = 1 - \frac{\sum_{ij} w_{ij} O_{ij}}{\sum_{ij} w_{ij} E_{ij}}

    Every class in ``0 .. num_classes-1`` is part of the weight matrix even if
    absent from the data, so the distance between classes is their index
    difference. This equals ``sklearn.metrics.cohen_kappa_score(target, pred,
    weights='quadratic', labels=range(num_classes))``; sklearn's default
    (``labels=None``) instead re-indexes the classes present, which differs
    when an intermediate class is missing.

    Degenerate case: the denominator is 0 exactly when all true and all
    predicted labels are one and the same class; kappa is then undefined and
    ``undefined`` is returned (default NaN, like sklearn's
    ``replace_undefined_by``).

    Args:
        pred, target: ``[N]`` integer labels in ``[0, num_classes - 1]``.
        num_classes: ``K >= 2``.
        undefined: the value returned in the degenerate case.
    """
    K = V.positive_int(num_classes, "num_classes", minimum=2)
    p = V.labels(pred, "pred")
    t = V.labels(target, "target")
    V.same_length(p, "pred", t, "target")
    V.labels_in_range(p, "pred", K)
    V.labels_in_range(t, "target", K)
    n = p.shape[0]
    observed = torch.bincount(t * K + p, minlength=K * K).double().reshape(K, K)
    rows = observed.sum(1)
    cols = observed.sum(0)
    expected = torch.outer(rows, cols) / n
    idx = torch.arange(K, device=p.device, dtype=torch.float64)
    w = (idx.unsqueeze(1) - idx.unsqueeze(0)) ** 2
    den = float((w * expected).sum())
    if den == 0.0:  # a sum of non-negative terms: exact test is safe
        return float(undefined)
    return 1.0 - float((w * observed).sum()) / den


class RankInconsistency(NamedTuple):
    """Rank inconsistency of cumulative probabilities (CORAL paper, Table 2).

    counts:   ``[N]`` int64, per image the number of adjacent increases.
    mean:     average count per image.
    fraction: fraction of images with at least one inconsistency.
    """

    counts: torch.Tensor
    mean: float
    fraction: float


def rank_inconsistency(cum_probs: object, *, tol: float = 1e-5) -> RankInconsistency:
    r"""Count rank inconsistencies of cumulative probabilities, as in the CORAL paper.

    ``cum_probs`` is ``[N, K-1]`` with ``cum_probs[i, k] = P(y_i > k)``, e.g.
    ``facecore.ordinal_probs(logits, head).cum_probs``. A rank-consistent
    model has non-increasing rows; image ``i`` counts

    .. math::
        c_i = \#\{k \in 0..K-3 : P(y_i > k+1) > P(y_i > k) + \mathrm{tol}\}

    Args:
        cum_probs: ``[N, K-1]`` floating-point probabilities in ``[0, 1]``
            (``N >= 1``, ``K - 1 >= 1``); logits are rejected.
        tol: slack below which an increase is ignored (default ``1e-5``).

    Returns:
        :class:`RankInconsistency` ``(counts, mean, fraction)``.
    """
    c = V.as_tensor(cum_probs, "cum_probs")
    if c.dim() != 2:
        raise ValueError(f"cum_probs must be 2-D of shape [N, K-1], got shape {list(c.shape)}")
    if c.shape[0] == 0 or c.shape[1] == 0:
        raise ValueError(f"cum_probs must be non-empty [N, K-1], got shape {list(c.shape)}")
    if not c.is_floating_point():
        raise TypeError(f"cum_probs must be floating-point probabilities, got dtype {c.dtype}")
    V.no_nan(c, "cum_probs")
    V.in_range(c, "cum_probs", " (pass facecore.ordinal_probs(logits, head).cum_probs, not logits)")
    tol = V.finite_number(tol, "tol")
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    c = c.double()
    counts = (c[:, 1:] > c[:, :-1] + tol).sum(1)
    return RankInconsistency(
        counts, float(counts.double().mean()), float((counts > 0).double().mean())
    )


def median_baseline_mae(
    train_labels: object,
    test_labels: object,
    *,
    offset: float = 0.0,
    scale: float = 1.0,
) -> float:
    r"""MAE on ``test_labels`` of always predicting the median of ``train_labels``.

    The baseline every age-estimation report compares against. The median is
    numpy's (for an even count, the mean of the two middle values), so it may
    fall between classes. ``offset`` / ``scale`` as in :func:`mae`.
    """
    tr = V.real(train_labels, "train_labels")
    te = V.real(test_labels, "test_labels")
    V.same_device(tr, "train_labels", te, "test_labels")
    s = torch.sort(tr).values
    n = s.shape[0]
    median = (s[(n - 1) // 2] + s[n // 2]) / 2
    return mae(median.expand_as(te), te, offset=offset, scale=scale)
