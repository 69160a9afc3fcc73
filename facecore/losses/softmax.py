r"""Plain softmax (cross-entropy over identities) for training face embeddings.

The classic identification objective (DeepFace / DeepID style): a linear classifier
``logits = W e + b`` over the ``C`` training identities on top of the embedding ``e``,
trained with cross-entropy; the classifier is thrown away and ``e`` is the face
descriptor. Unlike the margin heads (:class:`~facecore.models.ArcFace`, ...), ``W`` and
``b`` are unconstrained and there is no margin: the baseline the metric-learning losses are
compared with. With facecore's L2-normalised embeddings the logits are bounded by
``||W_c||``, so the classifier learns its own scale.

``SoftmaxLoss(embedding_dim, num_classes)(embeddings [N, D], labels [N]) -> loss`` (mean
over the batch); ``logits(embeddings)`` gives ``[N, C]``. Scriptable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SOFTMAX_LOSSES", "SoftmaxLoss"]


class SoftmaxLoss(nn.Module):
    """``Linear(D, C)`` + cross-entropy; see the module doc."""

    def __init__(self, embedding_dim: int, num_classes: int, *, bias: bool = True) -> None:
        super().__init__()
        for name, v in (("embedding_dim", embedding_dim), ("num_classes", num_classes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.fc = nn.Linear(embedding_dim, num_classes, bias=bias)

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[N, C]`` class scores."""
        return self.fc(embeddings)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if embeddings.dim() != 2 or embeddings.size(1) != self.embedding_dim:
            raise ValueError(
                f"embeddings must be [N, {self.embedding_dim}], got {list(embeddings.shape)}"
            )
        return F.cross_entropy(self.fc(embeddings), labels)


#: The plain-softmax embedding objectives by name (training's ``metric.loss`` choices besides
#: the pair losses of :mod:`facecore.losses.metric` and the margin heads of
#: :mod:`facecore.models.margin`).
SOFTMAX_LOSSES: dict[str, type[nn.Module]] = {"softmax": SoftmaxLoss}
