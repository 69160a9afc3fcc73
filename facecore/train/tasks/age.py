"""Task ``age``: ordinal age estimation (``ce | niu | coral | corn`` heads) on an
:class:`~facecore.models.AgeEstimator`.

Labels and offsets come from the dataset that produced them (one contract, see
:mod:`facecore.data.readers`): the reader's ``num_classes`` sizes the head, its
``age_offset`` (class 0's age), ``class_names`` (age groups) and ``age_unit`` (``year`` |
``group``) go into every checkpoint's export settings, so the export and the predictor
report ``age = expected rank + age_offset`` of exactly those labels. ``ordinal.age_offset``
is only a check: ``null`` (default) takes the reader's, a value that differs is a
``ConfigError`` (a shifted age is never served silently).

Before a run trains from scratch the head is initialised from the training labels
(``ordinal.init_from_labels``, default on: :meth:`AgeEstimator.init_head_from_labels`,
CORAL / Niu biases = logit of the label prior's ``P(y > k)``, CORN's conditional logits,
CE's log-prior); ``false`` keeps the coral-pytorch / PyTorch initialisation. On
FairFace-540 (CORAL, 3 seeds) it lowered the label MAE from 1.775 to 1.605 age groups and
brought it level with the expected-rank MAE (6% above without it).

Loss: the head's loss (the fused CORAL / CORN ops), optionally with the CORAL paper's
task-importance weights from the training labels. Metrics (years: ``age_scale`` x
classes): ``mae`` / ``rmse`` of the predicted label, ``mae_expected`` (expected rank),
``median_mae`` (always predicting the training median), ``rank_inconsistency`` (mean
count of increases of ``P(y > k)`` over ``k``) and ``rank_inconsistent_fraction``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    non-increasing (rank consistency guaranteed by construction; default off: on
    FairFace-540 the plain biases gave 1.605 vs 1.645 label MAE, and CORAL's shared weight
    keeps them ordered in practice); ``init_from_labels``: initialise the head's biases
    from the training labels' prior before training (default on; ``false``: the
    coral-pytorch initialisation); ``age_offset``: ``null`` (the dataset's: class 0's age
    as the reader reports it) or the offset you expect, checked against the dataset
    (``ConfigError`` when they differ); ``age_scale``: years per class in the metrics
    and plots (``mae = age_scale * class MAE``)."""

    head: str = choices(HEADS, "coral")
    importance_weights: bool = False
    monotone_biases: bool = False
    init_from_labels: bool = True
    age_offset: float | None = None
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

    def bind_dataset(self, cfg: AgeConfig, dataset: Any) -> AgeConfig:
        """``ordinal.age_offset`` must be ``null`` or the dataset's ``age_offset``; returns
        ``cfg`` with the dataset's offset filled in."""
        offset = float(getattr(dataset, "age_offset", 0) or 0)
        want = cfg.ordinal.age_offset
        if want is not None and float(want) != offset:
            d = cfg.data
            where = f"data.age_range={d.age_range}" if d.age_range is not None else "no data.age_range"
            raise ConfigError(
                f"ordinal.age_offset={want:g} disagrees with the labels of data.name={d.name!r} "
                f"(class 0 is age {offset:g} with {where}): remove ordinal.age_offset (the "
                f"offset comes from the dataset) or set data.age_range to start at {want:g}"
            )
        return replace(cfg, ordinal=replace(cfg.ordinal, age_offset=offset))

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

    def initialize(self, cfg: AgeConfig, model: nn.Module, splits: Any, *, loaded: frozenset[str]) -> None:
        """The head's biases from the training labels (``ordinal.init_from_labels``),
        unless the pretrained weights set the head."""
        if cfg.ordinal.init_from_labels and not any(k.startswith("head.") for k in loaded):
            model.init_head_from_labels(splits.labels("train"))

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
                offset=o.age_offset or 0.0, scale=o.age_scale,
            ),
            "cumulative_probs": P.plot_cumulative_probs(
                test["cum_probs"], test["target"], outdir / "cumulative_probs.png"
            ),
        }

    def export_settings(self, cfg: AgeConfig, dataset: Any) -> dict[str, Any]:
        """The reader's ``age_offset``, ``class_names`` (age groups) and ``age_unit``."""
        settings: dict[str, Any] = {"age_offset": float(getattr(dataset, "age_offset", 0) or 0)}
        names = getattr(dataset, "class_names", None) or getattr(dataset, "age_groups", None)
        if names:
            settings["class_names"] = [str(n) for n in names]
        unit = getattr(dataset, "age_unit", None)
        if unit is not None:
            settings["age_unit"] = str(unit)
        return settings
