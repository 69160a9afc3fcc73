"""Fused CORAL / CORN losses and rank prediction vs coral-pytorch, eager PyTorch
and torch.compile of the reference.

Every comparison runs at one thread and at torch's default thread count
(``threads=`` in the group name), CPU, float32, K-1 = 100 tasks.

Losses: forward + backward (loss.backward() on the mean loss), N = 256 and
N = 8192. Implementations per group:

* facecore              facecore.coral_loss / corn_loss (fused kernels)
* coral-pytorch         coral_pytorch.losses.coral_loss with the levels matrix
                        built beforehand (its documented input), and corn_loss
* coral-pytorch+levels  coral-pytorch's whole step: levels_from_labelbatch + loss
* compiled-reference    torch.compile of facecore.reference.ordinal (labels in,
                        no levels), compile time excluded

Peak extra memory of one step (allocator events, the gradient included) is
stored in extra_info["peak_extra_MiB"]; the gradient itself is N*(K-1)*4 bytes.

Rank prediction (what a served age request runs), N = 65,536 rows:

* all outputs (labels, P(y > k), P(y = k), expected rank):
    copy floor          read the logits once, write P(y > k) and P(y = k)
                        once (two copies into preallocated outputs)
    facecore            facecore.ordinal_predict(z, "coral"): one fused pass
    facecore corn       facecore.ordinal_predict(z, "corn")
    eager pytorch       four lines: sigmoid, labels, class probabilities by
                        differences, expected rank
    compiled-reference  torch.compile of facecore.reference.ordinal (labels
                        and probabilities), compile time excluded
* labels only:
    copy floor          read the logits once (a row sum)
    facecore            ordinal_predict(z, "coral", labels only): z > logit(t)
    facecore corn       ordinal_predict(z, "corn", labels only)
    coral-pytorch       proba_to_label(sigmoid(z))

bench_*_interleaved time the implementations of a comparison round-robin in
this process and print the medians and ratios at the end (conftest.py).
Run: make bench (or pytest benchmarks -o python_files='bench_*.py').
"""

from __future__ import annotations

import pytest
import torch
from coral_pytorch.dataset import levels_from_labelbatch, proba_to_label
from coral_pytorch.losses import coral_loss as cp_coral_loss
from coral_pytorch.losses import corn_loss as cp_corn_loss
from memory import mib, peak_extra_bytes
from timing import THREADS, interleaved_medians, num_threads, record_interleaved, threads_id

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


def _run(benchmark, group, impl, step, n, rounds, threads):
    with num_threads(threads):
        step()  # warm-up (and compilation for compiled variants)
        benchmark.group = f"{group} {threads_id(threads)}"
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


@pytest.mark.parametrize("threads", THREADS, ids=threads_id)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("impl", list(_cases("coral")))
def bench_coral_loss(benchmark, impl, n, threads):
    x, y = _data(n)
    rounds = 5 if impl == "coral-pytorch+levels" and n > 1000 else 30
    _run(benchmark, f"coral N={n}", impl, _step(_cases("coral")[impl](x, y), x), n, rounds, threads)


@pytest.mark.parametrize("threads", THREADS, ids=threads_id)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("impl", list(_cases("corn")))
def bench_corn_loss(benchmark, impl, n, threads):
    x, y = _data(n)
    rounds = 5 if impl == "coral-pytorch" and n > 1000 else 30
    _run(benchmark, f"corn N={n}", impl, _step(_cases("corn")[impl](x, y), x), n, rounds, threads)


# ------------------------------------------------------------------ rank prediction

N_PRED = 65536
_logits_cache = {}


def _logits():
    if "z" not in _logits_cache:
        g = torch.Generator().manual_seed(0)
        _logits_cache["z"] = torch.randn(N_PRED, T, generator=g) * 3
    return _logits_cache["z"]


def eager_predict(z, threshold=0.5):
    """Four lines of eager PyTorch: sigmoid, labels, class probabilities by differences, expected."""
    p = torch.sigmoid(z)
    labels = (p > threshold).sum(1)
    cls = torch.cat([1 - p[:, :1], p[:, :-1] - p[:, 1:], p[:, -1:]], 1)
    return labels, p, cls, p.sum(1)


def _reference_predict(z):
    return (R.ordinal_labels(z, "coral"), *R.ordinal_probs(z, "coral"))


def _copy_floor(z):
    cum = torch.empty_like(z)
    cls = torch.empty(z.shape[0], z.shape[1] + 1)
    return lambda: (cum.copy_(z), cls[:, : z.shape[1]].copy_(z))


def _predict_cases(z):
    """impl -> zero-argument call, all outputs."""
    return {
        "copy floor": _copy_floor(z),
        "facecore": lambda: facecore.ordinal_predict(z, "coral"),
        "facecore corn": lambda: facecore.ordinal_predict(z, "corn"),
        "eager pytorch": lambda: eager_predict(z),
        "compiled-reference": lambda: _compiled_predict()(z),
    }


def _labels_cases(z):
    """impl -> zero-argument call, labels only."""
    return {
        "copy floor": lambda: z.sum(1),
        "facecore": lambda: _labels_only(z, "coral"),
        "facecore corn": lambda: _labels_only(z, "corn"),
        "coral-pytorch": lambda: proba_to_label(torch.sigmoid(z)),
    }


def _labels_only(z, head):
    return facecore.ordinal_predict(
        z, head, 0.5, labels=True, cum_probs=False, class_probs=False, expected=False
    ).labels


def _compiled_predict():
    if "predict" not in _compiled:
        _compiled["predict"] = torch.compile(_reference_predict, dynamic=False)
    return _compiled["predict"]


def _bench_call(benchmark, group, impl, fn, threads, rounds):
    with num_threads(threads):
        fn()  # warm-up (and compilation)
        benchmark.group = f"{group} {threads_id(threads)}"
        benchmark.extra_info["impl"] = impl
        benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=2)


@pytest.mark.parametrize("threads", THREADS, ids=threads_id)
@pytest.mark.parametrize("impl", ["copy floor", "facecore", "facecore corn", "eager pytorch", "compiled-reference"])
def bench_predict(benchmark, impl, threads):
    fn = _predict_cases(_logits())[impl]
    _bench_call(benchmark, f"predict all outputs N={N_PRED}", impl, fn, threads, 20)


@pytest.mark.parametrize("threads", THREADS, ids=threads_id)
@pytest.mark.parametrize("impl", ["copy floor", "facecore", "facecore corn", "coral-pytorch"])
def bench_predict_labels(benchmark, impl, threads):
    fn = _labels_cases(_logits())[impl]
    _bench_call(benchmark, f"predict labels N={N_PRED}", impl, fn, threads, 20)


@pytest.mark.parametrize("threads", THREADS, ids=threads_id)
def bench_predict_interleaved(benchmark, threads):
    z = _logits()
    for title, cases in (
        (f"predict all outputs N={N_PRED} K-1={T}", _predict_cases(z)),
        (f"predict labels only N={N_PRED} K-1={T}", _labels_cases(z)),
    ):
        record_interleaved(title, threads, interleaved_medians(cases, 25, threads), "facecore", "copy floor")
    _bench_call(benchmark, "interleaved predict (facecore)", "facecore", _predict_cases(z)["facecore"], threads, 5)
