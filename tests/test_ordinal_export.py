"""The ordinal ops inside TorchScript, torch.compile and torch.export."""

from __future__ import annotations

import json

import pytest
import torch
from ordinal_cases import random_batch

import facecore
from facecore.reference import ordinal as R


class OrdinalModel(torch.nn.Module):
    """A CORAL-style head on top of a linear feature map, using every op."""

    def __init__(self, d: int = 6, t: int = 4):
        super().__init__()
        self.fc = torch.nn.Linear(d, 1, bias=False)
        self.bias = torch.nn.Parameter(torch.linspace(1.0, -1.0, t))
        self.coral = facecore.CoralLoss(num_classes=t + 1)
        self.corn = facecore.CornLoss(num_classes=t + 1, importance_weights=torch.linspace(1.0, 0.5, t))

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        logits = self.fc(x) + self.bias
        loss = self.coral(logits, y) + self.corn(logits, y)
        pred = facecore.ordinal_predict(logits, "coral", 0.5)
        return loss, pred.labels, pred.expected


def _inputs(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randint(0, 5, (n,), generator=g)


def test_loss_modules_script():
    x, y = random_batch(8, 4, seed=1)
    for mod in (facecore.CoralLoss(), facecore.CornLoss(num_classes=5, importance_weights=torch.rand(4))):
        scripted = torch.jit.script(mod)
        torch.testing.assert_close(scripted(x, y), mod(x, y))


def test_torchscript_round_trip_in_a_fresh_process_with_gradients(tmp_path, fresh_python):
    torch.manual_seed(0)
    model = OrdinalModel()
    scripted = torch.jit.script(model)
    path = tmp_path / "ordinal.pt"
    scripted.save(str(path))
    x, y = _inputs()
    loss, labels, expected = model(x, y)
    loss.backward()
    grads = {n: p.grad.tolist() for n, p in model.named_parameters()}

    # The fresh process loads only torch and the compiled library (no facecore
    # Python package): forward and backward run on the C++ ops and C++ autograd.
    out = fresh_python(
        f"""
        import json, torch
        torch.ops.load_library({facecore.library_path()!r})
        m = torch.jit.load({str(path)!r})
        g = torch.Generator().manual_seed(0)
        x = torch.randn(10, 6, generator=g); y = torch.randint(0, 5, (10,), generator=g)
        loss, labels, expected = m(x, y)
        loss.backward()
        print(json.dumps({{"loss": loss.item(), "labels": labels.tolist(),
                          "expected": expected.tolist(),
                          "grads": {{n: p.grad.tolist() for n, p in m.named_parameters()}}}}))
        """
    )
    got = json.loads(out.strip().splitlines()[-1])
    assert got["loss"] == pytest.approx(loss.item(), rel=1e-6)
    assert got["labels"] == labels.tolist()
    assert got["expected"] == pytest.approx(expected.tolist(), rel=1e-6)
    for name, g in grads.items():
        torch.testing.assert_close(torch.tensor(got["grads"][name]), torch.tensor(g), rtol=1e-5, atol=1e-7)


def test_torch_compile_fullgraph_forward_and_backward(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    x, y = random_batch(16, 5, seed=2)
    w = torch.rand(5)

    def step(logits, labels):
        p = facecore.ordinal_probs(logits, "corn")
        return (
            facecore.coral_loss(logits, labels, w)
            + facecore.corn_loss(logits, labels, None, "sum")
            + p.expected.mean()
        )

    compiled = torch.compile(step, fullgraph=True)
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    a = compiled(xa, y)
    b = step(xb, y)
    a.backward()
    b.backward()
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(xa.grad, xb.grad)
    # and the compiled fused op equals the reference
    torch.testing.assert_close(
        a.detach(),
        R.coral_loss(x, y, w) + R.corn_loss(x, y, None, "sum") + R.ordinal_probs(x, "corn").expected.mean(),
        rtol=1e-5,
        atol=1e-5,
    )


class ExportedHead(torch.nn.Module):
    def forward(self, logits: torch.Tensor, labels: torch.Tensor):
        per_sample = facecore.coral_loss(logits, labels, None, "none")
        probs = facecore.ordinal_probs(logits, "corn")
        return per_sample, facecore.ordinal_labels(logits, "corn", 0.5), probs.class_probs


def test_torch_export_with_dynamic_batch_saved_and_loaded(tmp_path, fresh_python):
    x, y = random_batch(8, 4, seed=3)
    batch = torch.export.Dim("batch", min=0)
    ep = torch.export.export(ExportedHead(), (x, y), dynamic_shapes=({0: batch}, {0: batch}))
    path = tmp_path / "head.pt2"
    torch.export.save(ep, str(path))
    loaded = torch.export.load(str(path)).module()
    for n in (1, 8, 33):
        xn, yn = random_batch(n, 4, seed=n)
        for a, b in zip(loaded(xn, yn), ExportedHead()(xn, yn)):
            torch.testing.assert_close(a, b)
    out = fresh_python(
        f"""
        import torch, facecore
        m = torch.export.load({str(path)!r}).module()
        x = torch.randn(21, 4); y = torch.randint(0, 5, (21,))
        a = m(x, y); b = (facecore.coral_loss(x, y, None, "none"),
                          facecore.ordinal_labels(x, "corn"),
                          facecore.ordinal_probs(x, "corn").class_probs)
        print(all(torch.equal(p, q) for p, q in zip(a, b)))
        """
    )
    assert out.strip().splitlines()[-1] == "True"
