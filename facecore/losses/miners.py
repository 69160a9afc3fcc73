"""Triplet mining strategies as small objects (PML-style).

A miner says which triplets ``(a, p, n)`` of a batch the triplet loss uses.
The fused loss applies the rule inside its kernel (no triplet list is built);
``miner.triplets(dist, labels)`` lists the mined triplets explicitly with the
pure-PyTorch reference (``O(B^3)`` memory, for inspection and tests).

With ``t = d_an - d_ap`` and ``m = margin`` (pytorch-metric-learning's
``TripletMarginMiner``): ``"all"`` t <= m, ``"hard"`` t <= m and t <= 0,
``"semihard"`` 0 < t <= m, ``"easy"`` t > m. :class:`BatchHardMiner`: the
farthest positive and the closest negative of each anchor (Hermans et al.).
:class:`AllTripletsMiner`: every valid triplet (what the loss uses without a miner).
"""

from __future__ import annotations

import torch

from facecore.reference import matching as _ref

__all__ = [
    "MINERS",
    "TripletMiner",
    "TripletMarginMiner",
    "BatchHardMiner",
    "AllTripletsMiner",
    "miner_by_name",
]

_TYPES = ("all", "hard", "semihard", "easy")
#: Miner names :func:`miner_by_name` accepts (training's ``metric.miner`` choices).
MINERS = ("batch_hard", "hard", "semihard", "all", "easy")


class TripletMiner:
    """Base of the miners: ``mining`` (the op's strategy name) and ``margin``."""

    mining: str = "none"
    margin: float | None = None

    def triplets(
        self, dist: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(anchors, positives, negatives)`` index tensors of the mined triplets."""
        m = 0.0 if self.margin is None else self.margin
        return _ref.triplet_indices(dist, labels, self.mining, m)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mining={self.mining!r}, margin={self.margin})"


class AllTripletsMiner(TripletMiner):
    """Every valid triplet (same as passing no miner)."""

    mining = "none"


class TripletMarginMiner(TripletMiner):
    """PML's ``TripletMarginMiner(margin, type_of_triplets)``.

    ``type_of_triplets``: ``"all"`` (the triplets that violate the margin),
    ``"hard"``, ``"semihard"`` or ``"easy"``. The margin is the miner's own
    (PML's default 0.2), independent of the loss margin.
    """

    def __init__(self, margin: float = 0.2, type_of_triplets: str = "all") -> None:
        if type_of_triplets not in _TYPES:
            raise ValueError(
                "TripletMarginMiner: type_of_triplets must be 'all', 'hard', 'semihard' or "
                f"'easy', got {type_of_triplets!r}"
            )
        self.margin = float(margin)
        self.mining = type_of_triplets


class BatchHardMiner(TripletMiner):
    """Batch-hard mining: per anchor its hardest positive and hardest negative."""

    mining = "batch_hard"


def miner_by_name(name: str, margin: float = 0.2) -> TripletMiner:
    """``"batch_hard"`` -> :class:`BatchHardMiner`; ``"all" | "hard" | "semihard" | "easy"``
    -> :class:`TripletMarginMiner` with ``margin`` (PML's ``type_of_triplets``)."""
    if name == "batch_hard":
        return BatchHardMiner()
    if name not in _TYPES:
        raise ValueError(f"miner must be one of {' | '.join(MINERS)}, got {name!r}")
    return TripletMarginMiner(margin=margin, type_of_triplets=name)
