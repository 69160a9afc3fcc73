"""The task-independent parts of a training configuration: the shared sections
(``data``, ``model``, ``optim``, ``run``), the :class:`TrainConfig` base every task's
config extends, and the machinery that builds dataclasses from dicts with one-line errors.

A field's allowed values live next to what they name and are attached here as field
metadata (``field(metadata={"choices": BACKBONES})``); :func:`build_section` checks them.
:mod:`facecore.train.config` is the public configuration API (it knows the tasks).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

from facecore.data.cache import CACHE_MODES
from facecore.data.registry import DATASETS
from facecore.data.splits import SPLIT_BY
from facecore.models.backbones import BACKBONES, RESNET_LAYERS
from facecore.models.pretrained import STAGES
from facecore.train.optim import OPTIMIZERS, SCHEDULERS

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "RunSettings",
    "TrainConfig",
    "apply_overrides",
    "build_section",
    "check_data",
    "check_include",
    "check_model",
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
    """Where the images come from, how they are split, preprocessed and batched.

    ``name``: a dataset of :data:`facecore.data.DATASETS`: ``synthetic`` (generated on the
    fly, no files) or a reader: ``utkface | afad | morph2 | cacd`` (ages), ``celeba``
    (attributes, gender, identities), ``fairface`` (age groups, gender), ``folders`` (one
    folder per identity, e.g. ORL), ``london`` (Face Research Lab London Set). Readers need
    ``root``. ``num_samples`` / ``num_classes`` / ``num_identities`` describe the synthetic
    set, ``pose_jitter`` (``null``: the generator's 1.0) scales its per-image pose nuisance
    (rotation, shift, scale; lower gives sharper mean faces); ``max_samples`` caps a real
    set (``null``: all).

    Ages: ``age_range: [MIN, MAX]`` (inclusive years; age datasets only) keeps the images
    in that range and makes ``MIN`` class 0 (``age = years - MIN``, ``MAX - MIN + 1``
    classes; FairFace keeps the groups whose lower bound lies in it; the London set needs
    it to have age labels). Without it the classes span the ages present. The offset the
    model, the export and the predictor use is always the reader's (never a config value).

    Splits: ``train`` / ``valid`` / ``test`` take ``fractions`` (in that order) of the
    images, or of the identities for tasks that split by identity, drawn with ``seed``
    (:func:`facecore.data.dataset_splits`: the same items as a reader's ``split=``).
    ``csv`` (``utkface | afad | morph2 | cacd``; required for ``morph2 | cacd``) gives the
    CORAL paper's **fixed** splits instead: the prefix ``DIR/NAME`` of ``NAME_train.csv``,
    ``NAME_valid.csv``, ``NAME_test.csv`` (or any one of those files, or a folder holding
    one such set) in the CORAL code's format, images under ``root``
    (:func:`facecore.data.coral_csv_splits`); ``fractions`` are then not used.
    ``split_by``: ``null`` (the task's: by image, by identity for matching) or ``identity``
    (no person in two splits for any task, e.g. a gender model on a set with several
    photos per person).

    Training on a subset by attribute: ``include`` maps label keys to the values kept
    (``{race: [0]}``: one skin-tone group; ``{race: [0, 2], gender: [1]}``: both must
    hold). It is applied **after** the split, to every split, so the kept items are in the
    same split as without it (no person crosses splits where the task splits by identity,
    and a model trained on one group is tested on people no other run with the same
    ``seed`` / ``fractions`` trained on). ``max_train_samples`` then caps the training
    split (a seeded subset; whole identities where the task splits by identity), e.g. to
    train every group on the same number of images.

    Preprocessing (:class:`facecore.data.PreprocessConfig`, exported with the model):
    ``image_size`` (the model's input), ``crop_fraction`` (first keep the centred square of
    that fraction of the shorter side: ``1.0`` for aligned faces, ``0.5`` for FairFace's
    wide-margin crops, where it lowered the label MAE from 2.198 to 1.605 age groups),
    ``horizontal_flip`` (probability of a random left-right flip in training when
    ``augment``; 0.5: FairFace CORAL 1.836 with it, 1.938 without), ``grayscale`` (the
    luma replicated to 3 channels, e.g. the auxiliaries of a privacy network, which see
    grayscale faces).

    ``cache``: decode and resize each image once (:class:`facecore.data.DecodedImageCache`;
    readers only, the synthetic set renders itself): ``memory`` (default; built in each
    training process), ``disk`` (a memory-mapped file under ``cache_dir``, default
    ``<run.storage>/<run.name>/image_cache``, built once by ``fit`` before the Ray workers
    start and mapped by all of them: use it with several workers) or ``off`` (decode every
    epoch). Random crops and flips still run every epoch.
    """

    name: str = choices(DATASETS, "synthetic")
    root: str | None = None
    csv: str | None = None
    num_samples: int = 2000
    image_size: int = 64
    num_classes: int = 8
    num_identities: int | None = None
    pose_jitter: float | None = None
    max_samples: int | None = None
    age_range: list[int] | None = None
    fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    split_by: str | None = choices(SPLIT_BY, None)
    include: dict[str, list[int]] | None = None
    max_train_samples: int | None = None
    batch_size: int = 64
    eval_batch_size: int = 256
    loader_workers: int = 0
    augment: bool = True
    horizontal_flip: float = 0.5
    crop_fraction: float = 1.0
    grayscale: bool = False
    cache: str = choices(CACHE_MODES, "memory")
    cache_dir: str | None = None
    seed: int = 0


@dataclass
class ModelConfig:
    """Backbone (one of :data:`facecore.models.BACKBONES`), its base width (``null``: the
    backbone's default) and, for the embedding task, the embedding size.

    Fine-tuning: ``pretrained: PATH`` loads weights into the new model before training
    (:func:`facecore.models.load_pretrained`): a torchvision-layout ResNet state dict
    (ImageNet ``resnet18/34/50/101`` at ``width: null``; its ``fc.*`` is ignored) or a
    facecore model / training checkpoint (its head too where the shapes match). What
    loaded, what is missing or unexpected is printed at the start; a file of which nothing
    fits is an error. It is not applied when a run resumes (the checkpoint has the
    weights). ``freeze: [stem, layer1, ...]`` (or ``[all]``; ResNets) stops training those
    stages (no gradient, batch norm on its running statistics), also after a resume. A
    pretrained run's default learning rate is the backbone's divided by 10
    (:func:`facecore.train.optim.default_lr`).
    """

    backbone: str = choices(BACKBONES, "small_cnn")
    width: int | None = None
    embedding_dim: int = 128
    pretrained: str | None = None
    freeze: list[str] | None = None


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule (:mod:`facecore.train.optim`; the defaults are
    the issue-10 recipe measured on real faces, with the figures, in that module).

    ``name``: ``adamw`` (default) | ``adam`` | ``sgd``, with ``weight_decay`` (default
    0.05) on conv / linear weights only (biases, norms and the ordinal thresholds are
    never decayed) and ``momentum`` (SGD). ``lr``: the peak learning rate; ``null``
    (default) takes the backbone's (:data:`facecore.train.optim.DEFAULT_LR`: small_cnn
    1e-2, resnet18 3e-3, ...; scaled by ``sqrt(data.batch_size / 64)`` and divided by 10
    when ``model.pretrained`` is set).
    ``scheduler`` (stepped after every batch): ``onecycle`` (default: warm-up over 30% of
    the steps from ``lr / 25`` to ``lr``, then cosine to ~0), ``cosine`` (linear warm-up
    from 0 over 5% of the steps, then cosine to 0) or ``constant`` (the same warm-up,
    then ``lr``); ``warmup_epochs`` sets the warm-up length in epochs instead (may be
    fractional). ``grad_clip``: max global gradient norm (``null``: no clipping). Only
    parameters with ``requires_grad`` are optimised (frozen parts of a model or objective
    are not). A resumed run takes these settings and the schedule from the current config
    and only the optimiser's state from the checkpoint (:mod:`facecore.train.optim`):
    raising ``epochs`` continues on the schedule of the new horizon.
    """

    RENAMED: ClassVar[dict[str, str]] = {
        key: "the per-epoch 'step' schedule was removed; optim.scheduler is one of "
        + " | ".join(SCHEDULERS) + " (stepped per batch)"
        for key in ("step_size", "gamma")
    }

    name: str = choices(OPTIMIZERS, "adamw")
    lr: float | None = None
    weight_decay: float = 0.05
    momentum: float = 0.9
    scheduler: str = choices(SCHEDULERS, "onecycle")
    warmup_epochs: float | None = None
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
        allowed = fields[key].metadata.get("choices")
        if allowed and isinstance(value, bool) and ("on" if value else "off") in allowed:
            value = "on" if value else "off"  # YAML 1.1 reads a bare off / on as a boolean
        kwargs[key] = _coerce(value, tp, dotted)
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


def check_data(d: DataConfig) -> None:
    """The one validator of the ``data`` keys that need more than a type or a choice
    list (``age_range``, ``csv``, ``crop_fraction`` / ``horizontal_flip`` through
    :class:`~facecore.data.PreprocessConfig`'s own validator, ``cache_dir``); each problem
    is one :class:`ConfigError` line naming the key."""
    entry = DATASETS[d.name]
    if d.age_range is not None:
        if not entry.age_reader:
            ages = " | ".join(n for n, e in DATASETS.items() if e.age_reader)
            raise ConfigError(
                f"data.age_range applies to the age datasets ({ages}), not data.name={d.name!r}"
            )
        if len(d.age_range) != 2 or d.age_range[0] < 0 or d.age_range[0] > d.age_range[1]:
            raise ConfigError(
                f"data.age_range must be [MIN, MAX] years with 0 <= MIN <= MAX, got {d.age_range}"
            )
    if d.pose_jitter is not None:
        if d.name != "synthetic":
            raise ConfigError(f"data.pose_jitter applies to data.name='synthetic', not {d.name!r}")
        if not 0 <= d.pose_jitter <= 4:
            raise ConfigError(f"data.pose_jitter must be in [0, 4], got {d.pose_jitter}")
    if d.csv is not None and entry.csv_splits is None:
        fixed = " | ".join(n for n, e in DATASETS.items() if e.csv_splits)
        raise ConfigError(
            f"data.csv (the CORAL paper's fixed train/valid/test CSVs) applies to {fixed}, not "
            f"data.name={d.name!r}"
        )
    from facecore.data.transforms import PreprocessConfig

    try:  # PreprocessConfig is the one validator of these values
        PreprocessConfig(
            input_size=d.image_size, horizontal_flip=d.horizontal_flip,
            crop_fraction=d.crop_fraction,
        )
    except ValueError as exc:
        raise ConfigError(str(exc).replace("preprocess.", "data.", 1)) from None
    if d.cache_dir is not None and d.cache != "disk":
        raise ConfigError(f"data.cache_dir applies to data.cache=disk, got data.cache={d.cache!r}")


def check_model(m: ModelConfig) -> None:
    """The ``model.pretrained`` / ``model.freeze`` checks that need no file (the file is
    read before training starts, :func:`facecore.train.runner.fit`)."""
    if m.pretrained is not None and not m.pretrained.strip():
        raise ConfigError("model.pretrained must be a file path or null, got ''")
    if m.freeze is not None:
        bad = [s for s in m.freeze if s not in STAGES and s != "all"]
        if bad or (len(m.freeze) > 1 and "all" in m.freeze):
            raise ConfigError(
                f"model.freeze must list stages of {' | '.join(STAGES)} (or be [all]), got {m.freeze}"
            )
        if m.freeze and m.backbone not in RESNET_LAYERS:
            raise ConfigError(
                f"model.freeze applies to ResNet backbones ({' | '.join(RESNET_LAYERS)}), "
                f"not model.backbone={m.backbone!r}"
            )


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
    check_data(d)
    check_model(cfg.model)
    if o.lr is not None and not o.lr > 0:
        raise ConfigError(f"optim.lr must be > 0, got {o.lr} (null: the backbone's default)")
    if not o.weight_decay >= 0:
        raise ConfigError(f"optim.weight_decay must be >= 0, got {o.weight_decay}")
    positive("optim.epochs", o.epochs, 1)
    if o.warmup_epochs is not None and not 0 <= o.warmup_epochs < o.epochs:
        raise ConfigError(
            f"optim.warmup_epochs must be in [0, optim.epochs={o.epochs}), got {o.warmup_epochs}"
        )
    positive("run.workers", r.workers, 0)
    positive("run.num_to_keep", r.num_to_keep, 1)
    positive("run.max_failures", r.max_failures, -1)
    if r.cpus_per_worker <= 0:
        raise ConfigError(f"run.cpus_per_worker must be > 0, got {r.cpus_per_worker}")
    check_run_name(r.name, r.storage)


# ----------------------------------------------------------------- overrides


def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Return a copy of the nested dict ``data`` with ``dotted.key=value`` overrides applied.

    Values given as strings are parsed as YAML. Keys are checked later by
    :func:`config_from_dict`; a malformed override (no ``=``, empty key) raises
    :class:`ConfigError` here.
    """
    out = copy.deepcopy(data)
    items: list[tuple[str, Any]] = []
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"override must look like section.key=value, got {item!r}")
            items.append((key.strip(), _parse_value(value)))
    for key, value in items:
        parts = key.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"override {key!r}: {'.'.join(parts[: i + 1])} is not a section"
                )
            node = child
        node[parts[-1]] = value
    return out
