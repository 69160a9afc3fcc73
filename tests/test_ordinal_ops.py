"""Fused ordinal kernels (CPU) against the pure-PyTorch reference and coral-pytorch.

Forward and backward, every dtype, random and adversarial inputs (hypothesis):
saturated logits (+-200), exact ties at the threshold, N = 0, K-1 = 1, large K,
non-contiguous inputs.
"""

from __future__ import annotations

import math

import pytest
import torch
from coral_pytorch.dataset import corn_label_from_logits, levels_from_labelbatch, proba_to_label
from coral_pytorch.losses import coral_loss as cp_coral_loss
from coral_pytorch.losses import corn_loss as cp_corn_loss
from hypothesis import example, given, settings
from hypothesis import strategies as st
from ordinal_cases import DTYPES, assert_close, ordinal_batch, random_batch

import facecore
from facecore.reference import ordinal as R

LOSSES = {"coral": (facecore.coral_loss, R.coral_loss), "corn": (facecore.corn_loss, R.corn_loss)}
REDUCTIONS = ["mean", "sum", "none"]


def loss_and_grad(fn, x, y, w, reduction, upstream=None):
    x = x.detach().clone().requires_grad_(True)
    out = fn(x, y, w, reduction)
    g = torch.ones_like(out) if upstream is None else upstream.to(out.dtype)
    (grad,) = torch.autograd.grad(out, x, g)
    return out.detach(), grad


# --------------------------------------------------------------------------- losses


@pytest.mark.parametrize("head", ["coral", "corn"])
@pytest.mark.parametrize("dtype", DTYPES)
@given(batch=ordinal_batch(), reduction=st.sampled_from(REDUCTIONS))
@settings(max_examples=40)
def test_loss_matches_reference(head, dtype, batch, reduction):
    x64, y, w = batch
    kernel, ref = LOSSES[head]
    x = x64.to(dtype)
    out, grad = loss_and_grad(kernel, x, y, w, reduction)
    ref_out, ref_grad = loss_and_grad(ref, x, y, w, reduction)
    assert out.dtype == dtype and grad.dtype == dtype
    assert out.shape == ((x.shape[0],) if reduction == "none" else ())
    assert_close(out, ref_out, dtype)
    assert_close(grad, ref_grad, dtype)


@pytest.mark.parametrize("head", ["coral", "corn"])
@given(batch=ordinal_batch(max_n=12, max_t=20), reduction=st.sampled_from(REDUCTIONS))
@settings(max_examples=30)
def test_loss_backward_scales_by_any_upstream_gradient(head, batch, reduction):
    x, y, w = batch
    kernel, ref = LOSSES[head]
    n = x.shape[0]
    upstream = torch.linspace(-2.0, 3.0, n, dtype=torch.float64) if reduction == "none" else torch.tensor(-0.7)
    _, grad = loss_and_grad(kernel, x, y, w, reduction, upstream)
    _, ref_grad = loss_and_grad(ref, x, y, w, reduction, upstream)
    assert_close(grad, ref_grad, torch.float64)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_coral_loss_matches_coral_pytorch(reduction, weighted):
    x, y = random_batch(300, 12, seed=5)
    w = torch.rand(12) * 2 if weighted else None
    levels = levels_from_labelbatch(y, num_classes=13)
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    a = facecore.coral_loss(xa, y, w, reduction)
    b = cp_coral_loss(xb, levels, importance_weights=w, reduction=None if reduction == "none" else reduction)
    torch.testing.assert_close(a, b, rtol=2e-5, atol=2e-5)
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("t", [1, 3, 25])
def test_corn_loss_matches_coral_pytorch(t):
    x, y = random_batch(257, t, seed=t)
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    a = facecore.corn_loss(xa, y)
    b = cp_corn_loss(xb, y, num_classes=t + 1)
    torch.testing.assert_close(a, b, rtol=2e-5, atol=2e-6)
    a.backward()
    b.backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("head", ["coral", "corn"])
def test_empty_batch_gives_zero_loss_and_empty_grad(head):
    kernel, _ = LOSSES[head]
    x = torch.zeros(0, 5, requires_grad=True)
    y = torch.zeros(0, dtype=torch.long)
    for reduction in ("mean", "sum"):
        out = kernel(x, y, None, reduction)
        assert out.shape == () and out.item() == 0.0
        out.backward()
        assert x.grad.shape == (0, 5)
    assert kernel(x, y, None, "none").shape == (0,)


@pytest.mark.parametrize("head", ["coral", "corn"])
def test_large_k_and_single_task(head):
    kernel, ref = LOSSES[head]
    for n, t in [(5, 1000), (700, 1)]:
        x, y = random_batch(n, t, seed=n + t, dtype=torch.float64)
        out, grad = loss_and_grad(kernel, x, y, None, "mean")
        ref_out, ref_grad = loss_and_grad(ref, x, y, None, "mean")
        assert_close(out, ref_out, torch.float64)
        assert_close(grad, ref_grad, torch.float64)


