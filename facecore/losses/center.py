r"""Center loss (Wen, Zhang, Li & Qiao, "A Discriminative Feature Learning Approach
for Deep Face Recognition", ECCV 2016).

.. math::
    L_C = \frac{1}{2N} \sum_{i=1}^{N} \lVert x_i - c_{y_i} \rVert_2^2
    \quad (\text{``mean''};\ \text{``sum''} \text{ drops } 1/N,\
    \text{``none''} \text{ gives } \tfrac12\lVert x_i - c_{y_i}\rVert^2 \text{ per row})

used with a softmax / margin loss, ``L = L_S + λ L_C``. The class centers
``c_j`` ([C, D]) are updated in one of two ways:

* ``alpha=None`` (default): the centers are an ``nn.Parameter`` trained by the
  optimizer with the gradient of ``L_C`` (``∂L_C/∂c_j = -(1/N) Σ_{y_i=j}(x_i - c_j)``).
* ``alpha=a`` (the paper's rule, Eq. 4): the centers are a buffer, not trained by
  the optimizer; each forward in training mode, after computing the loss with the
  current centers, applies
  ``Δc_j = Σ_{y_i=j}(c_j - x_i) / (1 + #{y_i = j})`` and ``c_j ← c_j - a Δc_j``
  (the loss then only sends gradient to the features, as in the paper).

pytorch-metric-learning has no center loss; this one is scriptable.
"""

from __future__ import annotations

import torch
from torch import nn

from facecore.losses._inputs import check_embeddings_and_labels

__all__ = ["CenterLoss"]

_REDUCTIONS = ("mean", "sum", "none")


class CenterLoss(nn.Module):
    """``CenterLoss(num_classes, embedding_dim)(features [N, D], labels [N])``; see the module doc."""

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        *,
        alpha: float | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        for name, v in (("num_classes", num_classes), ("embedding_dim", embedding_dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        if alpha is not None and not 0.0 < float(alpha) <= 1.0:
            raise ValueError(f"alpha (the center update rate) must be in (0, 1], got {alpha!r}")
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.reduction = reduction
        self.use_update_rule = alpha is not None
        self.alpha = 0.0 if alpha is None else float(alpha)
        centers = torch.randn(num_classes, embedding_dim)
        if self.use_update_rule:
            self.register_buffer("centers", centers)
        else:
            self.centers = nn.Parameter(centers)

    def extra_repr(self) -> str:
        rule = f"alpha={self.alpha}" if self.use_update_rule else "gradient"
        return (
            f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}, "
            f"update={rule}, reduction={self.reduction!r}"
        )

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_embeddings_and_labels(
            features, labels, self.embedding_dim, self.num_classes, "features"
        )
        idx = labels.long()
        centers = self.centers.to(features.dtype)
        if self.use_update_rule:
            centers = centers.clone()
        diff = features - centers.index_select(0, idx)
        per_row = 0.5 * (diff * diff).sum(dim=1)
        if self.use_update_rule and self.training and idx.numel() > 0:
            self._update(features.detach(), idx)
        if self.reduction == "none":
            return per_row
        if self.reduction == "sum":
            return per_row.sum()
        if per_row.numel() == 0:
            return per_row.sum()
        return per_row.mean()

    def _update(self, features: torch.Tensor, idx: torch.Tensor) -> None:
        with torch.no_grad():
            c = self.centers
            f = features.to(c.dtype)
            counts = torch.zeros(self.num_classes, dtype=c.dtype, device=c.device)
            counts.index_add_(0, idx, torch.ones_like(idx, dtype=c.dtype))
            sums = torch.zeros_like(c).index_add_(0, idx, f)
            # Δc_j = (n_j c_j - Σ_{y_i=j} x_i) / (1 + n_j)
            delta = (counts.unsqueeze(1) * c - sums) / (1.0 + counts).unsqueeze(1)
            c.sub_(self.alpha * delta)
