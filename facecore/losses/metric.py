"""Metric-learning losses for face matching (``nn.Module``, scriptable, exportable).

Composed in the spirit of pytorch-metric-learning (PML) from a distance
object (:mod:`facecore.losses.distances`), an optional miner (:mod:`facecore.losses.miners`)
and a reduction, but computed by the fused ops of
:mod:`facecore.ops.matching` in ``O(B^2)`` memory. With the same distance,
miner and margins they return PML's loss and gradients.

``loss = TripletMarginLoss(margin=0.1, miner=TripletMarginMiner(0.2, "semihard"))``
then ``loss(embeddings, labels)``; ``loss.compute(embeddings, labels)`` also
returns the counts (:class:`facecore.ops.matching.MatchingLoss`).
"""

import torch
from torch import nn

import facecore.ops  # noqa: F401  (loads the compiled ops)
from facecore.losses.distances import LpDistance
from facecore.losses.miners import TripletMiner
from facecore.ops.matching import MatchingLoss

__all__ = ["PAIR_LOSSES", "TripletMarginLoss", "ContrastiveLoss"]

_REDUCTIONS = ("mean_nonzero", "mean", "sum")


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"reduction must be 'mean_nonzero', 'mean' or 'sum', got {reduction!r}"
        )


def _check_distance(distance: nn.Module) -> None:
    for attr in ("metric", "normalize", "is_inverted"):
        if not hasattr(distance, attr):
            raise TypeError(
                f"distance must be a facecore distance (LpDistance, CosineSimilarity) with "
                f"attributes metric, normalize and is_inverted; {type(distance).__name__} has "
                f"no {attr!r}"
            )


class TripletMarginLoss(nn.Module):
    """Triplet margin loss (FaceNet) over the triplets of a labelled batch.

    Args:
        margin: the loss margin (PML's default 0.05); for a similarity
            (``CosineSimilarity``) it is a difference of similarities, which
            equals the same difference of cosine distances.
        distance: :class:`~facecore.losses.distances.LpDistance` (default, with
            normalised embeddings as in PML) or
            :class:`~facecore.losses.distances.CosineSimilarity`.
        miner: ``None`` (every valid triplet),
            :class:`~facecore.losses.miners.TripletMarginMiner` or
            :class:`~facecore.losses.miners.BatchHardMiner`. The miner uses the loss's
            distance.
        swap: use ``min(d_an, d_pn)`` as the negative distance.
        soft: softplus instead of the hinge (PML's ``smooth_loss``).
        reduction: ``"mean_nonzero"`` (PML's AvgNonZero, default), ``"mean"``, ``"sum"``.

    ``forward(embeddings [B, D], labels [B]) -> loss`` (0-d).
    """

    margin: float
    metric: str
    normalize: bool
    swap: bool
    soft: bool
    mining: str
    mining_margin: float | None
    reduction: str

    def __init__(
        self,
        margin: float = 0.05,
        distance: nn.Module | None = None,
        miner: TripletMiner | None = None,
        swap: bool = False,
        soft: bool = False,
        reduction: str = "mean_nonzero",
    ) -> None:
        super().__init__()
        _check_reduction(reduction)
        distance = LpDistance() if distance is None else distance
        _check_distance(distance)
        if miner is not None and not isinstance(miner, TripletMiner):
            raise TypeError(
                "miner must be a facecore.losses.miners miner (TripletMarginMiner, BatchHardMiner), "
                f"got {type(miner).__name__}"
            )
        self.distance = distance
        self.margin = float(margin)
        self.metric = str(distance.metric)
        self.normalize = bool(distance.normalize)
        self.swap = bool(swap)
        self.soft = bool(soft)
        self.mining = "none" if miner is None else miner.mining
        self.mining_margin = None if miner is None or miner.margin is None else float(miner.margin)
        self.reduction = reduction

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> MatchingLoss:
        """The loss with its counts ``(loss, num_active, num_terms)``."""
        dist = torch.ops.facecore.pairwise_distance(embeddings, None, self.metric, self.normalize)
        loss, active, terms = torch.ops.facecore.triplet_margin_loss(
            dist,
            labels,
            self.margin,
            self.swap,
            self.soft,
            self.mining,
            self.mining_margin,
            self.reduction,
        )
        return MatchingLoss(loss, active, terms)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.compute(embeddings, labels).loss

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, metric={self.metric!r}, normalize={self.normalize}, "
            f"mining={self.mining!r}, mining_margin={self.mining_margin}, swap={self.swap}, "
            f"soft={self.soft}, reduction={self.reduction!r}"
        )


class ContrastiveLoss(nn.Module):
    """Contrastive loss over all pairs of a labelled batch.

    ``form="double_margin"`` (PML's ``ContrastiveLoss``): positive pairs
    ``relu(d - pos_margin)``, negative pairs ``relu(neg_margin - d)``;
    ``form="hadsell"``: the same terms squared and halved (Hadsell et al. 2006
    with ``pos_margin=0``). Margins are in the units of ``distance``: for
    :class:`~facecore.losses.distances.CosineSimilarity` they are similarities (PML's
    convention: positive ``relu(pos_margin - s)``, negative
    ``relu(s - neg_margin)``, so use e.g. ``pos_margin=1, neg_margin=0``).
    Positive and negative terms are reduced separately and added.
    """

    pos_margin: float
    neg_margin: float
    metric: str
    normalize: bool
    form: str
    reduction: str

    def __init__(
        self,
        pos_margin: float = 0.0,
        neg_margin: float = 1.0,
        distance: nn.Module | None = None,
        form: str = "double_margin",
        reduction: str = "mean_nonzero",
    ) -> None:
        super().__init__()
        _check_reduction(reduction)
        if form not in ("double_margin", "hadsell"):
            raise ValueError(f"form must be 'double_margin' or 'hadsell', got {form!r}")
        distance = LpDistance() if distance is None else distance
        _check_distance(distance)
        self.distance = distance
        inverted = bool(distance.is_inverted)
        # a similarity s = 1 - d: relu(m - s) = relu(d - (1 - m)), relu(s - m) = relu((1 - m) - d)
        self.pos_margin = 1.0 - float(pos_margin) if inverted else float(pos_margin)
        self.neg_margin = 1.0 - float(neg_margin) if inverted else float(neg_margin)
        self.metric = str(distance.metric)
        self.normalize = bool(distance.normalize)
        self.form = form
        self.reduction = reduction

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> MatchingLoss:
        """The loss with its counts ``(loss, num_active, num_terms)``."""
        dist = torch.ops.facecore.pairwise_distance(embeddings, None, self.metric, self.normalize)
        loss, active, terms = torch.ops.facecore.contrastive_loss(
            dist, labels, self.pos_margin, self.neg_margin, self.form, self.reduction
        )
        return MatchingLoss(loss, active, terms)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.compute(embeddings, labels).loss

    def extra_repr(self) -> str:
        return (
            f"pos_margin={self.pos_margin}, neg_margin={self.neg_margin} (distance units), "
            f"metric={self.metric!r}, normalize={self.normalize}, form={self.form!r}, "
            f"reduction={self.reduction!r}"
        )


#: The pair / triplet losses by name (training's ``metric.loss`` choices besides the
#: margin-softmax heads of :mod:`facecore.models.margin`).
PAIR_LOSSES: dict[str, type[nn.Module]] = {
    "triplet": TripletMarginLoss,
    "contrastive": ContrastiveLoss,
}
