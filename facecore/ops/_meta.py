"""Fake (meta) kernels of the ordinal ops for torch.compile and torch.export.

They compute output shapes and dtypes without data, with symbolic sizes (a
dynamic batch dimension exports), and repeat the C++ argument checks that do
not need data so that tracing fails with the same messages. Label ranges are
data and are checked by the real kernels only.

The C++ schemas point here (``m.set_python_module("facecore.ops._meta")``), so
torch asks for this module when it needs a fake kernel.
"""

from __future__ import annotations

import torch

_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

# c10's names, so that fake and real kernels print the same messages.
_C10_NAMES = {
    torch.float32: "Float",
    torch.float64: "Double",
    torch.float16: "Half",
    torch.bfloat16: "BFloat16",
    torch.int64: "Long",
    torch.int32: "Int",
    torch.int16: "Short",
    torch.int8: "Char",
    torch.uint8: "Byte",
    torch.bool: "Bool",
}


def dtype_name(dtype: torch.dtype) -> str:
    return _C10_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def shape_str(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def check_logits(op: str, logits: torch.Tensor, name: str = "logits") -> None:
    if logits.dim() != 2:
        raise ValueError(
            f"{op}: {name} must be a 2-D tensor of shape [N, K-1], got a {logits.dim()}-D "
            f"tensor of shape {shape_str(logits)}"
        )
    if logits.dtype not in _FLOATS:
        raise ValueError(
            f"{op}: {name} must be float32, float64, float16 or bfloat16, got {dtype_name(logits.dtype)}"
        )
    torch._check_value(
        logits.shape[1] >= 1,
        lambda: f"{op}: {name} must have at least one column (K-1 >= 1 tasks, i.e. K >= 2 classes), "
        f"got shape {shape_str(logits)}",
    )


def check_reduction(op: str, reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got '{reduction}'")


HEADS = ("coral", "niu", "corn")


def check_head(op: str, head: str) -> None:
    if head not in HEADS:
        raise ValueError(f"{op}: head must be 'coral', 'niu' or 'corn', got '{head}'")


def check_threshold(op: str, threshold: float) -> None:
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"{op}: threshold must be a probability strictly between 0 and 1, got {threshold}")


def check_same_device(op: str, name: str, t: torch.Tensor, logits: torch.Tensor) -> None:
    if t.device != logits.device:
        raise RuntimeError(
            f"{op}: {name} is on {t.device} but logits is on {logits.device}; put both on the same device"
        )


def check_loss_args(op, logits, labels, importance_weights, reduction) -> None:
    """The checks of csrc/ops/ordinal_common.h: check_loss_inputs, same messages."""
    check_logits(op, logits)
    check_reduction(op, reduction)
    if labels.dim() != 1:
        raise ValueError(f"{op}: labels must be a 1-D tensor of shape [N], got shape {shape_str(labels)}")
    if labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"{op}: labels must be an integer tensor (int64 or int32) of class indices in [0, K-1], "
            f"got dtype {dtype_name(labels.dtype)}"
        )
    torch._check_value(
        labels.shape[0] == logits.shape[0],
        lambda: f"{op}: labels has {labels.shape[0]} entries but logits has {logits.shape[0]} rows "
        f"(shape {shape_str(logits)})",
    )
    check_same_device(op, "labels", labels, logits)
    if importance_weights is not None:
        w = importance_weights
        if w.dim() != 1:
            raise ValueError(
                f"{op}: importance_weights must be a 1-D tensor with one weight per task "
                f"(K-1 = {logits.shape[1]}), got shape {shape_str(w)}"
            )
        torch._check_value(
            w.shape[0] == logits.shape[1],
            lambda: f"{op}: importance_weights must be a 1-D tensor with one weight per task "
            f"(K-1 = {logits.shape[1]}), got shape {shape_str(w)}",
        )
        if w.dtype not in _FLOATS:
            raise ValueError(
                f"{op}: importance_weights must be a floating-point tensor, got dtype {dtype_name(w.dtype)}"
            )
        check_same_device(op, "importance_weights", w, logits)


def _loss_out(logits: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return logits.new_empty((logits.shape[0],))
    return logits.new_empty(())


@torch.library.register_fake("facecore::coral_loss")
def _coral_loss_fake(logits, labels, importance_weights=None, reduction="mean"):
    check_loss_args("facecore::coral_loss", logits, labels, importance_weights, reduction)
    return _loss_out(logits, reduction)


@torch.library.register_fake("facecore::corn_loss")
def _corn_loss_fake(logits, labels, importance_weights=None, reduction="mean"):
    check_loss_args("facecore::corn_loss", logits, labels, importance_weights, reduction)
    return _loss_out(logits, reduction)


@torch.library.register_fake("facecore::_coral_loss_fused")
def _coral_loss_fused_fake(logits, labels, importance_weights, reduction):
    check_loss_args("facecore::coral_loss", logits, labels, importance_weights, reduction)
    return _loss_out(logits, reduction), logits.new_empty(logits.shape)


@torch.library.register_fake("facecore::_corn_loss_fused")
def _corn_loss_fused_fake(logits, labels, importance_weights, reduction):
    check_loss_args("facecore::corn_loss", logits, labels, importance_weights, reduction)
    return _loss_out(logits, reduction), logits.new_empty(logits.shape)


@torch.library.register_fake("facecore::_ordinal_loss_backward")
def _ordinal_loss_backward_fake(grad, unit_grad, reduction):
    op = "facecore::_ordinal_loss_backward"
    check_logits(op, unit_grad, "unit_grad")
    check_reduction(op, reduction)
    if reduction == "none":
        torch._check(grad.dim() == 1 and grad.shape[0] == unit_grad.shape[0])
    else:
        torch._check(grad.numel() == 1)
    return unit_grad.new_empty(unit_grad.shape)


@torch.library.register_fake("facecore::ordinal_labels")
def _ordinal_labels_fake(logits, head="coral", threshold=0.5):
    op = "facecore::ordinal_labels"
    check_logits(op, logits)
    check_head(op, head)
    check_threshold(op, threshold)
    return logits.new_empty((logits.shape[0],), dtype=torch.int64)


@torch.library.register_fake("facecore::ordinal_predict")
def _ordinal_predict_fake(
    logits, head="coral", threshold=0.5, cum_probs=True, class_probs=True, expected=True, labels=True
):
    op = "facecore::ordinal_predict"
    check_logits(op, logits)
    check_head(op, head)
    check_threshold(op, threshold)
    n, t = logits.shape
    return (
        logits.new_empty((n, t) if cum_probs else (0,)),
        logits.new_empty((n, t + 1) if class_probs else (0,)),
        logits.new_empty((n,) if expected else (0,)),
        logits.new_empty((n,) if labels else (0,), dtype=torch.int64),
    )


@torch.library.register_fake("facecore::ordinal_probs")
def _ordinal_probs_fake(logits, head="coral"):
    op = "facecore::ordinal_probs"
    check_logits(op, logits)
    check_head(op, head)
    n, t = logits.shape
    return logits.new_empty((n, t)), logits.new_empty((n, t + 1)), logits.new_empty((n,))


@torch.library.register_fake("facecore::_ordinal_probs_backward")
def _ordinal_probs_backward_fake(grad_cum_probs, grad_class_probs, grad_expected, logits, head):
    op = "facecore::_ordinal_probs_backward"
    check_logits(op, logits)
    check_head(op, head)
    return logits.new_empty(logits.shape)
