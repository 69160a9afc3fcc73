"""Margin heads (ArcFace, CosFace, SphereFace), center loss and the face embedder:
hand-computed values, pytorch-metric-learning as the reference loss, monotonic
fallbacks, fp64 gradcheck including next to θ = 0 and θ = π, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import ArcFaceLoss, CosFaceLoss, SphereFaceLoss

from facecore.losses import CenterLoss
from facecore.models import ArcFace, CosFace, FaceEmbedder, SphereFace


def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def _head_2d(cls, angles_deg, **kw):
    """2-D head whose class c has weight direction at angles_deg[c]."""
    head = cls(2, len(angles_deg), **kw).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([_unit(a) for a in angles_deg], dtype=torch.float64) * 3.0)
    return head


def test_hand_computed_values():
    x = torch.tensor([_unit(0.0)], dtype=torch.float64) * 2.0  # embedding along e1
    y = torch.tensor([0])
    # target class at 60 deg, other class at 90 deg
    arc = _head_2d(ArcFace, [60.0, 90.0], scale=10.0, margin=0.5)
    expected = [10 * math.cos(math.pi / 3 + 0.5), 10 * math.cos(math.pi / 2)]
    torch.testing.assert_close(arc(x, y)[0], torch.tensor(expected, dtype=torch.float64))
    cos = _head_2d(CosFace, [60.0, 90.0], scale=10.0, margin=0.35)
    torch.testing.assert_close(cos(x, y)[0, 0], torch.tensor(10 * (0.5 - 0.35), dtype=torch.float64))
    # fallback: θ = 170 deg > π - m  ->  cos θ - m sin m
    arc = _head_2d(ArcFace, [170.0, 90.0], scale=10.0, margin=0.5)
    c = math.cos(math.radians(170))
    torch.testing.assert_close(
        arc(x, y)[0, 0], torch.tensor(10 * (c - 0.5 * math.sin(0.5)), dtype=torch.float64)
    )
    # SphereFace m=4, θ = 100 deg: k = floor(400/180) = 2, ψ = cos(400 deg) - 4; λ = 0
    sph = _head_2d(SphereFace, [100.0, 90.0], scale=10.0, margin=4, lambda_base=0, lambda_min=0)
    torch.testing.assert_close(
        sph(x, y)[0, 0], torch.tensor(10 * (math.cos(math.radians(400)) - 4), dtype=torch.float64)
    )
    # with λ: (λ cos θ + ψ) / (1 + λ)
    sph = _head_2d(SphereFace, [100.0, 90.0], scale=1.0, margin=4, lambda_base=3, lambda_min=3)
    sph.eval()
    psi = math.cos(math.radians(400)) - 4
    want = (3 * math.cos(math.radians(100)) + psi) / 4
    torch.testing.assert_close(sph(x, y)[0, 0], torch.tensor(want, dtype=torch.float64))


def _batch(n=16, d=8, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g)


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (lambda: ArcFace(8, 5, 64.0, 0.5), lambda: ArcFaceLoss(5, 8, margin=math.degrees(0.5), scale=64)),
        (lambda: CosFace(8, 5, 64.0, 0.35), lambda: CosFaceLoss(5, 8, margin=0.35, scale=64)),
        (
            lambda: SphereFace(8, 5, 2.0, 4, lambda_base=0, lambda_min=0),
            lambda: SphereFaceLoss(5, 8, margin=4, scale=2.0),
        ),
    ],
)
def test_cross_entropy_matches_pytorch_metric_learning(ours, theirs):
    torch.manual_seed(0)
    x, y = _batch()
    x = F.normalize(x, dim=1)  # PML's SphereFace scales by ||x|| ||w||: use unit vectors
    head, ref = ours(), theirs()
    with torch.no_grad():
        head.weight.copy_(F.normalize(head.weight, dim=1))
        ref.W.copy_(head.weight.t())
    torch.testing.assert_close(F.cross_entropy(head(x, y), y), ref(x, y), rtol=1e-5, atol=1e-5)


def test_target_logit_is_monotone_in_theta():
    degrees = torch.linspace(0.0, 180.0, 721, dtype=torch.float64)
    x = torch.stack([torch.cos(torch.deg2rad(degrees)), torch.sin(torch.deg2rad(degrees))], 1)
    y = torch.zeros(len(degrees), dtype=torch.long)
    for head in (
        _head_2d(ArcFace, [0.0, 90.0], scale=1.0, margin=0.5),
        _head_2d(ArcFace, [0.0, 90.0], scale=1.0, margin=1.2),
        _head_2d(SphereFace, [0.0, 90.0], scale=1.0, margin=4, lambda_base=0, lambda_min=0),
        _head_2d(SphereFace, [0.0, 90.0], scale=1.0, margin=3, lambda_base=0, lambda_min=0),
        _head_2d(CosFace, [0.0, 90.0], scale=1.0, margin=0.35),
    ):
        head.eval()
        with torch.no_grad():
            t = head(x, y)[:, 0]
        assert (t[1:] <= t[:-1] + 1e-12).all(), type(head).__name__


def _near(theta: float, d=4, c=3, seed=0):
    """Embeddings at angle theta from their class weight (plus random other classes)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(c, d, generator=g, dtype=torch.float64)
    w0 = F.normalize(w[0], dim=0)
    ortho = torch.randn(d, generator=g, dtype=torch.float64)
    ortho = F.normalize(ortho - (ortho @ w0) * w0, dim=0)
    x = (math.cos(theta) * w0 + math.sin(theta) * ortho).unsqueeze(0) * 1.7
    return x, w, torch.tensor([0])


