"""The matching ops inside TorchScript, torch.compile and torch.export."""

from __future__ import annotations

import json

import pytest
import torch
from matching_cases import pk_batch

import facecore.ops.matching as M
from facecore.losses import ContrastiveLoss, TripletMarginLoss
from facecore.losses.distances import CosineSimilarity, LpDistance
from facecore.losses.miners import BatchHardMiner, TripletMarginMiner
from facecore.reference import matching as R


class EmbeddingModel(torch.nn.Module):
    """A linear embedder trained with a triplet and a contrastive loss."""

    def __init__(self, d_in: int = 8, d_out: int = 4):
        super().__init__()
        self.fc = torch.nn.Linear(d_in, d_out)
        self.triplet = TripletMarginLoss(0.2, LpDistance(), TripletMarginMiner(0.3, "semihard"), swap=True)
        self.hard = TripletMarginLoss(0.2, CosineSimilarity(), BatchHardMiner())
        self.contrastive = ContrastiveLoss(0.1, 1.0, LpDistance(power=2, normalize_embeddings=False))

    def forward(self, x: torch.Tensor, labels: torch.Tensor):
        e = self.fc(x)
        stats = self.triplet.compute(e, labels)
        loss = stats.loss + self.hard(e, labels) + self.contrastive(e, labels)
        return loss, stats.num_active


def _inputs(n: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_modules_script():
    x, labels = pk_batch(4, 4, d=6, seed=1)
    for loss in (
        TripletMarginLoss(),
        TripletMarginLoss(0.1, CosineSimilarity(), BatchHardMiner(), soft=True),
        ContrastiveLoss(form="hadsell"),
    ):
        torch.testing.assert_close(torch.jit.script(loss)(x, labels), loss(x, labels))
    for dist in (LpDistance(power=2), CosineSimilarity()):
        torch.testing.assert_close(torch.jit.script(dist)(x), dist(x))


def test_torchscript_round_trip_in_a_fresh_process_with_gradients(tmp_path, fresh_python):
    import facecore

    torch.manual_seed(0)
    model = EmbeddingModel()
    path = tmp_path / "embedder.pt"
    torch.jit.script(model).save(str(path))
    x, labels = _inputs()
    loss, active = model(x, labels)
    loss.backward()
    grads = {n: p.grad.tolist() for n, p in model.named_parameters()}

    # Only torch and the compiled library: forward and backward on the C++ ops and autograd.
    out = fresh_python(
        f"""
        import json, torch
        torch.ops.load_library({facecore.library_path()!r})
        m = torch.jit.load({str(path)!r})
        g = torch.Generator().manual_seed(0)
        x = torch.randn(24, 8, generator=g); y = torch.randint(0, 4, (24,), generator=g)
        loss, active = m(x, y)
        loss.backward()
        print(json.dumps({{"loss": loss.item(), "active": active.item(),
                          "grads": {{n: p.grad.tolist() for n, p in m.named_parameters()}}}}))
        """
    )
    got = json.loads(out.strip().splitlines()[-1])
    assert got["loss"] == pytest.approx(loss.item(), rel=1e-6)
    assert got["active"] == active.item()
    for name, g in grads.items():
        torch.testing.assert_close(torch.tensor(got["grads"][name]), torch.tensor(g), rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_torch_compile_fullgraph_forward_and_backward(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    x, labels = pk_batch(4, 4, d=6, seed=2)

    def step(e, y):
        t = M.triplet_margin_loss(e, y, 0.2, "euclidean", True, False, False, "semihard", 0.5)
        c = M.contrastive_loss_from_dist(M.pairwise_distance(e, None, "cosine"), y)
        return t.loss + c.loss

    compiled = torch.compile(step, fullgraph=True)
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    a = compiled(xa, labels)
    b = step(xb, labels)
    a.backward()
    b.backward()
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(xa.grad, xb.grad)
    ref = R.triplet_margin_loss(R.pairwise_distance(x, None, "euclidean", True), labels, 0.2, False, False, "semihard", 0.5).loss
    ref = ref + R.contrastive_loss(R.pairwise_distance(x, None, "cosine"), labels).loss
    torch.testing.assert_close(a.detach(), ref, rtol=1e-5, atol=1e-6)


class ExportedLoss(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.loss = TripletMarginLoss(0.2, LpDistance(), BatchHardMiner())

    def forward(self, e: torch.Tensor, labels: torch.Tensor, gallery: torch.Tensor):
        stats = self.loss.compute(e, labels)
        return stats.loss, stats.num_active, M.pairwise_distance(e, gallery, "cosine")


@pytest.mark.slow
def test_torch_export_with_dynamic_batch_saved_and_loaded(tmp_path, fresh_python):
    x, labels = pk_batch(4, 4, d=6, seed=3)
    gallery = torch.randn(5, 6)
    batch = torch.export.Dim("batch", min=0)
    ep = torch.export.export(
        ExportedLoss(), (x, labels, gallery), dynamic_shapes=({0: batch}, {0: batch}, None)
    )
    path = tmp_path / "loss.pt2"
    torch.export.save(ep, str(path))
    loaded = torch.export.load(str(path)).module()
    for p, k in ((2, 2), (4, 4), (7, 3)):
        xn, yn = pk_batch(p, k, d=6, seed=p)
        for a, b in zip(loaded(xn, yn, gallery), ExportedLoss()(xn, yn, gallery)):
            torch.testing.assert_close(a, b)
    out = fresh_python(
        f"""
        import torch, facecore
        from facecore.losses import TripletMarginLoss
        from facecore.losses.miners import BatchHardMiner
        m = torch.export.load({str(path)!r}).module()
        x = torch.randn(21, 6); y = torch.randint(0, 5, (21,)); g = torch.randn(5, 6)
        loss, active, d = m(x, y, g)
        ref = TripletMarginLoss(0.2, miner=BatchHardMiner()).compute(x, y)
        print(torch.equal(loss, ref.loss) and torch.equal(active, ref.num_active)
              and torch.equal(d, facecore.ops.pairwise_distance(x, g, "cosine")))
        """
    )
    assert out.strip().splitlines()[-1] == "True"
