"""Datasets and splits for training, from a config's ``data`` section and its task.

The dataset (:func:`facecore.data.open_dataset`, by ``data.name``; reader options such as
``age_range`` pass through) is opened **once**, checked against the config by the task
(:meth:`~facecore.train.tasks.base.Task.bind_dataset`: e.g. the age offset), and served
through two views: the training transform (random crop, random flip with
``data.horizontal_flip`` when ``data.augment``) and the evaluation transform (centre crop).
With ``data.cache`` ``memory`` / ``disk`` (readers only) each image is decoded and resized
once (:class:`facecore.data.DecodedImageCache`); the random part of the transform still
runs per item and epoch.

Splits: :func:`facecore.data.dataset_splits` cuts the dataset into ``train`` / ``valid`` /
``test`` (``data.seed``, ``data.fractions``), by image or, for tasks that split by
identity (face matching), by identity: the same items a reader opened with
``split="train"`` / ``"valid"`` / ``"test"`` holds, for every worker and every restart.
``data.split_by: identity`` splits by identity for any task (people with several images).
``data.csv`` instead takes the CORAL paper's fixed splits from its CSV files
(:class:`facecore.data.readers.CoralCSVSplits`). ``data.max_samples`` then keeps a seeded
random subset of each split, ``data.include`` keeps the items of the named label values
in every split (:func:`facecore.data.splits.filter_indices`) and ``data.max_train_samples``
caps the training split (:func:`facecore.data.splits.limit_indices`, whole identities for
tasks that split by identity). Both act after the split, so an item is in the same split
with or without them.

Preprocessing (:func:`preprocess_for`, exported with the model): synthetic images use
``SYNTHETIC_PREPROCESS``'s mean / std at ``input_size = resize = data.image_size``; real
images use ``CORAL_PREPROCESS``'s mean / std with the CORAL ratio
``resize = round(image_size * 128 / 120)`` then a crop of ``image_size``, after a centred
crop of ``data.crop_fraction`` of the shorter side.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from facecore.data import transforms as T
from facecore.data.base import ImageFileDataset
from facecore.data.cache import DecodedImageCache
from facecore.data.registry import DATASETS, open_dataset
from facecore.data.splits import SPLIT_NAMES, dataset_splits, filter_indices, limit_indices
from facecore.train.sections import ConfigError, DataConfig, TrainConfig
from facecore.train.tasks import get_task

__all__ = [
    "Splits",
    "build_splits",
    "cache_dir_of",
    "open_data",
    "open_image_cache",
    "preprocess_for",
]

#: the folder of a run (``<run.storage>/<run.name>``) that holds its disk image cache
IMAGE_CACHE_DIR = "image_cache"


@dataclass
class Splits:
    """The ``train`` / ``valid`` / ``test`` datasets (``Subset`` views) and what the model
    needs to know."""

    train: Dataset
    valid: Dataset
    test: Dataset
    indices: dict[str, list[int]]  # split name -> positions in ``dataset``
    key: str  # the target key of the task: age | gender | identity | ...
    targets: torch.Tensor  # all labels of the task (int64), indexed by dataset position
    num_classes: int  # age classes / 2 / identities
    preprocess: T.PreprocessConfig
    split_by: str  # "sample" | "identity"
    dataset: Dataset  # the whole dataset, evaluation transform
    config: TrainConfig  # the run's config bound to the dataset (Task.bind_dataset)
    fixed: bool = False  # splits from the dataset's own files (data.csv), not fractions

    def labels(self, split: str) -> torch.Tensor:
        """Labels of ``split`` (``"train"``, ``"valid"`` or ``"test"``)."""
        if split not in self.indices:
            raise KeyError(f"split must be one of {' | '.join(SPLIT_NAMES)}, got {split!r}")
        return self.targets[torch.as_tensor(self.indices[split], dtype=torch.long)]

    def sizes(self) -> dict[str, int]:
        return {name: len(idx) for name, idx in self.indices.items()}


def preprocess_for(cfg: DataConfig) -> T.PreprocessConfig:
    """The :class:`PreprocessConfig` used for training and written into the export
    (``horizontal_flip`` is that of training: ``data.horizontal_flip`` when
    ``data.augment``, else 0)."""
    if cfg.name == "synthetic":
        base, resize = T.SYNTHETIC_PREPROCESS, cfg.image_size
    else:
        base, resize = T.CORAL_PREPROCESS, round(cfg.image_size * 128 / 120)
    return T.PreprocessConfig(
        input_size=cfg.image_size, resize=resize, mean=base.mean, std=base.std,
        grayscale=base.grayscale or cfg.grayscale, horizontal_flip=cfg.horizontal_flip if cfg.augment else 0.0,
        crop_fraction=cfg.crop_fraction,
    )


def reader_options(cfg: DataConfig) -> dict[str, Any]:
    """Keyword arguments :func:`facecore.data.open_dataset` passes to the reader (or to
    the synthetic generator) for ``cfg``."""
    if cfg.name == "synthetic":  # the generator's settings; readers take their files as they are
        options: dict[str, Any] = dict(
            num_samples=cfg.num_samples, image_size=cfg.image_size, num_classes=cfg.num_classes,
            seed=cfg.seed,
        )
        if cfg.num_identities is not None:
            options["num_identities"] = cfg.num_identities
        if cfg.pose_jitter is not None:
            options["pose_jitter"] = cfg.pose_jitter
        return options
    options = {}
    if cfg.age_range is not None:
        options["age_range"] = tuple(cfg.age_range)
    return options


def open_data(cfg: DataConfig, transform: Any = None) -> Dataset:
    """The whole dataset of ``cfg`` (no split) with ``transform``; a problem with the
    files is a one-line :class:`ConfigError` naming the key (``data.csv`` for the CSV
    splits, else ``data.name``)."""
    try:
        return open_dataset(cfg.name, cfg.root, csv=cfg.csv, transform=transform, **reader_options(cfg))
    except (ValueError, OSError) as exc:
        key = "data.csv" if cfg.csv and ("CORAL" in str(exc) or "csv" in str(exc).lower()) else "data.name"
        value = cfg.csv if key == "data.csv" else cfg.name
        raise ConfigError(f"{key}={value!r}: {exc}") from None


def cache_dir_of(cfg: TrainConfig) -> Path:
    """Where ``data.cache: disk`` keeps the decoded images: ``data.cache_dir``, or
    ``<run.storage>/<run.name>/image_cache`` for a local ``run.storage`` (a URI storage
    needs ``data.cache_dir``: a folder every worker can read)."""
    if cfg.data.cache_dir:
        return Path(cfg.data.cache_dir).expanduser().resolve()
    storage = cfg.run.storage
    if "://" in storage:
        raise ConfigError(
            f"data.cache=disk with run.storage={storage!r} (a URI) needs data.cache_dir: a folder "
            "every worker can read"
        )
    return Path(os.path.abspath(os.path.expanduser(storage))) / cfg.run.name / IMAGE_CACHE_DIR


def open_image_cache(
    cfg: TrainConfig, dataset: Any, preprocess: T.PreprocessConfig | None = None
) -> DecodedImageCache | None:
    """The decoded-image cache of ``dataset`` for ``data.cache`` (``None`` for ``off`` and
    for datasets that are not image readers, e.g. the synthetic faces): in memory, or
    memory-mapped under :func:`cache_dir_of` (built here when absent, reused when the files
    and the preprocessing are unchanged)."""
    if cfg.data.cache == "off" or not isinstance(dataset, ImageFileDataset):
        return None
    pre = preprocess or preprocess_for(cfg.data)
    where = cache_dir_of(cfg) if cfg.data.cache == "disk" else None
    return DecodedImageCache(dataset, pre.fixed_transform(), cache_dir=where)


def _view(dataset: Any, transform: Any) -> Any:
    """``dataset`` with another ``transform`` (a shallow copy: the file list and labels
    are shared)."""
    out = copy.copy(dataset)
    out.transform = transform
    return out


def _fractions(cfg: DataConfig) -> list[float]:
    total = float(sum(cfg.fractions))
    return list(cfg.fractions) if abs(total - 1.0) <= 1e-6 else [f / total for f in cfg.fractions]


def _include(d: DataConfig, dataset: Any, parts: dict[str, list[int]]) -> dict[str, list[int]]:
    """``data.include`` applied to every split; a one-line ConfigError naming the key when
    the dataset lacks the label or a split it leaves empty had items."""
    labels = {}
    keys = list(getattr(dataset, "label_keys", ()))
    for key in d.include:
        try:
            values = dataset.targets(key)
        except (KeyError, AttributeError):
            values = None
        if values is None or values.dim() != 1 or values.is_floating_point():
            raise ConfigError(
                f"data.include.{key}: data.name={d.name!r} has no integer label {key!r} "
                f"(labels: {', '.join(keys)})"
            )
        labels[key] = values.numpy()
    out = {name: filter_indices(idx, labels, d.include) for name, idx in parts.items()}
    for name in SPLIT_NAMES:
        if parts[name] and not out[name]:
            present = {k: sorted(set(v[parts[name]].tolist())) for k, v in labels.items()}
            raise ConfigError(
                f"data.include={d.include} leaves the {name} split empty (its values: "
                f"{present}): include other values, or change data.fractions / data.seed"
            )
    return out


def build_splits(cfg: TrainConfig, *, cache: bool = True) -> Splits:
    """Open the configured dataset and split it for ``cfg.task``. Raises
    :class:`ConfigError` when the dataset has no labels for the task, disagrees with the
    config (:meth:`~facecore.train.tasks.base.Task.bind_dataset`), when a split with a
    positive fraction is empty, or when the task refuses an evaluation split
    (:meth:`~facecore.train.tasks.base.Task.check_split`, e.g. no genuine pairs).
    ``cache=False`` ignores ``data.cache`` (e.g. to evaluate the test split only)."""
    task = get_task(cfg.task)
    d = cfg.data
    preprocess = task.preprocess(cfg, preprocess_for(d))
    base = open_data(d)
    key = task.label_key
    split_by = task.splits_by(cfg)
    try:
        targets = torch.as_tensor(base.targets(key), dtype=torch.long)
    except (KeyError, ValueError, AttributeError) as exc:
        hint = ""
        if key == "age" and DATASETS[d.name].age_reader and d.age_range is None:
            hint = " (set data.age_range: [MIN, MAX] to read its ages)"
        raise ConfigError(
            f"data.name={d.name!r} has no {key!r} labels for task {cfg.task!r}{hint}: {exc}"
        ) from None
    bound = task.bind_dataset(cfg, base)
    fixed = getattr(base, "split_indices", None)
    if fixed is not None:
        parts = {name: list(fixed.get(name, [])) for name in SPLIT_NAMES}
    else:
        try:
            parts = dataset_splits(base, _fractions(d), d.seed, by=split_by)
        except ValueError as exc:
            raise ConfigError(f"data.name={d.name!r} for task {cfg.task!r}: {exc}") from None
    if d.max_samples is not None and d.max_samples < len(base):
        keep = torch.randperm(len(base), generator=torch.Generator().manual_seed(d.seed + 1))
        keep = set(keep[: d.max_samples].tolist())
        parts = {name: [i for i in idx if i in keep] for name, idx in parts.items()}
    unit = "identities" if split_by == "identity" else "images"
    for name, fraction in zip(SPLIT_NAMES, d.fractions):
        if fixed is not None:
            if name != "test" and not parts[name]:
                raise ConfigError(f"data.csv={d.csv!r}: the {name} split has no usable images")
        elif fraction > 0 and not parts[name]:
            raise ConfigError(
                f"data.fractions={d.fractions} leave the {name} split empty ({len(base)} "
                f"images, split by {unit}): use a larger share or more data"
            )
    if d.include is not None:
        parts = _include(d, base, parts)
    if d.max_train_samples is not None:
        groups = base.targets("identity").numpy() if split_by == "identity" else None
        parts["train"] = limit_indices(parts["train"], d.max_train_samples, d.seed, groups=groups)
    for name in SPLIT_NAMES[1:]:
        if parts[name]:
            task.check_split(cfg, name, targets[torch.as_tensor(parts[name], dtype=torch.long)])
    store = open_image_cache(cfg, base, preprocess) if cache else None
    if store is not None:
        train_ds = store.dataset(preprocess.random_transform(train=d.augment))
        eval_ds = store.dataset(preprocess.random_transform(train=False))
    else:
        train_ds = _view(base, preprocess.train_transform() if d.augment else preprocess.eval_transform())
        eval_ds = _view(base, preprocess.eval_transform())
    return Splits(
        train=Subset(train_ds, parts["train"]),
        valid=Subset(eval_ds, parts["valid"]),
        test=Subset(eval_ds, parts["test"]),
        indices=parts,
        key=key,
        targets=targets,
        num_classes=task.num_classes(cfg, base, targets),
        preprocess=preprocess,
        split_by=split_by,
        dataset=eval_ds,
        config=bound,
        fixed=fixed is not None,
    )
