"""Loss modules (``nn.Module``, scriptable).

* ordinal: :class:`CoralLoss`, :class:`CornLoss` (fused ops)
* metric learning: :class:`TripletMarginLoss`, :class:`ContrastiveLoss` (fused ops,
  composed from :mod:`facecore.distances` and :mod:`facecore.miners`),
  :class:`CenterLoss` (Wen et al.)
* privacy: :class:`SANObjective` and the semi-adversarial network's loss terms
  (:mod:`facecore.losses.san`)
"""

from facecore.losses.center import CenterLoss
from facecore.losses.metric import ContrastiveLoss, MatchingLoss, TripletMarginLoss
from facecore.losses.ordinal import CoralLoss, CornLoss
from facecore.losses.san import SANObjective

__all__ = [
    "CenterLoss",
    "ContrastiveLoss",
    "CoralLoss",
    "CornLoss",
    "MatchingLoss",
    "SANObjective",
    "TripletMarginLoss",
]
