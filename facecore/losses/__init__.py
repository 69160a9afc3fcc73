"""Loss modules (``nn.Module``, scriptable)."""

from facecore.losses.metric import ContrastiveLoss, TripletMarginLoss
from facecore.losses.ordinal import CoralLoss, CornLoss

__all__ = ["CoralLoss", "CornLoss"]
__all__ += ["ContrastiveLoss", "TripletMarginLoss"]
