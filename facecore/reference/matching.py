"""Pure-PyTorch reference of the face-matching op family: the documented semantics.

Readable and slow on purpose: distances from explicit differences
(``[B, M, D]``), triplets from a dense ``[B, B, B]`` mask. The tests compare
the fused kernels against these functions, and the benchmarks compile them.
Conventions (distances, labels, mining, reductions) are those of
:mod:`facecore.ops.matching`. Half-precision inputs are computed in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from facecore.ops.matching import MatchingLoss

__all__ = [
    "pairwise_distance",
    "triplet_mask",
    "triplet_indices",
    "triplet_margin_loss",
    "contrastive_loss",
]


def _acc(x: torch.Tensor) -> torch.Tensor:
    return x.double() if x.dtype == torch.float64 else x.float()


def _safe_sqrt(sq: torch.Tensor) -> torch.Tensor:
    """sqrt with gradient 0 (not inf / NaN) at 0."""
    pos = sq > 0
    return torch.where(pos, sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt(), sq * 0)


def pairwise_distance(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    metric: str = "euclidean",
    normalize: bool = False,
) -> torch.Tensor:
    """Distance matrix ``[B, M]`` (see :func:`facecore.ops.matching.pairwise_distance`)."""
    xa = _acc(x)
    ya = xa if y is None else _acc(y)
    if normalize or metric == "cosine":
        xa = F.normalize(xa, dim=1)
        ya = F.normalize(ya, dim=1)
    if metric == "cosine":
        d = 1 - xa @ ya.T
    elif metric in ("euclidean", "sqeuclidean"):
        sq = ((xa[:, None, :] - ya[None, :, :]) ** 2).sum(-1)
        d = sq if metric == "sqeuclidean" else _safe_sqrt(sq)
    else:
        raise ValueError(f"metric must be 'euclidean', 'sqeuclidean' or 'cosine', got {metric!r}")
    return d.to(x.dtype)


def _pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive [B, B]: same label, not the diagonal; negative [B, B]: other label)."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def triplet_mask(
    dist: torch.Tensor,
    labels: torch.Tensor,
    mining: str = "none",
    mining_margin: float = 0.05,
) -> torch.Tensor:
    """``[B, B, B]`` bool, True for the mined triplets ``(a, p, n)``.

    ``t = d_an - d_ap``: ``"none"`` every valid triplet, ``"all"`` t <= m,
    ``"hard"`` t <= m and t <= 0, ``"semihard"`` 0 < t <= m, ``"easy"`` t > m
    (PML's TripletMarginMiner); ``"batch_hard"``: the farthest positive and
    the closest negative of each anchor that has both (PML's BatchHardMiner).
    """
    d = _acc(dist).detach()
    pos, neg = _pairs(labels)
    b = d.shape[0]
    if mining == "batch_hard":
        if b == 0:
            return torch.zeros(0, 0, 0, dtype=torch.bool, device=d.device)
        hp, ip = d.masked_fill(~pos, float("-inf")).max(1)
        hn, in_ = d.masked_fill(~neg, float("inf")).min(1)
        keep = pos.any(1) & neg.any(1)
        mask = torch.zeros(b, b, b, dtype=torch.bool, device=d.device)
        a = torch.arange(b, device=d.device)[keep]
        mask[a, ip[keep], in_[keep]] = True
        return mask
    valid = pos[:, :, None] & neg[:, None, :]
    t = d[:, None, :] - d[:, :, None]  # t[a, p, n] = d_an - d_ap
    m = mining_margin
    if mining == "none":
        cond = torch.ones_like(valid)
    elif mining == "all":
        cond = t <= m
    elif mining == "hard":
        cond = (t <= m) & (t <= 0)
    elif mining == "semihard":
        cond = (t <= m) & (t > 0)
    elif mining == "easy":
        cond = t > m
    else:
        raise ValueError(f"unknown mining {mining!r}")
    return valid & cond


def triplet_indices(
    dist: torch.Tensor, labels: torch.Tensor, mining: str = "none", mining_margin: float = 0.05
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The mined triplets as index tensors ``(anchors, positives, negatives)``."""
    a, p, n = torch.where(triplet_mask(dist, labels, mining, mining_margin))
    return a, p, n


def _reduce(terms: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean_nonzero":
        kept = terms[terms > 0]
        return kept.sum() / max(kept.numel(), 1)
    if reduction == "mean":
        return terms.sum() / max(terms.numel(), 1)
    if reduction == "sum":
        return terms.sum()
    raise ValueError(f"reduction must be 'mean_nonzero', 'mean' or 'sum', got {reduction!r}")


def triplet_margin_loss(
    dist: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.05,
    swap: bool = False,
    soft: bool = False,
    mining: str = "none",
    mining_margin: float | None = None,
    reduction: str = "mean_nonzero",
) -> MatchingLoss:
    """Triplet margin loss from the distance matrix (see
    :func:`facecore.ops.matching.triplet_margin_loss_from_dist`)."""
    d = _acc(dist)
    mask = triplet_mask(d, labels, mining, margin if mining_margin is None else mining_margin)
    d_ap = d[:, :, None]  # [a, p, 1]
    d_an = d[:, None, :]  # [a, 1, n]
    if swap:
        d_an = torch.minimum(d_an, d[None, :, :])  # d_pn[., p, n]
    v = (d_ap - d_an + margin)[mask]
    terms = F.softplus(v) if soft else torch.relu(v)
    loss = _reduce(terms, reduction).to(dist.dtype)
    return MatchingLoss(loss, (terms > 0).sum(), mask.sum())


def contrastive_loss(
    dist: torch.Tensor,
    labels: torch.Tensor,
    pos_margin: float = 0.0,
    neg_margin: float = 1.0,
    form: str = "double_margin",
    reduction: str = "mean_nonzero",
) -> MatchingLoss:
    """Contrastive loss from the distance matrix (see
    :func:`facecore.ops.matching.contrastive_loss_from_dist`)."""
    d = _acc(dist)
    pos, neg = _pairs(labels)
    u_pos = d[pos] - pos_margin
    u_neg = neg_margin - d[neg]
    if form == "double_margin":
        t_pos, t_neg = torch.relu(u_pos), torch.relu(u_neg)
    elif form == "hadsell":
        t_pos, t_neg = 0.5 * torch.relu(u_pos) ** 2, 0.5 * torch.relu(u_neg) ** 2
    else:
        raise ValueError(f"form must be 'double_margin' or 'hadsell', got {form!r}")
    loss = (_reduce(t_pos, reduction) + _reduce(t_neg, reduction)).to(dist.dtype)
    active = (t_pos > 0).sum() + (t_neg > 0).sum()
    return MatchingLoss(loss, active, pos.sum() + neg.sum())
