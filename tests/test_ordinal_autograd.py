"""Autograd of the ordinal ops: fp64 gradcheck, torch.library.opcheck on every op
(schema, autograd registration, fake kernels, AOT dispatch with dynamic shapes),
and the limits (no double backward, constant weights, internal ops)."""

from __future__ import annotations

import pytest
import torch
from ordinal_cases import random_batch
from torch.library import opcheck

import facecore

ops = torch.ops.facecore


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("fn", [facecore.coral_loss, facecore.corn_loss], ids=["coral", "corn"])
def test_loss_gradcheck(fn, reduction):
    x, y = random_batch(7, 5, seed=1, dtype=torch.float64)
    w = torch.rand(5, dtype=torch.float64) + 0.5
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: fn(t, y, w, reduction), (x,))


@pytest.mark.parametrize("head", ["coral", "corn"])
def test_probs_gradcheck(head):
    x, _ = random_batch(6, 6, seed=2, dtype=torch.float64)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: tuple(facecore.ordinal_probs(t, head)), (x,))


def test_probs_gradcheck_through_a_rank_inconsistent_coral_row():
    # The running minimum switches index inside the row: gradient routing matters.
    x = torch.tensor([[0.3, 1.2, -0.4, 0.1, -1.5]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: tuple(facecore.ordinal_probs(t, "coral")), (x,))


def _opcheck(op, args):
    result = opcheck(op, args)
    assert set(result.values()) == {"SUCCESS"}, result


@pytest.mark.parametrize("op_name", ["coral_loss", "corn_loss"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_opcheck_losses(op_name, reduction):
    x, y = random_batch(9, 4, seed=3)
    w = torch.rand(4)
    _opcheck(getattr(ops, op_name).default, (x.requires_grad_(True), y, w, reduction))
    _opcheck(getattr(ops, op_name).default, (x.detach(), y, None, reduction))


@pytest.mark.parametrize("head", ["coral", "corn"])
def test_opcheck_prediction(head):
    x, _ = random_batch(9, 4, seed=4)
    _opcheck(ops.ordinal_probs.default, (x.requires_grad_(True), head))
    _opcheck(ops.ordinal_labels.default, (x.detach(), head, 0.3))


def test_opcheck_internal_ops():
    x, y = random_batch(9, 4, seed=5)
    _opcheck(ops._coral_loss_fused.default, (x, y, None, "sum"))
    _opcheck(ops._corn_loss_fused.default, (x, y, torch.rand(4), "mean"))
    _opcheck(ops._ordinal_loss_backward.default, (torch.rand(9), torch.randn(9, 4), "none"))
    _opcheck(ops._ordinal_loss_backward.default, (torch.tensor(0.5), torch.randn(9, 4), "mean"))
    g = (torch.randn(9, 4), torch.randn(9, 5), torch.randn(9))
    _opcheck(ops._ordinal_probs_backward.default, (*g, x, "corn"))


def test_double_backward_is_refused():
    x, y = random_batch(5, 3, seed=6, dtype=torch.float64)
    x.requires_grad_(True)
    for fn in (facecore.coral_loss, facecore.corn_loss):
        with pytest.raises(RuntimeError, match="second derivatives are not implemented"):
            torch.autograd.grad(fn(x, y), x, create_graph=True)
    with pytest.raises(RuntimeError, match="second derivatives are not implemented"):
        torch.autograd.grad(facecore.ordinal_probs(x).expected.sum(), x, create_graph=True)


def test_importance_weights_must_be_constant():
    x, y = random_batch(5, 3, seed=7)
    w = torch.ones(3, requires_grad=True)
    with pytest.raises(ValueError, match="importance_weights .* must not require grad"):
        facecore.coral_loss(x.requires_grad_(True), y, w)
    with torch.no_grad():  # no graph, no problem
        facecore.coral_loss(x, y, w)
    facecore.coral_loss(x, y, w.detach()).backward()


def test_internal_ops_are_not_differentiable():
    x, y = random_batch(5, 3, seed=8)
    with pytest.raises(RuntimeError, match="internal op"):
        ops._coral_loss_fused(x.requires_grad_(True), y, None, "mean")


def test_labels_never_require_grad():
    x, _ = random_batch(5, 3, seed=9)
    labels = facecore.ordinal_labels(x.requires_grad_(True))
    assert labels.dtype == torch.int64 and not labels.requires_grad


def test_no_grad_path_computes_no_gradient_buffer():
    x, y = random_batch(5, 3, seed=10)
    x.requires_grad_(True)
    with torch.no_grad():
        out = facecore.coral_loss(x, y)
    assert out.grad_fn is None and not out.requires_grad
