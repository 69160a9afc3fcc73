r"""Ordinal regression heads and the :class:`AgeEstimator` model.

Four heads map backbone features ``[N, F]`` to logits, each with its loss and
its decoder; all decode to one type, :class:`facecore.OrdinalPrediction`
(``labels`` [N] int64, ``cum_probs`` [N, K-1] = P(y > k), ``class_probs`` [N, K],
``expected`` [N] = :math:`\sum_k k\,P(y=k)`).

=========  ==========  ===============================  ==================================
head       logits      loss                             decoding
=========  ==========  ===============================  ==================================
``ce``     [N, K]      cross-entropy (nominal)          softmax; label = argmax
``niu``    [N, K-1]    :math:`\sum_k w_k \mathrm{BCE}`  as CORAL (count of P(y>k) > 0.5)
``coral``  [N, K-1]    :func:`facecore.coral_loss`      :func:`facecore.ordinal_predict`
``corn``   [N, K-1]    :func:`facecore.corn_loss`       ``ordinal_predict(.., "corn")``
=========  ==========  ===============================  ==================================

* **CE**: ``cum_probs[k] = sum_{j>k} p_j`` (suffix sums of the softmax, so no
  ``1 - cumsum`` cancellation), ``expected = sum_k k p_k``, label = argmax.
* **Niu et al. (OR-CNN, CVPR 2016)**: K-1 independent binary classifiers (one
  weight vector and bias per task). The loss is the importance-weighted sum of
  the per-task binary cross-entropies, averaged over the batch, which is the
  same expression as the CORAL loss (the two differ in the head's
  parametrisation, not in the loss), so it calls the fused
  :func:`facecore.coral_loss`; decoded like CORAL (no rank-consistency guarantee).
* **CORAL (Cao, Mirjalili & Raschka 2020)**: one shared weight vector and K-1
  biases, ``logits_k = w.x + b_k``. With ``monotone_biases=True`` the biases are
  ``b_0`` and ``b_k = b_0 - sum_{j<k} softplus(d_j)`` (non-increasing by
  construction), so ``P(y > k)`` is non-increasing in k for *every* parameter
  value, not only at the optimum as the paper's theorem gives.
* **CORN (Shi, Cao & Raschka 2023)**: K-1 outputs trained as conditional
  probabilities ``P(y > k | y > k-1)``; the decoder multiplies them.

Initialisation from the training labels
---------------------------------------
Every head starts with the coral-pytorch / PyTorch default initialisation (CORAL biases
``(K-1-k)/(K-1)``, so ``P(y > k)`` starts between 0.73 and 0.5 whatever the data). On
real faces those biases must travel to the label prior's logits (often +-3 or more)
before the weights can learn anything finer, which at the usual learning rates takes
most of a short run (issue 10). :meth:`AgeEstimator.init_head_from_labels` (per head:
``init_from_labels``) sets the biases so that a model whose features carry no
information already predicts the training prior :func:`label_prior`:

* ``coral`` / ``niu``: ``b_k = logit P(y > k)``; the monotone CORAL form gets
  ``b_0 = logit P(y > 0)`` and ``d_k = softplus^{-1}(b_k - b_{k+1})``, which reproduce the
  same biases (non-increasing, as the parametrisation requires);
* ``corn``: ``b_k = logit P(y > k | y >= k)`` (the conditional the CORN loss fits);
* ``ce``: ``b_k = log P(y = k)`` (the log-prior).

The weights are left as they are. :func:`label_prior` smooths the class counts
(``smoothing`` pseudo-counts per class, default 1, so no class has probability 0 and
every logit is finite).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import facecore.ops  # noqa: F401  (loads the compiled ops)
from facecore.models.backbones import resolve_backbone
from facecore.ops import OrdinalPrediction

__all__ = [
    "HEADS",
    "AgeEstimator",
    "CEHead",
    "CoralHead",
    "CornHead",
    "NiuHead",
    "build_ordinal_head",
    "label_prior",
]

HEADS = ("ce", "niu", "coral", "corn")


def _check_num_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    return num_classes


def label_prior(labels: Any, num_classes: int, *, smoothing: float = 1.0) -> torch.Tensor:
    r"""Class probabilities ``[K]`` (float64) of the training ``labels`` in ``0..K-1``:
    :math:`p_k = (n_k + \alpha) / (N + \alpha K)` with ``smoothing`` :math:`\alpha \ge 0`
    pseudo-counts per class (``0``: the raw frequencies). With :math:`\alpha > 0` every
    class has a positive probability, so every prior logit the heads use is finite.

    Raises:
        ValueError: ``num_classes < 2``; labels empty, not 1-D integers, or outside
            ``[0, K-1]``; ``smoothing`` negative or not finite.
    """
    k = _check_num_classes(num_classes)
    a = float(smoothing)
    if not math.isfinite(a) or a < 0:
        raise ValueError(f"smoothing must be a finite number >= 0, got {smoothing!r}")
    y = torch.as_tensor(labels).detach().cpu()
    if y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex():
        raise ValueError(
            f"labels must be a 1-D integer tensor, got shape {tuple(y.shape)} and dtype {y.dtype}"
        )
    if y.numel() == 0:
        raise ValueError("labels is empty: need at least one training label")
    bad = (y < 0) | (y >= k)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"labels must be in [0, {k - 1}] for num_classes={k}, got labels[{i}] = {int(y[i])}"
        )
    counts = torch.bincount(y.long(), minlength=k).double()
    return (counts + a) / (counts.sum() + a * k)


# A probability handed to a logit is kept in [_EPS, 1 - _EPS] (only reachable with
# smoothing=0 and an empty class): logits stay within +-13.8.
_EPS = 1e-6


def _prior_logits(labels: Any, num_classes: int, kind: str, smoothing: float) -> torch.Tensor:
    """The bias vector that makes head ``kind`` predict :func:`label_prior` (float64)."""
    p = label_prior(labels, num_classes, smoothing=smoothing)
    if kind == "ce":
        return torch.log(p.clamp_min(_EPS))
    # tail[k] = P(y > k), k = 0..K-2 (suffix sums: no 1 - cumsum cancellation)
    tail = torch.flip(torch.cumsum(torch.flip(p, [0]), 0), [0])
    if kind == "corn":
        cond = tail[1:] / tail[:-1].clamp_min(_EPS)  # P(y > k | y >= k)
        return torch.logit(cond.clamp(_EPS, 1 - _EPS))
    return torch.logit(tail[1:].clamp(_EPS, 1 - _EPS))


def _copy_(param: torch.Tensor, value: torch.Tensor) -> None:
    with torch.no_grad():
        param.copy_(value.to(dtype=param.dtype, device=param.device))


class CEHead(nn.Module):
    """Nominal baseline: ``Linear(F, K)``, softmax cross-entropy."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = _check_num_classes(num_classes)
        self.fc = nn.Linear(in_features, num_classes)

    @torch.jit.unused
    def init_from_labels(self, labels: Any, smoothing: float = 1.0) -> None:
        """Biases = log-prior ``log P(y = k)`` of ``labels`` (see the module docstring)."""
        _copy_(self.fc.bias, _prior_logits(labels, self.num_classes, "ce", smoothing))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    @torch.jit.export
    def loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        importance_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if importance_weights is not None:
            raise ValueError(
                "importance_weights apply to the binary-task heads (niu, coral, corn), not 'ce'"
            )
        return F.cross_entropy(logits, labels.long())

    @torch.jit.export
    def decode(self, logits: torch.Tensor) -> OrdinalPrediction:
        probs = torch.softmax(logits, dim=1)
        # cum[:, k] = sum_{j > k} p_j, k = 0..K-2 (suffix sums); a float32 sum of
        # probabilities can round to 1 + 1 ulp, which is not a probability: clamp
        cum = torch.flip(torch.cumsum(torch.flip(probs[:, 1:], [1]), dim=1), [1]).clamp(max=1.0)
        ranks = torch.arange(probs.shape[1], dtype=probs.dtype, device=probs.device)
        expected = (probs * ranks).sum(dim=1)
        return OrdinalPrediction(torch.argmax(probs, dim=1), cum, probs, expected)


