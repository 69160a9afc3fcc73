"""Fused face-matching kernels (CPU) against the pure-PyTorch reference.

Distances, triplet and contrastive losses, forward and backward, every
option, every dtype, random batches (hypothesis) and edge cases: B = 0 / 1,
one identity, no mined triplet, duplicates (zero distances, ties), NaN,
non-contiguous inputs, int32 labels.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from matching_cases import (
    DTYPES,
    METRICS,
    MININGS,
    REDUCTIONS,
    assert_close,
    embeddings_batch,
    matching_batch,
    pk_batch,
)

import facecore.ops.matching as M
from facecore.reference import matching as R


def dist_of(x, metric="euclidean", normalize=False):
    return R.pairwise_distance(x, None, metric, normalize).detach()


def grad_of(fn, t, *args, **kwargs):
    t = t.detach().clone().requires_grad_(True)
    out = fn(t, *args, **kwargs)
    (g,) = torch.autograd.grad(out.loss if hasattr(out, "loss") else out, t, allow_unused=True)
    return out, torch.zeros_like(t) if g is None else g


# --------------------------------------------------------------------------- distances


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("normalize", [False, True])
@given(batch=matching_batch(), m=st.integers(0, 6))
@settings(max_examples=15)
def test_distance_matches_reference(metric, normalize, batch, m):
    x, _ = batch
    y = torch.randn(m, x.shape[1], dtype=torch.float64)
    for other in (None, y):
        a = M.pairwise_distance(x, other, metric, normalize)
        b = R.pairwise_distance(x, other, metric, normalize)
        assert_close(a, b, torch.float64)
        if x.numel() and (other is None or other.numel()):
            w = torch.randn_like(a)
            xa = x.clone().requires_grad_(True)
            xb = x.clone().requires_grad_(True)
            ga = torch.autograd.grad((M.pairwise_distance(xa, other, metric, normalize) * w).sum(), xa)
            gb = torch.autograd.grad((R.pairwise_distance(xb, other, metric, normalize) * w).sum(), xb)
            assert_close(ga[0], gb[0], torch.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
def test_distance_dtypes(dtype, metric):
    x, _ = embeddings_batch(40, 24, 5, seed=1, dtype=dtype)
    a = M.pairwise_distance(x, None, metric, False)
    b = R.pairwise_distance(x, None, metric, False)
    assert a.dtype == dtype
    assert_close(a, b, dtype)


def test_distance_diagonal_is_exactly_zero_and_gradient_finite():
    x = torch.randn(50, 64) * 100
    d = M.pairwise_distance(x.requires_grad_(True))
    assert torch.equal(d.diagonal(), torch.zeros(50))
    d.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_distance_of_near_duplicates_is_accurate():
    # the product form |x|^2 + |y|^2 - 2<x, y> loses everything here in float32;
    # the kernel recomputes such entries from the differences.
    x = torch.randn(3, 128) * 10
    y = x + 1e-3 * torch.randn(3, 128)
    d = M.pairwise_distance(x, y).diagonal()
    exact = (x.double() - y.double()).norm(dim=1).float()
    torch.testing.assert_close(d, exact, rtol=1e-5, atol=0)


def test_zero_distance_gradient_is_zero_not_nan():
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    d = M.pairwise_distance(x)
    assert d[0, 1] == 0
    d[0, 1].backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_zero_vector_cosine_and_normalize_follow_f_normalize():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
    torch.testing.assert_close(M.pairwise_distance(x, None, "cosine"), torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(M.pairwise_distance(x, None, "euclidean", True)[0, 1], torch.tensor(1.0, dtype=torch.float64))


def test_distance_hand_computed():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    y = torch.tensor([[0.0, 1.0]])
    torch.testing.assert_close(M.pairwise_distance(x, y), torch.tensor([[1.0], [math.sqrt(18.0)]]))
    torch.testing.assert_close(M.pairwise_distance(x, y, "sqeuclidean"), torch.tensor([[1.0], [18.0]]))
    torch.testing.assert_close(M.pairwise_distance(x, y, "cosine")[1], torch.tensor([1 - 4 / 5]))


# --------------------------------------------------------------------------- triplets


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mining", MININGS)
@given(
    batch=matching_batch(),
    margin=st.sampled_from([0.0, 0.05, 0.3, 1.0, -0.2]),
    mining_margin=st.sampled_from([None, 0.0, 0.2, 0.7]),
    swap=st.booleans(),
    soft=st.booleans(),
    reduction=st.sampled_from(REDUCTIONS),
)
@settings(max_examples=25)
def test_triplet_matches_reference(dtype, mining, batch, margin, mining_margin, swap, soft, reduction):
    x, labels = batch
    d = dist_of(x).to(dtype)  # both get the same matrix: same mining decisions
    args = (labels, margin, swap, soft, mining, mining_margin, reduction)
    out, g = grad_of(M.triplet_margin_loss_from_dist, d, *args)
    ref, g_ref = grad_of(R.triplet_margin_loss, d, *args)
    assert_close(out.loss, ref.loss, dtype)
    assert_close(g, g_ref, dtype)
    assert out.num_active.item() == ref.num_active.item()
    assert out.num_terms.item() == ref.num_terms.item()
    assert out.num_active.dtype == torch.int64 and out.loss.shape == ()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mining", ["none", "semihard", "batch_hard"])
@pytest.mark.parametrize("swap", [False, True])
def test_triplet_dtypes(dtype, mining, swap):
    x, labels = pk_batch(6, 4, seed=3, dtype=torch.float64)
    d = dist_of(x).to(dtype)
    args = (labels, 0.2, swap, False, mining, 0.5, "mean_nonzero")
    out, g = grad_of(M.triplet_margin_loss_from_dist, d, *args)
    ref, g_ref = grad_of(R.triplet_margin_loss, d, *args)
    assert out.loss.dtype == dtype and g.dtype == dtype
    assert_close(out.loss, ref.loss, dtype)
    assert_close(g, g_ref, dtype)


def test_triplet_hand_computed():
    # 1-D embeddings 0, 1 (identity 0) and 1.5 (identity 1), margin 1, euclidean.
    x = torch.tensor([[0.0], [1.0], [1.5]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    d = M.pairwise_distance(x)
    # triplets: (0, 1, 2): 1 - 1.5 + 1 = 0.5 ; (1, 0, 2): 1 - 0.5 + 1 = 1.5
    out = M.triplet_margin_loss_from_dist(d, labels, margin=1.0)
    assert out.loss.item() == pytest.approx(1.0) and out.num_active == 2 and out.num_terms == 2
    assert M.triplet_margin_loss_from_dist(d, labels, 1.0, reduction="sum").loss.item() == pytest.approx(2.0)
    # swap: (1, 0, 2) uses min(d_an = 0.5, d_pn = 1.5) = 0.5 -> same; (0, 1, 2): min(1.5, 0.5) -> 1.5
    assert M.triplet_margin_loss_from_dist(d, labels, 1.0, swap=True, reduction="sum").loss.item() == pytest.approx(3.0)
    # mining: t = d_an - d_ap = 0.5 (a=0), -0.5 (a=1); hard with m=1 keeps only a=1
    hard = M.triplet_margin_loss_from_dist(d, labels, 1.0, mining="hard", reduction="sum")
    assert hard.loss.item() == pytest.approx(1.5) and hard.num_terms == 1
    semi = M.triplet_margin_loss_from_dist(d, labels, 1.0, mining="semihard", reduction="sum")
    assert semi.loss.item() == pytest.approx(0.5) and semi.num_terms == 1
    easy = M.triplet_margin_loss_from_dist(d, labels, 1.0, mining="easy", mining_margin=0.25)
    assert easy.num_terms == 1 and easy.loss.item() == pytest.approx(0.5)
    soft = M.triplet_margin_loss_from_dist(d, labels, 1.0, soft=True, reduction="mean")
    assert soft.loss.item() == pytest.approx((math.log1p(math.exp(0.5)) + math.log1p(math.exp(1.5))) / 2)


@pytest.mark.parametrize("mining", MININGS)
@pytest.mark.parametrize(
    "labels",
    [torch.zeros(0, dtype=torch.long), torch.tensor([3]), torch.tensor([1, 1, 1, 1]), torch.tensor([0, 1, 2, 3])],
    ids=["B=0", "B=1", "one identity", "no positives"],
)
def test_no_triplet_gives_zero_loss_and_zero_gradient(mining, labels):
    x = torch.randn(len(labels), 3, requires_grad=True)
    for reduction in REDUCTIONS:
        out = M.triplet_margin_loss(x, labels, 0.5, mining=mining, reduction=reduction)
        assert out.loss.item() == 0.0 and out.num_terms.item() == 0
        (g,) = torch.autograd.grad(out.loss, x)
        assert torch.equal(g, torch.zeros_like(x))


def test_margin_satisfied_everywhere_gives_zero_not_nan():
    x = torch.tensor([[0.0], [0.1], [10.0], [10.1]], requires_grad=True)
    out = M.triplet_margin_loss(x, torch.tensor([0, 0, 1, 1]), margin=1.0)
    assert out.loss.item() == 0.0 and out.num_active == 0 and out.num_terms == 8
    out.loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("mining", ["none", "all", "batch_hard"])
def test_nan_embeddings_documented_behaviour(mining):
    x, labels = pk_batch(3, 3, seed=5, dtype=torch.float64)
    x[0, 0] = float("nan")
    d = M.pairwise_distance(x)
    assert torch.isnan(d[0, 1:]).all() and torch.isnan(d[1:, 0]).all() and d[0, 0].isnan()
    ref = [R.triplet_margin_loss(d, labels, 0.5, mining=mining, reduction=r) for r in REDUCTIONS]
    out = [M.triplet_margin_loss_from_dist(d, labels, 0.5, mining=mining, reduction=r) for r in REDUCTIONS]
    for a, b in zip(out, ref):
        assert_close(a.loss, b.loss, torch.float64)
        assert a.num_active == b.num_active and a.num_terms == b.num_terms
    # mean_nonzero skips NaN terms (as PML's AvgNonZeroReducer): finite
    assert torch.isfinite(out[0].loss)
    # 'sum' sees the NaN terms unless the miner dropped them (t is NaN: never mined)
    assert torch.isnan(out[2].loss).item() == (mining != "all")


def test_non_contiguous_and_int32_labels():
    x, labels = pk_batch(5, 4, seed=7, dtype=torch.float64)
    d = dist_of(x)
    dt = (d + 0.05 * torch.rand_like(d)).t()  # transposed strides (any matrix is accepted)
    assert not dt.is_contiguous()
    lab = torch.stack([labels.int(), labels.int()], 1)[:, 0]
    assert not lab.is_contiguous()
    a, ga = grad_of(M.triplet_margin_loss_from_dist, dt, lab, 0.3, True, False, "all", None, "mean")
    b, gb = grad_of(R.triplet_margin_loss, dt.contiguous(), labels, 0.3, True, False, "all", None, "mean")
    assert_close(a.loss, b.loss, torch.float64)
    assert_close(ga, gb, torch.float64)


def test_arbitrary_label_values():
    x, labels = pk_batch(4, 3, seed=8, dtype=torch.float64)
    d = dist_of(x)
    remapped = torch.tensor([-7, 10**12, 3, 0])[labels]
    a = M.triplet_margin_loss_from_dist(d, remapped, 0.3, swap=True)
    b = M.triplet_margin_loss_from_dist(d, labels, 0.3, swap=True)
    assert torch.equal(a.loss, b.loss) and a.num_terms == b.num_terms


def _long_rows_batch(seed=17):
    """B = 93 (five 16-lane chunks and a partial one), one identity of 21 images
    (20 positives per anchor: more than one block of 16), the rest small."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.zeros(21, dtype=torch.long), torch.randint(1, 12, (72,), generator=g)])
    labels = labels[torch.randperm(93, generator=g)]
    x = torch.randn(93, 8, generator=g, dtype=torch.float64)
    return x, labels


