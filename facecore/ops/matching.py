r"""Fused face-matching ops: pairwise distances, triplet and contrastive losses.

Each function calls ops of ``torch.ops.facecore`` (CPU and CUDA kernels,
autograd in C++, fake kernels for torch.compile / torch.export); all are
TorchScript-compatible. The pure-PyTorch reference with the same semantics is
:mod:`facecore.reference.matching`; the semantics follow
pytorch-metric-learning (PML) 2.x so that results and gradients agree with it.

Conventions
-----------
**Embeddings** ``x [B, D]`` (and an optional reference set ``y [M, D]``),
float32 / float64 / float16 / bfloat16; half types are computed in float32.

**Distances** (smaller = more similar), ``dist [B, M]``:

* ``"euclidean"``:   :math:`d_{ij} = \lVert x_i - y_j \rVert_2` (gradient 0 where
  :math:`d_{ij} = 0`, e.g. the diagonal, instead of NaN);
* ``"sqeuclidean"``: :math:`d_{ij} = \lVert x_i - y_j \rVert_2^2`;
* ``"cosine"``:      :math:`d_{ij} = 1 - \cos(x_i, y_j)` (embeddings always
  normalised). For triplet losses this equals PML's ``CosineSimilarity``
  (its margins are differences of similarities, which equal differences of
  these distances).

``normalize=True`` first divides each row by :math:`\max(\lVert x_i \rVert, 10^{-12})`
(``F.normalize``; PML's ``normalize_embeddings``). Distances use one matrix
product for :math:`\langle x_i, y_j\rangle`; entries where that form loses
precision to cancellation (near-duplicates, the diagonal) are recomputed from
the differences, so the diagonal of a batch against itself is exactly 0.

**Labels** ``[B]`` int64 / int32 identity ids (any values). For anchor ``a``, a
*positive* is ``p != a`` with ``labels[p] == labels[a]``, a *negative* is ``n``
with ``labels[n] != labels[a]``. A triplet is ``(a, p, n)``; a positive pair
is an ordered pair ``(a, p)``, a negative pair ``(a, n)`` (both orders count,
as in PML).

**Losses** take the square distance matrix ``dist [B, B]`` of a batch against
itself (``*_from_dist``), or embeddings (then the distance is computed with
:func:`pairwise_distance` and the gradient flows through it). The kernels loop
over anchors and, for each, over its (positive, negative) pairs, accumulating
the loss and :math:`\partial L / \partial d` (a ``[B, B]`` matrix) on the fly:
no ``B^3`` tensor and no triplet index list, forward or backward.

**Reductions** (``reduction``):

* ``"mean_nonzero"`` (default; PML's ``AvgNonZeroReducer``): the sum of the
  terms that are > 0 divided by their number; 0 (with zero gradient) when
  there is none. Terms that are exactly 0, or NaN, are not counted.
* ``"mean"`` (PML's ``MeanReducer``): the mean over all mined terms (0 if none).
* ``"sum"``: the sum over all mined terms.

The contrastive loss reduces its positive-pair and negative-pair terms
separately and adds the two results (as PML does with its two sub-losses).

Results are :class:`MatchingLoss` ``(loss, num_active, num_terms)``:
``num_active`` is the number of terms with a loss > 0 (the "active" triplets
/ pairs, useful for logging) and ``num_terms`` the number of mined terms
(int64 scalars, not differentiable).

Edge cases
----------
* ``B = 0`` or ``1``, a single identity, or no mined triplet: the loss is 0
  and its gradient 0 (never NaN), like PML.
* NaN embeddings give NaN distances in their rows and columns. The miners
  never select a triplet with a NaN margin (comparisons with NaN are false),
  ``"mean_nonzero"`` skips NaN terms (PML does the same: ``NaN > 0`` is false),
  ``"mean"`` and ``"sum"`` over terms that include a NaN are NaN. Gradients
  wrt NaN embeddings are NaN.
* Bad arguments (wrong rank, dtype, shapes, devices, unknown option strings,
  non-finite margins) raise ``ValueError`` / ``RuntimeError`` naming the
  argument and what was expected.
* Second derivatives (``create_graph=True``) raise ``RuntimeError``.
* On CUDA, triplet losses with ``swap=True`` or ``mining="batch_hard"``
  accumulate part of the gradient with atomics: bitwise results can vary
  between runs (values agree to rounding). Everything else is deterministic.
"""