class NiuHead(nn.Module):
    """OR-CNN (Niu et al. 2016): ``Linear(F, K-1)``, K-1 independent binary tasks."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = _check_num_classes(num_classes)
        self.fc = nn.Linear(in_features, num_classes - 1)

    @torch.jit.unused
    def init_from_labels(self, labels: Any, smoothing: float = 1.0) -> None:
        """Biases = ``logit P(y > k)`` of ``labels`` (see the module docstring)."""
        _copy_(self.fc.bias, _prior_logits(labels, self.num_classes, "niu", smoothing))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    @torch.jit.export
    def loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        importance_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return facecore.ops.coral_loss(logits, labels, importance_weights, "mean")

    @torch.jit.export
    def decode(self, logits: torch.Tensor) -> OrdinalPrediction:
        return facecore.ops.ordinal_predict(logits, "coral", 0.5)


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class CoralHead(nn.Module):
    """CORAL: shared ``Linear(F, 1, bias=False)`` plus K-1 biases (optionally monotone).

    Initial biases as ``coral_pytorch.layers.CoralLayer``: ``(K-1-k) / (K-1)``,
    i.e. evenly spaced from 1 down to ``1/(K-1)``; :meth:`init_from_labels` sets them
    to the training labels' prior instead.
    """

    def __init__(self, in_features: int, num_classes: int, monotone_biases: bool = False) -> None:
        super().__init__()
        self.num_classes = _check_num_classes(num_classes)
        self.monotone_biases = bool(monotone_biases)
        self.fc = nn.Linear(in_features, 1, bias=False)
        init = torch.arange(num_classes - 1, 0, -1, dtype=torch.float32) / (num_classes - 1)
        if self.monotone_biases:
            step = _inverse_softplus(1.0 / (num_classes - 1))
            self.bias0 = nn.Parameter(init[:1].clone())
            self.bias_deltas = nn.Parameter(torch.full((num_classes - 2,), step))
            self.bias = None
        else:
            self.bias = nn.Parameter(init)
            self.bias0 = None
            self.bias_deltas = None

    @torch.jit.unused
    def init_from_labels(self, labels: Any, smoothing: float = 1.0) -> None:
        """Biases = ``logit P(y > k)`` of ``labels``; the monotone form gets ``b_0`` and
        the deltas ``softplus^{-1}(b_k - b_{k+1})`` reproducing them (see the module
        docstring)."""
        b = _prior_logits(labels, self.num_classes, "coral", smoothing)
        bias = self.bias
        if bias is not None:
            _copy_(bias, b)
            return
        assert self.bias0 is not None and self.bias_deltas is not None
        # b is non-increasing (a tail probability); a step of 0 (only with smoothing=0
        # and an empty class) is kept at the smallest step float32 resolves after softplus.
        steps = (b[:-1] - b[1:]).clamp_min(1e-6)
        _copy_(self.bias0, b[:1])
        _copy_(self.bias_deltas, steps + torch.log(-torch.expm1(-steps)))

    @torch.jit.export
    def biases(self) -> torch.Tensor:
        """The K-1 biases ``b_k`` (for the monotone form, ``b_0 - cumsum(softplus(d))``)."""
        bias = self.bias
        if bias is not None:
            return bias
        b0 = self.bias0
        d = self.bias_deltas
        assert b0 is not None and d is not None
        return torch.cat([b0, b0 - torch.cumsum(F.softplus(d), dim=0)])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features) + self.biases()

    @torch.jit.export
    def loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        importance_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return facecore.ops.coral_loss(logits, labels, importance_weights, "mean")

    @torch.jit.export
    def decode(self, logits: torch.Tensor) -> OrdinalPrediction:
        return facecore.ops.ordinal_predict(logits, "coral", 0.5)


class CornHead(nn.Module):
    """CORN: ``Linear(F, K-1)`` trained with the conditional CORN loss."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = _check_num_classes(num_classes)
        self.fc = nn.Linear(in_features, num_classes - 1)

    @torch.jit.unused
    def init_from_labels(self, labels: Any, smoothing: float = 1.0) -> None:
        """Biases = ``logit P(y > k | y >= k)`` of ``labels`` (see the module docstring)."""
        _copy_(self.fc.bias, _prior_logits(labels, self.num_classes, "corn", smoothing))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    @torch.jit.export
    def loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        importance_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return facecore.ops.corn_loss(logits, labels, importance_weights, "mean")

    @torch.jit.export
    def decode(self, logits: torch.Tensor) -> OrdinalPrediction:
        return facecore.ops.ordinal_predict(logits, "corn", 0.5)


