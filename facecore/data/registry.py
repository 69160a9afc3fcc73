"""The dataset registry: ``data.name`` -> how to open it. The one list of dataset names
(training's ``data.name`` choices and the CLI's ``--data`` come from :data:`DATASETS`).

:func:`open_dataset` opens the whole dataset (``split=None``); training cuts it with
:func:`facecore.data.splits.dataset_splits`. Adding a dataset: write its reader (a
:class:`~facecore.data.base.FaceDataset`) and add one :class:`DatasetEntry` line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from facecore.data.base import FaceDataset
from facecore.data.readers import (
    AFADFolder,
    CelebA,
    CoralCSV,
    FairFace,
    IdentityFolders,
    LondonFaces,
    UTKFace,
)
from facecore.data.synthetic import SyntheticFaces

__all__ = ["DATASETS", "DatasetEntry", "open_dataset"]


@dataclass(frozen=True)
class DatasetEntry:
    """How to open one dataset: ``opener(root, csv, transform, options) -> FaceDataset``
    (``options``: keyword arguments of the reader, or of the synthetic generator); whether
    it needs a ``root`` folder / a ``csv`` file; one line of description."""

    opener: Callable[[Any, Any, Any, dict[str, Any]], FaceDataset]
    description: str
    needs_root: bool = True
    needs_csv: bool = False


def _synthetic(root, csv, transform, options) -> FaceDataset:
    options = dict(options)
    return SyntheticFaces(int(options.pop("num_samples", 2000)), transform=transform, **options)


def _reader(cls: type, **fixed: Any) -> Callable[..., FaceDataset]:
    def opener(root, csv, transform, options) -> FaceDataset:
        return cls(root, transform=transform, **fixed, **options)

    return opener


def _coral_csv(dataset: str) -> Callable[..., FaceDataset]:
    def opener(root, csv, transform, options) -> FaceDataset:
        return CoralCSV(csv, root, dataset=dataset, transform=transform, **options)

    return opener


DATASETS: dict[str, DatasetEntry] = {
    "synthetic": DatasetEntry(_synthetic, "procedural faces (no files)", needs_root=False),
    "utkface": DatasetEntry(_reader(UTKFace), "UTKFace JPEG folder"),
    "afad": DatasetEntry(_reader(AFADFolder), "AFAD AGE/GENDER/ID.jpg"),
    "morph2": DatasetEntry(_coral_csv("morph2"), "MORPH-2 + CORAL CSV", needs_csv=True),
    "cacd": DatasetEntry(_coral_csv("cacd"), "CACD + CORAL CSV", needs_csv=True),
    "celeba": DatasetEntry(_reader(CelebA, split=None), "CelebA (attributes, identities)"),
    "fairface": DatasetEntry(_reader(FairFace), "FairFace age groups"),
    "folders": DatasetEntry(_reader(IdentityFolders), "one folder per identity (ORL)"),
    "london": DatasetEntry(_reader(LondonFaces), "Face Research Lab London Set (labels.csv)"),
}


def open_dataset(
    name: str,
    root: Any = None,
    *,
    csv: Any = None,
    transform: Callable[[Any], Any] | None = None,
    **options: Any,
) -> FaceDataset:
    """Open dataset ``name`` (a key of :data:`DATASETS`) whole (no split).

    ``root``: the image folder (readers); ``csv``: the CORAL CSV (``morph2`` / ``cacd``);
    ``options``: keyword arguments of the reader (e.g. ``age_range``, ``require_age``) or,
    for ``synthetic``, of :class:`~facecore.data.SyntheticFaces` plus ``num_samples``
    (default 2000). Raises ``ValueError`` naming what is missing.
    """
    entry = DATASETS.get(name)
    if entry is None:
        raise ValueError(f"unknown dataset {name!r}; known: {' | '.join(DATASETS)}")
    if entry.needs_root and not root:
        raise ValueError(f"dataset {name!r} needs a root folder")
    if entry.needs_csv and not csv:
        raise ValueError(
            f"dataset {name!r} needs csv= (the CORAL-style CSV of file names and ages; the root "
            "is the image folder)"
        )
    return entry.opener(root, csv, transform, options)
