"""Shared machinery of facecore's datasets: label tables, class counts, image loading and
the corrupt-file policy.

Corrupt / truncated images
--------------------------
``verify=True`` (the default) decodes every image once when the dataset is built (JPEGs in
Pillow's draft mode, which still reads the whole entropy-coded stream, so truncation is
caught at a fraction of a full decode; a small thread pool overlaps the I/O). Files that fail
are dropped, counted in :attr:`ImageFileDataset.skipped` and reported in **one** warning
(count and the first few names). The item list is then fixed before any DataLoader worker
starts, so indices, lengths and class counts agree in every process.

With ``verify=False`` nothing is decoded up front. If an image then fails to load inside
``__getitem__`` (it was corrupt, or changed on disk), the item is replaced by the next
index that loads (``(i + 1) % len``, deterministic), the failure is recorded and one warning
per process is emitted; an exception is raised only if no image at all can be loaded.
Either way a bad file never crashes a DataLoader worker.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from facecore.data.images import ImageModeError, check_mode, read_image, to_8bit
from facecore.data.splits import split_indices
from facecore.data.transforms import ToTensor

__all__ = [
    "IMAGE_EXTENSIONS",
    "FaceDataset",
    "ImageFileDataset",
    "check_root",
    "load_image",
    "verify_image",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp", ".tif", ".tiff", ".webp")
_LOAD_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)
_REPORT_FIRST = 5


def load_image(x: Any, mode: str = "RGB") -> Image.Image:
    """Return ``x`` as a decoded PIL image in ``mode`` (default ``"RGB"``).

    Accepts a path (``str`` / ``os.PathLike``), a ``PIL.Image``, a numpy array ``HxW`` /
    ``HxWx1`` / ``HxWx3`` / ``HxWx4`` (``uint8``, or float in [0, 1], scaled by 255 and
    rounded), or a tensor ``[C, H, W]`` (same value conventions). Greyscale is replicated to
    RGB, alpha is dropped. Files and PIL images are decoded by facecore's one image decoder
    (:mod:`facecore.data.images`, also the predictor's: 16-bit grayscale is scaled to 8 bit,
    unreadable modes are refused with :class:`~facecore.data.images.ImageModeError`).
    Raises ``FileNotFoundError`` / :class:`~facecore.data.images.ImageDecodeError` (a
    ``ValueError``) for missing / unreadable / truncated files.
    """
    if isinstance(x, str | os.PathLike):
        return read_image(x, mode)
    if isinstance(x, Image.Image):
        return to_8bit(x, mode) if x.mode != mode else x
    if isinstance(x, torch.Tensor):
        if x.dim() != 3:
            raise ValueError(f"tensor images must be [C, H, W], got shape {tuple(x.shape)}")
        x = x.detach().cpu().permute(1, 2, 0).numpy()
    if isinstance(x, np.ndarray):
        arr = x
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
            raise ValueError(f"numpy images must be HxW, HxWx1, HxWx3 or HxWx4, got shape {x.shape}")
        if arr.dtype != np.uint8:
            if not np.issubdtype(arr.dtype, np.floating):
                raise TypeError(f"numpy images must be uint8 or float in [0, 1], got {arr.dtype}")
            arr = np.clip(np.rint(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
        im = Image.fromarray(np.ascontiguousarray(arr))
        return im.convert(mode)
    raise TypeError(
        f"load_image expects a path, PIL.Image, numpy array or tensor, got {type(x).__name__}"
    )


def verify_image(path: str | os.PathLike) -> str | None:
    """Decode ``path`` fully (JPEG in draft mode) and check that its pixel mode is one
    :func:`load_image` reads; ``None`` if fine, else the error message."""
    try:
        with Image.open(path) as im:
            check_mode(im, repr(os.fspath(path)))
            if im.format == "JPEG":
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except _LOAD_ERRORS as e:
        return f"{type(e).__name__}: {e}"
    return None


def check_root(root: str | os.PathLike, what: str) -> Path:
    """``Path(root)``, or a clear ``FileNotFoundError`` naming the dataset."""
    p = Path(root).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what} root {str(p)!r} does not exist")
    if not p.is_dir():
        raise NotADirectoryError(f"{what} root {str(p)!r} is not a directory")
    return p


class FaceDataset(Dataset):
    """Base of all facecore datasets: a label table plus the shared label API.

    Subclasses fill ``self._labels`` (key -> int64 numpy array, one entry per item) and set
    ``num_classes`` (age classes) / ``num_identities`` / ``num_races`` where they apply.
    """

    num_classes: int
    num_identities: int
    _labels: dict[str, np.ndarray]
    _float_labels: frozenset[str] = frozenset()

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def label_keys(self) -> tuple[str, ...]:
        """The target keys every item carries."""
        return tuple(self._labels)

    def targets(self, key: str) -> torch.Tensor:
        """All labels ``key`` as a tensor (int64, or float32 for real-valued keys; ``[N, A]``
        for CelebA ``attributes``) without decoding any image."""
        if key not in self._labels:
            raise KeyError(f"unknown target key {key!r}; this dataset has {list(self._labels)}")
        arr = self._labels[key]
        return torch.from_numpy(np.ascontiguousarray(arr)).clone()

    def _num_values(self, key: str) -> int:
        attr = {"age": "num_classes", "identity": "num_identities", "race": "num_races"}.get(key)
        if attr is not None and hasattr(self, attr):
            return int(getattr(self, attr))
        if key == "gender":
            return 2
        arr = self._labels[key]
        return int(arr.max()) + 1 if arr.size else 0

    def class_counts(self, key: str = "age") -> list[int]:
        """Items per class of ``key``: a list of length ``num_classes`` (age), 2 (gender),
        ``num_identities`` (identity), ... (zeros included)."""
        if key not in self._labels or key in self._float_labels or self._labels[key].ndim != 1:
            raise KeyError(
                f"class_counts needs an integer label key; got {key!r}, this dataset has "
                f"{[k for k in self._labels if k not in self._float_labels]}"
            )
        arr = self._labels[key]
        return np.bincount(arr, minlength=self._num_values(key)).tolist()

    def record_positions(self) -> tuple[int, np.ndarray]:
        """``(n, index)``: the number of records a ``split=`` selection is drawn from and each
        item's position among them (:func:`facecore.data.splits.dataset_splits` uses it to
        cut an unsplit dataset exactly as ``split=`` would). Default: the items themselves."""
        return len(self), np.arange(len(self))

    def record_labels(self, key: str) -> np.ndarray:
        """Labels ``key`` of every record (before files were dropped), for grouped splits."""
        if key not in self._labels:
            raise KeyError(f"unknown target key {key!r}; this dataset has {list(self._labels)}")
        return self._labels[key]

    def _target(self, i: int) -> dict[str, Any]:
        t: dict[str, Any] = {}
        for k, arr in self._labels.items():
            v = arr[i]
            if arr.ndim > 1:
                t[k] = torch.from_numpy(np.array(v))
            elif k in self._float_labels:
                t[k] = float(v)
            else:
                t[k] = int(v)
        return t


class ImageFileDataset(FaceDataset):
    """A dataset of image files with a label table; see the module docstring for the
    corrupt-file policy and :mod:`facecore.data` for the item convention.

    Subclasses call :meth:`_setup` with the parsed (path, labels) records.
    """

    def __init__(
        self,
        *,
        transform: Callable[[Any], Any] | None = None,
        mode: str = "RGB",
        verify: bool = True,
        verify_workers: int = 4,
    ) -> None:
        if mode not in ("RGB", "L"):
            raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
        self.transform = transform
        self.mode = mode
        self.verify = verify
        self.verify_workers = verify_workers
        self.skipped: dict[str, list[str]] = {}
        self._skip_detail: dict[str, str] = {}  # reason -> the first file's message
        self._bad_at_runtime: set[int] = set()
        self._warned_runtime = False

    # -- construction -----------------------------------------------------------------

    def _skip(self, reason: str, name: str) -> None:
        self.skipped.setdefault(reason, []).append(name)

    def _setup(
        self,
        what: str,
        paths: Sequence[Path],
        labels: dict[str, Sequence[Any] | np.ndarray],
        *,
        split: str | None = None,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
        split_seed: int = 0,
        split_groups: Sequence[int] | None = None,
        root: Path | None = None,
    ) -> None:
        """Select ``split`` (by seed, over all parsed records, so a corrupt file does not
        move others between splits), verify the images, then freeze the label table."""
        if len(paths) == 0:
            detail = f" under {str(root)!r}" if root is not None else ""
            extra = self._skipped_summary()
            raise RuntimeError(f"{what}: no usable images found{detail}{extra}")
        keep = split_indices(len(paths), split, split_fractions, split_seed, split_groups)
        num_records = len(paths)
        record_groups = {"identity": np.asarray(labels["identity"])} if "identity" in labels else {}
        paths = [paths[i] for i in keep]
        labels = {k: np.asarray(v)[keep] for k, v in labels.items()}
        index = np.asarray(keep, dtype=np.int64)
        if self.verify and paths:
            with ThreadPoolExecutor(max(1, self.verify_workers)) as ex:
                errors = list(ex.map(verify_image, paths, chunksize=64))
            ok = np.array([e is None for e in errors], dtype=bool)
            for p, e in zip(paths, errors):
                if e is None:
                    continue
                if e.startswith(ImageModeError.__name__):  # readable, but not a mode we read
                    self._skip("unsupported_image_mode", self._name(p, root))
                    self._skip_detail.setdefault("unsupported_image_mode", e.split(": ", 1)[1])
                else:
                    self._skip("corrupt", self._name(p, root))
            paths = [p for p, good in zip(paths, ok) if good]
            labels = {k: v[ok] for k, v in labels.items()}
            index = index[ok]
        self._records = (num_records, index, record_groups)
        self.root = root
        self.paths = list(paths)
        self._labels = {
            k: (v.astype(np.float32) if k in self._float_labels else v.astype(np.int64))
            for k, v in labels.items()
        }
        self._report(what)
        if not self.paths:
            raise RuntimeError(f"{what}: no readable images left{self._skipped_summary()}")

    @staticmethod
    def _name(p: Path, root: Path | None) -> str:
        try:
            return str(p.relative_to(root)) if root is not None else str(p)
        except ValueError:
            return str(p)

    def _skipped_summary(self) -> str:
        if not self.skipped:
            return ""
        parts = []
        for reason, names in self.skipped.items():
            first = ", ".join(names[:_REPORT_FIRST]) + (", ..." if len(names) > _REPORT_FIRST else "")
            detail = self._skip_detail.get(reason)
            parts.append(f"{len(names)} {reason.replace('_', ' ')} ({first})"
                         + (f" [{detail}]" if detail else ""))
        return "; skipped " + "; ".join(parts)

    def _report(self, what: str) -> None:
        if self.skipped:
            warnings.warn(f"{what}: {self._skipped_summary()[2:]}", stacklevel=3)

    def record_positions(self) -> tuple[int, np.ndarray]:
        return self._records[0], self._records[1]

    def record_labels(self, key: str) -> np.ndarray:
        if key in self._records[2]:
            return self._records[2][key]
        return super().record_labels(key)

    @property
    def num_skipped(self) -> int:
        """How many files were skipped at construction (all reasons)."""
        return sum(len(v) for v in self.skipped.values())

    # -- access -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, i: int) -> Image.Image:
        return load_image(self.paths[i], self.mode)

    def load(self, index: int) -> tuple[Image.Image, int]:
        """Decoded image of ``index``, or of the next loadable index; returns (image, index used)."""
        n = len(self.paths)
        for step in range(n):
            j = (index + step) % n
            if j in self._bad_at_runtime:
                continue
            try:
                return self._load(j), j
            except _LOAD_ERRORS as e:
                self._bad_at_runtime.add(j)
                if not self._warned_runtime:
                    self._warned_runtime = True
                    warnings.warn(
                        f"{type(self).__name__}: could not load {str(self.paths[j])!r} "
                        f"({type(e).__name__}: {e}); using the next readable item instead "
                        "(reported once per process; build with verify=True to drop bad files "
                        "up front)",
                        stacklevel=3,
                    )
        raise RuntimeError(f"{type(self).__name__}: none of the {n} images could be loaded")

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        n = len(self.paths)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} items")
        index %= n
        img, j = self.load(index)
        x = (self.transform or _DEFAULT_TO_TENSOR)(img)
        return x, self._target(j)

    def subset(self, indices: Iterable[int]) -> torch.utils.data.Subset:
        return torch.utils.data.Subset(self, list(indices))


_DEFAULT_TO_TENSOR = ToTensor()
