"""Loss modules (``nn.Module``, scriptable) and the metric-learning building blocks they
compose, named as in pytorch-metric-learning (PML): ``losses``, ``distances``, ``miners``.

* ordinal: :class:`CoralLoss`, :class:`CornLoss` (fused ops)
* metric learning: :class:`TripletMarginLoss`, :class:`ContrastiveLoss` (fused ops),
  composed from a distance (:mod:`facecore.losses.distances`: :class:`LpDistance`,
  :class:`CosineSimilarity`) and a miner (:mod:`facecore.losses.miners`:
  :class:`TripletMarginMiner`, :class:`BatchHardMiner`, :class:`AllTripletsMiner`);
  :class:`CenterLoss` (Wen et al.), :class:`SoftmaxLoss` (plain cross-entropy over
  identities, the baseline embedding objective)

Margin-softmax heads (ArcFace, CosFace, SphereFace) hold trained class weights and live
in :mod:`facecore.models.margin`.

* privacy: :class:`SANObjective` and the semi-adversarial network's loss terms
  (:mod:`facecore.losses.san`)
"""

from facecore.losses import distances, miners
from facecore.losses.center import CenterLoss
from facecore.losses.distances import CosineSimilarity, LpDistance
from facecore.losses.metric import ContrastiveLoss, MatchingLoss, TripletMarginLoss
from facecore.losses.miners import (
    AllTripletsMiner,
    BatchHardMiner,
    TripletMarginMiner,
    TripletMiner,
)
from facecore.losses.ordinal import CoralLoss, CornLoss
from facecore.losses.san import SANObjective
from facecore.losses.softmax import SoftmaxLoss

__all__ = [
    "AllTripletsMiner",
    "BatchHardMiner",
    "CenterLoss",
    "ContrastiveLoss",
    "CoralLoss",
    "CornLoss",
    "CosineSimilarity",
    "LpDistance",
    "MatchingLoss",
    "SANObjective",
    "SoftmaxLoss",
    "TripletMarginLoss",
    "TripletMarginMiner",
    "TripletMiner",
    "distances",
    "miners",
]
