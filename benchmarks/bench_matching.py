"""Fused face-matching losses vs pytorch-metric-learning vs torch.compile of the reference.

CPU, float32, forward + backward (loss.backward() down to the embeddings),
D = 128, P x K batches of K = 8 images per identity, B = 256, 1024, 4096, at
one thread and at torch's default thread count (``threads=`` in the group).
Groups (same distance for every implementation: PML's default
LpDistance(), i.e. Euclidean on L2-normalised embeddings):

* triplet all        TripletMarginMiner(0.2, "all") + TripletMarginLoss(0.05)
* triplet semihard   TripletMarginMiner(0.2, "semihard") + TripletMarginLoss(0.05)
* triplet batch-hard BatchHardMiner() + TripletMarginLoss(0.05)

Implementations per group:

* facecore            facecore.losses.TripletMarginLoss (fused kernels)
* pml                 pytorch-metric-learning's miner + loss
* compiled-reference  torch.compile of facecore.reference.matching (pairwise
                      distance + dense B^3 mask), compile time excluded

PML and the compiled reference build B x B x B tensors: at B = 4096 (6.9e10
entries) they are skipped with that reason, except PML's batch-hard miner,
which is O(B^2). The compiled reference is also skipped at B = 1024 (its
float32 B^3 intermediates alone take 4 GiB). Peak extra memory of one step
(allocator events, gradient included) is stored in extra_info["peak_extra_MiB"].
bench_triplet_interleaved times facecore and PML round-robin in this process
at B = 1024 (all and semihard mining) and prints the medians and the ratio at
the end (conftest.py). Run: make bench (or pytest benchmarks/bench_matching.py -o python_files='bench_*.py'
-o python_functions='bench_*' --benchmark-only).
"""

from __future__ import annotations

import pytest
import torch
from facecore.miners import BatchHardMiner, TripletMarginMiner
from memory import mib, peak_extra_bytes
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from timing import THREADS, interleaved_medians, num_threads, record_interleaved, threads_id

from facecore.losses import TripletMarginLoss
from facecore.reference import matching as R

D = 128
K = 8
SIZES = [256, 1024, 4096]
MARGIN = 0.05
MINER_MARGIN = 0.2
MININGS = ["all", "semihard", "batch_hard"]


def _data(b):
    g = torch.Generator().manual_seed(b)
    labels = torch.arange(b // K).repeat_interleave(K)
    x = torch.randn(b, D, generator=g).requires_grad_(True)
    return x, labels[torch.randperm(b, generator=g)]


def _facecore(mining):
    miner = BatchHardMiner() if mining == "batch_hard" else TripletMarginMiner(MINER_MARGIN, mining)
    loss = TripletMarginLoss(MARGIN, miner=miner)
    return lambda x, y: loss(x, y)


def _pml(mining):
    miner = (
        pml_miners.BatchHardMiner()
        if mining == "batch_hard"
        else pml_miners.TripletMarginMiner(MINER_MARGIN, mining)
    )
    loss = pml_losses.TripletMarginLoss(MARGIN)
    return lambda x, y: loss(x, y, miner(x, y))


_compiled = {}


def _compiled_reference(mining):
    def ref(x, y):
        d = R.pairwise_distance(x, None, "euclidean", True)
        return R.triplet_margin_loss(d, y, MARGIN, False, False, mining, MINER_MARGIN).loss

    if mining not in _compiled:
        _compiled[mining] = torch.compile(ref, dynamic=False)
    return _compiled[mining]


IMPLS = {"facecore": _facecore, "pml": _pml, "compiled-reference": _compiled_reference}


def _skip_reason(impl, mining, b):
    if impl == "pml" and b >= 4096 and mining != "batch_hard":
        return "PML builds a B^3 triplet mask (6.9e10 entries at B=4096) or loops per anchor"
    if impl == "compiled-reference" and b >= 1024:
        return "the reference materialises B^3 float32 tensors (4 GiB at B=1024)"
    return None


def _step(fn, x, y):
    def step():
        loss = fn(x, y)
        loss.backward()
        x.grad = None
        return loss

    return step


@pytest.mark.parametrize("threads", THREADS, ids=threads_id)
@pytest.mark.parametrize("b", SIZES)
@pytest.mark.parametrize("mining", MININGS)
@pytest.mark.parametrize("impl", list(IMPLS))
def bench_triplet(benchmark, impl, mining, b, threads):
    reason = _skip_reason(impl, mining, b)
    if reason:
        pytest.skip(reason)
    if threads != 1 and impl == "pml" and b >= 1024 and mining != "batch_hard":
        pytest.skip("PML at B >= 1024 runs at one thread only (seconds per step)")
    x, y = _data(b)
    step = _step(IMPLS[impl](mining), x, y)
    with num_threads(threads):
        step()  # warm-up (and compilation)
        benchmark.group = f"triplet {mining} B={b} {threads_id(threads)}"
        benchmark.extra_info["impl"] = impl
        benchmark.extra_info["peak_extra_MiB"] = mib(peak_extra_bytes(step))
        slow = impl != "facecore" and b >= 1024
        benchmark.pedantic(step, rounds=3 if slow else 10, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("threads", THREADS, ids=threads_id)
@pytest.mark.parametrize("mining", ["all", "semihard"])
def bench_triplet_interleaved(benchmark, mining, threads):
    b = 1024
    x, y = _data(b)
    cases = {"facecore": _step(_facecore(mining), x, y), "pml": _step(_pml(mining), x, y)}
    rounds = 5 if threads == 1 else 3
    record_interleaved(
        f"triplet {mining} fwd+bwd B={b} D={D}", threads, interleaved_medians(cases, rounds, threads),
        "facecore", None,
    )
    with num_threads(threads):
        benchmark.group = f"interleaved triplet {mining} (facecore)"
        benchmark.extra_info["impl"] = "facecore"
        benchmark.pedantic(cases["facecore"], rounds=5, iterations=1, warmup_rounds=1)
