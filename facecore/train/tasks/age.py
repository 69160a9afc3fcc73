"""Task ``age``: ordinal age estimation (``ce | niu | coral | corn`` heads) on an
:class:`~facecore.models.AgeEstimator`.

Loss: the head's loss (the fused CORAL / CORN ops), optionally with the CORAL paper's
task-importance weights from the training labels. Metrics (years: ``age_scale`` x
classes): ``mae`` / ``rmse`` of the predicted label, ``mae_expected`` (expected rank),
``median_mae`` (always predicting the training median), ``rank_inconsistency`` (mean
count of increases of ``P(y > k)`` over ``k``) and ``rank_inconsistent_fraction``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

import facecore.metrics as fm
from facecore.models.ordinal import HEADS
from facecore.models.weights import importance_weights_from_labels
from facecore.train import plots as P
from facecore.train.sections import ConfigError, TrainConfig, choices
from facecore.train.tasks.base import Objective, Task

__all__ = ["AgeConfig", "AgeTask", "OrdinalObjective", "OrdinalOptions"]


@dataclass
class OrdinalOptions:
    """Ordinal age head (one of :data:`facecore.models.ordinal.HEADS`:
    ``ce | niu | coral | corn``); ``importance_weights``: the CORAL paper's task weights
    from the training label distribution; ``monotone_biases``: CORAL biases constrained
    non-increasing (rank consistency guaranteed); ``age_offset`` / ``age_scale``:
    age = offset + scale * class (metrics and predictions in years)."""

    head: str = choices(HEADS, "coral")
    importance_weights: bool = False
    monotone_biases: bool = True
    age_offset: float = 0.0
    age_scale: float = 1.0


@dataclass
class AgeConfig(TrainConfig):
    DEFAULT_SCORE: ClassVar[tuple[str, str]] = ("val_mae", "min")

    task: str = "age"
    ordinal: OrdinalOptions = field(default_factory=OrdinalOptions)


class OrdinalObjective(Objective):
    """``model.loss(logits, labels, importance_weights)`` (fused CORAL / CORN for those heads)."""

    def __init__(self, model: nn.Module, importance_weights: torch.Tensor | None = None):
        super().__init__(model)
        self.register_buffer(
            "importance_weights",
            importance_weights if importance_weights is not None else torch.empty(0),
        )

    def forward(self, images: torch.Tensor, labels: torch.Tensor):
        logits = self.model(images)
        w = self.importance_weights if self.importance_weights.numel() else None
        return self.model.loss(logits, labels, w), logits


class AgeTask(Task):
    name = "age"
    config_class = AgeConfig
    label_key = "age"
    split_by = "sample"
    default_config = "age_coral_synthetic"
    progress = (
        ("val_mae", "val MAE {:.3f}"),
        ("val_median_mae", "(median {:.3f})"),
        ("val_rank_inconsistency", "rank-inc {:.3f}"),
    )

    def validate(self, cfg: AgeConfig) -> None:
        if cfg.ordinal.age_scale <= 0:
            raise ConfigError(f"ordinal.age_scale must be > 0, got {cfg.ordinal.age_scale}")

    def describe(self, cfg: AgeConfig) -> str:
        return cfg.ordinal.head

    def num_classes(self, cfg: AgeConfig, dataset: Any, targets: torch.Tensor) -> int:
        return int(getattr(dataset, "num_classes", int(targets.max()) + 1))

    def model_config(self, cfg: AgeConfig, num_classes: int) -> dict[str, Any]:
        o = cfg.ordinal
        return {
            "task": "age",
            "backbone": {"name": cfg.model.backbone, "width": cfg.model.width},
            "head": o.head,
            "num_classes": num_classes,
            "monotone_biases": o.head == "coral" and o.monotone_biases,
        }

    def build_objective(self, cfg: AgeConfig, model: nn.Module, splits: Any) -> Objective:
        w = None
        if cfg.ordinal.importance_weights and cfg.ordinal.head != "ce":
            w = importance_weights_from_labels(splits.labels("train"), splits.num_classes)
            w = torch.as_tensor(w, dtype=torch.float32)
        return OrdinalObjective(model, w)

    def outputs(self, cfg: AgeConfig, model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = model(images)
        p = model.decode(logits)
        return {"label": p.labels, "cum_probs": p.cum_probs, "expected": p.expected, "logits": logits}

    def metrics(
        self, cfg: AgeConfig, out: dict[str, torch.Tensor], train_labels: torch.Tensor, split: str
    ) -> dict[str, float]:
        t, s = out["target"], cfg.ordinal.age_scale
        ri = fm.rank_inconsistency(out["cum_probs"])
        return {
            "mae": fm.mae(out["label"], t, scale=s),
            "rmse": fm.rmse(out["label"], t, scale=s),
            "mae_expected": fm.mae(out["expected"], t, scale=s),
            "median_mae": fm.median_baseline_mae(train_labels, t, scale=s),
            "rank_inconsistency": ri.mean,
            "rank_inconsistent_fraction": ri.fraction,
        }

    def plots(self, cfg: AgeConfig, test: dict[str, torch.Tensor], outdir: Path) -> dict[str, Path]:
        o = cfg.ordinal
        return {
            "age_scatter": P.plot_age_scatter(
                test["target"], test["expected"], outdir / "age_scatter.png",
                offset=o.age_offset, scale=o.age_scale,
            ),
            "cumulative_probs": P.plot_cumulative_probs(
                test["cum_probs"], test["target"], outdir / "cumulative_probs.png"
            ),
        }

    def export_settings(self, cfg: AgeConfig, dataset: Any) -> dict[str, Any]:
        settings: dict[str, Any] = {"age_offset": float(cfg.ordinal.age_offset)}
        names = getattr(dataset, "class_names", None) or getattr(dataset, "age_groups", None)
        if names:
            settings["class_names"] = [str(n) for n in names]
        return settings