@pytest.mark.parametrize("mining", ["none", "all", "hard", "semihard", "easy"])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_triplet_vectorised_pass_long_rows_many_positives(mining, soft, reduction):
    x, labels = _long_rows_batch()
    for dtype in (torch.float64, torch.float32):
        d = dist_of(x).to(dtype)
        args = (labels, 0.2, False, soft, mining, 0.4, reduction)
        out, g = grad_of(M.triplet_margin_loss_from_dist, d, *args)
        ref, g_ref = grad_of(R.triplet_margin_loss, d, *args)
        assert out.num_terms.item() == ref.num_terms.item() > 0
        assert out.num_active.item() == ref.num_active.item()
        assert_close(out.loss, ref.loss, dtype)
        assert_close(g, g_ref, dtype)


@pytest.mark.parametrize("capability", ["default", "avx2"])
def test_triplet_cpu_capabilities_agree(capability, tmp_path):
    # The row kernels are built per CPU capability (csrc/ops/cpu/vec_isa.h);
    # ATen's ATEN_CPU_CAPABILITY picks them: every build gives the same results.
    import os
    import subprocess
    import sys

    code = f"""
import torch, facecore.ops.matching as M
from facecore.reference import matching as R
from test_matching_ops import _long_rows_batch, dist_of
x, labels = _long_rows_batch()
out = {{}}
for dtype in (torch.float64, torch.float32):
    for mining in ("all", "semihard", "none"):
        for soft in (False, True):
            d = dist_of(x).to(dtype).requires_grad_(True)
            r = M.triplet_margin_loss_from_dist(d, labels, 0.2, False, soft, mining, 0.4, "mean")
            (g,) = torch.autograd.grad(r.loss, d)
            out[(str(dtype), mining, soft)] = (r.loss.detach(), g, int(r.num_active), int(r.num_terms))
torch.save(out, {str(tmp_path / "out.pt")!r})
print(torch.backends.cpu.get_cpu_capability())
"""
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__)] + sys.path)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    theirs = torch.load(tmp_path / "out.pt")
    x, labels = _long_rows_batch()
    for (dt, mining, soft), (loss, g, act, terms) in theirs.items():
        dtype = torch.float64 if dt == "torch.float64" else torch.float32
        d = dist_of(x).to(dtype).requires_grad_(True)
        r = M.triplet_margin_loss_from_dist(d, labels, 0.2, False, soft, mining, 0.4, "mean")
        (mine,) = torch.autograd.grad(r.loss, d)
        assert (int(r.num_active), int(r.num_terms)) == (act, terms)
        assert_close(r.loss.detach(), loss, dtype)
        assert_close(mine, g, dtype)


