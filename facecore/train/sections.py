"""The task-independent parts of a training configuration: the shared sections
(``data``, ``model``, ``optim``, ``run``), the :class:`TrainConfig` base every task's
config extends, and the machinery that builds dataclasses from dicts with one-line errors.

A field's allowed values live next to what they name and are attached here as field
metadata (``field(metadata={"choices": BACKBONES})``); :func:`build_section` checks them.
:mod:`facecore.train.config` is the public configuration API (it knows the tasks).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

from facecore.data.registry import DATASETS
from facecore.data.splits import SPLIT_BY
from facecore.models.backbones import BACKBONES
from facecore.train.optim import OPTIMIZERS, SCHEDULERS

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "RunSettings",
    "TrainConfig",
    "build_section",
    "check_include",
    "check_run_name",
    "choices",
]

class ConfigError(ValueError):
    """A configuration problem; the message is one line naming the key and the expected value."""


def choices(values: Any, default: Any, **kwargs: Any) -> Any:
    """A dataclass field whose value must be one of ``values`` (``None`` passes when the
    field is optional)."""
    return field(default=default, metadata={"choices": tuple(values)}, **kwargs)


@dataclass
class DataConfig:
    """Where the images come from and how they are split and batched.

    ``name``: a dataset of :data:`facecore.data.DATASETS`: ``synthetic`` (generated on the
    fly, no files) or a reader: ``utkface | afad | morph2 | cacd`` (ages), ``celeba``
    (attributes, gender, identities), ``fairface`` (age groups, gender), ``folders`` (one
    folder per identity, e.g. ORL), ``london`` (Face Research Lab London Set). Readers need
    ``root``; ``morph2 | cacd`` also ``csv`` (the CORAL code's CSV of file names and ages).
    ``num_samples`` / ``num_classes`` / ``num_identities`` describe the synthetic set;
    ``max_samples`` caps a real set (``null``: all). The splits ``train`` / ``valid`` /
    ``test`` take ``fractions`` (in that order) of the images, or of the identities for
    tasks that split by identity, drawn with ``seed`` (:func:`facecore.data.dataset_splits`:
    the same items as a reader's ``split=``). ``split_by``: ``null`` (the task's: by image,
    by identity for matching) or ``identity`` (no person in two splits for any task, e.g. a
    gender model on a set with several photos per person).

    Training on a subset by attribute: ``include`` maps label keys to the values kept
    (``{race: [0]}``: one skin-tone group; ``{race: [0, 2], gender: [1]}``: both must
    hold). It is applied **after** the split, to every split, so the kept items are in the
    same split as without it (no person crosses splits where the task splits by identity,
    and a model trained on one group is tested on people no other run with the same
    ``seed`` / ``fractions`` trained on). ``max_train_samples`` then caps the training
    split (a seeded subset; whole identities where the task splits by identity), e.g. to
    train every group on the same number of images.
    """

    name: str = choices(DATASETS, "synthetic")
    root: str | None = None
    csv: str | None = None
    num_samples: int = 2000
    image_size: int = 64
    num_classes: int = 8
    num_identities: int | None = None
    max_samples: int | None = None
    fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    split_by: str | None = choices(SPLIT_BY, None)
    include: dict[str, list[int]] | None = None
    max_train_samples: int | None = None
    batch_size: int = 64
    eval_batch_size: int = 256
    loader_workers: int = 0
    augment: bool = True
    seed: int = 0


@dataclass
class ModelConfig:
    """Backbone (one of :data:`facecore.models.BACKBONES`), its base width (``null``: the
    backbone's default) and, for the embedding task, the embedding size."""

    backbone: str = choices(BACKBONES, "small_cnn")
    width: int | None = None
    embedding_dim: int = 128


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule.

    ``cosine``: :math:`lr_e = lr \\cdot \\tfrac12 (1 + \\cos(\\pi e / E))` stepped per
    epoch; ``step``: multiply by ``gamma`` every ``step_size`` epochs.
    ``grad_clip``: max global gradient norm (``null``: no clipping). Only parameters with
    ``requires_grad`` are optimised (frozen parts of a model or objective are not).
    A resumed run takes these settings and the schedule from the current config and only
    the optimiser's state from the checkpoint (:mod:`facecore.train.optim`): raising
    ``epochs`` continues on the schedule of the new horizon.
    """

    name: str = choices(OPTIMIZERS, "adam")
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = choices(SCHEDULERS, "cosine")
    step_size: int = 10
    gamma: float = 0.1
    epochs: int = 10
    grad_clip: float | None = None


@dataclass
class RunSettings:
    """How and where the run executes (Ray Train ``ScalingConfig`` / ``RunConfig``).

    ``workers``: Ray Train workers (``0``: Ray Train's in-process local mode,
    no cluster, one process). ``storage``: local path or any pyarrow/fsspec URI
    (``s3://...``) for checkpoints; a run with the same ``storage`` and
    ``name`` resumes from its last checkpoint. ``name`` is a plain folder name inside
    ``storage`` (no path separators, not ``.`` / ``..``). ``num_to_keep`` checkpoints are
    kept, ranked by ``score`` (``score_mode`` ``min``/``max``; ``null``: the
    task's default, e.g. ``val_mae``/``min`` for age) plus always the latest.
    ``max_failures``: worker-group restarts after a crash. ``address``: Ray
    cluster (``null``: ``RAY_ADDRESS`` or a local one). ``output``: local
    directory for the exported model, plots and evaluation (``null``:
    ``<storage>/<name>`` for local storage, ``./runs/<name>`` otherwise).
    ``verbose``: 0 quiet, 1 one line per epoch, 2 also Ray's own logs.
    ``fail_after_epoch``: testing aid, rank 0 raises once right after
    reporting that epoch (simulates a worker crash; a restarted run that
    resumes past it does not fail again).
    """

    name: str = "facecore"
    storage: str = "./runs"
    workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    num_to_keep: int = 2
    score: str | None = None
    score_mode: str | None = choices(("min", "max"), None)
    max_failures: int = 0
    address: str | None = None
    output: str | None = None
    export: bool = True
    plot: bool = True
    verbose: int = 1
    seed: int = 0
    fail_after_epoch: int | None = None


@dataclass
class TrainConfig:
    """Sections shared by every task. A task's config subclasses it, sets ``task`` and
    :attr:`DEFAULT_SCORE` and adds its own section (see :mod:`facecore.train.tasks`)."""

    #: ``(metric, mode)`` ranking checkpoints unless ``run.score`` / ``run.score_mode`` say.
    DEFAULT_SCORE: ClassVar[tuple[str, str]] = ("train_loss", "min")

    task: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunSettings = field(default_factory=RunSettings)

    def score(self) -> tuple[str, str]:
        """``(metric, mode)`` ranking checkpoints (the run's or the task's default)."""
        return (self.run.score or self.DEFAULT_SCORE[0], self.run.score_mode or self.DEFAULT_SCORE[1])


def check_run_name(name: str, storage: str | os.PathLike | None = None, key: str = "run.name") -> str:
    """``name`` if it is a plain folder name that stays inside ``storage``; else a one-line
    :class:`ConfigError` (``.``, ``..``, path separators, NUL, or a local path that
    resolves outside the storage folder, e.g. through a symbolic link)."""
    bad = (
        not isinstance(name, str)
        or not name.strip()
        or name in (".", "..")
        or any(sep in name for sep in ("/", "\\", "\0", os.sep, os.altsep or "/"))
    )
    if bad:
        raise ConfigError(
            f"{key} must be a plain folder name (no '/' or '\\', not '.' or '..'), got {name!r}"
        )
    if storage is not None and "://" not in str(storage):
        root = Path(storage).expanduser().resolve()
        target = (root / name).resolve()
        if target.parent != root:
            raise ConfigError(
                f"{key}={name!r} resolves to {target}, outside the storage folder {root}"
            )
    return name


# ---------------------------------------------------------------- conversion


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (arg,) = typing.get_args(tp)
        return f"list[{_type_name(arg)}]"
    if origin is dict:
        karg, varg = typing.get_args(tp)
        return f"dict[{_type_name(karg)}, {_type_name(varg)}]"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        real = [a for a in args if a is not type(None)]
        if len(real) == 1 and isinstance(value, (list, tuple, dict)) and typing.get_origin(
            real[0]
        ) in (list, dict):  # a container: name the inner key that is wrong
            return _coerce(value, real[0], key)
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")
    if origin is list:
        (arg,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")
        return [_coerce(v, arg, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        karg, varg = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")
        return {_coerce(k, karg, key): _coerce(v, varg, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - every field type is listed above
        raise TypeError(f"unsupported config field type {tp!r} for {key}")
    raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")


def build_section(cls: type, data: Any, prefix: str = "") -> Any:
    """``cls(**data)`` checked key by key: unknown keys (with the valid ones, or the
    replacement of a renamed key from ``cls.RENAMED``), types and choices; nested
    dataclass fields recurse. Raises :class:`ConfigError` naming the dotted key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    renamed: dict[str, str] = getattr(cls, "RENAMED", {})
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            if key in renamed:
                raise ConfigError(f"config key {dotted!r} was replaced: {renamed[key]}")
            raise ConfigError(
                f"unknown config key {dotted!r}; valid keys"
                f"{' in ' + prefix if prefix else ''}: {', '.join(fields)}"
            )
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = build_section(tp, value, dotted)
            continue
        kwargs[key] = _coerce(value, tp, dotted)
        allowed = fields[key].metadata.get("choices")
        if allowed and kwargs[key] is not None and kwargs[key] not in allowed:
            raise ConfigError(f"{dotted} must be one of {' | '.join(allowed)}, got {kwargs[key]!r}")
    return cls(**kwargs)


def check_include(include: dict[str, list[int]] | None, key: str = "data.include") -> None:
    """The one validator of ``data.include`` (after type coercion): a non-empty mapping of
    label keys to non-empty lists of values; whether the dataset has those labels is
    checked when it is opened (:func:`facecore.train.datasets.build_splits`)."""
    if include is None:
        return
    if not include:
        raise ConfigError(f"{key} must name at least one label (e.g. {{race: [0]}}), got {{}}")
    for label, values in include.items():
        if not label.strip():
            raise ConfigError(f"{key} has an empty label name")
        if not values:
            raise ConfigError(f"{key}.{label} must list at least one value, got []")


def validate_common(cfg: TrainConfig) -> None:
    """Cross-field checks of the shared sections; each raises :class:`ConfigError`."""

    def positive(key: str, value: float, minimum: float = 1) -> None:
        if value < minimum:
            raise ConfigError(f"{key} must be >= {minimum}, got {value}")

    d, o, r = cfg.data, cfg.optim, cfg.run
    positive("data.num_samples", d.num_samples, 2)
    positive("data.image_size", d.image_size, 16)
    positive("data.num_classes", d.num_classes, 2)
    positive("data.batch_size", d.batch_size, 1)
    positive("data.eval_batch_size", d.eval_batch_size, 1)
    positive("data.loader_workers", d.loader_workers, 0)
    if len(d.fractions) != 3 or any(f < 0 for f in d.fractions) or sum(d.fractions) <= 0:
        raise ConfigError(
            "data.fractions must be three non-negative numbers (train, valid, test), got "
            f"{d.fractions}"
        )
    if d.fractions[0] <= 0 or d.fractions[1] <= 0:
        raise ConfigError(f"data.fractions needs train > 0 and valid > 0, got {d.fractions}")
    check_include(d.include)
    if d.max_train_samples is not None:
        positive("data.max_train_samples", d.max_train_samples, 1)
    if o.lr <= 0:
        raise ConfigError(f"optim.lr must be > 0, got {o.lr}")
    positive("optim.epochs", o.epochs, 1)
    positive("run.workers", r.workers, 0)
    positive("run.num_to_keep", r.num_to_keep, 1)
    positive("run.max_failures", r.max_failures, -1)
    if r.cpus_per_worker <= 0:
        raise ConfigError(f"run.cpus_per_worker must be > 0, got {r.cpus_per_worker}")
    check_run_name(r.name, r.storage)
