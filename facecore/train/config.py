"""Typed training configuration: dataclasses per task, YAML files, dotted overrides.

A configuration is a tree of dataclasses. The root is the config class of a registered
task (:mod:`facecore.train.tasks`: :class:`AgeConfig`, :class:`GenderConfig`,
:class:`EmbeddingConfig`), chosen by its ``task`` key; all share the sections ``data``,
``model``, ``optim`` and ``run`` (:mod:`facecore.train.sections`) and add one task
section (``ordinal``, ``binary`` or ``metric``)::

    task: age
    data: {name: synthetic, num_samples: 3000, image_size: 64, num_classes: 8}
    model: {backbone: small_cnn}
    ordinal: {head: coral, importance_weights: false}
    optim: {lr: 0.002, epochs: 8}
    run: {workers: 2, storage: ./runs, name: age-coral}

Rules
-----
* Every key must be a field of its section: an unknown key raises
  :class:`ConfigError` naming the dotted key and listing the valid ones.
* Values are checked against the field's type (``int`` accepts integral values,
  ``float`` accepts ints and ``1e-3``, which YAML 1.1 reads as a string;
  ``X | None`` accepts ``null``) and against the allowed choices, which are defined
  next to what they name (``ordinal.head`` in :data:`facecore.models.ordinal.HEADS`,
  ``model.backbone`` in :data:`facecore.models.BACKBONES`, ``data.name`` in
  :data:`facecore.data.DATASETS`, ``metric.loss`` / ``metric.miner`` next to the losses
  and miners).
* Overrides are ``dotted.key=value`` strings (``--set optim.lr=0.01``); the value
  is parsed as YAML (``1e-3`` -> float, ``true`` -> bool, ``null`` -> None,
  ``[1, 2]`` -> list) and then checked like a file value.
* :func:`config_to_dict` / :func:`config_from_dict` round-trip exactly, and the
  dict is what every checkpoint stores (``train_config``).
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any

from facecore.data.registry import DATASETS
from facecore.train.sections import (
    ConfigError,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunSettings,
    TrainConfig,
    apply_overrides,
    build_section,
    check_run_name,
    validate_common,
)
from facecore.train.tasks import TASKS, get_task
from facecore.train.tasks.age import AgeConfig, OrdinalOptions
from facecore.train.tasks.embedding import EmbeddingConfig, MetricOptions
from facecore.train.tasks.gender import BinaryOptions, GenderConfig
from facecore.train.tasks.san import SANConfig, SANOptions, Stage1Options

__all__ = [
    "AgeConfig",
    "BinaryOptions",
    "ConfigError",
    "DataConfig",
    "EmbeddingConfig",
    "GenderConfig",
    "MetricOptions",
    "ModelConfig",
    "OptimConfig",
    "OrdinalOptions",
    "RunSettings",
    "SANConfig",
    "SANOptions",
    "Stage1Options",
    "TrainConfig",
    "apply_overrides",
    "check_data_root",
    "check_run_name",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "packaged_config",
    "packaged_configs",
    "save_config",
    "validate",
]


def config_from_dict(data: dict[str, Any], *, task: str | None = None) -> TrainConfig:
    """Build the task's config from a nested dict (``task`` from the dict or the argument).

    Raises :class:`ConfigError` for an unknown task, an unknown key, a value of the
    wrong type or outside its choices, or inconsistent values (see :func:`validate`).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"config must be a mapping, got {type(data).__name__}")
    data = dict(data)
    file_task = data.pop("task", None)
    if task is not None and file_task is not None and task != file_task:
        raise ConfigError(f"task {task!r} does not match the config file's task {file_task!r}")
    task = task or file_task
    if task not in TASKS:
        raise ConfigError(f"task must be one of {' | '.join(TASKS)}, got {task!r}")
    cfg = build_section(get_task(task).config_class, data)
    validate(cfg)
    return cfg


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain nested dict (JSON / YAML-able); ``config_from_dict`` inverts it exactly."""
    return dataclasses.asdict(cfg)


def validate(cfg: TrainConfig) -> None:
    """Cross-field checks (shared sections, then the task's); each raises
    :class:`ConfigError` naming the key."""
    validate_common(cfg)
    task = get_task(cfg.task)
    if task.split_by == "identity" and cfg.data.split_by == "sample" and not task.one_photo_per_person:
        raise ConfigError(
            f"data.split_by='sample' is not allowed for task {cfg.task!r}: it splits by identity "
            "(no person in two splits); leave data.split_by null"
        )
    task.validate(cfg)


def check_data_root(cfg: TrainConfig) -> None:
    """Before training: a reader needs ``data.root`` naming an existing folder (and
    ``data.csv`` where the dataset needs one)."""
    d = cfg.data
    entry = DATASETS[d.name]
    if entry.needs_root:
        if not d.root:
            raise ConfigError(
                f"data.root is required for data.name={d.name!r} (pass --data-root DIR)"
            )
        if "://" not in d.root and not Path(d.root).expanduser().is_dir():
            raise ConfigError(f"data root not found: {d.root} (data.name={d.name!r})")
    if entry.needs_csv and not d.csv:
        raise ConfigError(
            f"data.csv is required for data.name={d.name!r} (the CORAL paper's "
            f"{entry.csv_splits}_train/valid/test.csv files of file names and ages: their "
            "folder or prefix; data.root is the image folder)"
        )


# ----------------------------------------------------------------- overrides


# ---------------------------------------------------------------------- files


def packaged_configs() -> list[str]:
    """Names of the example configs shipped in ``facecore/train/configs``."""
    root = resources.files("facecore.train") / "configs"
    return sorted(p.name for p in root.iterdir() if p.name.endswith(".yaml"))


def packaged_config(name: str) -> Path:
    """Path of a shipped example config (``age_coral_synthetic`` or ``...yaml``)."""
    fname = name if name.endswith(".yaml") else f"{name}.yaml"
    path = Path(str(resources.files("facecore.train") / "configs" / fname))
    if not path.is_file():
        raise ConfigError(
            f"no packaged config {name!r}; available: {', '.join(packaged_configs())}"
        )
    return path


def _read_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        if p.name == str(path) and p.suffix in ("", ".yaml"):  # a bare name: packaged
            try:
                return _read_yaml(packaged_config(str(path)))
            except ConfigError:
                pass
        raise ConfigError(
            f"config file not found: {path} (packaged configs: {', '.join(packaged_configs())})"
        )
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"config file {path} is not valid YAML: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return data


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    *,
    task: str | None = None,
) -> TrainConfig:
    """Load a YAML config (a path or a packaged name), apply overrides, validate.

    With no ``path`` the defaults of ``task`` are used. Raises :class:`ConfigError`.
    """
    data = _read_yaml(path) if path is not None else {}
    if overrides:
        data = apply_overrides(data, overrides)
    return config_from_dict(data, task=task)


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write ``cfg`` as YAML (``load_config`` reads it back to an equal config)."""
    import yaml

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return p