@pytest.mark.parametrize("threads", [1, 3])
def test_triplet_threads_agree(threads):
    x, labels = pk_batch(16, 8, seed=9, dtype=torch.float64)
    d = dist_of(x)
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        out = [grad_of(M.triplet_margin_loss_from_dist, d, labels, 0.2, swap, False, "none", None, "mean_nonzero") for swap in (False, True)]
    finally:
        torch.set_num_threads(prev)
    for swap, (o, g) in zip((False, True), out):
        ref, g_ref = grad_of(R.triplet_margin_loss, d, labels, 0.2, swap, False, "none", None, "mean_nonzero")
        assert_close(o.loss, ref.loss, torch.float64)
        assert_close(g, g_ref, torch.float64)


# ------------------------------------------------------------------------ contrastive


@given(
    batch=matching_batch(),
    pos_margin=st.sampled_from([0.0, 0.3, 1.0]),
    neg_margin=st.sampled_from([0.5, 1.0, 4.0]),
    form=st.sampled_from(["double_margin", "hadsell"]),
    reduction=st.sampled_from(REDUCTIONS),
)
@settings(max_examples=40)
def test_contrastive_matches_reference(batch, pos_margin, neg_margin, form, reduction):
    x, labels = batch
    d = dist_of(x)
    args = (labels, pos_margin, neg_margin, form, reduction)
    out, g = grad_of(M.contrastive_loss_from_dist, d, *args)
    ref, g_ref = grad_of(R.contrastive_loss, d, *args)
    assert_close(out.loss, ref.loss, torch.float64)
    assert_close(g, g_ref, torch.float64)
    assert out.num_active.item() == ref.num_active.item()
    assert out.num_terms.item() == ref.num_terms.item()


