"""Datasets and splits for training, from a config's ``data`` section and its task.

The dataset (:func:`facecore.data.open_dataset`, by ``data.name``) is opened twice, with
the training transform (random crop / flip when ``data.augment``) and with the evaluation
transform (center crop). :func:`facecore.data.dataset_splits` cuts it into ``train`` /
``valid`` / ``test`` (``data.seed``, ``data.fractions``), by image or, for tasks that
split by identity (face matching), by identity: the same items a reader opened with
``split="train"`` / ``"valid"`` / ``"test"`` holds, for every worker and every restart.
``data.split_by: identity`` splits by identity for any task (people with several images).
``data.max_samples`` then keeps a seeded random subset of each split, ``data.include``
keeps the items of the named label values in every split
(:func:`facecore.data.splits.filter_indices`) and ``data.max_train_samples`` caps the
training split (:func:`facecore.data.splits.limit_indices`, whole identities for tasks that
split by identity). Both act after the split, so an item is in the same split with or
without them.

Preprocessing: synthetic images use ``SYNTHETIC_PREPROCESS``'s mean / std at
``input_size = resize = data.image_size``; real images use ``CORAL_PREPROCESS``'s
mean / std with the CORAL ratio ``resize = round(image_size * 128 / 120)`` then a
crop of ``image_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from facecore.data import transforms as T
from facecore.data.registry import open_dataset
from facecore.data.splits import SPLIT_NAMES, dataset_splits, filter_indices, limit_indices
from facecore.train.sections import ConfigError, DataConfig, TrainConfig
from facecore.train.tasks import get_task

__all__ = ["Splits", "build_splits", "open_data", "preprocess_for"]


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

    def labels(self, split: str) -> torch.Tensor:
        """Labels of ``split`` (``"train"``, ``"valid"`` or ``"test"``)."""
        if split not in self.indices:
            raise KeyError(f"split must be one of {' | '.join(SPLIT_NAMES)}, got {split!r}")
        return self.targets[torch.as_tensor(self.indices[split], dtype=torch.long)]

    def sizes(self) -> dict[str, int]:
        return {name: len(idx) for name, idx in self.indices.items()}


def preprocess_for(cfg: DataConfig) -> T.PreprocessConfig:
    """The :class:`PreprocessConfig` used for training and written into the export."""
    if cfg.name == "synthetic":
        base, resize = T.SYNTHETIC_PREPROCESS, cfg.image_size
    else:
        base, resize = T.CORAL_PREPROCESS, round(cfg.image_size * 128 / 120)
    return T.PreprocessConfig(
        input_size=cfg.image_size, resize=resize, mean=base.mean, std=base.std,
        grayscale=base.grayscale,
    )


def open_data(cfg: DataConfig, transform: Any = None) -> Dataset:
    """The whole dataset of ``cfg`` (no split) with ``transform``."""
    options: dict[str, Any] = {}
    if cfg.name == "synthetic":  # the generator's settings; readers take their files as they are
        options = dict(
            num_samples=cfg.num_samples, image_size=cfg.image_size, num_classes=cfg.num_classes,
            seed=cfg.seed,
        )
        if cfg.num_identities is not None:
            options["num_identities"] = cfg.num_identities
    try:
        return open_dataset(cfg.name, cfg.root, csv=cfg.csv, transform=transform, **options)
    except ValueError as exc:
        raise ConfigError(f"data.name={cfg.name!r}: {exc}") from None


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


def build_splits(cfg: TrainConfig) -> Splits:
    """Open the configured dataset and split it for ``cfg.task``. Raises
    :class:`ConfigError` when the dataset has no labels for the task, when a split with a
    positive fraction is empty, or when the task refuses an evaluation split
    (:meth:`~facecore.train.tasks.base.Task.check_split`, e.g. no genuine pairs)."""
    task = get_task(cfg.task)
    d = cfg.data
    preprocess = preprocess_for(d)
    train_ds = open_data(d, preprocess.train_transform() if d.augment else preprocess.eval_transform())
    eval_ds = open_data(d, preprocess.eval_transform())
    key = task.label_key
    split_by = task.splits_by(cfg)
    try:
        targets = torch.as_tensor(train_ds.targets(key), dtype=torch.long)
    except (KeyError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"data.name={d.name!r} has no {key!r} labels for task {cfg.task!r}: {exc}"
        ) from None
    try:
        parts = dataset_splits(train_ds, _fractions(d), d.seed, by=split_by)
    except ValueError as exc:
        raise ConfigError(f"data.name={d.name!r} for task {cfg.task!r}: {exc}") from None
    if d.max_samples is not None and d.max_samples < len(train_ds):
        keep = torch.randperm(len(train_ds), generator=torch.Generator().manual_seed(d.seed + 1))
        keep = set(keep[: d.max_samples].tolist())
        parts = {name: [i for i in idx if i in keep] for name, idx in parts.items()}
    unit = "identities" if split_by == "identity" else "images"
    for name, fraction in zip(SPLIT_NAMES, d.fractions):
        if fraction > 0 and not parts[name]:
            raise ConfigError(
                f"data.fractions={d.fractions} leave the {name} split empty ({len(train_ds)} "
                f"images, split by {unit}): use a larger share or more data"
            )
    if d.include is not None:
        parts = _include(d, train_ds, parts)
    if d.max_train_samples is not None:
        groups = train_ds.targets("identity").numpy() if split_by == "identity" else None
        parts["train"] = limit_indices(parts["train"], d.max_train_samples, d.seed, groups=groups)
    for name in SPLIT_NAMES[1:]:
        if parts[name]:
            task.check_split(cfg, name, targets[torch.as_tensor(parts[name], dtype=torch.long)])
    return Splits(
        train=Subset(train_ds, parts["train"]),
        valid=Subset(eval_ds, parts["valid"]),
        test=Subset(eval_ds, parts["test"]),
        indices=parts,
        key=key,
        targets=targets,
        num_classes=task.num_classes(cfg, train_ds, targets),
        preprocess=preprocess,
        split_by=split_by,
        dataset=eval_ds,
    )