def build_ordinal_head(
    head: str, in_features: int, num_classes: int, *, monotone_biases: bool = False
) -> nn.Module:
    """The ordinal head named ``head``: ``"ce"``, ``"niu"``, ``"coral"`` or ``"corn"``."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {list(HEADS)}, got {head!r}")
    if monotone_biases and head != "coral":
        raise ValueError(f"monotone_biases applies to the 'coral' head only, got head={head!r}")
    if head == "ce":
        return CEHead(in_features, num_classes)
    if head == "niu":
        return NiuHead(in_features, num_classes)
    if head == "coral":
        return CoralHead(in_features, num_classes, monotone_biases)
    return CornHead(in_features, num_classes)


class AgeEstimator(nn.Module):
    """Backbone + ordinal head: age as one of K ordered classes.

    Args:
        backbone: a name (``"resnet10"``, ``"resnet18"``, ``"resnet34"``, ``"resnet50"``,
            ``"resnet101"``, ``"small_cnn"``) or an ``nn.Module`` with ``out_features``.
        head: ``"ce"``, ``"niu"``, ``"coral"`` or ``"corn"``.
        num_classes: K (required).
        width, in_channels, backbone_options: for a backbone given by name
            (see :func:`facecore.models.build_backbone`).
        monotone_biases: CORAL only, non-increasing biases by construction.
        dropout: dropout on the features before the head (0 = none).

    ``forward(x)`` returns logits; :meth:`loss`, :meth:`decode`, :meth:`predict`
    and :meth:`serve` follow the head. ``config`` rebuilds the model with
    :func:`facecore.models.build_model`.
    """

    def __init__(
        self,
        backbone: str | nn.Module = "resnet18",
        head: str = "coral",
        num_classes: int | None = None,
        *,
        width: int | None = None,
        in_channels: int = 3,
        backbone_options: dict[str, Any] | None = None,
        monotone_biases: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if num_classes is None:
            raise ValueError("num_classes is required (the number of ordered age classes K)")
        _check_num_classes(num_classes)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.backbone, backbone_config, features = resolve_backbone(
            backbone, width=width, in_channels=in_channels, options=backbone_options
        )
        self.dropout = nn.Dropout(float(dropout))
        self.head = build_ordinal_head(head, features, num_classes, monotone_biases=monotone_biases)
        self.task = "age"
        self.num_classes = num_classes
        self.config = {
            "task": "age",
            "backbone": backbone_config,
            "head": head,
            "num_classes": num_classes,
            "monotone_biases": bool(monotone_biases),
            "dropout": float(dropout),
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.backbone(x)))

    @torch.jit.unused
    def init_head_from_labels(self, labels: Any, *, smoothing: float = 1.0) -> None:
        """Set the head's biases from the training ``labels`` (class indices ``0..K-1``)
        so the untrained model predicts their prior :func:`label_prior` (``smoothing``
        pseudo-counts per class): CORAL / Niu ``logit P(y > k)`` (monotone CORAL:
        ``b_0`` and the deltas that reproduce it), CORN ``logit P(y > k | y >= k)``, CE
        ``log P(y = k)``. Weights are untouched. Call it once, before training (not when
        resuming); the default initialisation (coral-pytorch's) is what you get without it.
        """
        self.head.init_from_labels(labels, smoothing)

    @torch.jit.export
    def loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        importance_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The head's loss (mean over the batch); ``importance_weights`` [K-1] (not for CE)."""
        return self.head.loss(logits, labels, importance_weights)

    @torch.jit.export
    def decode(self, logits: torch.Tensor) -> OrdinalPrediction:
        """Labels, cumulative / class probabilities and expected rank from logits."""
        return self.head.decode(logits)

    @torch.jit.export
    def predict(self, x: torch.Tensor) -> OrdinalPrediction:
        """``decode(forward(x))`` (the caller chooses ``eval()`` / ``no_grad``)."""
        return self.head.decode(self.forward(x))

    @torch.jit.export
    def serve(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Serving output for a normalised batch ``[N, C, S, S]``: ``label`` (int64),
        ``cum_probs`` [N, K-1], ``class_probs`` [N, K], ``expected`` [N]."""
        p = self.head.decode(self.forward(x))
        return {
            "label": p.labels,
            "cum_probs": p.cum_probs,
            "class_probs": p.class_probs,
            "expected": p.expected,
        }