def test_contrastive_hadsell_hand_computed():
    # Hadsell et al.: 1/2 (1-Y) D^2 + 1/2 Y max(0, m - D)^2, Y = 1 for dissimilar.
    x = torch.tensor([[0.0], [1.0], [1.5]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    d = M.pairwise_distance(x)
    out = M.contrastive_loss_from_dist(d, labels, 0.0, 2.0, "hadsell", "sum")
    # ordered pairs: positive (0,1),(1,0): 1/2 * 1^2 each; negative (0,2),(2,0): 1/2 (2-1.5)^2,
    # (1,2),(2,1): 1/2 (2-0.5)^2
    expected = 2 * 0.5 + 2 * 0.5 * 0.25 + 2 * 0.5 * 2.25
    assert out.loss.item() == pytest.approx(expected)
    assert out.num_terms == 6 and out.num_active == 6


@pytest.mark.parametrize("dtype", DTYPES)
def test_contrastive_dtypes(dtype):
    x, labels = pk_batch(5, 4, seed=4, dtype=torch.float64)
    d = dist_of(x).to(dtype)
    out, g = grad_of(M.contrastive_loss_from_dist, d, labels, 0.2, 3.0, "double_margin", "mean_nonzero")
    ref, g_ref = grad_of(R.contrastive_loss, d, labels, 0.2, 3.0, "double_margin", "mean_nonzero")
    assert_close(out.loss, ref.loss, dtype)
    assert_close(g, g_ref, dtype)


def test_contrastive_empty_and_single():
    for b in (0, 1):
        x = torch.randn(b, 4, requires_grad=True)
        out = M.contrastive_loss(x, torch.zeros(b, dtype=torch.long))
        assert out.loss.item() == 0.0 and out.num_terms == 0
        (g,) = torch.autograd.grad(out.loss, x)
        assert g.shape == x.shape and not g.any()


# ------------------------------------------------------------------ embeddings end to end


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("mining", ["none", "semihard", "batch_hard"])
def test_loss_from_embeddings_matches_reference(metric, mining):
    x, labels = pk_batch(6, 4, seed=11, dtype=torch.float64)
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    a = M.triplet_margin_loss(xa, labels, 0.2, metric, True, True, False, mining, 0.4)
    b = R.triplet_margin_loss(R.pairwise_distance(xb, None, metric, True), labels, 0.2, True, False, mining, 0.4)
    a.loss.backward()
    b.loss.backward()
    assert_close(a.loss, b.loss, torch.float64)
    assert_close(xa.grad, xb.grad, torch.float64)


def _peak_extra_bytes(fn) -> int:
    """Highest number of bytes allocated during fn() and not yet freed (allocator events)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
        key=lambda e: e.start_ns(),
    )
    current = peak = 0
    for e in events:
        current += e.nbytes()
        peak = max(peak, current)
    return peak


@pytest.mark.parametrize("mining", ["none", "semihard", "batch_hard"])
def test_memory_is_quadratic_not_cubic(mining):
    # B = 384: a B^3 byte mask alone would be 57 MB; the fused step (distances,
    # dL/d(dist), the distance backward and the gradient) stays within a few B^2 floats.
    b = 384
    x, labels = pk_batch(b // 8, 8, d=64, seed=12)
    x.requires_grad_(True)

    def step():
        M.triplet_margin_loss(x, labels, 0.1, "euclidean", True, True, False, mining, 0.3).loss.backward()
        x.grad = None

    peak = _peak_extra_bytes(step)
    assert 0 < peak < 8 * b * b * 4, peak
