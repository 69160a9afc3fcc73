"""Pure-PyTorch reference of the ordinal op family: the documented semantics.

These functions are readable, differentiable and slow enough to materialise
what the fused kernels never do (the ``levels`` matrix, masks). Tests compare
every kernel against them; the benchmarks compile them with ``torch.compile``.

Notation: ``logits`` is ``[N, T]`` with ``T = K - 1`` binary tasks, task ``k``
asking "is y > k?"; ``labels`` is ``[N]`` with integer classes in ``[0, K-1]``.
Half-precision inputs are computed in float32 and the results cast back.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = [
    "coral_loss",
    "corn_loss",
    "ordinal_labels",
    "ordinal_probs",
    "OrdinalProbs",
]


class OrdinalProbs(NamedTuple):
    """Probabilities decoded from ordinal logits.

    cum_probs:   [N, K-1] P(y > k) as the head predicts it.
    class_probs: [N, K]   P(y = k), from the monotone envelope of cum_probs.
    expected:    [N]      expected rank sum_k k P(y = k).
    """

    cum_probs: torch.Tensor
    class_probs: torch.Tensor
    expected: torch.Tensor


def _acc(x: torch.Tensor) -> torch.Tensor:
    return x.double() if x.dtype == torch.float64 else x.float()


def _reduce(per_row: torch.Tensor, reduction: str, denom: int) -> torch.Tensor:
    if reduction == "none":
        return per_row
    total = per_row.sum()
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / max(denom, 1)  # an empty batch gives 0, not NaN
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _task_losses(x: torch.Tensor, labels: torch.Tensor):
    """Per-(row, task) binary cross-entropy with target (y > k), stable form.

    Returns (loss [N, T], target [N, T] bool)."""
    k = torch.arange(x.shape[1], device=x.device)
    target = labels.long().unsqueeze(1) > k
    # -[t log s(x) + (1 - t) log(1 - s(x))] = softplus(-x) if t else softplus(x)
    loss = torch.where(target, F.softplus(-x), F.softplus(x))
    return loss, target


def coral_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    importance_weights: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """CORAL loss (Cao, Mirjalili & Raschka, 2020).

    loss_i = sum_k w_k * BCE(sigmoid(x_ik), [y_i > k]);
    'mean' = mean_i loss_i (coral-pytorch), 'sum' = sum_i loss_i, 'none' = [loss_i].
    """
    x = _acc(logits)
    loss, _ = _task_losses(x, labels)
    if importance_weights is not None:
        loss = loss * importance_weights.to(x.dtype)
    return _reduce(loss.sum(1), reduction, x.shape[0]).to(logits.dtype)


def corn_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    importance_weights: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """CORN loss (Shi, Cao & Raschka, 2023), conditional training subsets.

    Task k is trained on the rows with y >= k, target [y > k]:
    loss_i = sum_{k <= y_i} w_k * BCE(sigmoid(x_ik), [y_i > k]);
    'mean' = sum_i loss_i / (number of (row, task) pairs used) (coral-pytorch 1.4),
    'sum' = sum_i loss_i, 'none' = [loss_i] (not normalised).
    """
    x = _acc(logits)
    loss, _ = _task_losses(x, labels)
    k = torch.arange(x.shape[1], device=x.device)
    used = labels.long().unsqueeze(1) >= k
    loss = torch.where(used, loss, torch.zeros_like(loss))
    if importance_weights is not None:
        loss = loss * importance_weights.to(x.dtype)
    pairs = int(used.sum()) if reduction == "mean" else 0
    return _reduce(loss.sum(1), reduction, pairs).to(logits.dtype)


def _logit(threshold: float) -> float:
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be strictly between 0 and 1, got {threshold}")
    return math.log(threshold) - math.log1p(-threshold)


def _cum_log_probs(x: torch.Tensor, head: str) -> torch.Tensor:
    if head in ("coral", "niu"):  # niu (OR-CNN): independent tasks, decoded as CORAL
        return F.logsigmoid(x)
    if head == "corn":
        # P(y > k) = prod_{j <= k} P(y > j | y > j - 1), summed in log space
        return torch.cumsum(F.logsigmoid(x), dim=1)
    raise ValueError(f"head must be 'coral', 'niu' or 'corn', got {head!r}")


def ordinal_labels(logits: torch.Tensor, head: str = "coral", threshold: float = 0.5) -> torch.Tensor:
    """Predicted rank: the number of tasks with P(y > k) > threshold.

    CORAL: sigmoid(x_k) > t, decided exactly as x_k > logit(t) in float64.
    CORN:  sum_{j<=k} log sigmoid(x_j) > log sigmoid(logit(t)) in float32 (float64
    for float64 input). NaN logits never count as exceeding the threshold.
    """
    lt = _logit(threshold)
    if head in ("coral", "niu"):
        return (logits.double() > lt).sum(1)
    x = _acc(logits)
    log_t = F.logsigmoid(torch.tensor(lt, dtype=x.dtype))
    return (_cum_log_probs(x, head) > log_t).sum(1)


def ordinal_probs(logits: torch.Tensor, head: str = "coral") -> OrdinalProbs:
    """Cumulative probabilities, class probabilities and expected rank.

    cum_probs[k] = P(y > k): CORAL sigmoid(x_k); CORN prod_{j<=k} sigmoid(x_j).
    The class probabilities use the monotone envelope m_k (CORAL: running minimum
    of cum_probs, which equals cum_probs when the head is rank consistent; CORN:
    cum_probs itself): P(y = 0) = 1 - m_0, P(y = k) = m_{k-1} - m_k,
    P(y = K-1) = m_{K-2}. They are non-negative and sum to 1, and
    expected = sum_k m_k = sum_k k P(y = k).
    """
    x = _acc(logits)
    if head in ("coral", "niu"):
        cum = torch.sigmoid(x)
        env = torch.cummin(cum, dim=1).values
    else:
        cum = torch.exp(_cum_log_probs(x, head))
        env = cum
    ones = torch.ones_like(env[:, :1])
    zeros = torch.zeros_like(env[:, :1])
    upper = torch.cat([ones, env], dim=1)
    lower = torch.cat([env, zeros], dim=1)
    cls = upper - lower
    expected = env.sum(1)
    dt = logits.dtype
    return OrdinalProbs(cum.to(dt), cls.to(dt), expected.to(dt))
