"""Fake (meta) kernels of the face-matching ops for torch.compile and torch.export.

They compute output shapes and dtypes without data, with symbolic sizes (a
dynamic batch dimension exports), and repeat the C++ argument checks of
``csrc/ops/matching_common.h`` that need no data, with the same messages.

The C++ schemas point here (``m.set_python_module("facecore.ops._meta_matching")``).
"""

from __future__ import annotations

import math

import torch

from facecore.ops._meta import _FLOATS, dtype_name, shape_str

_METRICS = ("euclidean", "sqeuclidean", "cosine")
_MININGS = ("none", "all", "hard", "semihard", "easy", "batch_hard")
_REDUCTIONS = ("mean_nonzero", "mean", "sum")
_FORMS = ("double_margin", "hadsell")


def check_float_matrix(op: str, t: torch.Tensor, name: str, shape: str) -> None:
    if t.dim() != 2:
        raise ValueError(
            f"{op}: {name} must be a 2-D tensor of shape {shape}, got a {t.dim()}-D tensor "
            f"of shape {shape_str(t)}"
        )
    if t.dtype not in _FLOATS:
        raise ValueError(
            f"{op}: {name} must be float32, float64, float16 or bfloat16, got {dtype_name(t.dtype)}"
        )


def check_metric(op: str, metric: str) -> None:
    if metric not in _METRICS:
        raise ValueError(
            f"{op}: metric must be 'euclidean', 'sqeuclidean' or 'cosine', got '{metric}'"
        )


def check_reduction(op: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"{op}: reduction must be 'mean_nonzero', 'mean' or 'sum', got '{reduction}'"
        )


def check_margin(op: str, name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{op}: {name} must be a finite number, got {value}")


def check_distance_args(op: str, x: torch.Tensor, y: torch.Tensor | None) -> None:
    check_float_matrix(op, x, "x", "[B, D]")
    if y is None:
        return
    check_float_matrix(op, y, "y", "[M, D]")
    torch._check_value(
        y.shape[1] == x.shape[1],
        lambda: f"{op}: x and y must have the same embedding dimension D, got x "
        f"{shape_str(x)} and y {shape_str(y)}",
    )
    if y.dtype != x.dtype:
        raise ValueError(
            f"{op}: x and y must have the same dtype, got {dtype_name(x.dtype)} and "
            f"{dtype_name(y.dtype)}"
        )
    if y.device != x.device:
        raise RuntimeError(
            f"{op}: y is on {y.device} but x is on {x.device}; put both on the same device"
        )


def check_loss_args(op: str, dist: torch.Tensor, labels: torch.Tensor, reduction: str) -> None:
    check_float_matrix(op, dist, "dist", "[B, B]")
    torch._check_value(
        dist.shape[0] == dist.shape[1],
        lambda: f"{op}: dist must be the square [B, B] distance matrix of a batch against "
        f"itself, got shape {shape_str(dist)}",
    )
    if labels.dim() != 1:
        raise ValueError(
            f"{op}: labels must be a 1-D tensor of shape [B], got shape {shape_str(labels)}"
        )
    if labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"{op}: labels must be an integer tensor (int64 or int32) of identity ids, "
            f"got dtype {dtype_name(labels.dtype)}"
        )
    torch._check_value(
        labels.shape[0] == dist.shape[0],
        lambda: f"{op}: labels has {labels.shape[0]} entries but dist is {shape_str(dist)}; "
        f"labels must have B = {dist.shape[0]} entries",
    )
    if labels.device != dist.device:
        raise RuntimeError(
            f"{op}: labels is on {labels.device} but dist is on {dist.device}; put both on the "
            "same device"
        )
    check_reduction(op, reduction)


def check_triplet_args(op, dist, labels, margin, mining, mining_margin, reduction) -> None:
    check_loss_args(op, dist, labels, reduction)
    check_margin(op, "margin", margin)
    if mining_margin is not None:
        check_margin(op, "mining_margin", mining_margin)
    if mining not in _MININGS:
        raise ValueError(
            f"{op}: mining must be 'none', 'all', 'hard', 'semihard', 'easy' or 'batch_hard', "
            f"got '{mining}'"
        )


def check_contrastive_args(op, dist, labels, pos_margin, neg_margin, form, reduction) -> None:
    check_loss_args(op, dist, labels, reduction)
    check_margin(op, "pos_margin", pos_margin)
    check_margin(op, "neg_margin", neg_margin)
    if form not in _FORMS:
        raise ValueError(f"{op}: form must be 'double_margin' or 'hadsell', got '{form}'")


def _counts(dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return dist.new_empty((), dtype=torch.int64), dist.new_empty((), dtype=torch.int64)


@torch.library.register_fake("facecore::pairwise_distance")
def _pairwise_distance_fake(x, y=None, metric="euclidean", normalize=False):
    op = "facecore::pairwise_distance"
    check_distance_args(op, x, y)
    check_metric(op, metric)
    m = x.shape[0] if y is None else y.shape[0]
    return x.new_empty((x.shape[0], m))


@torch.library.register_fake("facecore::_pairwise_distance_backward")
def _pairwise_distance_backward_fake(grad, x, y, dist, metric, normalize):
    op = "facecore::_pairwise_distance_backward"
    check_distance_args(op, x, y)
    check_metric(op, metric)
    gy = x.new_empty((0, x.shape[1])) if y is None else y.new_empty(y.shape)
    return x.new_empty(x.shape), gy


@torch.library.register_fake("facecore::triplet_margin_loss")
def _triplet_fake(
    dist,
    labels,
    margin=0.05,
    swap=False,
    soft=False,
    mining="none",
    mining_margin=None,
    reduction="mean_nonzero",
):
    op = "facecore::triplet_margin_loss"
    check_triplet_args(op, dist, labels, margin, mining, mining_margin, reduction)
    return (dist.new_empty(()), *_counts(dist))


@torch.library.register_fake("facecore::_triplet_margin_loss_fused")
def _triplet_fused_fake(dist, labels, margin, swap, soft, mining, mining_margin, reduction):
    op = "facecore::triplet_margin_loss"
    check_triplet_args(op, dist, labels, margin, mining, mining_margin, reduction)
    return (dist.new_empty(()), *_counts(dist), dist.new_empty(dist.shape))


@torch.library.register_fake("facecore::contrastive_loss")
def _contrastive_fake(
    dist, labels, pos_margin=0.0, neg_margin=1.0, form="double_margin", reduction="mean_nonzero"
):
    op = "facecore::contrastive_loss"
    check_contrastive_args(op, dist, labels, pos_margin, neg_margin, form, reduction)
    return (dist.new_empty(()), *_counts(dist))


@torch.library.register_fake("facecore::_contrastive_loss_fused")
def _contrastive_fused_fake(dist, labels, pos_margin, neg_margin, form, reduction):
    op = "facecore::contrastive_loss"
    check_contrastive_args(op, dist, labels, pos_margin, neg_margin, form, reduction)
    return (dist.new_empty(()), *_counts(dist), dist.new_empty(dist.shape))


@torch.library.register_fake("facecore::_matching_loss_backward")
def _matching_loss_backward_fake(grad, unit_grad):
    op = "facecore::_matching_loss_backward"
    check_float_matrix(op, unit_grad, "unit_grad", "[B, B]")
    torch._check(grad.numel() == 1)
    return unit_grad.new_empty(unit_grad.shape)
