"""The fused rank prediction ``facecore.ordinal_predict`` (one pass, selected outputs).

Against the pure-PyTorch reference and coral-pytorch: every head (CORAL, Niu,
CORN), every dtype, every subset of outputs, labels-only vs the full pass,
CORN's log-space product at extreme logits, NaN / +-inf, long rows that take
the vectorised path chunk after chunk, and the op boundary (opcheck,
gradcheck, torch.compile, torch.export with a dynamic batch, fake kernels).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from coral_pytorch.dataset import corn_label_from_logits, proba_to_label
from hypothesis import given, settings
from hypothesis import strategies as st
from ordinal_cases import DTYPES, assert_close, ordinal_batch, random_batch
from torch.library import opcheck

import facecore
from facecore.reference import ordinal as R

HEADS = ["coral", "niu", "corn"]
FLAGS = list(itertools.product([False, True], repeat=4))  # labels, cum, cls, expected
FIELDS = ("labels", "cum_probs", "class_probs", "expected")


def _full(x, head, threshold=0.5):
    return facecore.ordinal_predict(x, head, threshold)


def _reference(x, head, threshold=0.5):
    return (R.ordinal_labels(x, head, threshold), *R.ordinal_probs(x, head))


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("dtype", DTYPES)
@given(batch=ordinal_batch(weights=False), threshold=st.sampled_from([0.5, 0.3, 0.9]))
@settings(max_examples=25, deadline=None)
def test_full_prediction_matches_reference(head, dtype, batch, threshold):
    x64, _, _ = batch
    x = x64.to(dtype)
    got = _full(x, head, threshold)
    ref = _reference(x, head, threshold)
    n, t = x.shape
    assert [tuple(a.shape) for a in got] == [(n,), (n, t), (n, t + 1), (n,)]
    assert got.labels.dtype == torch.int64
    if head != "corn":
        assert torch.equal(got.labels, ref[0])  # decided exactly: x > logit(t)
    else:
        assert torch.equal(got.labels, facecore.ordinal_labels(x, head, threshold))
    for a, b in zip(got[1:], ref[1:]):
        assert a.dtype == dtype
        assert_close(a, b, dtype)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "".join("LCPE"[i] if v else "-" for i, v in enumerate(f)))
def test_selected_outputs_equal_the_full_pass(head, flags):
    x, _ = random_batch(77, 37, seed=3)  # 37 tasks: full chunks and a partial one
    full = _full(x, head)
    got = facecore.ordinal_predict(x, head, 0.5, *flags)
    for name, want, a, b in zip(FIELDS, flags, got, full):
        if want:
            assert torch.equal(a, b), name
        else:
            assert a.shape == (0,), name  # not computed


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t", [1, 7, 16, 100, 1000])
def test_labels_only_equals_full_pass_and_peers(head, dtype, t):
    x, _ = random_batch(300, t, seed=t, dtype=dtype)
    only = facecore.ordinal_predict(x, head, 0.5, True, False, False, False).labels
    assert torch.equal(only, _full(x, head).labels)
    assert torch.equal(only, facecore.ordinal_labels(x, head))
    if dtype == torch.float32:
        peer = corn_label_from_logits(x) if head == "corn" else proba_to_label(torch.sigmoid(x))
        assert torch.equal(only, peer)


def test_labels_and_probs_ops_are_views_of_the_same_pass():
    x, _ = random_batch(64, 23, seed=4)
    for head in HEADS:
        p = facecore.ordinal_predict(x, head, 0.4)
        assert torch.equal(p.labels, facecore.ordinal_labels(x, head, 0.4))
        for a, b in zip(p[1:], facecore.ordinal_probs(x, head)):
            assert torch.equal(a, b)


def test_niu_decodes_exactly_as_coral():
    x, _ = random_batch(50, 12, seed=5)
    for a, b in zip(facecore.ordinal_predict(x, "niu"), facecore.ordinal_predict(x, "coral")):
        assert torch.equal(a, b)
    for a, b in zip(_reference(x, "niu"), _reference(x, "coral")):
        assert torch.equal(a, b)


def test_corn_log_space_product_is_exact_at_extreme_logits():
    # P(y > k) = prod_{j<=k} sigmoid(x_j) spans 1 - 1e-13 down to the float
    # underflow; the kernel sums log-sigmoids, so every representable
    # probability keeps float precision (relative, not absolute).
    rows = [
        [-20.0] * 6,  # P = e^{-20 (k+1)}: 2e-9, 4e-18, 9e-27, 2e-35, then denormal / 0
        [30.0] * 5 + [-30.0] * 3,
        [60.0, -60.0, 60.0, -60.0, 0.0, 0.0],
        [-100.0, 5.0, 5.0, 5.0, 5.0, 5.0],
        [float("inf"), 3.0, float("-inf"), 1.0, 2.0, 3.0],
    ]
    t = max(len(r) for r in rows)
    x = torch.tensor([r + [0.0] * (t - len(r)) for r in rows])
    got = facecore.ordinal_predict(x, "corn")
    exact = torch.cumprod(torch.sigmoid(x.double()), 1)  # float64 product: the truth here
    ref = R.ordinal_probs(x.double(), "corn").cum_probs
    torch.testing.assert_close(ref, exact, rtol=1e-12, atol=0)
    normal = exact > 1e-37
    rel = ((got.cum_probs.double() - exact).abs() / exact)[normal]
    assert rel.max() < 2e-6, rel.max()
    assert (got.cum_probs.double()[~normal] <= 1e-37).all()
    cls_exact = torch.cat([torch.ones(len(rows), 1, dtype=torch.float64), exact], 1) - torch.cat(
        [exact, torch.zeros(len(rows), 1, dtype=torch.float64)], 1
    )
    torch.testing.assert_close(got.class_probs.double(), cls_exact, rtol=1e-5, atol=1e-7)
    assert torch.equal(got.labels, R.ordinal_labels(x, "corn"))
    # float64 logits: float64 all the way
    got64 = facecore.ordinal_predict(x.double(), "corn")
    torch.testing.assert_close(got64.cum_probs, exact, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("head", HEADS)
def test_nan_and_infinite_logits_in_long_rows(head):
    # 53 tasks: several vector chunks; a NaN in the middle of a chunk must
    # poison the CORAL envelope from there on (torch.cummin), never count
    x, _ = random_batch(6, 53, seed=6)
    x[1, 20] = float("nan")
    x[2, 0] = float("nan")
    x[3, 52] = float("nan")
    x[4, 10] = float("inf")
    x[5, 30] = float("-inf")
    got = _full(x, head)
    ref = _reference(x, head)
    if head != "corn":
        assert torch.equal(got.labels, ref[0])
    for a, b in zip(got[1:], ref[1:]):
        torch.testing.assert_close(a, b, rtol=2e-5, atol=2e-6, equal_nan=True)
    assert torch.isnan(got.expected[1:4]).all() and torch.isfinite(got.expected[[0, 4, 5]]).all()


@pytest.mark.parametrize("head", HEADS)
def test_non_contiguous_and_half_inputs(head):
    base, _ = random_batch(40, 2 * 19, seed=7)
    x = base[:, ::2]
    assert not x.is_contiguous()
    for a, b in zip(_full(x, head), _full(x.contiguous(), head)):
        assert torch.equal(a, b)
    for dtype in (torch.float16, torch.bfloat16):
        xh = x.to(dtype)
        got = _full(xh, head)
        for a, b in zip(got[1:], _reference(xh, head)[1:]):
            assert a.dtype == dtype
            assert_close(a, b, dtype)


@pytest.mark.parametrize("capability", ["default", "avx2"])
def test_cpu_capabilities_agree(capability, tmp_path):
    # The row kernels are built per CPU capability (csrc/ops/cpu/vec_isa.h);
    # ATen's ATEN_CPU_CAPABILITY picks them: every build predicts the same.
    import os
    import subprocess
    import sys

    code = f"""
