"""``nn.Module`` wrappers of the fused ordinal losses (scriptable)."""


import torch
from torch import nn

import facecore.ops  # noqa: F401  (loads the compiled ops)

_REDUCTIONS = ("mean", "sum", "none")


def _weights_buffer(
    importance_weights: torch.Tensor | None, num_classes: int | None
) -> torch.Tensor | None:
    if importance_weights is None:
        return None
    w = torch.as_tensor(importance_weights, dtype=torch.float32).detach().clone()
    if w.dim() != 1:
        raise ValueError(f"importance_weights must be 1-D [K-1], got shape {tuple(w.shape)}")
    if num_classes is not None and w.numel() != num_classes - 1:
        raise ValueError(
            f"importance_weights must have K-1 = {num_classes - 1} entries for num_classes={num_classes}, "
            f"got {w.numel()}"
        )
    return w


class _OrdinalLoss(nn.Module):
    importance_weights: torch.Tensor | None

    def __init__(
        self,
        num_classes: int | None = None,
        importance_weights: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.reduction = reduction
        self.num_classes = num_classes
        self.register_buffer("importance_weights", _weights_buffer(importance_weights, num_classes))

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, reduction={self.reduction!r}"

    def _weights_for(self, logits: torch.Tensor) -> torch.Tensor | None:
        w = self.importance_weights
        if w is None:
            return None
        return w.to(logits.device)


class CoralLoss(_OrdinalLoss):
    """CORAL loss module: ``CoralLoss()(logits, labels)``; see :func:`facecore.coral_loss`."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.ops.facecore.coral_loss(logits, labels, self._weights_for(logits), self.reduction)


class CornLoss(_OrdinalLoss):
    """CORN loss module: ``CornLoss()(logits, labels)``; see :func:`facecore.corn_loss`."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.ops.facecore.corn_loss(logits, labels, self._weights_for(logits), self.reduction)