@pytest.mark.parametrize("head", ["coral", "corn"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_non_contiguous_inputs(head, dtype):
    kernel, ref = LOSSES[head]
    base, y2 = random_batch(40, 2 * 9, seed=7, dtype=dtype)
    x = base[:, ::2]  # strided columns
    y = torch.stack([y2 % 10, y2 % 10], 1)[:, 0]  # non-contiguous labels
    assert not x.is_contiguous() and not y.is_contiguous()
    w = torch.rand(18)[::2]
    out, grad = loss_and_grad(kernel, x, y, w, "none")
    ref_out, ref_grad = loss_and_grad(ref, x.contiguous(), y.contiguous(), w.contiguous(), "none")
    assert_close(out, ref_out, dtype)
    assert_close(grad, ref_grad, dtype)


def test_int32_labels_equal_int64():
    x, y = random_batch(30, 6, seed=8)
    for fn in (facecore.coral_loss, facecore.corn_loss):
        assert torch.equal(fn(x, y.int()), fn(x, y))


def test_saturated_logits_give_finite_exact_losses():
    # softplus form: a confidently right logit costs ~0, a confidently wrong one ~|x|.
    x = torch.tensor([[200.0, -200.0], [-200.0, 200.0]], dtype=torch.float32, requires_grad=True)
    y = torch.tensor([1, 1])
    per_row = facecore.coral_loss(x, y, reduction="none")
    torch.testing.assert_close(per_row, torch.tensor([0.0, 400.0]))
    per_row.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([[0.0, 0.0], [-1.0, 1.0]]))
    assert torch.isfinite(facecore.corn_loss(torch.full((3, 4), 1e30), torch.tensor([0, 2, 4]))).all()


def test_nan_logits_propagate_only_where_used():
    x = torch.zeros(3, 4)
    x[0, 1] = float("nan")
    y = torch.tensor([3, 0, 4])
    coral = facecore.coral_loss(x, y, reduction="none")
    assert torch.isnan(coral[0]) and torch.isfinite(coral[1:]).all()
    # CORN: row 0 (y=3) uses task 1 -> NaN; move the NaN to a task row 1 (y=0) ignores.
    corn = facecore.corn_loss(x, y, reduction="none")
    assert torch.isnan(corn[0]) and torch.isfinite(corn[1:]).all()
    x2 = torch.zeros(3, 4)
    x2[1, 3] = float("nan")
    assert torch.isfinite(facecore.corn_loss(x2, y, reduction="none")).all()
    assert torch.isnan(facecore.coral_loss(x2, y))


# ------------------------------------------------------- gradient hand-off in backward


def test_backward_returns_the_gradient_computed_in_forward():
    x, y = random_batch(64, 10, seed=9)
    x.requires_grad_(True)
    loss = facecore.coral_loss(x, y)
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    loss.backward()  # second backward through the same saved gradient
    torch.testing.assert_close(x.grad, 2 * first)
    (ref,) = torch.autograd.grad(R.coral_loss(x, y), x)
    torch.testing.assert_close(first, ref, rtol=2e-5, atol=1e-7)


def test_gradient_accumulates_across_steps_and_through_a_model():
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 4).double()
    feats = torch.randn(20, 6, dtype=torch.float64)
    y = torch.randint(0, 5, (20,))
    for fn, ref in LOSSES.values():
        lin.zero_grad()
        fn(lin(feats), y).backward()
        fn(lin(feats), y).backward()
        got = [p.grad.clone() for p in lin.parameters()]
        lin.zero_grad()
        (2 * ref(lin(feats), y)).backward()
        for a, b in zip(got, [p.grad for p in lin.parameters()]):
            torch.testing.assert_close(a, b)


# ------------------------------------------------------------------------ prediction


def _near_threshold(x, head, threshold):
    """Rows with a cumulative log-probability within float32 noise of log(t)."""
    xf = x.float()
    logp = torch.nn.functional.logsigmoid(xf)
    if head == "corn":
        logp = torch.cumsum(logp, 1)
    return ((logp - math.log(threshold)).abs() < 1e-5 * (1 + logp.abs())).any(1)


@pytest.mark.parametrize("head", ["coral", "corn"])
@pytest.mark.parametrize("dtype", DTYPES)
@given(batch=ordinal_batch(weights=False), threshold=st.sampled_from([0.5, 0.3, 0.9, 0.01]))
@settings(max_examples=40)
def test_labels_match_reference(head, dtype, batch, threshold):
    x64, _, _ = batch
    x = x64.to(dtype)
    got = facecore.ordinal_labels(x, head, threshold)
    ref = R.ordinal_labels(x, head, threshold)
    assert got.dtype == torch.int64 and got.shape == (x.shape[0],)
    if head == "coral":
        assert torch.equal(got, ref)  # decided exactly in float64 by both
    else:
        ok = (got == ref) | _near_threshold(x, head, threshold)
        assert ok.all(), (got, ref)


