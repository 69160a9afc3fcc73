"""Loss modules (``nn.Module``, scriptable)."""

from facecore.losses.ordinal import CoralLoss, CornLoss

__all__ = ["CoralLoss", "CornLoss"]