from typing import NamedTuple

import torch

from facecore.extension import load_library

load_library()

__all__ = [
    "MatchingLoss",
    "pairwise_distance",
    "triplet_margin_loss",
    "triplet_margin_loss_from_dist",
    "contrastive_loss",
    "contrastive_loss_from_dist",
]


class MatchingLoss(NamedTuple):
    """A matching loss with its counts.

    ``loss``: the reduced loss (0-d, the dtype of the distances);
    ``num_active``: number of mined terms with a loss > 0 (int64, 0-d);
    ``num_terms``: number of mined terms (triplets or pairs; int64, 0-d).
    """

    loss: torch.Tensor
    num_active: torch.Tensor
    num_terms: torch.Tensor


def pairwise_distance(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    metric: str = "euclidean",
    normalize: bool = False,
) -> torch.Tensor:
    """Distance matrix ``[B, M]`` between the rows of ``x [B, D]`` and ``y [M, D]``.

    ``y=None`` compares ``x`` with itself (``[B, B]``, diagonal exactly 0 for
    the L2 metrics). ``metric``: ``"euclidean"``, ``"sqeuclidean"`` or
    ``"cosine"`` (``1 - cos``); ``normalize``: L2-normalise rows first.
    Differentiable wrt ``x`` and ``y``; the Euclidean gradient at distance 0
    is 0. Equals PML's ``LpDistance(power=1|2, normalize_embeddings=...)``
    (``"euclidean"`` / ``"sqeuclidean"``) and ``1 - CosineSimilarity()``.
    """
    return torch.ops.facecore.pairwise_distance(x, y, metric, normalize)


def triplet_margin_loss_from_dist(
    dist: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.05,
    swap: bool = False,
    soft: bool = False,
    mining: str = "none",
    mining_margin: float | None = None,
    reduction: str = "mean_nonzero",
) -> MatchingLoss:
    r"""Triplet margin loss (Schroff et al., FaceNet) from a distance matrix.

    For each mined triplet ``(a, p, n)`` with :math:`d_{ap} = \mathrm{dist}[a, p]`,
    :math:`d_{an} = \mathrm{dist}[a, n]`:

    .. math::
        v = d_{ap} - d'_{an} + \text{margin}, \qquad
        \ell = \max(0, v)\ \text{(hinge)} \quad\text{or}\quad
        \ell = \log(1 + e^{v})\ \text{(soft=True)}

    with :math:`d'_{an} = \min(d_{an}, d_{pn})` when ``swap`` (Balntas et al.),
    else :math:`d_{an}`. ``soft`` is PML's ``smooth_loss`` (torch's softplus).

    Mining (PML's ``TripletMarginMiner(margin=mining_margin,
    type_of_triplets=...)`` followed by the loss), with :math:`t = d_{an} - d_{ap}`
    (no swap) and :math:`m` = ``mining_margin`` (default: ``margin``):

    * ``"none"``: every valid triplet (PML's loss without a miner);
    * ``"all"``: :math:`t \le m` (the triplets that violate the margin);
    * ``"hard"``: :math:`t \le m` and :math:`t \le 0`;
    * ``"semihard"``: :math:`0 < t \le m`;
    * ``"easy"``: :math:`t > m`;
    * ``"batch_hard"``: per anchor, its farthest positive and closest negative
      (Hermans et al.; PML's ``BatchHardMiner``), one triplet per anchor that
      has both; ``mining_margin`` is unused.

    Args:
        dist: ``[B, B]`` distances of the batch against itself (smaller = closer).
        labels: ``[B]`` identity ids.
        reduction: ``"mean_nonzero"`` (default), ``"mean"`` or ``"sum"`` (module doc).

    Returns:
        :class:`MatchingLoss` ``(loss, num_active, num_terms)``, ``num_terms``
        being the number of mined triplets.
    """
    loss, active, terms = torch.ops.facecore.triplet_margin_loss(
        dist, labels, margin, swap, soft, mining, mining_margin, reduction
    )
    return MatchingLoss(loss, active, terms)