@pytest.mark.parametrize("theta", [1e-3, 0.3, 1.5, 2.9, math.pi - 1e-3])
@pytest.mark.parametrize("cls", [ArcFace, CosFace, SphereFace])
def test_gradcheck_fp64_including_near_0_and_pi(cls, theta):
    x, w, y = _near(theta)
    head = cls(4, 3).double().eval()

    def f(emb, weight):
        with torch.no_grad():
            head.weight.copy_(weight)
        head.weight.requires_grad_(False)
        return torch.func.functional_call(head, {"weight": weight}, (emb, y))

    assert torch.autograd.gradcheck(
        f, (x.requires_grad_(True), w.requires_grad_(True)), eps=1e-7, atol=1e-6
    )


@pytest.mark.parametrize("theta", [0.0, math.pi])
@pytest.mark.parametrize("cls", [ArcFace, SphereFace])
def test_gradient_is_finite_exactly_at_0_and_pi(cls, theta):
    x, w, y = _near(theta)
    head = cls(4, 3).double().eval()
    with torch.no_grad():
        head.weight.copy_(w)
    x.requires_grad_(True)
    F.cross_entropy(head(x, y), y).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


def test_sphereface_lambda_annealing():
    head = SphereFace(8, 5)  # defaults of the SphereFace code: 1000, 0.12, 1, min 5
    x, y = _batch()
    assert head.current_lambda() == 1000.0
    head.train()
    head(x, y)
    head(x, y)
    assert int(head.iteration) == 2
    assert head.current_lambda() == pytest.approx(1000.0 / (1 + 0.12 * 2))
    head.eval()
    head(x, y)
    assert int(head.iteration) == 2
    with torch.no_grad():
        head.iteration.fill_(10_000)
    assert head.current_lambda() == 5.0
    assert "iteration" in head.state_dict()


@pytest.mark.parametrize("cls", [ArcFace, CosFace, SphereFace])
def test_margin_heads_script(cls):
    x, y = _batch()
    head = cls(8, 5).eval()
    torch.testing.assert_close(torch.jit.script(head)(x, y), head(x, y))


def test_margin_head_errors():
    head = ArcFace(8, 5)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\], got a label 5"):
        head(torch.randn(2, 8), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"embeddings must have shape \[N, 8\], got \[2, 7\]"):
        head(torch.randn(2, 7), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"labels must have shape \[N\] = \[2\]"):
        head(torch.randn(2, 8), torch.tensor([0]))
    with pytest.raises(ValueError, match="margin must be a positive integer for SphereFace"):
        SphereFace(8, 5, 30.0, 1.5)
    with pytest.raises(ValueError, match=r"margin must be in \[0, pi\)"):
        ArcFace(8, 5, 64.0, 4.0)
    with pytest.raises(ValueError, match="scale must be > 0"):
        CosFace(8, 5, 0.0)


# ---------------------------------------------------------------- center loss


def test_center_loss_value_and_gradients_by_hand():
    loss = CenterLoss(2, 2)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    x = torch.tensor([[1.0, 2.0], [1.0, 0.0], [3.0, 1.0]], requires_grad=True)
    y = torch.tensor([0, 1, 1])
    # 1/2 (|(1,2)|^2 + |(0,-1)|^2 + |(2,0)|^2) / 3 = (5 + 1 + 4) / 6
    value = loss(x, y)
    assert value.item() == pytest.approx(10 / 6)
    value.backward()
    torch.testing.assert_close(x.grad, torch.tensor([[1.0, 2.0], [0.0, -1.0], [2.0, 0.0]]) / 3)
    torch.testing.assert_close(loss.centers.grad, -torch.tensor([[1.0, 2.0], [2.0, -1.0]]) / 3)
    loss.reduction = "sum"
    assert loss(x, y).item() == pytest.approx(5.0)
    loss.reduction = "none"
    torch.testing.assert_close(loss(x, y), torch.tensor([2.5, 0.5, 2.0]))


