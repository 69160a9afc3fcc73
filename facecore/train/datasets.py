"""Datasets and splits for training, from a :class:`~facecore.train.config.DataConfig`.

One reader (or the synthetic generator) is opened twice, with the training
transform (random crop / flip when ``data.augment``) and with the evaluation
transform (center crop); the same deterministic split indices (``data.seed``,
``data.fractions``) select train / val / test from each, so the three splits
never overlap and every worker and every restart sees the same split.

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

from facecore.train.config import ConfigError, DataConfig

__all__ = ["Splits", "build_splits", "preprocess_for", "split_indices"]

# reader class name in facecore.data, target key it must provide
_READERS: dict[str, str] = {
    "utkface": "UTKFace",
    "afad": "AFADFolder",
    "morph2": "CoralCSV",
    "cacd": "CoralCSV",
    "celeba": "CelebA",
    "fairface": "FairFace",
    "folders": "IdentityFolders",
}
_TASK_KEY = {"age": "age", "gender": "gender", "embedding": "identity"}


@dataclass
class Splits:
    """Train / val / test datasets (``Subset`` views) and what the model needs to know."""

    train: Dataset
    val: Dataset
    test: Dataset
    train_indices: list[int]
    val_indices: list[int]
    test_indices: list[int]
    key: str  # the target key of the task: age | gender | identity
    targets: torch.Tensor  # all labels of the task (int64), indexed by dataset index
    num_classes: int  # age classes / 2 / identities
    preprocess: Any  # facecore.data.transforms.PreprocessConfig

    def labels(self, split: str) -> torch.Tensor:
        idx = {"train": self.train_indices, "val": self.val_indices, "test": self.test_indices}
        return self.targets[torch.as_tensor(idx[split], dtype=torch.long)]


def preprocess_for(cfg: DataConfig) -> Any:
    """The :class:`PreprocessConfig` used for training and written into the export."""
    from facecore.data import transforms as T

    if cfg.name == "synthetic":
        base = T.SYNTHETIC_PREPROCESS
        resize = cfg.image_size
    else:
        base = T.CORAL_PREPROCESS
        resize = round(cfg.image_size * 128 / 120)
    return T.PreprocessConfig(
        input_size=cfg.image_size,
        resize=resize,
        mean=tuple(base.mean),
        std=tuple(base.std),
        grayscale=bool(getattr(base, "grayscale", False)),
    )


def split_indices(n: int, fractions: list[float], seed: int) -> tuple[list[int], ...]:
    """Deterministic disjoint (train, val, test) index lists covering ``range(n)``.

    A permutation drawn from ``torch.Generator().manual_seed(seed)``; sizes
    ``floor(n * f / sum(f))`` for val and test (at least 1 when ``f > 0``),
    train takes the rest.
    """
    total = float(sum(fractions))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, int(n * fractions[1] / total)) if fractions[1] > 0 else 0
    n_test = max(1, int(n * fractions[2] / total)) if fractions[2] > 0 else 0
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ConfigError(f"data.fractions leave no training images out of {n}")
    return perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]


def _open(cfg: DataConfig, transform: Any, task: str) -> Dataset:
    import facecore.data as D

    if cfg.name == "synthetic":
        kwargs: dict[str, Any] = dict(
            image_size=cfg.image_size,
            num_classes=cfg.num_classes,
            seed=cfg.seed,
            transform=transform,
        )
        if cfg.num_identities is not None:
            kwargs["num_identities"] = cfg.num_identities
        return D.SyntheticFaces(cfg.num_samples, **kwargs)
    cls = getattr(D, _READERS[cfg.name])
    if cfg.name in ("morph2", "cacd"):
        if not cfg.csv:
            raise ConfigError(
                f"data.csv is required for data.name={cfg.name!r} (the CORAL-style CSV of "
                "file names and ages; data.root is the image folder)"
            )
        return cls(cfg.csv, cfg.root, dataset=cfg.name, transform=transform)
    if cfg.name == "celeba":
        return cls(cfg.root, split=None, transform=transform)
    return cls(cfg.root, transform=transform)


def build_splits(cfg: DataConfig, task: str) -> Splits:
    """Open the configured dataset and split it; raises :class:`ConfigError` when the
    dataset has no labels for ``task`` (e.g. identities for ``folders`` but no ages)."""
    preprocess = preprocess_for(cfg)
    train_tf = preprocess.train_transform() if cfg.augment else preprocess.eval_transform()
    train_ds = _open(cfg, train_tf, task)
    eval_ds = _open(cfg, preprocess.eval_transform(), task)
    key = _TASK_KEY[task]
    try:
        targets = torch.as_tensor(train_ds.targets(key), dtype=torch.long)
    except (KeyError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"data.name={cfg.name!r} has no {key!r} labels for task {task!r}: {exc}"
        ) from None
    n = len(train_ds)
    if cfg.max_samples is not None and cfg.max_samples < n:
        keep = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + 1))
        keep = keep[: cfg.max_samples].sort().values.tolist()
    else:
        keep = list(range(n))
    tr, va, te = split_indices(len(keep), cfg.fractions, cfg.seed)
    tr, va, te = ([keep[i] for i in s] for s in (tr, va, te))
    if task == "age":
        num_classes = int(getattr(train_ds, "num_classes", int(targets.max()) + 1))
    elif task == "gender":
        num_classes = 2
    else:
        num_classes = int(getattr(train_ds, "num_identities", None) or int(targets.max()) + 1)
    return Splits(
        train=Subset(train_ds, tr),
        val=Subset(eval_ds, va),
        test=Subset(eval_ds, te),
        train_indices=tr,
        val_indices=va,
        test_indices=te,
        key=key,
        targets=targets,
        num_classes=num_classes,
        preprocess=preprocess,
    )
