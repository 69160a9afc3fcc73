r"""Readers for real face datasets, each read the way the field reads it.

All readers share :class:`facecore.data.base.ImageFileDataset`'s behaviour: items
``(image, target)`` (see :mod:`facecore.data`), ``transform``, ``mode`` (``"RGB"`` /
``"L"``), ``verify`` (corrupt-file policy), ``split`` / ``split_fractions`` / ``split_seed``
(deterministic, :func:`facecore.data.make_splits`; CelebA uses its official partition),
``class_counts`` / ``targets``, ``skipped`` (reason -> file names) reported in one warning,
and a clear error when the root is missing or holds no usable images. File lists are
sorted, so item order is stable across machines.

Age labels (one contract for every reader with ages; training and export take the offset
from here, never from elsewhere): ``age`` is the ordinal class, and the reader's attributes
say what produced it:

* ``age_unit``: ``"year"`` (UTKFace, CoralCSV, AFADFolder, LondonFaces with ages) or
  ``"group"`` (FairFace);
* ``age_offset``: the age of class 0, ``age = age_years - age_offset`` (0 for groups);
* ``num_classes``: K; ``age_range = (age_offset, age_offset + K - 1)``: the years classes
  ``0..K-1`` stand for (for groups: the lower bounds of the first and last group);
* ``class_names``: the group names (FairFace only).

``age_range=(lo, hi)`` (inclusive years) is honoured by every age reader: images outside it
are skipped (``age_out_of_range``) and, unless ``age_offset`` says otherwise, class 0 is
``lo``. Without it the range is that of the ages present (CoralCSV for a named dataset: the
CORAL paper's classes, :data:`CORAL_NUM_CLASSES`).

* :class:`UTKFace`: ``age_gender_race_datetime.jpg[.chip.jpg]``; gender 0 = male,
  1 = female; race 0 = White, 1 = Black, 2 = Asian, 3 = Indian, 4 = Others. Names with a
  missing / non-numeric / out-of-range field are skipped and counted (``malformed_name``).
  ``age_range=(21, 60)`` with the default offset reproduces the CORAL paper (40 classes,
  ``age = age_years - 21``).
* :class:`CoralCSV`: the CORAL repository's CSVs (``[index,]file[,path],age[,gender]``, or
  MORPH-2's file names in the unnamed first column), in which ``age`` is **already**
  ``age_years - offset`` (AFAD 15, MORPH-2 16, CACD 14, UTK 21; see :data:`CORAL_OFFSETS`);
  images are ``image_root / path`` (or ``/ file``). :func:`coral_csv_splits` opens the
  paper's fixed ``*_train.csv`` / ``*_valid.csv`` / ``*_test.csv`` splits.
* :class:`AFADFolder`: AFAD's own layout ``AGE/GENDER/ID.jpg`` with GENDER 111 = male,
  112 = female.
* :class:`CelebA`: ``list_attr_celeba.txt`` (+-1 -> 1 / 0), ``identity_CelebA.txt``,
  ``list_eval_partition.txt`` (0 train, 1 valid, 2 test) and ``img_align_celeba/``;
  gender from ``Male``.
* :class:`FairFace`: ``ground_truth.json`` (``[{"filename", "age": "20-29", "gender":
  "Male"|"Female", ["race"]}]``) or FairFace's label CSV (``file,age,gender,race,...``); age
  groups are ordinal classes in :data:`FAIRFACE_AGE_GROUPS` order.
* :class:`IdentityFolders`: ``root/<person>/<image>`` (e.g. ORL's ``sN/M.pgm``); persons in
  natural order (``s2`` before ``s10``); splits are by identity by default.
* :class:`LondonFaces`: the Face Research Lab London Set as shipped in ``labels.csv``
  (``file,person,age,gender,ethnicity,expression``): identity, gender, ethnicity (as
  ``race``, names in :data:`LONDON_ETHNICITIES`), expression (0 neutral, 1 smiling) and, where
  known, age; splits are by identity by default.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facecore.data.base import IMAGE_EXTENSIONS, ImageFileDataset, check_root

__all__ = [
    "AGE_UNITS",
    "CORAL_NUM_CLASSES",
    "CORAL_OFFSETS",
    "FAIRFACE_AGE_GROUPS",
    "FAIRFACE_RACES",
    "AFADFolder",
    "CelebA",
    "CoralCSV",
    "CoralCSVSplits",
    "FairFace",
    "IdentityFolders",
    "LONDON_ETHNICITIES",
    "LondonFaces",
    "UTKFace",
    "coral_csv_splits",
]

#: What an age reader's classes count (``age_unit``): single years, or ordered groups
#: (FairFace's ``20-29`` ...; ``age_offset`` 0, ``class_names`` the groups).
AGE_UNITS = ("year", "group")
CORAL_OFFSETS = {"afad": 15, "morph2": 16, "morph": 16, "cacd": 14, "utk": 21, "utkface": 21}
# classes of the CORAL paper's protocols: AFAD 15-40, MORPH-2 16-70, CACD 14-62, UTK 21-60
CORAL_NUM_CLASSES = {"afad": 26, "morph2": 55, "morph": 55, "cacd": 49, "utk": 40, "utkface": 40}
FAIRFACE_AGE_GROUPS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")
FAIRFACE_RACES = (
    "White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern",
)
UTK_RACES = ("White", "Black", "Asian", "Indian", "Others")
LONDON_ETHNICITIES = ("white", "black", "east_asian", "west_asian", "east_asian/white")
LONDON_EXPRESSIONS = ("neutral", "smiling")


def _natural_key(s: str) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS


def _list_images(root: Path) -> list[Path]:
    """Every image file under ``root`` (recursively), in path order."""
    return sorted((q for q in root.rglob("*") if _is_image(q)), key=lambda q: str(q))


class _Common(ImageFileDataset):
    def __init__(self, transform, mode, verify, split, split_fractions, split_seed):
        super().__init__(transform=transform, mode=mode, verify=verify)
        self.split = split
        self._split_kw = {"split": split, "split_fractions": split_fractions, "split_seed": split_seed}

    def _keep_age_range(
        self,
        recs: list[tuple],
        age_range: tuple[int, int] | None,
        age_offset: int | None,
        name: Callable[[Path], str],
    ) -> tuple[list[tuple], int, int]:
        """Records ``(path, age_years, ...)`` inside ``age_range`` (inclusive; ``None``: the
        ages present); the others are skipped as ``age_out_of_range`` under ``name(path)``.
        Sets the attributes that describe the labels ``age = age_years - age_offset``:
        ``age_offset`` (default: the range's minimum), ``num_classes = max - offset + 1``,
        ``age_range = (age_offset, max)`` (the years classes ``0..K-1`` stand for) and
        ``age_unit = "year"``;
        returns ``(kept, range minimum, offset)``. An offset above the range's minimum
        (negative labels) is an error."""
        if age_range is not None:
            if len(tuple(age_range)) != 2:
                raise ValueError(f"age_range must be (min, max) years, got {age_range!r}")
            lo, hi = (int(a) for a in age_range)
            if lo > hi:
                raise ValueError(f"age_range must be (min, max) with min <= max, got {age_range}")
        else:
            ages = [r[1] for r in recs]
            lo, hi = (min(ages), max(ages)) if ages else (0, 0)
        off = lo if age_offset is None else int(age_offset)
        if off > lo:
            raise ValueError(
                f"age_offset={off} is above the youngest kept age {lo} (labels age_years - "
                "age_offset would be negative); set age_range or a smaller age_offset"
            )
        kept = []
        for r in recs:
            if lo <= r[1] <= hi:
                kept.append(r)
            else:
                self._skip("age_out_of_range", name(r[0]))
        self.age_offset, self.age_range = off, (off, hi)
        self.num_classes = hi - off + 1
        self.age_unit = "year"
        return kept, lo, off


class UTKFace(_Common):
    """UTKFace from file names ``age_gender_race_datetime.jpg[.chip.jpg]`` (see module doc).

    Args:
        root: folder with the images (searched recursively).
        age_range: inclusive ``(min, max)`` years kept (others skipped, counted as
            ``age_out_of_range``); ``None`` keeps all.
        age_offset: ``age = age_years - age_offset``; default ``age_range[0]`` (or the
            smallest age present). ``num_classes = max - offset + 1``.
    """

    _NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+)\.jpg(\.chip\.jpg)?$", re.IGNORECASE)

    def __init__(
        self,
        root: str | Path,
        *,
        age_range: tuple[int, int] | None = None,
        age_offset: int | None = None,
        transform: Callable[[Any], Any] | None = None,
        mode: str = "RGB",
        verify: bool = True,
        split: str | None = None,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
        split_seed: int = 0,
    ) -> None:
        super().__init__(transform, mode, verify, split, split_fractions, split_seed)
        root = check_root(root, "UTKFace")
        recs = []
        for p in _list_images(root):
            m = self._NAME.match(p.name)
            if m is None:
                self._skip("malformed_name", p.name)
                continue
            age, gender, race = int(m.group(1)), int(m.group(2)), int(m.group(3))
            if gender not in (0, 1) or race not in range(5) or not 0 <= age <= 120:
                self._skip("malformed_name", p.name)
                continue
            recs.append((p, age, gender, race))
        kept, lo, off = self._keep_age_range(recs, age_range, age_offset, lambda q: q.name)
        self.num_races = 5
        self.race_names = UTK_RACES
        self._setup(
            "UTKFace",
            [r[0] for r in kept],
            {
                "age": [r[1] - off for r in kept],
                "age_years": [r[1] for r in kept],
                "gender": [r[2] for r in kept],
                "race": [r[3] for r in kept],
            },
            root=root,
            **self._split_kw,
        )


class CoralCSV(_Common):
    """A CORAL-paper CSV (``age`` already offset) plus an image root (see module doc).

    The CORAL repository's per-split files (``utk_train.csv``, ``afad_valid.csv``,
    ``morph2_test.csv``, ``cacd_train.csv`` ...; :func:`coral_csv_splits` opens a whole
    set) in each dataset's own layout, which pandas reads with ``index_col=0``:

    * UTKFace / CACD: ``,file,age`` (a row-number column, the file name, the class);
    * AFAD: ``file,path,age,gender`` (``path`` = ``AGE/GENDER/ID.jpg`` under the image
      root; ``gender`` male / female);
    * MORPH-2: ``,id_num,picture_num,race,Male,...,age,...`` -- the first, unnamed
      column is the file name (used when there is no ``file`` / ``path`` column);
      ``Male`` 1 / -1 gives ``gender`` 0 / 1.

    ``dataset`` (``"afad"``, ``"morph2"``, ``"cacd"``, ``"utk"``) sets ``age_offset`` from
    :data:`CORAL_OFFSETS` (``age_years = age + offset``) and ``num_classes`` from
    :data:`CORAL_NUM_CLASSES` (the paper's: AFAD 26, MORPH-2 55, CACD 49, UTK 40), so the
    train, valid and test files of one protocol agree on the classes even when a split
    lacks the oldest age; without ``dataset``, ``age_offset`` defaults to 0 and
    ``num_classes`` to ``max(age) + 1``. For a named dataset each row's age is also
    checked against the age its file name / path carries (UTK and CACD ``AGE_...``, AFAD
    ``AGE/...``, MORPH-2 ``..M22.jpg``), so a CSV read with the wrong offset is an error,
    not a shift (``check_names=False`` turns that off).

    ``age_range`` (inclusive years) keeps only rows inside it (the others are skipped as
    ``age_out_of_range``); ``age_range[0]`` must not be below the offset, and
    ``num_classes`` then defaults to ``age_range[1] - offset + 1``. Labels are never
    re-offset: ``age`` is the CSV's value. The attributes ``age_offset``, ``num_classes``
    and ``age_range = (age_offset, age_offset + num_classes - 1)`` (the years the classes
    stand for) describe the labels, as in every age reader. The CSVs are per split
    already, so ``split`` is ``None`` by default.
    """

    _NAME_AGE = {
        "utk": re.compile(r"^(\d+)_"),
        "utkface": re.compile(r"^(\d+)_"),
        "cacd": re.compile(r"^(\d+)_"),
        "afad": re.compile(r"^(\d+)[/\\]"),
        "morph2": re.compile(r"[MF](\d+)\.[A-Za-z]+$"),
        "morph": re.compile(r"[MF](\d+)\.[A-Za-z]+$"),
    }

    def __init__(
        self,
        csv_path: str | Path,
        image_root: str | Path,
        *,
        dataset: str | None = None,
        age_offset: int | None = None,
        num_classes: int | None = None,
        age_range: tuple[int, int] | None = None,
        check_names: bool = True,
        transform: Callable[[Any], Any] | None = None,
        mode: str = "RGB",
        verify: bool = True,
        split: str | None = None,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
        split_seed: int = 0,
    ) -> None:
        super().__init__(transform, mode, verify, split, split_fractions, split_seed)
        root = check_root(image_root, "CoralCSV image")
        csv_path = Path(csv_path)
        if not csv_path.is_file():
            raise FileNotFoundError(f"CoralCSV csv_path {str(csv_path)!r} does not exist")
        self.csv_path = csv_path
        if dataset is not None and dataset.lower() not in CORAL_OFFSETS:
            raise ValueError(f"dataset must be one of {sorted(CORAL_OFFSETS)}, got {dataset!r}")
        key = dataset.lower() if dataset is not None else None
        off = int(age_offset) if age_offset is not None else (CORAL_OFFSETS[key] if key else 0)
        rows = _read_label_file(csv_path, "CoralCSV", lambda f: list(csv.reader(f)))
        if not rows:
            raise ValueError(f"CoralCSV: {str(csv_path)!r} is empty")
        header = [h.strip() for h in rows[0]]
        has_file = bool({"path", "file"} & set(header))
        if "age" not in header or not (has_file or (header and header[0] == "")):
            raise ValueError(
                f"CoralCSV: {str(csv_path)!r} needs an 'age' column and a 'path' or 'file' column "
                f"(or, as MORPH-2's, file names in the first, unnamed column), got header {header}"
            )
        ia = header.index("age")
        ip = header.index("path") if "path" in header else (header.index("file") if has_file else 0)
        ig = header.index("gender") if "gender" in header else None
        im = header.index("Male") if ig is None and "Male" in header else None
        genders = {"male": 0, "m": 0, "0": 0, "female": 1, "f": 1, "1": 1}
        name_age = self._NAME_AGE.get(key) if key and check_names else None
        recs: list[tuple] = []
        for n, row in enumerate(rows[1:], start=2):
            if not any(c.strip() for c in row):
                continue
            try:
                rel, age = row[ip].strip(), int(row[ia])
                if age < 0 or not rel:
                    raise ValueError
                g = None
                if ig is not None:
                    g = genders[row[ig].strip().lower()]
                elif im is not None:
                    g = {"1": 0, "-1": 1}[row[im].strip()]
            except (IndexError, ValueError, KeyError):
                self._skip("malformed_row", f"line {n}")
                continue
            if name_age is not None:
                m = name_age.search(rel)
                if m is not None and int(m.group(1)) != age + off:
                    raise ValueError(
                        f"CoralCSV: {str(csv_path)!r} line {n}: {rel!r} is {int(m.group(1))} years "
                        f"old but age {age} + age_offset {off} = {age + off}; the CSV was written "
                        f"with another offset (pass age_offset=, or check_names=False)"
                    )
            p = root / rel
            if not p.is_file():
                self._skip("missing_file", rel)
                continue
            recs.append((p, age + off, g))
        if age_range is not None:
            lo, hi = (int(a) for a in age_range)
            if lo < off:
                raise ValueError(
                    f"age_range {tuple(age_range)} starts below age_offset={off}: the CSV's labels "
                    "are age - offset and cannot be negative"
                )
        elif key is not None and num_classes is None:
            lo, hi = off, off + CORAL_NUM_CLASSES[key] - 1
        else:
            years = [r[1] for r in recs]
            lo = off
            hi = (off + int(num_classes) - 1) if num_classes is not None else (max(years) if years else off)
        if num_classes is not None and age_range is None:
            top = max((r[1] for r in recs), default=off)
            if top > off + int(num_classes) - 1:
                raise ValueError(
                    f"CoralCSV: age label {top - off} >= num_classes={int(num_classes)} "
                    "(pass age_range= to drop the older rows)"
                )
            kept = recs
        else:
            kept, _, _ = self._keep_age_range(recs, (lo, hi), off, lambda q: str(q.relative_to(root)))
        self.num_classes = int(num_classes) if num_classes is not None else hi - off + 1
        self.age_offset, self.age_range = off, (off, off + self.num_classes - 1)
        self.age_unit = "year"
        if any(r[1] - off >= self.num_classes for r in kept):
            bad = max(r[1] - off for r in kept)
            raise ValueError(f"CoralCSV: age label {bad} >= num_classes={self.num_classes}")
        labels: dict[str, Any] = {
            "age": [r[1] - off for r in kept],
            "age_years": [r[1] for r in kept],
        }
        if ig is not None or im is not None:
            labels["gender"] = [r[2] for r in kept]
        self._setup(f"CoralCSV({csv_path.name})", [r[0] for r in kept], labels, root=root, **self._split_kw)


def coral_csv_splits(
    csv: str | Path | dict[str, str | Path],
    image_root: str | Path,
    *,
    dataset: str | None = None,
    splits: Sequence[str] = ("train", "valid", "test"),
    **kwargs: Any,
) -> dict[str, CoralCSV]:
    """The CORAL paper's fixed splits: one :class:`CoralCSV` per split.

    ``csv`` is a ``{"train": path, "valid": path, "test": path}`` mapping, or a prefix
    ``DIR/NAME`` naming ``DIR/NAME_train.csv``, ``DIR/NAME_valid.csv``,
    ``DIR/NAME_test.csv`` (or any one of those files), or a folder holding exactly one
    ``*_train.csv`` (its ``*_valid.csv`` / ``*_test.csv`` beside it). ``dataset`` defaults to ``NAME`` when it
    is one of :data:`CORAL_OFFSETS` (``utk``, ``afad``, ``morph2``, ``cacd``), so every
    split has the same ``age_offset`` and ``num_classes``. A split whose file is missing
    is an error naming it; pass ``splits=("train", "test")`` for a protocol without a
    validation file. ``kwargs`` go to every :class:`CoralCSV` (``transform`` ...).

    >>> parts = coral_csv_splits("coral-cnn/datasets/utk", "UTKFace/")  # utk_*.csv
    >>> parts["train"].num_classes, parts["test"].age_offset
    (40, 21)
    """
    if isinstance(csv, dict):
        files = {s: Path(csv[s]) for s in splits if s in csv}
        missing = [s for s in splits if s not in csv]
        if missing:
            raise ValueError(f"csv mapping has no {missing} entries (it has {sorted(csv)})")
        name = None
    else:
        base = Path(csv)
        if base.is_dir():
            found = sorted(base.glob("*_train.csv"))
            if len(found) != 1:
                raise ValueError(
                    f"csv folder {str(base)!r} must hold exactly one *_train.csv, found "
                    f"{[p.name for p in found]}; pass the prefix DIR/NAME instead"
                )
            base = found[0].with_name(found[0].name[: -len("_train.csv")])
        m = re.match(r"^(.+)_(train|valid|test)\.csv$", base.name)
        if m is not None:  # one of the split files was given
            base = base.with_name(m.group(1))
        name = base.name
        files = {s: base.with_name(f"{name}_{s}.csv") for s in splits}
    for s, p in files.items():
        if not p.is_file():
            raise FileNotFoundError(f"CORAL {s} split file {str(p)!r} does not exist")
    if dataset is None and name is not None and name.lower() in CORAL_OFFSETS:
        dataset = name.lower()
    return {s: CoralCSV(p, image_root, dataset=dataset, **kwargs) for s, p in files.items()}


class CoralCSVSplits(ImageFileDataset):
    """The CORAL paper's fixed splits as **one** dataset (what training opens for
    ``data.csv``): the items of :func:`coral_csv_splits`' ``train``, ``valid`` and ``test``
    readers, in that order, with ``split_indices = {"train": [...], "valid": [...],
    "test": [...]}`` (positions in this dataset). ``age_offset``, ``num_classes``,
    ``age_range``, ``age_unit`` are the splits' (which must agree: a named dataset gives
    every split the paper's classes); label keys are those every split has. Images were
    verified by the split readers (``verify``), so nothing is decoded again here.

    >>> ds = CoralCSVSplits("coral-cnn/datasets/utk", "UTKFace/")   # utk_{train,valid,test}.csv
    >>> ds.age_offset, ds.num_classes, {k: len(v) for k, v in ds.split_indices.items()}
    """

    def __init__(
        self,
        csv: str | Path | dict[str, str | Path],
        image_root: str | Path,
        *,
        dataset: str | None = None,
        transform: Callable[[Any], Any] | None = None,
        mode: str = "RGB",
        verify: bool = True,
        **kwargs: Any,
    ) -> None:
        parts = coral_csv_splits(csv, image_root, dataset=dataset, mode=mode, verify=verify, **kwargs)
        super().__init__(transform=transform, mode=mode, verify=False)
        first = next(iter(parts.values()))
        for name, part in parts.items():
            for attr in ("age_offset", "num_classes"):
                if getattr(part, attr) != getattr(first, attr):
                    raise ValueError(
                        f"CORAL splits disagree on {attr}: {getattr(part, attr)} in {name}, "
                        f"{getattr(first, attr)} in {next(iter(parts))} (pass dataset=)"
                    )
        keys = [k for k in first.label_keys if all(k in p.label_keys for p in parts.values())]
        self.paths = [q for p in parts.values() for q in p.paths]
        self._labels = {k: np.concatenate([p._labels[k] for p in parts.values()]) for k in keys}
        self.split_indices: dict[str, list[int]] = {}
        start = 0
        for name, part in parts.items():
            self.split_indices[name] = list(range(start, start + len(part)))
            start += len(part)
            for reason, names in part.skipped.items():
                self.skipped.setdefault(reason, []).extend(f"{name}: {n}" for n in names)
        self._records = (len(self.paths), np.arange(len(self.paths)), {})
        self.root = first.root
        self.split = None
        self.age_offset, self.num_classes = first.age_offset, first.num_classes
        self.age_range, self.age_unit = first.age_range, first.age_unit
        self.csv_files = {name: str(part.csv_path) for name, part in parts.items()}


class AFADFolder(_Common):
    """AFAD's folder layout ``root/AGE/GENDER/ID.jpg`` (111 = male, 112 = female).

    ``age_range`` / ``age_offset`` as in :class:`UTKFace`; without ``age_offset`` the
    offset is ``age_range[0]`` when a range is given (its youngest age is class 0, as for
    every age reader), else 15 (AFAD's youngest age and the CORAL convention; the CORAL
    paper keeps ages 15-40, 26 classes); ``age_offset=None``: the youngest age present.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        age_range: tuple[int, int] | None = None,
        age_offset: Any = "default",
        transform: Callable[[Any], Any] | None = None,
        mode: str = "RGB",
        verify: bool = True,
        split: str | None = None,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
        split_seed: int = 0,
    ) -> None:
        super().__init__(transform, mode, verify, split, split_fractions, split_seed)
        if isinstance(age_offset, str) and age_offset == "default":
            age_offset = 15 if age_range is None else None  # None: age_range[0]
        root = check_root(root, "AFAD")
        recs = []
        for p in _list_images(root):
            rel = p.relative_to(root).parts
            if len(rel) < 3 or not rel[-3].isdigit() or rel[-2] not in ("111", "112"):
                self._skip("malformed_path", str(p.relative_to(root)))
                continue
            age = int(rel[-3])
            recs.append((p, age, 0 if rel[-2] == "111" else 1))
        kept, _, off = self._keep_age_range(
            recs, age_range, age_offset, lambda q: str(q.relative_to(root))
        )
        self._setup(
            "AFAD",
            [r[0] for r in kept],
            {"age": [r[1] - off for r in kept], "age_years": [r[1] for r in kept], "gender": [r[2] for r in kept]},
            root=root,
            **self._split_kw,
        )


