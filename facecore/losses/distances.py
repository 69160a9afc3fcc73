"""Distance objects for the matching losses (``nn.Module``, scriptable).

Small, PML-style objects that say how embeddings are compared. Each holds the
arguments of :func:`facecore.ops.matching.pairwise_distance` (``metric``,
``normalize``) and ``is_inverted`` (True when larger values mean more similar,
as for a similarity), which the losses use to read margins the way
pytorch-metric-learning does.

* :class:`LpDistance` (``power=1``: Euclidean, ``power=2``: squared Euclidean),
  PML's ``LpDistance(p=2, power=...)``; L2-normalises embeddings by default,
  like PML.
* :class:`CosineSimilarity`: PML's ``CosineSimilarity``; calling it returns the
  similarity matrix, the losses use the distance ``1 - similarity``.
"""

import torch
from torch import nn

import facecore.ops  # noqa: F401  (loads the compiled ops)

__all__ = ["LpDistance", "CosineSimilarity"]


class LpDistance(nn.Module):
    """Euclidean (``power=1``) or squared Euclidean (``power=2``) distances.

    ``LpDistance()(x, y=None)`` returns the ``[B, M]`` distance matrix.
    Only the L2 norm is supported (``p=2``).
    """

    metric: str
    normalize: bool
    is_inverted: bool

    def __init__(self, power: int = 1, normalize_embeddings: bool = True, p: int = 2) -> None:
        super().__init__()
        if p != 2:
            raise ValueError(f"LpDistance: only the L2 norm is supported, p must be 2, got {p}")
        if power not in (1, 2):
            raise ValueError(
                f"LpDistance: power must be 1 (Euclidean) or 2 (squared Euclidean), got {power}"
            )
        self.power = power
        self.metric = "euclidean" if power == 1 else "sqeuclidean"
        self.normalize = bool(normalize_embeddings)
        self.is_inverted = False

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.ops.facecore.pairwise_distance(x, y, self.metric, self.normalize)

    def extra_repr(self) -> str:
        return f"power={self.power}, normalize_embeddings={self.normalize}"


class CosineSimilarity(nn.Module):
    """Cosine similarity ``cos(x_i, y_j)`` (embeddings always normalised).

    Calling it returns the ``[B, M]`` similarity matrix; losses compute the
    cosine distance ``1 - cos`` with the fused op and convert margins given in
    similarity units (``is_inverted = True``), as PML does.
    """

    metric: str
    normalize: bool
    is_inverted: bool

    def __init__(self) -> None:
        super().__init__()
        self.metric = "cosine"
        self.normalize = True
        self.is_inverted = True

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return 1 - torch.ops.facecore.pairwise_distance(x, y, "cosine", True)