def test_center_loss_paper_update_rule():
    loss = CenterLoss(3, 2, alpha=0.5)
    assert "centers" not in dict(loss.named_parameters())
    c0 = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    with torch.no_grad():
        loss.centers.copy_(c0)
    x = torch.tensor([[1.0, 2.0], [1.0, 0.0], [3.0, 1.0]], requires_grad=True)
    y = torch.tensor([0, 1, 1])
    value = loss(x, y)  # computed with the centers before the update
    assert value.item() == pytest.approx(10 / 6)
    # Δc_0 = (c0 - x0) / 2; Δc_1 = ((c1 - x1) + (c1 - x2)) / 3; class 2 unchanged
    d0 = (c0[0] - x[0].detach()) / 2
    d1 = ((c0[1] - x[1].detach()) + (c0[1] - x[2].detach())) / 3
    expected = torch.stack([c0[0] - 0.5 * d0, c0[1] - 0.5 * d1, c0[2]])
    torch.testing.assert_close(loss.centers, expected)
    value.backward()
    assert x.grad is not None
    loss.eval()
    loss(x, y)
    torch.testing.assert_close(loss.centers, expected)  # no update in eval mode


def test_center_loss_scripts_and_errors():
    x, y = _batch(c=5)
    loss = CenterLoss(5, 8)
    torch.testing.assert_close(torch.jit.script(loss)(x, y), loss(x, y))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\], got a label -1"):
        loss(x, torch.full((16,), -1))
    with pytest.raises(ValueError, match=r"features must have shape \[N, 8\]"):
        loss(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"alpha \(the center update rate\) must be in \(0, 1\]"):
        CenterLoss(5, 8, alpha=2.0)
    with pytest.raises(ValueError, match="reduction must be"):
        CenterLoss(5, 8, reduction="avg")
    assert loss(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long)).item() == 0.0


# ---------------------------------------------------------------- embedder


def test_face_embedder_unit_norm_and_serve():
    torch.manual_seed(0)
    model = FaceEmbedder("small_cnn", 32, width=4).eval()
    x = torch.rand(3, 3, 64, 64)
    e = model(x)
    assert e.shape == (3, 32)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(model.serve(x)["embedding"], e)
    assert model.task == "embedding" and model.config["embedding_dim"] == 32
    with pytest.raises(ValueError, match="embedding_dim must be a positive int"):
        FaceEmbedder("small_cnn", 0)


def test_embedder_trains_with_arcface_and_center_loss():
    torch.manual_seed(0)
    model = FaceEmbedder("small_cnn", 16, width=4)
    head = ArcFace(16, 4, 16.0, 0.3)
    center = CenterLoss(4, 16)
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(4, 3, 32, 32, generator=g)
    y = torch.arange(4).repeat(8)
    x = (protos[y] + 0.1 * torch.randn(32, 3, 32, 32, generator=g)).clamp(0, 1)
    params = list(model.parameters()) + list(head.parameters()) + list(center.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    first = None
    for _ in range(30):
        e = model(x)
        loss = F.cross_entropy(head(e, y), y) + 0.1 * center(e, y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


@pytest.mark.parametrize("theta", [1e-7, 1e-4, math.pi - 0.6])
def test_arcface_gradient_against_the_analytic_angle_gradient(theta):
    """d cos(θ + m) / dx = -sin(θ + m) ∇θ with ∇θ = (-sin θ ŵ + cos θ u) / ||x||
    (u the unit tangent): exact even at θ = 1e-7, where acos-based code loses
    about 1% of the gradient to cancellation in 1 - cos θ."""
    g = torch.Generator().manual_seed(3)
    w0 = F.normalize(torch.randn(4, generator=g, dtype=torch.float64), dim=0)
    u = torch.randn(4, generator=g, dtype=torch.float64)
    u = F.normalize(u - (u @ w0) * w0, dim=0)
    norm = 1.7
    x = (norm * (math.cos(theta) * w0 + math.sin(theta) * u)).unsqueeze(0).requires_grad_(True)
    head = ArcFace(4, 1, 1.0, 0.5).double()
    with torch.no_grad():
        head.weight.copy_(w0.unsqueeze(0))
    head(x, torch.tensor([0]))[0, 0].backward()
    grad_theta = (-math.sin(theta) * w0 + math.cos(theta) * u) / norm
    torch.testing.assert_close(x.grad[0], -math.sin(theta + 0.5) * grad_theta, rtol=1e-7, atol=1e-9)
