"""The dataset registry: ``data.name`` -> how to open it. The one list of dataset names
(training's ``data.name`` choices and the CLI's ``--data`` come from :data:`DATASETS`).

:func:`open_dataset` opens the whole dataset (``split=None``); training cuts it with
:func:`facecore.data.splits.dataset_splits`, or, for a dataset opened with ``csv=``
(the CORAL paper's fixed ``*_train/valid/test.csv`` splits,
:class:`~facecore.data.readers.CoralCSVSplits`), takes its ``split_indices``. Adding a
dataset: write its reader (a :class:`~facecore.data.base.FaceDataset`) and add one
:class:`DatasetEntry` line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from facecore.data.base import FaceDataset
from facecore.data.readers import (
    AFADFolder,
    CelebA,
    CoralCSVSplits,
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
    it needs a ``root`` folder / a ``csv`` file; one line of description.
    ``age_reader``: its reader has ``age`` labels and takes ``age_range`` (and describes
    its labels with ``age_offset`` / ``num_classes`` / ``age_unit``); ``csv_splits``: the
    :data:`~facecore.data.readers.CORAL_OFFSETS` name of its CORAL CSVs when ``csv=``
    opens the paper's fixed splits (``None``: no such splits)."""

    opener: Callable[[Any, Any, Any, dict[str, Any]], FaceDataset]
    description: str
    needs_root: bool = True
    needs_csv: bool = False
    age_reader: bool = False
    csv_splits: str | None = None


def _synthetic(root, csv, transform, options) -> FaceDataset:
    options = dict(options)
    return SyntheticFaces(int(options.pop("num_samples", 2000)), transform=transform, **options)


def _reader(cls: type | None, coral: str | None = None, **fixed: Any) -> Callable[..., FaceDataset]:
    """Open ``cls(root, ...)``, or, given ``csv`` and a CORAL name, the fixed CSV splits."""

    def opener(root, csv, transform, options) -> FaceDataset:
        if csv is not None and coral is not None:
            return CoralCSVSplits(csv, root, dataset=coral, transform=transform, **options)
        if cls is None:
            raise ValueError("needs csv= (the CORAL train/valid/test CSVs)")
        return cls(root, transform=transform, **fixed, **options)

    return opener


DATASETS: dict[str, DatasetEntry] = {
    "synthetic": DatasetEntry(_synthetic, "procedural faces (no files)", needs_root=False),
    "utkface": DatasetEntry(
        _reader(UTKFace, "utk"), "UTKFace JPEG folder (or utk_*.csv splits)", age_reader=True,
        csv_splits="utk",
    ),
    "afad": DatasetEntry(
        _reader(AFADFolder, "afad"), "AFAD AGE/GENDER/ID.jpg (or afad_*.csv splits)",
        age_reader=True, csv_splits="afad",
    ),
    "morph2": DatasetEntry(
        _reader(None, "morph2"), "MORPH-2 + CORAL morph2_*.csv splits", needs_csv=True,
        age_reader=True, csv_splits="morph2",
    ),
    "cacd": DatasetEntry(
        _reader(None, "cacd"), "CACD + CORAL cacd_*.csv splits", needs_csv=True,
        age_reader=True, csv_splits="cacd",
    ),
    "celeba": DatasetEntry(_reader(CelebA, split=None), "CelebA (attributes, identities)"),
    "fairface": DatasetEntry(_reader(FairFace), "FairFace age groups", age_reader=True),
    "folders": DatasetEntry(_reader(IdentityFolders), "one folder per identity (ORL)"),
    "london": DatasetEntry(
        _reader(LondonFaces), "Face Research Lab London Set (labels.csv; ages with age_range)",
        age_reader=True,
    ),
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

    ``root``: the image folder (readers); ``csv``: the CORAL paper's fixed split CSVs
    (``utkface`` / ``afad`` / ``morph2`` / ``cacd``; a prefix ``DIR/NAME``, one of
    ``NAME_{train,valid,test}.csv`` or their folder): the result is a
    :class:`~facecore.data.readers.CoralCSVSplits` with ``split_indices``;
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
            f"dataset {name!r} needs csv= (the CORAL paper's train/valid/test CSVs of file names "
            "and ages; the root is the image folder)"
        )
    if csv and entry.csv_splits is None:
        raise ValueError(f"dataset {name!r} takes no csv= (no CORAL CSV splits)")
    return entry.opener(root, csv, transform, options)