def _read_label_file(path: Path, reader: str, parse: Callable[[Any], Any]) -> Any:
    """``parse(open text file)`` of a label file; a file that cannot be read or parsed (bad
    JSON / CSV, not text) is one ``ValueError`` line naming the reader and the file."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return parse(f)
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as e:  # JSONDecodeError too
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"{reader}: cannot read the label file {str(path)!r} ({type(e).__name__}: {detail})"
        ) from None


def _read_table(path: Path, what: str) -> list[list[str]]:
    if not path.is_file():
        raise FileNotFoundError(f"CelebA: {what} file {str(path)!r} does not exist")
    return _read_label_file(path, "CelebA", lambda f: [line.split() for line in f if line.strip()])


class CelebA(_Common):
    """CelebA with its official partition (``split`` = ``"train"`` / ``"valid"`` / ``"test"``
    / ``None`` for all). Target keys: ``gender`` (from ``Male``: 1 -> 0 male, -1 -> 1
    female), ``attributes`` (int64 [40], 1 = present), ``identity`` (the CelebA ids present
    in this split, renumbered ``0..num_identities-1`` in increasing id order;
    ``identity_ids`` holds the originals). ``attribute_names`` lists the 40 names.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        split: str | None = "train",
        transform: Callable[[Any], Any] | None = None,
        mode: str = "RGB",
        verify: bool = True,
        image_dir: str = "img_align_celeba",
    ) -> None:
        super().__init__(transform, mode, verify, None, (0.8, 0.1, 0.1), 0)
        root = check_root(root, "CelebA")
        parts = {"train": 0, "valid": 1, "test": 2}
        if split is not None and split not in parts:
            raise ValueError(f"split must be 'train', 'valid', 'test' or None, got {split!r}")
        self.split = split
        attr = _read_table(root / "list_attr_celeba.txt", "attribute")
        names = attr[1]
        if "Male" not in names:
            raise ValueError("CelebA: list_attr_celeba.txt has no 'Male' column")
        self.attribute_names = tuple(names)
        ident = {r[0]: int(r[1]) for r in _read_table(root / "identity_CelebA.txt", "identity")}
        part = {r[0]: int(r[1]) for r in _read_table(root / "list_eval_partition.txt", "partition")}
        img_dir = root / image_dir
        if not img_dir.is_dir():
            raise FileNotFoundError(f"CelebA image folder {str(img_dir)!r} does not exist")
        im = names.index("Male")
        recs = []
        for row in attr[2:]:
            fname, vals = row[0], row[1:]
            if len(vals) != len(names) or any(v not in ("1", "-1") for v in vals) or fname not in ident:
                self._skip("malformed_row", fname)
                continue
            if split is not None and part.get(fname) != parts[split]:
                continue
            p = img_dir / fname
            if not p.is_file():
                self._skip("missing_file", fname)
                continue
            a = [1 if v == "1" else 0 for v in vals]
            recs.append((p, a, 0 if a[im] == 1 else 1, ident[fname]))
        ids = sorted({r[3] for r in recs})
        remap = {v: i for i, v in enumerate(ids)}
        self._setup(
            "CelebA",
            [r[0] for r in recs],
            {
                "gender": [r[2] for r in recs],
                "identity": [remap[r[3]] for r in recs],
                "attributes": np.asarray([r[1] for r in recs], dtype=np.int64).reshape(-1, len(names)),
            },
            root=img_dir,
        )
        present = sorted(set(self._labels["identity"].tolist()))
        self.identity_ids = [ids[i] for i in present]
        # renumber again in case verification dropped every image of a person
        rm = {old: new for new, old in enumerate(present)}
        self._labels["identity"] = np.array([rm[i] for i in self._labels["identity"]], dtype=np.int64)
        self.num_identities = len(present)


