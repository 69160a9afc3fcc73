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


def build_metric_loss(opts: MetricOptions) -> nn.Module:
    """The fused pair / triplet loss for ``opts`` (``metric.loss`` = triplet or contrastive):
    :class:`facecore.losses.TripletMarginLoss` with a :mod:`facecore.miners` miner
    (``batch_hard`` = Hermans et al.; ``all | hard | semihard | easy`` =
    pytorch-metric-learning's ``TripletMarginMiner`` types), or
    :class:`facecore.losses.ContrastiveLoss` with ``pos_margin=0, neg_margin=margin``.
    Both take the model's L2-normalised embeddings and use Euclidean distances."""
    from facecore.losses import miners
    from facecore.losses import ContrastiveLoss, TripletMarginLoss

    if opts.loss == "triplet":
        if opts.miner == "batch_hard":
            miner = miners.BatchHardMiner()
        else:
            miner = miners.TripletMarginMiner(margin=opts.margin, type_of_triplets=opts.miner)
        return TripletMarginLoss(margin=opts.margin, miner=miner)
    if opts.loss == "contrastive":
        return ContrastiveLoss(pos_margin=0.0, neg_margin=opts.margin)
    raise ValueError(f"metric.loss={opts.loss!r} is not a pair / triplet loss")


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
        self.center: nn.Module | None = None
        if self.center_weight > 0:
            from facecore.losses import CenterLoss

            self.center = CenterLoss(num_identities, dim)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, Any]:
        emb = self.model(images)
        if self.head is not None:
            loss = nn.functional.cross_entropy(self.head(emb, labels), labels)
        else:
            assert self.pair_loss is not None
            loss = self.pair_loss(emb, labels)
        if self.center is not None:
            loss = loss + self.center_weight * self.center(emb, labels)
        return loss, emb
