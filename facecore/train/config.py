"""Typed training configuration: dataclasses per task, YAML files, dotted overrides.

A configuration is a tree of dataclasses. The root is one of :class:`AgeConfig`,
:class:`GenderConfig` or :class:`EmbeddingConfig` (chosen by its ``task`` key);
they share the sections ``data``, ``model``, ``optim`` and ``run`` and add one
task section (``ordinal``, ``binary`` or ``metric``)::

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
  ``X | None`` accepts ``null``) and against the
  allowed choices (e.g. ``ordinal.head`` in ``ce | niu | coral | corn``).
* Overrides are ``dotted.key=value`` strings (``--set optim.lr=0.01``); the value
  is parsed as YAML (``1e-3`` -> float, ``true`` -> bool, ``null`` -> None,
  ``[1, 2]`` -> list) and then checked like a file value.
* :func:`config_to_dict` / :func:`config_from_dict` round-trip exactly, and the
  dict is what every checkpoint stores (``train_config``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "RunSettings",
    "OrdinalOptions",
    "BinaryOptions",
    "MetricOptions",
    "TrainConfig",
    "AgeConfig",
    "GenderConfig",
    "EmbeddingConfig",
    "TASKS",
    "DATASETS",
    "check_data_root",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "save_config",
    "apply_overrides",
    "packaged_config",
    "packaged_configs",
]

TASKS = ("age", "gender", "embedding")
DATASETS = (
    "synthetic",
    "utkface",
    "afad",
    "morph2",
    "cacd",
    "celeba",
    "fairface",
    "folders",
)
ORDINAL_HEADS = ("ce", "niu", "coral", "corn")
BACKBONES = ("small_cnn", "resnet10", "resnet18", "resnet34")
METRIC_LOSSES = ("triplet", "contrastive", "arcface", "cosface", "sphereface")
MINERS = ("batch_hard", "hard", "semihard", "all", "easy")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step")


class ConfigError(ValueError):
    """A configuration problem; the message is one line naming the key and the expected value."""


@dataclass
class DataConfig:
    """Where the images come from and how they are split and batched.

    ``name``: ``synthetic`` (generated on the fly, no files) or a reader:
    ``utkface | afad | morph2 | cacd`` (ages), ``celeba`` (attributes, gender),
    ``fairface`` (age groups, gender), ``folders`` (one folder per identity,
    e.g. ORL). Readers need ``root``; ``morph2 | cacd`` also ``csv`` (the CORAL
    code's CSV of file names and ages). ``num_samples`` / ``num_classes`` /
    ``num_identities`` describe the synthetic set; ``max_samples`` caps a real
    set (``null``: all). Splits are ``fractions`` = (train, val, test) drawn
    with ``seed``.
    """

    name: str = "synthetic"
    root: str | None = None
    csv: str | None = None
    num_samples: int = 2000
    image_size: int = 64
    num_classes: int = 8
    num_identities: int | None = None
    max_samples: int | None = None
    fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    batch_size: int = 64
    eval_batch_size: int = 256
    loader_workers: int = 0
    augment: bool = True
    seed: int = 0


@dataclass
class ModelConfig:
    """Backbone (``small_cnn | resnet18 | resnet34``), its base width (``null``: the
    backbone's default) and, for the embedding task, the embedding size."""

    backbone: str = "small_cnn"
    width: int | None = None
    embedding_dim: int = 128


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule.

    ``cosine``: :math:`lr_e = lr \\cdot \\tfrac12 (1 + \\cos(\\pi e / E))` stepped per
    epoch; ``step``: multiply by ``gamma`` every ``step_size`` epochs.
    ``grad_clip``: max global gradient norm (``null``: no clipping).
    """

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = "cosine"
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
    ``name`` resumes from its last checkpoint. ``num_to_keep`` checkpoints are
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
    score_mode: str | None = None
    max_failures: int = 0
    address: str | None = None
    output: str | None = None
    export: bool = True
    plot: bool = True
    verbose: int = 1
    seed: int = 0
    fail_after_epoch: int | None = None


@dataclass
class OrdinalOptions:
    """Ordinal age head: ``ce | niu | coral | corn``; ``importance_weights``: the
    CORAL paper's task weights from the training label distribution;
    ``monotone_biases``: CORAL biases constrained non-increasing (rank
    consistency guaranteed); ``age_offset`` / ``age_scale``: age = offset +
    scale * class (metrics and predictions in years)."""

    head: str = "coral"
    importance_weights: bool = False
    monotone_biases: bool = True
    age_offset: float = 0.0
    age_scale: float = 1.0


@dataclass
class BinaryOptions:
    """Binary attribute (``gender``: 0 = male, 1 = female); ``calibrate`` fits a
    temperature on the validation logits each epoch (Guo et al. 2017)."""

    attribute: str = "gender"
    class_names: list[str] = field(default_factory=lambda: ["male", "female"])
    calibrate: bool = True


@dataclass
class MetricOptions:
    """Face-embedding objective.

    ``loss``: ``triplet`` (with ``miner``), ``contrastive`` (``margin`` is the
    negative margin, positives pulled to 0), or a margin softmax head
    ``arcface | cosface | sphereface`` (``scale``, ``margin``; SphereFace's
    margin is the integer multiplier ``m``). ``center_loss``:
    weight of the center loss (0: off). Batches are P identities x K images
    (``p``, ``k``).
    """

    loss: str = "triplet"
    miner: str = "batch_hard"
    margin: float = 0.2
    scale: float = 30.0
    center_loss: float = 0.0
    p: int = 8
    k: int = 4
    max_val_pairs: int = 20000


@dataclass
class TrainConfig:
    """Sections shared by every task."""

    task: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunSettings = field(default_factory=RunSettings)

    def score(self) -> tuple[str, str]:
        """``(metric, mode)`` ranking checkpoints (the run's or the task's default)."""
        default = _DEFAULT_SCORE[self.task]
        return (self.run.score or default[0], self.run.score_mode or default[1])


@dataclass
class AgeConfig(TrainConfig):
    task: str = "age"
    ordinal: OrdinalOptions = field(default_factory=OrdinalOptions)


@dataclass
class GenderConfig(TrainConfig):
    task: str = "gender"
    binary: BinaryOptions = field(default_factory=BinaryOptions)


@dataclass
class EmbeddingConfig(TrainConfig):
    task: str = "embedding"
    metric: MetricOptions = field(default_factory=MetricOptions)


_TASK_CLASSES: dict[str, type[TrainConfig]] = {
    "age": AgeConfig,
    "gender": GenderConfig,
    "embedding": EmbeddingConfig,
}
_DEFAULT_SCORE = {
    "age": ("val_mae", "min"),
    "gender": ("val_auc", "max"),
    "embedding": ("val_eer", "min"),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "data.name": DATASETS,
    "model.backbone": BACKBONES,
    "optim.name": OPTIMIZERS,
    "optim.scheduler": SCHEDULERS,
    "ordinal.head": ORDINAL_HEADS,
    "metric.loss": METRIC_LOSSES,
    "metric.miner": MINERS,
    "run.score_mode": ("min", "max"),
}


# ---------------------------------------------------------------- conversion


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (arg,) = typing.get_args(tp)
        return f"list[{_type_name(arg)}]"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
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


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {data!r}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(
                f"unknown config key {dotted!r}; valid keys"
                f"{' in ' + prefix if prefix else ''}: {', '.join(names)}"
            )
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, dotted)
        else:
            kwargs[key] = _coerce(value, tp, dotted)
            choices = _CHOICES.get(dotted if prefix else key)
            if choices and kwargs[key] is not None and kwargs[key] not in choices:
                raise ConfigError(
                    f"{dotted} must be one of {' | '.join(choices)}, got {kwargs[key]!r}"
                )
    return cls(**kwargs)


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
    if task not in _TASK_CLASSES:
        raise ConfigError(f"task must be one of {' | '.join(TASKS)}, got {task!r}")
    cfg = _build(_TASK_CLASSES[task], data, "")
    validate(cfg)
    return cfg


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain nested dict (JSON / YAML-able); ``config_from_dict`` inverts it exactly."""
    return dataclasses.asdict(cfg)


def validate(cfg: TrainConfig) -> None:
    """Cross-field checks; each raises :class:`ConfigError` naming the key."""

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
            f"data.fractions must be three non-negative numbers (train, val, test), got {d.fractions}"
        )
    if d.fractions[0] <= 0 or d.fractions[1] <= 0:
        raise ConfigError(f"data.fractions needs train > 0 and val > 0, got {d.fractions}")
    if o.lr <= 0:
        raise ConfigError(f"optim.lr must be > 0, got {o.lr}")
    positive("optim.epochs", o.epochs, 1)
    positive("run.workers", r.workers, 0)
    positive("run.num_to_keep", r.num_to_keep, 1)
    positive("run.max_failures", r.max_failures, -1)
    if r.cpus_per_worker <= 0:
        raise ConfigError(f"run.cpus_per_worker must be > 0, got {r.cpus_per_worker}")
    if not r.name or "/" in r.name:
        raise ConfigError(f"run.name must be a non-empty name without '/', got {r.name!r}")
    if isinstance(cfg, EmbeddingConfig):
        positive("metric.p", cfg.metric.p, 2)
        positive("metric.k", cfg.metric.k, 2)
        m = cfg.metric
        if m.loss == "sphereface" and (m.margin < 1 or not float(m.margin).is_integer()):
            raise ConfigError(
                f"metric.margin must be an integer >= 1 for sphereface (m in cos(m theta)), got {m.margin}"
            )
        if cfg.metric.center_loss < 0:
            raise ConfigError(f"metric.center_loss must be >= 0, got {cfg.metric.center_loss}")
    if isinstance(cfg, GenderConfig) and len(cfg.binary.class_names) != 2:
        raise ConfigError(
            f"binary.class_names must name 2 classes, got {cfg.binary.class_names}"
        )
    if isinstance(cfg, AgeConfig) and cfg.ordinal.age_scale <= 0:
        raise ConfigError(f"ordinal.age_scale must be > 0, got {cfg.ordinal.age_scale}")


def check_data_root(cfg: TrainConfig) -> None:
    """Before training: a reader needs ``data.root`` naming an existing folder."""
    d = cfg.data
    if d.name == "synthetic":
        return
    if not d.root:
        raise ConfigError(
            f"data.root is required for data.name={d.name!r} (pass --data-root DIR)"
        )
    if "://" not in d.root and not Path(d.root).expanduser().is_dir():
        raise ConfigError(f"data root not found: {d.root} (data.name={d.name!r})")


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
    import copy

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
