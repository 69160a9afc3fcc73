"""Loss modules (``nn.Module``, scriptable)."""

from facecore.losses.center import CenterLoss
from facecore.losses.ordinal import CoralLoss, CornLoss

__all__ = ["CenterLoss", "CoralLoss", "CornLoss"]
