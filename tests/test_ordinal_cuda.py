"""CUDA kernels of the ordinal ops against the CPU kernels (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch
from ordinal_cases import DTYPES, TOL, random_batch

import facecore

pytestmark = pytest.mark.cuda

SHAPES = [(0, 4), (1, 1), (37, 9), (513, 100), (3, 1000)]


def _both(fn, *args):
    cpu = fn(*[a.cpu() if torch.is_tensor(a) else a for a in args])
    cuda = fn(*[a.cuda() if torch.is_tensor(a) else a for a in args])
    return cpu, cuda


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("fn", [facecore.coral_loss, facecore.corn_loss], ids=["coral", "corn"])
def test_losses_and_gradients_match_cpu(fn, reduction, shape, dtype):
    x, y = random_batch(*shape, seed=sum(shape), dtype=dtype)
    w = torch.rand(shape[1], dtype=torch.float64) + 0.5
    results = []
    for device in ("cpu", "cuda"):
        xd = x.to(device).requires_grad_(True)
        out = fn(xd, y.to(device), w.to(device), reduction)
        out.backward(torch.ones_like(out) * 0.7)
        results.append((out.detach().cpu(), xd.grad.cpu()))
    (a, ga), (b, gb) = results
    torch.testing.assert_close(b, a, **TOL[dtype])
    torch.testing.assert_close(gb, ga, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("head", ["coral", "corn"])
def test_prediction_matches_cpu(head, shape, dtype):
    x, _ = random_batch(*shape, seed=7, dtype=dtype)
    cpu, cuda = _both(lambda t: facecore.ordinal_labels(t, head, 0.5), x)
    assert (cpu == cuda.cpu()).float().mean() >= 0.999  # ulp differences of exp/log1p at ties
    xa = x.clone().requires_grad_(True)
    xb = x.cuda().requires_grad_(True)
    pa = facecore.ordinal_probs(xa, head)
    pb = facecore.ordinal_probs(xb, head)
    for a, b in zip(pa, pb):
        torch.testing.assert_close(b.detach().cpu(), a.detach(), **TOL[dtype])
    sum(p.sum() for p in pa).backward()
    sum(p.sum() for p in pb).backward()
    torch.testing.assert_close(xb.grad.cpu(), xa.grad, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("head", ["coral", "niu", "corn"])
def test_fused_predict_matches_cpu(head, shape, dtype):
    x, _ = random_batch(*shape, seed=9, dtype=dtype)
    if shape[0] > 3:
        x[3, 0] = float("nan")  # the CORAL envelope propagates it, no label counts it
    cpu = facecore.ordinal_predict(x, head, 0.4)
    cuda = facecore.ordinal_predict(x.cuda(), head, 0.4)
    if head == "corn":
        assert (cpu.labels == cuda.labels.cpu()).float().mean() >= 0.999
    else:
        assert torch.equal(cpu.labels, cuda.labels.cpu())  # x > logit(t), exact on both
    for a, b in zip(cpu[1:], cuda[1:]):
        torch.testing.assert_close(b.cpu(), a, **TOL[dtype], equal_nan=True)
    for flags in [(True, False, False, False), (False, True, False, True), (False, False, True, False)]:
        part = facecore.ordinal_predict(x.cuda(), head, 0.4, *flags)
        for want, a, b in zip(flags, part, cuda):
            if want:
                assert torch.equal(a, b)
            else:
                assert a.shape == (0,)


def test_device_mismatch_on_gpu():
    x, y = random_batch(4, 3)
    with pytest.raises(RuntimeError, match="labels is on cpu but logits is on cuda"):
        facecore.coral_loss(x.cuda(), y)


def test_opcheck_on_gpu():
    from torch.library import opcheck

    x, y = random_batch(9, 4, seed=3)
    x, y = x.cuda(), y.cuda()
    for op, args in [
        (torch.ops.facecore.coral_loss.default, (x.requires_grad_(True), y, None, "mean")),
        (torch.ops.facecore.corn_loss.default, (x, y, torch.rand(4, device="cuda"), "none")),
        (torch.ops.facecore.ordinal_probs.default, (x, "corn")),
        (torch.ops.facecore.ordinal_labels.default, (x.detach(), "coral", 0.5)),
        (torch.ops.facecore.ordinal_predict.default, (x, "corn", 0.5, True, True, True, False)),
        (torch.ops.facecore.ordinal_predict.default, (x.detach(), "coral", 0.3, False, False, False, True)),
    ]:
        result = opcheck(op, args)
        assert set(result.values()) == {"SUCCESS"}, result
