"""Training objectives per task, as modules that Ray Train's DDP can wrap.

Each ``*Objective`` is an ``nn.Module`` whose ``forward(images, labels)`` returns
``(loss, outputs)``; it owns the model and every other trainable part (margin
head, center-loss centers), so ``ray.train.torch.prepare_model`` wraps one module
and all gradients are all-reduced.

* :class:`OrdinalObjective`: ``model.loss(logits, labels, importance_weights)``
  (the fused CORAL / CORN ops for those heads).
* :class:`BinaryObjective`: ``model.loss(logits, labels)`` (BCE with logits).
* :class:`EmbeddingObjective`: triplet (with a miner) or contrastive loss on the
  L2-normalised embeddings, or cross-entropy over a margin softmax head
  (ArcFace / CosFace / SphereFace); plus ``center_loss * CenterLoss``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from facecore.train.config import MetricOptions

__all__ = [
    "OrdinalObjective",
    "BinaryObjective",
    "EmbeddingObjective",
    "batch_hard_triplet_loss",
    "build_metric_loss",
]


class OrdinalObjective(nn.Module):
    def __init__(self, model: nn.Module, importance_weights: torch.Tensor | None = None):
        super().__init__()
        self.model = model
        self.register_buffer(
            "importance_weights",
            importance_weights if importance_weights is not None else torch.empty(0),
        )

    def forward(self, images: torch.Tensor, labels: torch.Tensor):
        logits = self.model(images)
        w = self.importance_weights if self.importance_weights.numel() else None
        return self.model.loss(logits, labels, w), logits


class BinaryObjective(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, labels: torch.Tensor):
        logits = self.model(images)
        return self.model.loss(logits, labels), logits


def batch_hard_triplet_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float
) -> torch.Tensor:
    r"""Batch-hard triplet loss (Hermans et al. 2017) with Euclidean distances:

    .. math::
        \ell_a = \big[\max_{p: y_p = y_a, p \ne a} d_{ap} - \min_{n: y_n \ne y_a} d_{an}
        + m\big]_+

    averaged over the anchors with a positive and a negative whose loss is
    non-zero (pytorch-metric-learning's ``AvgNonZeroReducer`` with
    ``BatchHardMiner``); 0 (with zero gradient) when there is none. The
    distance uses ``sqrt(max(d^2, 1e-12))`` so its gradient is finite at 0.
    """
    sq = (embeddings.unsqueeze(1) - embeddings.unsqueeze(0)).pow(2).sum(-1)
    d = sq.clamp_min(1e-12).sqrt()
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos = same & ~eye
    neg = ~same
    valid = pos.any(1) & neg.any(1)
    hardest_pos = torch.where(pos, d, torch.zeros_like(d)).max(1).values
    hardest_neg = torch.where(neg, d, torch.full_like(d, float("inf"))).min(1).values
    losses = torch.relu(hardest_pos - hardest_neg + margin)[valid]
    nonzero = losses > 0
    if not bool(nonzero.any()):
        return embeddings.sum() * 0.0
    return losses[nonzero].mean()


def _contrastive_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float):
    r"""Contrastive loss: positives :math:`d^2`-free form :math:`[d_{ij}]_+` pulled to 0,
    negatives :math:`[m - d_{ij}]_+`, each averaged over its non-zero pairs and summed
    (pytorch-metric-learning ``ContrastiveLoss(pos_margin=0, neg_margin=m)``)."""
    sq = (embeddings.unsqueeze(1) - embeddings.unsqueeze(0)).pow(2).sum(-1)
    d = sq.clamp_min(1e-12).sqrt()
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    upper = torch.triu(torch.ones_like(same), diagonal=1)
    pos_l = d[same & upper]
    neg_l = torch.relu(margin - d[~same & upper])
    total = embeddings.sum() * 0.0
    for part in (pos_l, neg_l):
        nz = part > 0
        if bool(nz.any()):
            total = total + part[nz].mean()
    return total


def build_metric_loss(opts: MetricOptions) -> nn.Module | None:
    """The fused pair / triplet loss of :mod:`facecore.losses` (``TripletMarginLoss`` with a
    :mod:`facecore.miners` miner, ``ContrastiveLoss``) when the installed facecore has the
    matching ops; else ``None`` and the objective uses the pure-PyTorch forms above (same
    values: pytorch-metric-learning semantics, tested)."""
    try:
        from facecore import miners
        from facecore.losses import ContrastiveLoss, TripletMarginLoss
    except ImportError:
        return None
    if opts.loss == "triplet":
        if opts.miner == "batch_hard":
            miner = miners.BatchHardMiner()
        else:
            miner = miners.TripletMarginMiner(margin=opts.margin, type_of_triplets=opts.miner)
        return TripletMarginLoss(margin=opts.margin, miner=miner)
    if opts.loss == "contrastive":
        return ContrastiveLoss(pos_margin=0.0, neg_margin=opts.margin)
    return None


class EmbeddingObjective(nn.Module):
    def __init__(self, model: nn.Module, opts: MetricOptions, num_identities: int):
        super().__init__()
        self.model = model
        self.kind = opts.loss
        self.margin = opts.margin
        self.center_weight = opts.center_loss
        dim = int(model.config.get("embedding_dim", 128)) if hasattr(model, "config") else 128
        self.head: nn.Module | None = None
        self.pair_loss: nn.Module | None = None
        if self.kind in ("arcface", "cosface", "sphereface"):
            from facecore import models as M

            cls = {"arcface": M.ArcFace, "cosface": M.CosFace, "sphereface": M.SphereFace}
            margin: float | int = opts.margin
            if self.kind == "sphereface":  # multiplicative angular margin m (an integer)
                margin = int(opts.margin)
            self.head = cls[self.kind](dim, num_identities, scale=opts.scale, margin=margin)
        else:
            self.pair_loss = build_metric_loss(opts)
            if self.pair_loss is None and self.kind == "triplet" and opts.miner != "batch_hard":
                raise ValueError(
                    f"metric.miner={opts.miner!r} needs facecore.losses.TripletMarginLoss; "
                    "use metric.miner=batch_hard"
                )
        self.center: nn.Module | None = None
        if self.center_weight > 0:
            from facecore.losses import CenterLoss

            self.center = CenterLoss(num_identities, dim)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, Any]:
        emb = self.model(images)
        if self.head is not None:
            loss = nn.functional.cross_entropy(self.head(emb, labels), labels)
        elif self.pair_loss is not None:
            out = self.pair_loss(emb, labels)
            loss = out[0] if isinstance(out, tuple) else out
        elif self.kind == "triplet":
            loss = batch_hard_triplet_loss(emb, labels, self.margin)
        else:
            loss = _contrastive_loss(emb, labels, self.margin)
        if self.center is not None:
            loss = loss + self.center_weight * self.center(emb, labels)
        return loss, emb