def test_labels_at_exact_ties():
    # sigmoid(0) = 1/2 is not > 1/2, for either head; -0.0 likewise.
    x = torch.tensor([[0.0, 0.0], [-0.0, 1.0], [1.0, 0.0]])
    assert facecore.ordinal_labels(x, "coral").tolist() == [0, 1, 1]
    assert facecore.ordinal_labels(x, "corn").tolist() == [0, 0, 1]
    assert R.ordinal_labels(x, "corn").tolist() == [0, 0, 1]


@pytest.mark.parametrize("t", [1, 8, 60])
def test_labels_match_coral_pytorch(t):
    x, _ = random_batch(500, t, seed=11 + t)
    assert torch.equal(facecore.ordinal_labels(x, "coral"), proba_to_label(torch.sigmoid(x)))
    assert torch.equal(facecore.ordinal_labels(x, "corn"), corn_label_from_logits(x))


def test_corn_labels_in_bf16_are_computed_in_log_space():
    # Products of bf16 probabilities drift; the kernel's fp32 log-space sum
    # labels bf16 logits as the float64 computation labels them.
    x, _ = random_batch(4000, 8, seed=12, scale=1.5, dtype=torch.bfloat16)
    exact = (torch.cumprod(torch.sigmoid(x.double()), 1) > 0.5).sum(1)
    naive = (torch.cumprod(torch.sigmoid(x), 1) > 0.5).sum(1)  # bf16 products
    got = facecore.ordinal_labels(x, "corn")
    assert (got != exact).float().mean() < 1e-3
    assert (naive != exact).float().mean() > (got != exact).float().mean()


@pytest.mark.parametrize("head", ["coral", "corn"])
@pytest.mark.parametrize("dtype", DTYPES)
@given(batch=ordinal_batch(weights=False))
@example(batch=(torch.tensor([[-1.1921e-07, 0.0]], dtype=torch.float64), torch.tensor([0]), None))
@settings(max_examples=30)
def test_probs_match_reference_forward_and_backward(head, dtype, batch):
    x64, _, _ = batch
    x = x64.to(dtype).requires_grad_(True)
    xr = x64.to(dtype).requires_grad_(True)
    got = facecore.ordinal_probs(x, head)
    ref = R.ordinal_probs(xr, head)
    n, t = x.shape
    assert got.cum_probs.shape == (n, t) and got.class_probs.shape == (n, t + 1)
    assert got.expected.shape == (n,)
    for a, b in zip(got, ref):
        assert a.dtype == dtype
        assert_close(a.detach(), b.detach(), dtype)
    g = torch.Generator().manual_seed(n * 131 + t)
    weights = [torch.randn(a.shape, generator=g, dtype=torch.float64).to(dtype) for a in got]
    (ga,) = torch.autograd.grad(sum((a * w).sum() for a, w in zip(got, weights)), x)
    (gb,) = torch.autograd.grad(sum((b * w).sum() for b, w in zip(ref, weights)), xr)
    keep = ~envelope_tie_rows(x64.to(dtype), head)
    assert_close(ga[keep], gb[keep], dtype)


def envelope_tie_rows(x: torch.Tensor, head: str) -> torch.Tensor:
    """Rows whose CORAL envelope (running minimum of P(y > k)) has a near tie.

    At a tie the running minimum is not differentiable: which task receives the
    gradient depends on rounding in the last bit (e.g. sigmoid(-1.2e-7) vs
    sigmoid(0) in float32), so kernel and reference may both be right. Those
    rows are left out of the gradient comparison; every other row must agree.
    """
    n, t = x.shape
    if head != "coral" or t < 2 or n == 0:
        return torch.zeros(n, dtype=torch.bool)
    cum = torch.sigmoid(x.double())
    prev_min = torch.cummin(cum, dim=1).values[:, :-1]
    return ((cum[:, 1:] - prev_min).abs() <= 1e-6).any(dim=1)


def test_predict_bundles_labels_and_probs():
    x, _ = random_batch(16, 5, seed=13)
    for head in ("coral", "corn"):
        p = facecore.ordinal_predict(x, head, 0.4)
        assert torch.equal(p.labels, facecore.ordinal_labels(x, head, 0.4))
        for a, b in zip(p[1:], facecore.ordinal_probs(x, head)):
            assert torch.equal(a, b)


def test_prediction_of_empty_batch_and_nan():
    assert facecore.ordinal_labels(torch.zeros(0, 3)).shape == (0,)
    p = facecore.ordinal_probs(torch.zeros(0, 3), "corn")
    assert [tuple(a.shape) for a in p] == [(0, 3), (0, 4), (0,)]
    x = torch.tensor([[2.0, float("nan"), 2.0]])
    assert facecore.ordinal_labels(x, "coral").tolist() == [2]  # NaN never exceeds
    assert facecore.ordinal_labels(x, "corn").tolist() == [1]  # ... nor anything after it
    assert torch.isnan(facecore.ordinal_probs(x, "corn").expected).all()
