"""Input checks shared by the metrics (private).

Every public metric validates its inputs here so that a wrong call fails with a
message naming the argument and what was expected, instead of returning a
plausible but wrong number. Checks that read values (NaN, label ranges) move a
scalar to the host, which synchronises a CUDA stream: metrics are evaluation
code, not training-step code, so clarity wins.
"""

from __future__ import annotations

import math
import numbers

import torch

_HALF = (torch.float16, torch.bfloat16)


def as_tensor(x: object, name: str) -> torch.Tensor:
    """``x`` as a tensor: tensors pass through, numpy arrays and number sequences
    are converted with :func:`torch.as_tensor`; anything else is a ``TypeError``."""
    if isinstance(x, torch.Tensor):
        t = x
    elif x is None or isinstance(x, (str, bytes, dict)):
        raise TypeError(
            f"{name} must be a tensor (or array-like of numbers), got {type(x).__name__}"
        )
    else:
        try:
            t = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(
                f"{name} must be a tensor (or array-like of numbers), got {type(x).__name__}: {e}"
            ) from e
    if t.is_complex():
        raise TypeError(f"{name} must be real-valued, got dtype {t.dtype}")
    return t.detach()


def vector(x: object, name: str) -> torch.Tensor:
    """A non-empty 1-D tensor."""
    t = as_tensor(x, name)
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D of shape [N], got shape {list(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty: the metric is undefined for N = 0")
    return t


def same_length(a: torch.Tensor, a_name: str, b: torch.Tensor, b_name: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{a_name} and {b_name} must have the same length, got {a.shape[0]} and {b.shape[0]}"
        )
    same_device(a, a_name, b, b_name)


def same_device(a: torch.Tensor, a_name: str, b: torch.Tensor, b_name: str) -> None:
    if a.device != b.device:
        raise ValueError(
            f"{a_name} and {b_name} must be on the same device, got {a.device} and {b.device}"
        )


def no_nan(t: torch.Tensor, name: str) -> None:
    if t.is_floating_point():
        bad = torch.isnan(t)
        if bool(bad.any()):
            i = int(bad.reshape(-1).nonzero()[0, 0])
            raise ValueError(
                f"{name} contains NaN ({int(bad.sum())} of {t.numel()} entries, "
                f"first at flat index {i}); metrics are undefined for NaN inputs"
            )


def real(x: object, name: str) -> torch.Tensor:
    """Non-empty 1-D real values without NaN, as float64 (integers converted)."""
    t = vector(x, name)
    if t.dtype == torch.bool:
        raise TypeError(f"{name} must hold numbers, got dtype torch.bool")
    no_nan(t, name)
    return t.double()


def labels(x: object, name: str) -> torch.Tensor:
    """Non-empty 1-D integer labels, as int64."""
    t = vector(x, name)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(
            f"{name} must be an integer tensor of class indices, got dtype {t.dtype} "
            "(convert with .long() if the values are whole numbers)"
        )
    return t.long()


def labels_in_range(t: torch.Tensor, name: str, num_classes: int) -> None:
    bad = (t < 0) | (t >= num_classes)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{name} must hold classes in [0, {num_classes - 1}] (num_classes={num_classes}), "
            f"got {int(t[i])} at index {i}"
        )


def binary_target(x: object, name: str) -> torch.Tensor:
    """Non-empty 1-D binary labels (bool, or numbers equal to 0 or 1), as bool."""
    t = vector(x, name)
    if t.dtype == torch.bool:
        return t
    no_nan(t, name)
    bad = (t != 0) & (t != 1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{name} must be binary (bool, or 0 / 1), got {t[i].item()!r} at index {i}"
        )
    return t != 0


def probabilities(x: object, name: str) -> torch.Tensor:
    """Non-empty 1-D floating-point probabilities in [0, 1], as float64."""
    t = vector(x, name)
    if not t.is_floating_point():
        raise TypeError(f"{name} must be floating-point probabilities, got dtype {t.dtype}")
    no_nan(t, name)
    in_range(t, name)
    return t.double()


def in_range(t: torch.Tensor, name: str, hint: str = "") -> None:
    bad = (t < 0) | (t > 1)
    if bool(bad.any()):
        i = int(bad.reshape(-1).nonzero()[0, 0])
        raise ValueError(
            f"{name} must be probabilities in [0, 1], got {t.reshape(-1)[i].item()!r} "
            f"at flat index {i}{hint}"
        )


def finite_number(v: object, name: str) -> float:
    """A finite Python float from a real number (numpy scalars and 0-d tensors too)."""
    if isinstance(v, torch.Tensor) and v.dim() == 0 and not v.is_complex():
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(v).__name__}")
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{name} must be finite, got {f}")
    return f


def positive_int(v: object, name: str, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return int(v)


def scalar_or_vector(v: object, name: str) -> tuple[torch.Tensor, bool]:
    """A float64 CPU 1-D tensor of the values and whether ``v`` was a single number
    (a Python / numpy number or a 0-d tensor) rather than a 1-D sequence / tensor."""
    if isinstance(v, bool) or isinstance(v, (str, bytes)) or v is None:
        raise TypeError(
            f"{name} must be a number or a 1-D sequence of numbers, got {type(v).__name__}"
        )
    if isinstance(v, numbers.Real):
        return torch.tensor([float(v)], dtype=torch.float64), True
    t = as_tensor(v, name)
    single = t.dim() == 0
    t = vector(t.reshape(1) if single else t, name)
    if t.dtype == torch.bool:
        raise TypeError(f"{name} must hold numbers, got dtype torch.bool")
    no_nan(t, name)
    return t.double().cpu(), single


def choice(v: object, name: str, options: tuple[str, ...]) -> str:
    if v not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {v!r}")
    return v  # type: ignore[return-value]


def sort_precision(t: torch.Tensor) -> torch.Tensor:
    """Half types sorted / compared in float32; other dtypes kept."""
    return t.float() if t.dtype in _HALF else t
