r"""Binary attribute classifiers (gender) with temperature-scaled probabilities.

Calibration is temperature scaling (Guo, Pleiss, Sun & Weinberger, "On
Calibration of Modern Neural Networks", ICML 2017) for one logit ``z``:
``p = sigmoid(z / T)``, with ``T > 0`` fitted on held-out logits by minimising
the negative log-likelihood

.. math::
    \mathrm{NLL}(a) = \sum_i \mathrm{softplus}(-a\, t_i z_i), \qquad a = 1/T,\ t_i = 2y_i - 1,

which is convex in ``a``; :func:`fit_temperature` solves ``NLL'(a) = 0`` with a
safeguarded Newton iteration (bisection fallback) in float64. ``T`` never changes
the predicted label (``z / T > 0`` iff ``z > 0``), only the confidence.
Conventions: gender 0 = male, 1 = female; ``prob`` is P(class 1).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from facecore.models.backbones import resolve_backbone

__all__ = ["BinaryAttributeClassifier", "GenderClassifier", "fit_temperature"]

#: Temperatures are kept in [MIN_TEMPERATURE, MAX_TEMPERATURE].
MIN_TEMPERATURE = 1e-2
MAX_TEMPERATURE = 1e2


def _binary_inputs(logits: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.as_tensor(logits).detach().to("cpu", torch.float64).reshape(-1)
    y = torch.as_tensor(labels).detach().to("cpu").reshape(-1)
    if z.numel() != y.numel():
        raise ValueError(
            f"logits and labels must have the same number of entries, got {z.numel()} and "
            f"{y.numel()}"
        )
    if z.numel() == 0:
        raise ValueError("need at least one (logit, label) pair to fit a temperature")
    if not torch.isfinite(z).all():
        raise ValueError("logits must be finite to fit a temperature")
    if y.dtype.is_floating_point:
        if not ((y == 0) | (y == 1)).all():
            raise ValueError("labels must be 0 or 1")
    elif y.dtype == torch.bool:
        pass
    elif ((y < 0) | (y > 1)).any():
        raise ValueError("labels must be 0 or 1")
    return z, y.to(torch.float64)


def fit_temperature(logits: Any, labels: Any, *, max_iter: int = 100, tol: float = 1e-12) -> float:
    """Temperature ``T`` minimising the NLL of ``sigmoid(logits / T)`` (Guo et al. 2017).

    Returns ``T`` clipped to ``[1e-2, 1e2]``: logits that separate the labels
    perfectly push ``T`` towards 0 (clipped at ``1e-2``).

    Raises:
        ValueError: mismatched sizes, no data, non-finite logits, labels not in
            {0, 1}, or logits that are not positively associated with the labels
            (``sum_i t_i z_i <= 0``: no positive temperature improves on ``T = inf``).
    """
    z, y = _binary_inputs(logits, labels)
    m = (2.0 * y - 1.0) * z  # margins t_i z_i

    def grad(a: float) -> float:  # NLL'(a) = -sum m_i sigmoid(-a m_i)
        return float(-(m * torch.sigmoid(-a * m)).sum())

    def hess(a: float) -> float:  # NLL''(a) = sum m_i^2 s(a m_i) s(-a m_i) >= 0
        s = torch.sigmoid(a * m)
        return float((m * m * s * (1.0 - s)).sum())

    if grad(0.0) >= 0.0:
        raise ValueError(
            "logits are not positively associated with the labels (sum of signed logits <= 0): "
            "temperature scaling cannot calibrate them"
        )
    lo, hi = 0.0, 1.0 / MIN_TEMPERATURE
    if grad(hi) <= 0.0:  # (near-)separable: optimum beyond the largest allowed 1/T
        return MIN_TEMPERATURE
    a = 1.0
    for _ in range(max_iter):
        g = grad(a)
        if g > 0:
            hi = a
        else:
            lo = a
        h = hess(a)
        step = a - g / h if h > 0 else float("nan")
        a_next = step if lo < step < hi else 0.5 * (lo + hi)
        if abs(a_next - a) <= tol * max(1.0, a):
            a = a_next
            break
        a = a_next
    return float(min(max(1.0 / a, MIN_TEMPERATURE), MAX_TEMPERATURE))


class BinaryAttributeClassifier(nn.Module):
    """Backbone + ``Linear(F, 1)``: one logit for P(class 1) of a binary attribute.

    Args:
        backbone: a name (see :func:`facecore.models.build_backbone`) or an
            ``nn.Module`` with ``out_features``.
        attribute: attribute name; ``"gender"`` gives ``task = "gender"``, anything
            else ``task = "binary"``.
        class_names: names of class 0 and class 1.
        width, in_channels, backbone_options: for a backbone given by name.
        dropout: dropout on the features before the linear layer.

    The temperature is a buffer (saved in the ``state_dict``), 1 until
    :meth:`calibrate` fits it.
    """

    def __init__(
        self,
        backbone: str | nn.Module = "resnet18",
        attribute: str = "gender",
        class_names: tuple[str, str] | list[str] = ("male", "female"),
        *,
        width: int | None = None,
        in_channels: int = 3,
        backbone_options: dict[str, Any] | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(attribute, str) or not attribute:
            raise ValueError(f"attribute must be a non-empty string, got {attribute!r}")
        names = tuple(class_names)
        if len(names) != 2 or not all(isinstance(n, str) for n in names):
            raise ValueError(f"class_names must be two strings, got {class_names!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.backbone, backbone_config, features = resolve_backbone(
            backbone, width=width, in_channels=in_channels, options=backbone_options
        )
        self.dropout = nn.Dropout(float(dropout))
        self.fc = nn.Linear(features, 1)
        self.register_buffer("temperature", torch.ones(()))
        self.attribute = attribute
        self.class_names = list(names)
        self.task = "gender" if attribute == "gender" else "binary"
        self.config = {
            "task": self.task,
            "backbone": backbone_config,
            "attribute": attribute,
            "class_names": list(names),
            "dropout": float(dropout),
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Uncalibrated logits ``[N]`` of class 1."""
        return self.fc(self.dropout(self.backbone(x))).squeeze(1)

    @torch.jit.export
    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy with logits, mean over the batch (labels 0 / 1)."""
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))

    @torch.jit.export
    def calibrated_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """``sigmoid(logits / T)``."""
        return torch.sigmoid(logits / self.temperature.to(logits.dtype))

    @torch.jit.export
    def serve(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``prob`` = calibrated P(class 1) [N]; ``label`` int64 [N] (``prob > 0.5``)."""
        logits = self.forward(x)
        return {"prob": self.calibrated_probs(logits), "label": (logits > 0).long()}

    @torch.jit.ignore
    def calibrate(self, logits: torch.Tensor, labels: torch.Tensor) -> float:
        """Fit the temperature on held-out ``logits`` (from :meth:`forward`) and ``labels``;
        stores and returns it (see :func:`fit_temperature`)."""
        t = fit_temperature(logits, labels)
        with torch.no_grad():
            self.temperature.fill_(t)
        return t


class GenderClassifier(BinaryAttributeClassifier):
    """Gender classifier: 0 = male, 1 = female; ``serve`` gives P(female)."""

    def __init__(self, backbone: str | nn.Module = "resnet18", **options: Any) -> None:
        for key in ("attribute", "class_names"):
            if key in options:
                raise ValueError(f"GenderClassifier fixes {key}; use BinaryAttributeClassifier")
        super().__init__(backbone, "gender", ("male", "female"), **options)
