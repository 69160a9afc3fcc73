"""Autograd of the matching ops: fp64 gradcheck through distances and losses,
torch.library.opcheck on every op (schema, autograd registration, fake
kernels, AOT dispatch with dynamic shapes), and the limits (no double
backward, internal ops, integer outputs)."""

from __future__ import annotations

import pytest
import torch
from matching_cases import pk_batch
from torch.library import opcheck

import facecore.ops.matching as M

ops = torch.ops.facecore


def _batch(seed=0):
    return pk_batch(3, 3, d=4, seed=seed, dtype=torch.float64, spread=0.7)


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
@pytest.mark.parametrize("normalize", [False, True])
def test_distance_gradcheck(metric, normalize):
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: M.pairwise_distance(a, None, metric, normalize), (x,))
    assert torch.autograd.gradcheck(lambda a, b: M.pairwise_distance(a, b, metric, normalize), (x, y))


@pytest.mark.parametrize("mining", ["none", "all", "semihard", "batch_hard"])
@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("soft", [False, True])
def test_triplet_gradcheck_through_embeddings(mining, swap, soft):
    x, labels = _batch(1)
    x.requires_grad_(True)
    # margins chosen so that no triplet sits at a kink (v = 0) for this batch
    assert torch.autograd.gradcheck(
        lambda t: M.triplet_margin_loss(t, labels, 0.5, "euclidean", False, swap, soft, mining, 1.0).loss, (x,)
    )


@pytest.mark.parametrize("form", ["double_margin", "hadsell"])
@pytest.mark.parametrize("reduction", ["mean_nonzero", "mean", "sum"])
def test_contrastive_gradcheck(form, reduction):
    x, labels = _batch(2)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda t: M.contrastive_loss(t, labels, 0.3, 2.0, "sqeuclidean", False, form, reduction).loss, (x,)
    )


def test_loss_backward_scales_by_the_upstream_gradient():
    x, labels = _batch(3)
    d = M.pairwise_distance(x).detach().requires_grad_(True)
    out = M.triplet_margin_loss_from_dist(d, labels, 0.5)
    (g1,) = torch.autograd.grad(out.loss, d, retain_graph=True)
    (g2,) = torch.autograd.grad(out.loss, d, torch.tensor(-2.5, dtype=torch.float64))
    torch.testing.assert_close(g2, -2.5 * g1)


def _opcheck(op, args):
    result = opcheck(op, args)
    assert set(result.values()) == {"SUCCESS"}, result


def test_opcheck_distance():
    x = torch.randn(6, 5, requires_grad=True)
    y = torch.randn(4, 5, requires_grad=True)
    _opcheck(ops.pairwise_distance.default, (x, None, "euclidean", False))
    _opcheck(ops.pairwise_distance.default, (x, y, "cosine", True))
    _opcheck(ops.pairwise_distance.default, (x.detach(), y.detach(), "sqeuclidean", False))


@pytest.mark.parametrize("mining", ["none", "semihard", "batch_hard"])
def test_opcheck_losses(mining):
    x, labels = pk_batch(3, 3, d=4, seed=4)
    d = torch.cdist(x, x).requires_grad_(True)
    _opcheck(ops.triplet_margin_loss.default, (d, labels, 0.3, True, False, mining, 0.5, "mean_nonzero"))
    _opcheck(ops.triplet_margin_loss.default, (d.detach(), labels, 0.3, False, True, mining, None, "sum"))
    _opcheck(ops.contrastive_loss.default, (d, labels, 0.1, 2.0, "hadsell", "mean"))


def test_opcheck_internal_ops():
    x, labels = pk_batch(3, 3, d=4, seed=5)
    d = torch.cdist(x, x)
    _opcheck(ops._triplet_margin_loss_fused.default, (d, labels, 0.3, False, False, "all", None, "mean"))
    _opcheck(ops._contrastive_loss_fused.default, (d, labels, 0.0, 1.0, "double_margin", "mean_nonzero"))
    _opcheck(ops._matching_loss_backward.default, (torch.tensor(0.5), torch.randn(9, 9)))
    _opcheck(ops._pairwise_distance_backward.default, (torch.randn(9, 9), x, None, d, "euclidean", False))
    _opcheck(ops._pairwise_distance_backward.default, (torch.randn(9, 2), x, x[:2], d[:, :2], "cosine", True))


def test_double_backward_is_refused():
    x, labels = _batch(6)
    x.requires_grad_(True)
    with pytest.raises(RuntimeError, match="second derivatives are not implemented"):
        torch.autograd.grad(M.triplet_margin_loss(x, labels, 0.5).loss, x, create_graph=True)
    with pytest.raises(RuntimeError, match="second derivatives are not implemented"):
        torch.autograd.grad(M.pairwise_distance(x).sum(), x, create_graph=True)


def test_internal_ops_are_not_differentiable():
    x, labels = _batch(7)
    d = M.pairwise_distance(x).detach().requires_grad_(True)
    with pytest.raises(RuntimeError, match="internal op"):
        ops._triplet_margin_loss_fused(d, labels, 0.1, False, False, "none", None, "mean")


def test_counts_are_not_differentiable_and_no_grad_path():
    x, labels = _batch(8)
    out = M.triplet_margin_loss(x.requires_grad_(True), labels, 0.5)
    assert out.loss.requires_grad and not out.num_active.requires_grad and not out.num_terms.requires_grad
    with torch.no_grad():
        out = M.triplet_margin_loss(x, labels, 0.5)
    assert out.loss.grad_fn is None


def test_gradient_wrt_reference_set():
    x = torch.randn(5, 3, dtype=torch.float64)
    y = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    d = M.pairwise_distance(x, y)
    (g,) = torch.autograd.grad(d.sum(), y)
    (g_ref,) = torch.autograd.grad(torch.cdist(x, y).sum(), y)
    torch.testing.assert_close(g, g_ref)