class FairFace(_Common):
    """FairFace as an ordinal age-group dataset (see module doc).

    ``annotations`` defaults to ``root / "ground_truth.json"``; a ``.csv`` (FairFace's own
    ``file,age,gender,race`` label files) is read too. ``age`` = index of the group in
    ``age_groups`` (default :data:`FAIRFACE_AGE_GROUPS`); ``race`` (when present) = index in
    :data:`FAIRFACE_RACES`. No ``age_years`` (only groups are known).

    ``age_range`` (inclusive years) keeps the groups whose lower bound lies in it
    (``(20, 59)``: ``20-29`` .. ``50-59``; ``(20, 70)`` adds ``70+``); the images of the
    other groups are skipped as ``age_out_of_range`` and the kept groups are renumbered
    from 0. The labels are group indices: ``age_unit = "group"``, ``age_offset = 0``,
    ``class_names`` / ``age_groups`` = the kept groups, ``age_range`` = the lower bounds
    of the first and last kept group.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        annotations: str | Path | None = None,
        age_groups: Sequence[str] = FAIRFACE_AGE_GROUPS,
        age_range: tuple[int, int] | None = None,
        transform: Callable[[Any], Any] | None = None,
        mode: str = "RGB",
        verify: bool = True,
        split: str | None = None,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
        split_seed: int = 0,
    ) -> None:
        super().__init__(transform, mode, verify, split, split_fractions, split_seed)
        root = check_root(root, "FairFace")
        ann = Path(annotations) if annotations is not None else root / "ground_truth.json"
        if not ann.is_file():
            raise FileNotFoundError(f"FairFace annotations {str(ann)!r} do not exist")
        if ann.suffix.lower() == ".csv":
            entries = _read_label_file(ann, "FairFace", lambda f: list(csv.DictReader(f)))
            for e in entries:
                e.setdefault("filename", e.get("file", ""))
        else:
            entries = _read_label_file(ann, "FairFace", json.load)
            if not isinstance(entries, list):
                raise ValueError(f"FairFace: {str(ann)!r} must hold a JSON list of records")
        all_groups = tuple(str(g) for g in age_groups)
        lower = []
        for g in all_groups:
            m = re.match(r"^\s*(\d+)", g)
            if m is None:
                raise ValueError(f"age_groups must start with their lowest age (e.g. '20-29'), got {g!r}")
            lower.append(int(m.group(1)))
        if age_range is not None:
            if len(tuple(age_range)) != 2 or int(age_range[0]) > int(age_range[1]):
                raise ValueError(f"age_range must be (min, max) years with min <= max, got {age_range!r}")
            lo, hi = (int(a) for a in age_range)
            keep = [g for g, b in zip(all_groups, lower) if lo <= b <= hi]
            if not keep:
                raise ValueError(f"age_range {tuple(age_range)} keeps none of the age groups {list(all_groups)}")
        else:
            keep = list(all_groups)
        self.age_groups = tuple(keep)
        self.class_names = self.age_groups
        self.num_classes = len(self.age_groups)
        self.age_offset = 0
        self.age_unit = "group"
        self.age_range = (lower[all_groups.index(keep[0])], lower[all_groups.index(keep[-1])])
        gmap = {"male": 0, "female": 1}
        races = {r.lower(): i for i, r in enumerate(FAIRFACE_RACES)}
        recs = []
        has_race = all(isinstance(e, dict) and "race" in e for e in entries) and len(entries) > 0
        for e in entries:
            try:
                fname = str(e["filename"])
                group = str(e["age"]).strip()
                all_groups.index(group)  # ValueError: not a known group
                gender = gmap[str(e["gender"]).strip().lower()]
                race = races[str(e["race"]).strip().lower()] if has_race else 0
            except (KeyError, ValueError, TypeError):
                self._skip("malformed_record", str(e.get("filename", e) if isinstance(e, dict) else e))
                continue
            if group not in self.age_groups:
                self._skip("age_out_of_range", fname)
                continue
            p = root / fname
            if not p.is_file():
                self._skip("missing_file", fname)
                continue
            recs.append((p, self.age_groups.index(group), gender, race))
        labels: dict[str, Any] = {"age": [r[1] for r in recs], "gender": [r[2] for r in recs]}
        if has_race:
            labels["race"] = [r[3] for r in recs]
            self.num_races = len(FAIRFACE_RACES)
            self.race_names = FAIRFACE_RACES
        self._setup("FairFace", [r[0] for r in recs], labels, root=root, **self._split_kw)


class IdentityFolders(_Common):
    """One folder per person: ``root/<person>/<image>`` (ORL: ``sN/M.pgm``).

    ``identity`` = index of the person folder in natural order (``person_names`` lists
    them); folders without images are skipped (``empty_identity``). ``split_by="identity"``
    (default) keeps each person in one split (open-set matching), ``"sample"`` splits images.
    ``mode="RGB"`` (default) converts greyscale to 3 channels; ``mode="L"`` keeps one.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        transform: Callable[[Any], Any] | None = None,
        mode: str = "RGB",
        verify: bool = True,
        split: str | None = None,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
        split_seed: int = 0,
        split_by: str = "identity",
    ) -> None:
        super().__init__(transform, mode, verify, split, split_fractions, split_seed)
        if split_by not in ("identity", "sample"):
            raise ValueError(f"split_by must be 'identity' or 'sample', got {split_by!r}")
        root = check_root(root, "IdentityFolders")
        persons = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: _natural_key(d.name))
        paths, ids, names = [], [], []
        for d in persons:
            files = sorted((q for q in d.iterdir() if _is_image(q)), key=lambda q: _natural_key(q.name))
            if not files:
                self._skip("empty_identity", d.name)
                continue
            names.append(d.name)
            paths.extend(files)
            ids.extend([len(names) - 1] * len(files))
        self._setup(
            "IdentityFolders",
            paths,
            {"identity": ids},
            root=root,
            split_groups=ids if split_by == "identity" else None,
            **self._split_kw,
        )
        present = sorted(set(self._labels["identity"].tolist()))
        self.person_names = [names[i] for i in present]
        rm = {old: new for new, old in enumerate(present)}
        self._labels["identity"] = np.array([rm[i] for i in self._labels["identity"]], dtype=np.int64)
        self.num_identities = len(present)


