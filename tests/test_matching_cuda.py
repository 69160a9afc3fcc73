"""CUDA kernels of the matching ops against the CPU kernels (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch
from matching_cases import DTYPES, METRICS, MININGS, TOL, pk_batch

import facecore.ops.matching as M

pytestmark = pytest.mark.cuda


def _run(fn, x, labels, device):
    xd = x.to(device).requires_grad_(True)
    out = fn(xd, labels.to(device))
    out.loss.backward(torch.tensor(0.7, device=device, dtype=out.loss.dtype))
    return out.loss.detach().cpu(), out.num_active.cpu(), out.num_terms.cpu(), xd.grad.cpu()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mining", MININGS)
@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("b", [0, 1, 37, 300])
def test_triplet_matches_cpu(dtype, mining, swap, b):
    x, labels = pk_batch(max(b // 4, 1), 4, d=32, seed=b, dtype=dtype)
    x, labels = x[:b], labels[:b]

    def fn(e, y):
        return M.triplet_margin_loss(e, y, 0.1, "euclidean", True, swap, False, mining, 0.3)

    a, b_ = _run(fn, x, labels, "cpu"), _run(fn, x, labels, "cuda")
    torch.testing.assert_close(b_[0], a[0], **TOL[dtype])
    torch.testing.assert_close(b_[3], a[3], **TOL[dtype])
    if dtype == torch.float64:
        assert b_[1] == a[1] and b_[2] == a[2]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", ["double_margin", "hadsell"])
@pytest.mark.parametrize("reduction", ["mean_nonzero", "mean", "sum"])
def test_contrastive_matches_cpu(dtype, form, reduction):
    x, labels = pk_batch(20, 4, d=16, seed=1, dtype=dtype)

    def fn(e, y):
        return M.contrastive_loss(e, y, 0.2, 1.0, "euclidean", True, form, reduction)

    a, b = _run(fn, x, labels, "cpu"), _run(fn, x, labels, "cuda")
    torch.testing.assert_close(b[0], a[0], **TOL[dtype])
    torch.testing.assert_close(b[3], a[3], **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
def test_distance_matches_cpu(dtype, metric):
    x = torch.randn(70, 33, dtype=dtype)
    y = torch.randn(40, 33, dtype=dtype)
    for other in (None, y):
        xa = x.clone().requires_grad_(True)
        xb = x.cuda().requires_grad_(True)
        da = M.pairwise_distance(xa, other, metric, True)
        db = M.pairwise_distance(xb, None if other is None else other.cuda(), metric, True)
        torch.testing.assert_close(db.detach().cpu(), da.detach(), **TOL[dtype])
        w = torch.randn(da.shape, dtype=dtype)
        (da * w).sum().backward()
        (db * w.cuda()).sum().backward()
        torch.testing.assert_close(xb.grad.cpu(), xa.grad, **TOL[dtype])


def test_device_mismatch_on_gpu():
    x, labels = pk_batch(2, 2)
    with pytest.raises(RuntimeError, match="labels is on cpu but dist is on cuda"):
        M.triplet_margin_loss(x.cuda(), labels)


def test_opcheck_on_gpu():
    from torch.library import opcheck

    x, labels = pk_batch(3, 3, d=4)
    x, labels = x.cuda(), labels.cuda()
    d = torch.cdist(x, x)
    for op, args in [
        (torch.ops.facecore.pairwise_distance.default, (x.requires_grad_(True), None, "euclidean", True)),
        (torch.ops.facecore.triplet_margin_loss.default, (d.requires_grad_(True), labels, 0.2, False, False, "semihard", 0.5, "mean_nonzero")),
        (torch.ops.facecore.contrastive_loss.default, (d, labels, 0.0, 1.0, "hadsell", "mean")),
    ]:
        result = opcheck(op, args)
        assert set(result.values()) == {"SUCCESS"}, result
