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
    (``options``: the synthetic generator's settings, ignored by readers); whether it
    needs a ``root`` folder / a ``csv`` file; one line of description."""

    opener: Callable[[Any, Any, Any, dict[str, Any]], FaceDataset]
    description: str
    needs_root: bool = True
    needs_csv: bool = False


def _synthetic(root, csv, transform, options) -> FaceDataset:
    kwargs = {k: options[k] for k in ("image_size", "num_classes", "seed") if k in options}
    if options.get("num_identities") is not None:
        kwargs["num_identities"] = options["num_identities"]
    return SyntheticFaces(options.get("num_samples", 2000), transform=transform, **kwargs)


def _coral_csv(dataset: str) -> Callable[..., FaceDataset]:
    def opener(root, csv, transform, options) -> FaceDataset:
        return CoralCSV(csv, root, dataset=dataset, transform=transform)

    return opener


DATASETS: dict[str, DatasetEntry] = {
    "synthetic": DatasetEntry(_synthetic, "procedural faces (no files)", needs_root=False),
    "utkface": DatasetEntry(lambda r, c, t, o: UTKFace(r, transform=t), "UTKFace JPEG folder"),
    "afad": DatasetEntry(lambda r, c, t, o: AFADFolder(r, transform=t), "AFAD AGE/GENDER/ID.jpg"),
    "morph2": DatasetEntry(_coral_csv("morph2"), "MORPH-2 + CORAL CSV", needs_csv=True),
    "cacd": DatasetEntry(_coral_csv("cacd"), "CACD + CORAL CSV", needs_csv=True),
    "celeba": DatasetEntry(
        lambda r, c, t, o: CelebA(r, split=None, transform=t), "CelebA (attributes, identities)"
    ),
    "fairface": DatasetEntry(lambda r, c, t, o: FairFace(r, transform=t), "FairFace age groups"),
    "folders": DatasetEntry(
        lambda r, c, t, o: IdentityFolders(r, transform=t), "one folder per identity (ORL)"
    ),
    "london": DatasetEntry(
        lambda r, c, t, o: LondonFaces(r, transform=t), "Face Research Lab London Set (labels.csv)"
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

    ``root``: the image folder (readers); ``csv``: the CORAL CSV (``morph2`` / ``cacd``);
    ``options``: ``num_samples``, ``image_size``, ``num_classes``, ``num_identities``,
    ``seed`` for ``synthetic``. Raises ``ValueError`` naming what is missing.
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
