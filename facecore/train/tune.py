"""Ray Tune sweeps over ordinal heads: a function trainable and a small driver.

Ray 2.60's Train V2 does not run ``Tuner(TorchTrainer)``; each trial here is a
plain Tune *function trainable* (:func:`ordinal_trial`) that runs facecore's
training loop (:func:`facecore.train.loops.run_training`) in the trial process
(one CPU, no DDP) and reports the validation metrics every epoch with
``ray.tune.report`` (Tune keeps metrics without checkpoints).

::

    from facecore.train.tune import sweep_ordinal_heads
    table = sweep_ordinal_heads(heads=("ce", "niu", "coral", "corn"), lrs=(1e-3, 3e-3))
    table[0]   # the best trial: head, lr, val_mae, ...
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from facecore.train.config import (
    apply_overrides,
    check_run_name,
    config_from_dict,
    config_to_dict,
    load_config,
)
from facecore.train.loops import Session, run_training
from facecore.train.sections import TrainConfig

__all__ = ["TuneSession", "ordinal_trial", "sweep_ordinal_heads", "TUNE_SMALL"]

# A sweep that runs in a few minutes on 2 CPUs (override any key).
TUNE_SMALL = [
    "data.num_samples=1200",
    "data.image_size=32",
    "optim.epochs=3",
    "run.workers=1",
]


class TuneSession(Session):
    """One process (the trial's), metrics to ``ray.tune.report`` (no checkpoints)."""

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        import ray.tune

        ray.tune.report({k: v for k, v in metrics.items() if k != "history"})


def trial_config(config: dict[str, Any]) -> TrainConfig:
    """The age config of a trial: ``config["base"]`` (a config dict) with
    ``head`` / ``lr`` (and any ``overrides``, dotted keys) applied."""
    data = dict(config["base"])
    extra: dict[str, Any] = dict(config.get("overrides") or {})
    if "head" in config:
        extra["ordinal.head"] = config["head"]
    if "lr" in config:
        extra["optim.lr"] = float(config["lr"])
    # a config without an ordinal section (not an age config) fails here, naming the key
    return config_from_dict(apply_overrides(data, extra))


def ordinal_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: one ordinal-head training run, reported per epoch."""
    import torch

    torch.set_num_threads(1)
    run_training(trial_config(config), TuneSession())


def sweep_ordinal_heads(
    base: TrainConfig | None = None,
    *,
    heads: tuple[str, ...] = ("ce", "niu", "coral", "corn"),
    lrs: tuple[float, ...] = (1e-3, 3e-3),
    storage: str | os.PathLike = "runs/tune",
    name: str = "ordinal-heads",
    max_concurrent: int = 2,
    cpus_per_trial: float = 1.0,
    verbose: int = 0,
) -> list[dict[str, Any]]:
    """Grid-search ``heads x lrs`` with Ray Tune; returns one row per trial
    (``head``, ``lr``, the last epoch's ``val_*`` metrics), best ``val_mae`` first.

    ``base`` defaults to the demo config reduced by :data:`TUNE_SMALL`.
    Ray is initialised (locally) when it is not already.
    """
    import ray
    from ray import tune

    base = base if base is not None else load_config("age_coral_synthetic", TUNE_SMALL)
    check_run_name(name, storage, key="name")
    if not ray.is_initialized():
        import logging

        root = str(Path(__file__).resolve().parents[2])  # the folder above the package
        pp = os.pathsep.join([root] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
        ray.init(
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=verbose > 0,
            runtime_env={"env_vars": {"PYTHONPATH": pp}},
        )
    trainable = tune.with_resources(ordinal_trial, {"cpu": cpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        param_space={
            "base": config_to_dict(base),
            "head": tune.grid_search(list(heads)),
            "lr": tune.grid_search(list(lrs)),
        },
        tune_config=tune.TuneConfig(
            metric="val_mae", mode="min", max_concurrent_trials=max_concurrent
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(Path(storage).expanduser().resolve()),
            verbose=verbose,
        ),
    )
    grid = tuner.fit()
    rows = []
    for r in grid:
        if r.error is not None:
            raise RuntimeError(f"trial {r.config.get('head')}/{r.config.get('lr')} failed: {r.error}")
        m = r.metrics or {}
        row = {"head": r.config["head"], "lr": r.config["lr"]}
        row.update({k: v for k, v in m.items() if k.startswith("val_") or k in ("epoch", "train_loss")})
        rows.append(row)
    rows.sort(key=lambda row: row.get("val_mae", float("inf")))
    return rows