def triplet_margin_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.05,
    metric: str = "euclidean",
    normalize: bool = False,
    swap: bool = False,
    soft: bool = False,
    mining: str = "none",
    mining_margin: float | None = None,
    reduction: str = "mean_nonzero",
) -> MatchingLoss:
    """Triplet margin loss of embeddings ``[B, D]``: :func:`pairwise_distance`
    (``metric``, ``normalize``) then :func:`triplet_margin_loss_from_dist`.

    With ``metric="euclidean"`` and ``normalize=True`` this is PML's
    ``TripletMarginLoss(margin)`` with its default ``LpDistance()``.
    """
    dist = torch.ops.facecore.pairwise_distance(embeddings, None, metric, normalize)
    return triplet_margin_loss_from_dist(
        dist, labels, margin, swap, soft, mining, mining_margin, reduction
    )


def contrastive_loss_from_dist(
    dist: torch.Tensor,
    labels: torch.Tensor,
    pos_margin: float = 0.0,
    neg_margin: float = 1.0,
    form: str = "double_margin",
    reduction: str = "mean_nonzero",
) -> MatchingLoss:
    r"""Contrastive loss over all ordered pairs ``(i, j)``, ``i != j``, of a batch.

    ``form="double_margin"`` (PML's ``ContrastiveLoss(pos_margin, neg_margin)``):

    .. math::
        \ell^{+}_{ij} = \max(0, d_{ij} - m_{pos}), \qquad
        \ell^{-}_{ij} = \max(0, m_{neg} - d_{ij})

    ``form="hadsell"`` (Hadsell, Chopra & LeCun 2006, with :math:`Y = 0` for
    similar and :math:`Y = 1` for dissimilar pairs,
    :math:`\tfrac12 (1-Y) D^2 + \tfrac12 Y \max(0, m - D)^2`):

    .. math::
        \ell^{+}_{ij} = \tfrac12 \max(0, d_{ij} - m_{pos})^2, \qquad
        \ell^{-}_{ij} = \tfrac12 \max(0, m_{neg} - d_{ij})^2

    which is Hadsell's form for ``pos_margin=0`` and ``neg_margin=m`` with the
    Euclidean distance. Positive terms (same label) and negative terms are
    reduced separately and added (``"mean_nonzero"``: each divided by its own
    count of terms > 0; ``"mean"``: each by its number of pairs; ``"sum"``).

    Returns:
        :class:`MatchingLoss`, ``num_terms`` being the number of ordered pairs.
    """
    loss, active, terms = torch.ops.facecore.contrastive_loss(
        dist, labels, pos_margin, neg_margin, form, reduction
    )
    return MatchingLoss(loss, active, terms)


def contrastive_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    pos_margin: float = 0.0,
    neg_margin: float = 1.0,
    metric: str = "euclidean",
    normalize: bool = False,
    form: str = "double_margin",
    reduction: str = "mean_nonzero",
) -> MatchingLoss:
    """Contrastive loss of embeddings ``[B, D]``: :func:`pairwise_distance`
    then :func:`contrastive_loss_from_dist`."""
    dist = torch.ops.facecore.pairwise_distance(embeddings, None, metric, normalize)
    return contrastive_loss_from_dist(dist, labels, pos_margin, neg_margin, form, reduction)