import torch, facecore
from ordinal_cases import random_batch
x, _ = random_batch(200, 53, seed=12)
x[3, 7] = float("nan")
out = {{}}
for h in ("coral", "corn"):
    for dt in (torch.float32, torch.float64, torch.bfloat16):
        out[(h, str(dt))] = tuple(facecore.ordinal_predict(x.to(dt), h, 0.3))
torch.save(out, {str(tmp_path / "out.pt")!r})
"""
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__)] + sys.path)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    theirs = torch.load(tmp_path / "out.pt")
    x, _ = random_batch(200, 53, seed=12)
    x[3, 7] = float("nan")
    for (head, dt), other in theirs.items():
        dtype = {"torch.float32": torch.float32, "torch.float64": torch.float64}.get(dt, torch.bfloat16)
        mine = facecore.ordinal_predict(x.to(dtype), head, 0.3)
        if head == "coral":
            assert torch.equal(mine.labels, other[0])
        else:  # log-sums in another order: a label may flip at a float tie
            assert (mine.labels != other[0]).sum() <= 1
        for a, b in zip(mine[1:], other[1:]):
            assert_close(a, b, dtype)


# ---------------------------------------------------------------- op boundary


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("flags", [(True, True, True, True), (True, False, False, False), (False, True, True, True), (False, True, False, True), (False, False, True, False)])
def test_opcheck_predict(head, flags):
    x, _ = random_batch(9, 5, seed=8)
    labels, cum, cls, expected = flags
    x = x.requires_grad_(True) if (cum or cls or expected) else x
    result = opcheck(torch.ops.facecore.ordinal_predict.default, (x, head, 0.3, cum, cls, expected, labels))
    assert set(result.values()) == {"SUCCESS"}, result


@pytest.mark.parametrize("head", HEADS)
def test_gradcheck_predict_with_selected_outputs(head):
    x, _ = random_batch(5, 6, seed=9, dtype=torch.float64)
    x.requires_grad_(True)
    for flags in [(True, True, True, True), (False, False, True, True), (True, True, False, False), (False, False, False, True)]:
        def fn(t, flags=flags):
            out = facecore.ordinal_predict(t, head, 0.5, *flags)
            return tuple(o for o, want in zip(out[1:], flags[1:]) if want)

        assert torch.autograd.gradcheck(fn, (x,))
    # and the gradient equals ordinal_probs' gradient
    p = facecore.ordinal_predict(x, head)
    (ga,) = torch.autograd.grad(p.cum_probs.sum() + p.class_probs[:, 1:].sum() + 2 * p.expected.sum(), x)
    q = facecore.ordinal_probs(x, head)
    (gb,) = torch.autograd.grad(q.cum_probs.sum() + q.class_probs[:, 1:].sum() + 2 * q.expected.sum(), x)
    torch.testing.assert_close(ga, gb)
    assert not p.labels.requires_grad


def test_labels_only_prediction_builds_no_graph():
    x, _ = random_batch(5, 3, seed=10)
    p = facecore.ordinal_predict(x.requires_grad_(True), "coral", 0.5, True, False, False, False)
    assert p.labels.grad_fn is None and not p.labels.requires_grad


class _Decoder(torch.nn.Module):
    def forward(self, logits: torch.Tensor):
        a = facecore.ordinal_predict(logits, "corn", 0.5, True, False, True, True)
        b = facecore.ordinal_predict(logits, "niu", 0.4, True, False, False, False)
        return a.labels, a.class_probs, a.expected, b.labels


def test_compile_export_and_script_with_selected_outputs(tmp_path, monkeypatch, fresh_python):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    x, _ = random_batch(12, 6, seed=11)
    eager = _Decoder()(x)
    compiled = torch.compile(_Decoder(), fullgraph=True)(x)
    for a, b in zip(compiled, eager):
        assert torch.equal(a, b)
    scripted = torch.jit.script(_Decoder())
    for a, b in zip(scripted(x), eager):
        assert torch.equal(a, b)
    batch = torch.export.Dim("batch", min=0)
    ep = torch.export.export(_Decoder(), (x,), dynamic_shapes=({0: batch},))
    path = tmp_path / "decoder.pt2"
    torch.export.save(ep, str(path))
    loaded = torch.export.load(str(path)).module()
    for n in (0, 1, 33):
        xn, _ = random_batch(n, 6, seed=n)
        for a, b in zip(loaded(xn), _Decoder()(xn)):
            assert torch.equal(a, b)
    out = fresh_python(
        f"""
        import torch, facecore
        m = torch.export.load({str(path)!r}).module()
        x = torch.randn(21, 6)
        got = m(x)
        a = facecore.ordinal_predict(x, "corn", 0.5, True, False, True, True)
        want = (a.labels, a.class_probs, a.expected, facecore.ordinal_labels(x, "niu", 0.4))
        print(all(torch.equal(p, q) for p, q in zip(got, want)))
        """
    )
    assert out.strip().splitlines()[-1] == "True"


def test_fake_kernel_shapes_are_symbolic():
    from torch.fx.experimental.proxy_tensor import make_fx

    def f(x):
        return torch.ops.facecore.ordinal_predict(x, "coral", 0.5, True, False, True, True)

    gm = make_fx(f, tracing_mode="symbolic")(torch.randn(8, 5))
    node = next(n for n in gm.graph.nodes if n.target is torch.ops.facecore.ordinal_predict.default)
    cum, cls, expected, labels = node.meta["val"]
    n = cum.shape[0]
    assert isinstance(n, torch.SymInt)
    assert cum.shape[1] == 5 and cls.shape == (0,)
    assert expected.shape[0] is n or expected.shape[0] == n
    assert labels.shape[0] == n and labels.dtype == torch.int64