class LondonFaces(_Common):
    """The Face Research Lab London Set (DeBruine & Jones 2017, CC BY 4.0): 102 adults, a
    neutral and a smiling photo each, read from ``root / "labels.csv"``
    (``file,person,age,gender,ethnicity,expression``).

    Targets: ``identity`` (person index, persons in ``person`` order; ``person_names``),
    ``gender`` (0 male, 1 female), ``race`` (index in :data:`LONDON_ETHNICITIES`; also
    ``race_names``), ``expression`` (0 neutral, 1 smiling). Ages: the set gives years for
    all but 2 people (``NA``). With ``age_range`` (inclusive years) or ``require_age=True``,
    rows without an age (``age_unknown``) or outside the range (``age_out_of_range``) are
    skipped and ``age`` (``age_years - age_offset``) / ``age_years`` are added, as in
    :class:`UTKFace`; otherwise every row is kept and there are no age targets.
    ``split_by="identity"`` (default) keeps both photos of a person in one split.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        age_range: tuple[int, int] | None = None,
        age_offset: int | None = None,
        require_age: bool = False,
        transform: Callable[[Any], Any] | None = None,
        mode: str = "RGB",
        verify: bool = True,
        split: str | None = None,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
        split_seed: int = 0,
        split_by: str = "identity",
    ) -> None:
        super().__init__(transform, mode, verify, split, split_fractions, split_seed)
        if split_by not in ("identity", "sample"):
            raise ValueError(f"split_by must be 'identity' or 'sample', got {split_by!r}")
        root = check_root(root, "LondonFaces")
        ann = root / "labels.csv"
        if not ann.is_file():
            raise FileNotFoundError(f"LondonFaces: labels file {str(ann)!r} does not exist")
        rows = _read_label_file(ann, "LondonFaces", lambda f: list(csv.DictReader(f)))
        need = ("file", "person", "age", "gender", "ethnicity", "expression")
        if not rows or any(k not in rows[0] for k in need):
            raise ValueError(f"LondonFaces: {str(ann)!r} must have the columns {', '.join(need)}")
        with_age = require_age or age_range is not None
        genders = {"male": 0, "female": 1}
        recs = []
        for r in rows:
            fname = (r.get("file") or "").strip()
            try:
                person = (r["person"] or "").strip()
                gender = genders[(r["gender"] or "").strip().lower()]
                race = LONDON_ETHNICITIES.index((r["ethnicity"] or "").strip().lower())
                expression = LONDON_EXPRESSIONS.index((r["expression"] or "").strip().lower())
                age_text = (r["age"] or "").strip()
                age = int(age_text) if age_text.upper() not in ("", "NA") else None
                if not person or not fname:
                    raise ValueError("empty field")
            except (KeyError, ValueError, AttributeError):
                self._skip("malformed_record", fname or str(r))
                continue
            p = root / fname
            if not p.is_file():
                self._skip("missing_file", fname)
                continue
            if with_age and age is None:
                self._skip("age_unknown", fname)
                continue
            recs.append((p, age if age is not None else -1, gender, race, expression, person))
        labels: dict[str, Any] = {}
        if with_age:
            recs, lo, off = self._keep_age_range(recs, age_range, age_offset, lambda q: q.name)
            labels["age"] = [r[1] - off for r in recs]
            labels["age_years"] = [r[1] for r in recs]
        persons = sorted({r[5] for r in recs}, key=_natural_key)
        pid = {p: i for i, p in enumerate(persons)}
        ids = [pid[r[5]] for r in recs]
        labels.update(
            gender=[r[2] for r in recs],
            race=[r[3] for r in recs],
            expression=[r[4] for r in recs],
            identity=ids,
        )
        self.race_names = LONDON_ETHNICITIES
        self.num_races = len(LONDON_ETHNICITIES)
        self.expression_names = LONDON_EXPRESSIONS
        self._setup(
            "LondonFaces",
            [r[0] for r in recs],
            labels,
            root=root,
            split_groups=ids if split_by == "identity" else None,
            **self._split_kw,
        )
        present = sorted(set(self._labels["identity"].tolist()))
        self.person_names = [persons[i] for i in present]
        rm = {old: new for new, old in enumerate(present)}
        self._labels["identity"] = np.array([rm[i] for i in self._labels["identity"]], dtype=np.int64)
        self.num_identities = len(present)
