r"""Margin-softmax heads for training face embeddings: ArcFace, CosFace, SphereFace.

Each head holds class weights ``W`` [C, D] and maps ``(embeddings [N, D],
labels [N])`` to logits ``[N, C]`` for ``F.cross_entropy``. Embeddings and
class weights are L2-normalised, so ``cos θ_j = x̂ · ŵ_j``; every logit is
``s · cos θ_j`` except the target class ``y``, whose cosine is replaced by a
margin function ``φ(θ_y)``:

* **CosFace** (Wang et al. 2018, additive cosine): ``φ = cos θ - m``
  (defaults s = 64, m = 0.35).
* **ArcFace** (Deng et al. 2019, additive angular): ``φ = cos(θ + m)`` while
  ``θ + m <= π``; beyond, where ``cos(θ + m)`` would *increase* again, the
  InsightFace fallback (``easy_margin=False``) ``φ = cos θ - m sin m`` keeps
  φ monotonically decreasing in θ (defaults s = 64, m = 0.5). With
  ``easy_margin=True``, ``φ = cos(θ + m)`` if ``cos θ > 0`` else ``cos θ``.
* **SphereFace** (Liu et al. 2017, multiplicative angular, integer m):
  ``ψ(θ) = (-1)^k cos(mθ) - 2k`` for ``θ ∈ [kπ/m, (k+1)π/m]``, ``k = 0..m-1``,
  the paper's monotonic extension of ``cos(mθ)`` to ``[0, π]`` (continuous, since
  consecutive pieces meet). As in the authors' Caffe code the target uses
  ``(λ cos θ + ψ(θ)) / (1 + λ)`` with ``λ = max(λ_min, λ_base (1 + γ t)^{-p})``
  annealed over training iterations ``t`` (defaults λ_base = 1000, γ = 0.12,
  p = 1, λ_min = 5; the counter is the buffer ``iteration``, advanced by each
  forward in training mode; ``lambda_base = lambda_min = 0`` gives pure ψ). We use
  the normalised form (unit features, scale s, default 30), not the paper's
  ``||x||``-scaled logits.

Gradients (exact, no clamping): ``θ_y`` is never taken from ``acos`` (whose
derivative is infinite at ±1). With ``c = cos θ_y`` from the cosine matrix and the
residual ``r = x̂ - c ŵ_y``, ``sin θ_y = ||r||`` and ``θ_y = atan2(||r||, c)``;
``cos(θ + m) = c cos m - ||r|| sin m``. These are smooth in the embedding for
``0 < θ < π``, so the gradient is exact there, including arbitrarily close to 0
and π. At exactly ``θ = 0`` or ``π`` (``r = 0``, where the angle has a cone-shaped
kink and no gradient exists) autograd's norm subgradient 0 is used, so the
gradient is finite (never NaN/inf).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from facecore.losses._inputs import check_embeddings_and_labels

__all__ = ["MARGIN_HEADS", "ArcFace", "CosFace", "SphereFace"]


def _check_dims(embedding_dim: int, num_classes: int) -> None:
    for name, v in (("embedding_dim", embedding_dim), ("num_classes", num_classes)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


class _MarginHead(nn.Module):
    """Shared parts: normalised class weights, target cosine / sine, label checks."""

    def __init__(self, embedding_dim: int, num_classes: int, scale: float) -> None:
        super().__init__()
        _check_dims(embedding_dim, num_classes)
        if not float(scale) > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.scale = float(scale)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)

    def _check(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        check_embeddings_and_labels(embeddings, labels, self.embedding_dim, self.num_classes)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``cos θ`` [N, C] between the normalised embeddings and class weights."""
        return F.normalize(embeddings, dim=1) @ F.normalize(self.weight, dim=1).t()

    def _target(
        self, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(cos [N, C], cos θ_y [N], sin θ_y [N])``, sine as ``||x̂ - cos θ_y ŵ_y||``."""
        self._check(embeddings, labels)
        x = F.normalize(embeddings, dim=1)
        w = F.normalize(self.weight, dim=1)
        cos = x @ w.t()
        idx = labels.long()
        c = cos.gather(1, idx.unsqueeze(1)).squeeze(1)
        r = x - c.unsqueeze(1) * w.index_select(0, idx)
        return cos, c, torch.linalg.vector_norm(r, dim=1)

    def _logits(self, cos: torch.Tensor, labels: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        return self.scale * cos.scatter(1, labels.long().unsqueeze(1), phi.unsqueeze(1))


class CosFace(_MarginHead):
    """Additive cosine margin: target ``s (cos θ - m)``; see the module docstring."""

    def __init__(
        self, embedding_dim: int, num_classes: int, scale: float = 64.0, margin: float = 0.35
    ) -> None:
        super().__init__(embedding_dim, num_classes, scale)
        self.margin = float(margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._check(embeddings, labels)
        cos = self.cosine(embeddings)
        c = cos.gather(1, labels.long().unsqueeze(1)).squeeze(1)
        return self._logits(cos, labels, c - self.margin)


class ArcFace(_MarginHead):
    """Additive angular margin: target ``s cos(θ + m)`` with the monotonic fallback
    ``s (cos θ - m sin m)`` when ``θ + m > π``; see the module docstring."""

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        scale: float = 64.0,
        margin: float = 0.5,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(embedding_dim, num_classes, scale)
        if not 0.0 <= float(margin) < math.pi:
            raise ValueError(f"margin must be in [0, pi) radians, got {margin!r}")
        self.margin = float(margin)
        self.easy_margin = bool(easy_margin)
        self.cos_m = math.cos(self.margin)
        self.sin_m = math.sin(self.margin)
        self.threshold = math.cos(math.pi - self.margin)  # θ + m > π  <=>  cos θ < threshold
        self.fallback = math.sin(math.pi - self.margin) * self.margin  # m sin m

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos, c, s = self._target(embeddings, labels)
        phi = c * self.cos_m - s * self.sin_m  # cos(θ + m)
        if self.easy_margin:
            phi = torch.where(c > 0, phi, c)
        else:
            phi = torch.where(c >= self.threshold, phi, c - self.fallback)
        return self._logits(cos, labels, phi)


class SphereFace(_MarginHead):
    """Multiplicative angular margin ``ψ(θ) = (-1)^k cos(mθ) - 2k`` with λ annealing;
    see the module docstring."""

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        scale: float = 30.0,
        margin: int = 4,
        *,
        lambda_base: float = 1000.0,
        lambda_min: float = 5.0,
        gamma: float = 0.12,
        power: float = 1.0,
    ) -> None:
        super().__init__(embedding_dim, num_classes, scale)
        if isinstance(margin, bool) or int(margin) != margin or int(margin) < 1:
            raise ValueError(f"margin must be a positive integer for SphereFace, got {margin!r}")
        if lambda_base < 0 or lambda_min < 0 or gamma < 0 or power < 0:
            raise ValueError("lambda_base, lambda_min, gamma and power must be >= 0")
        self.margin = int(margin)
        self.lambda_base = float(lambda_base)
        self.lambda_min = float(lambda_min)
        self.gamma = float(gamma)
        self.power = float(power)
        self.register_buffer("iteration", torch.zeros((), dtype=torch.int64))

    @torch.jit.export
    def current_lambda(self) -> float:
        """``max(λ_min, λ_base (1 + γ t)^(-p))`` at the current iteration ``t``."""
        t = float(self.iteration.item())
        return max(self.lambda_min, self.lambda_base * (1.0 + self.gamma * t) ** (-self.power))

    @torch.jit.export
    def psi(self, theta: torch.Tensor) -> torch.Tensor:
        """``(-1)^k cos(mθ) - 2k``, ``k = floor(mθ/π)`` clamped to ``[0, m-1]``."""
        m = self.margin
        k = torch.floor(theta.detach() * m / math.pi).clamp(0, m - 1)
        sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
        return sign * torch.cos(m * theta) - 2.0 * k

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos, c, s = self._target(embeddings, labels)
        theta = torch.atan2(s, c)
        lam = self.current_lambda()
        phi = (lam * c + self.psi(theta)) / (1.0 + lam)
        if self.training:
            with torch.no_grad():
                self.iteration.add_(1)
        return self._logits(cos, labels, phi)


#: Margin-softmax heads by name (training's ``metric.loss`` choices besides the pair losses).
MARGIN_HEADS: dict[str, type[_MarginHead]] = {
    "arcface": ArcFace,
    "cosface": CosFace,
    "sphereface": SphereFace,
}
