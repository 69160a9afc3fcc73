"""Task ``gender``: a binary attribute classifier (``gender``: 0 = male, 1 = female; any
other attribute gives a :class:`~facecore.models.BinaryAttributeClassifier`).

Loss: BCE with logits. After each epoch the temperature is fitted on the validation
logits (``binary.calibrate``, Guo et al. 2017), so every checkpoint (the best one, which is
evaluated and exported, included) carries the temperature of its own weights. Calibration
never stops training: where no temperature can be fitted (a near-chance model whose
validation logits are not positively associated with the labels, non-finite logits) the
temperature is set to 1 (probabilities = sigmoid of the raw logit) and a
:class:`CalibrationWarning` says why. Metrics: ``accuracy``, ``auc`` and ``ece`` of the
(calibrated) probability.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

import facecore.metrics as fm
from facecore.train import plots as P
from facecore.train.sections import ConfigError, TrainConfig
from facecore.train.tasks.base import Objective, Task

__all__ = ["BinaryObjective", "BinaryOptions", "CalibrationWarning", "GenderConfig", "GenderTask"]


class CalibrationWarning(UserWarning):
    """No temperature could be fitted after an epoch; the model keeps T = 1."""


@dataclass
class BinaryOptions:
    """Binary attribute (``gender``: 0 = male, 1 = female); ``calibrate`` fits a
    temperature on the validation logits each epoch (Guo et al. 2017)."""

    attribute: str = "gender"
    class_names: list[str] = field(default_factory=lambda: ["male", "female"])
    calibrate: bool = True


@dataclass
class GenderConfig(TrainConfig):
    DEFAULT_SCORE: ClassVar[tuple[str, str]] = ("val_auc", "max")

    task: str = "gender"
    binary: BinaryOptions = field(default_factory=BinaryOptions)


class BinaryObjective(Objective):
    """``model.loss(logits, labels)`` (BCE with logits)."""

    def forward(self, images: torch.Tensor, labels: torch.Tensor):
        logits = self.model(images)
        return self.model.loss(logits, labels), logits


class GenderTask(Task):
    name = "gender"
    config_class = GenderConfig
    label_key = "gender"
    split_by = "sample"
    default_config = "gender_synthetic"
    progress = (
        ("val_accuracy", "val acc {:.3f}"),
        ("val_auc", "val AUC {:.3f}"),
        ("val_ece", "ECE {:.3f}"),
    )

    def validate(self, cfg: GenderConfig) -> None:
        if len(cfg.binary.class_names) != 2:
            raise ConfigError(f"binary.class_names must name 2 classes, got {cfg.binary.class_names}")

    def num_classes(self, cfg: GenderConfig, dataset: Any, targets: torch.Tensor) -> int:
        return 2

    def model_config(self, cfg: GenderConfig, num_classes: int) -> dict[str, Any]:
        b = cfg.binary
        return {
            "task": "gender" if b.attribute == "gender" else "binary",
            "backbone": {"name": cfg.model.backbone, "width": cfg.model.width},
            "attribute": b.attribute,
            "class_names": list(b.class_names),
        }

    def build_objective(self, cfg: GenderConfig, model: nn.Module, splits: Any) -> Objective:
        return BinaryObjective(model)

    def outputs(self, cfg: GenderConfig, model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = model(images)
        return {"prob": model.calibrated_probs(logits), "label": (logits > 0).long(), "logits": logits}

    def metrics(
        self, cfg: GenderConfig, out: dict[str, torch.Tensor], train_labels: torch.Tensor, split: str
    ) -> dict[str, float]:
        y = out["target"].long()
        both = 0 < int(y.sum()) < len(y)
        return {
            "accuracy": fm.accuracy(out["prob"], y),
            "auc": fm.roc_auc(out["prob"], y) if both else float("nan"),
            "ece": fm.expected_calibration_error(out["prob"], y),
        }

    def after_epoch(self, cfg: GenderConfig, model: nn.Module, valid: dict[str, torch.Tensor]) -> bool:
        if not cfg.binary.calibrate:
            return False
        device = next(model.parameters()).device
        try:
            model.calibrate(valid["logits"].to(device), valid["target"].to(device))
        except ValueError as exc:  # the fit is impossible for these logits: T = 1
            with torch.no_grad():
                model.temperature.fill_(1.0)
            warnings.warn(
                f"temperature calibration skipped, the model keeps T = 1 (uncalibrated "
                f"probabilities): {exc}",
                CalibrationWarning,
                stacklevel=2,
            )
        return True

    def plots(self, cfg: GenderConfig, test: dict[str, torch.Tensor], outdir: Path) -> dict[str, Path]:
        y = test["target"].long()
        if not 0 < int(y.sum()) < len(y):
            return {}
        return {"roc": P.plot_roc(test["prob"], y, outdir / "roc.png", title=cfg.binary.attribute)}

    def export_settings(self, cfg: GenderConfig, dataset: Any) -> dict[str, Any]:
        return {"class_names": list(cfg.binary.class_names)}
