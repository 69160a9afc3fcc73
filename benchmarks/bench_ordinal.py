"""Fused CORAL / CORN losses vs coral-pytorch vs torch.compile of the reference.

CPU, float32, forward + backward (loss.backward() on the mean loss), K-1 = 100
tasks, N = 256 and N = 8192. Implementations per group:

* facecore              facecore.coral_loss / corn_loss (fused kernels)
* coral-pytorch         coral_pytorch.losses.coral_loss with the levels matrix
                        built beforehand (its documented input), and corn_loss
* coral-pytorch+levels  coral-pytorch's whole step: levels_from_labelbatch + loss
* compiled-reference    torch.compile of facecore.reference.ordinal (labels in,
                        no levels), compile time excluded

Peak extra memory of one step (allocator events, the gradient included) is
stored in extra_info["peak_extra_MiB"]; the gradient itself is N*(K-1)*4 bytes.
Run: make bench (or pytest benchmarks -o python_files='bench_*.py').
"""

from __future__ import annotations

import pytest
import torch
from coral_pytorch.dataset import levels_from_labelbatch
from coral_pytorch.losses import coral_loss as cp_coral_loss
from coral_pytorch.losses import corn_loss as cp_corn_loss
from memory import mib, peak_extra_bytes

import facecore
from facecore.reference import ordinal as R

T = 100
SIZES = [256, 8192]


def _data(n):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, T, generator=g).requires_grad_(True)
    y = torch.randint(0, T + 1, (n,), generator=g)
    return x, y


def _step(loss_fn, x):
    def run():
        loss = loss_fn()
        loss.backward()
        x.grad = None
        return loss

    return run


_compiled = {}


def _compiled_ref(name):
    if name not in _compiled:
        _compiled[name] = torch.compile(getattr(R, name), dynamic=False)
    return _compiled[name]


def _run(benchmark, group, impl, step, n, rounds):
    step()  # warm-up (and compilation for compiled variants)
    benchmark.group = group
    benchmark.extra_info["impl"] = impl
    benchmark.extra_info["peak_extra_MiB"] = mib(peak_extra_bytes(step))
    benchmark.extra_info["gradient_MiB"] = mib(n * T * 4)
    benchmark.pedantic(step, rounds=rounds, iterations=1, warmup_rounds=2)


def _coral_prebuilt(x, y):
    levels = levels_from_labelbatch(y, T + 1)
    return lambda: cp_coral_loss(x, levels)


def _cases(loss):
    """impl name -> (x, y) -> zero-argument loss function."""
    if loss == "coral":
        return {
            "facecore": lambda x, y: (lambda: facecore.coral_loss(x, y)),
            "coral-pytorch (levels prebuilt)": _coral_prebuilt,
            "coral-pytorch+levels": lambda x, y: (
                lambda: cp_coral_loss(x, levels_from_labelbatch(y, T + 1))
            ),
            "compiled-reference": lambda x, y: (lambda: _compiled_ref("coral_loss")(x, y)),
        }
    return {
        "facecore": lambda x, y: (lambda: facecore.corn_loss(x, y)),
        "coral-pytorch": lambda x, y: (lambda: cp_corn_loss(x, y, T + 1)),
        "compiled-reference": lambda x, y: (lambda: _compiled_ref("corn_loss")(x, y)),
    }


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("impl", list(_cases("coral")))
def bench_coral_loss(benchmark, impl, n):
    x, y = _data(n)
    rounds = 5 if impl == "coral-pytorch+levels" and n > 1000 else 30
    _run(benchmark, f"coral N={n}", impl, _step(_cases("coral")[impl](x, y), x), n, rounds)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("impl", list(_cases("corn")))
def bench_corn_loss(benchmark, impl, n):
    x, y = _data(n)
    rounds = 5 if impl == "coral-pytorch" and n > 1000 else 30
    _run(benchmark, f"corn N={n}", impl, _step(_cases("corn")[impl](x, y), x), n, rounds)
