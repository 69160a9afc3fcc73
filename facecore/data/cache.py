r"""Decode each image once: a cache of decoded, resized ``uint8`` images.

Reading a JPEG face crop and resizing it costs far more than the network step of a
small model at 64 px, and a plain dataset pays it again every epoch. A
:class:`DecodedImageCache` runs a reader's images through the **deterministic** part of
the preprocessing once (:meth:`PreprocessConfig.fixed_transform`: grayscale? -> resize)
and stores the results; :meth:`DecodedImageCache.dataset` then serves them through the
**random** part (:meth:`PreprocessConfig.random_transform`: random crop / flip for
training, centre crop for evaluation, to tensor, normalise), which still runs per item
and per epoch, so augmentation is unchanged. Given the same random state, a cached item
equals the uncached reader's item bit for bit.

Storage: one flat ``uint8`` buffer (images of any size; ``H x W x C`` each) with an
offset table.

* ``cache_dir=None``: in memory. Built in the constructing process, before any
  DataLoader worker starts, so forked workers share the pages.
* ``cache_dir=PATH``: a memory-mapped file ``PATH/<key>/images.u8`` plus
  ``index.npz`` and ``meta.json``. ``key`` is a SHA-256 of the cache format, the image
  mode, the fixed transform (its ``repr``) and every file's path, size and modification
  time, so a changed file or preprocessing gets a new cache, and the same one is reused
  across runs, processes and DataLoader / Ray workers (each maps the file read-only;
  pickling carries the path, not the pixels). A cache is written under a temporary name
  and renamed into place, so concurrent builders never see a partial cache.

Works with every :class:`~facecore.data.base.ImageFileDataset` reader (UTKFace,
CoralCSV, AFADFolder, CelebA, FairFace, IdentityFolders, LondonFaces): images come from
the reader's ``load`` (its corrupt-file policy included: an image that fails at build
time is replaced by the next loadable one, and that item's targets follow it).

>>> pre = PreprocessConfig(input_size=64, resize=68, horizontal_flip=0.5)
>>> cache = DecodedImageCache(FairFace(root), pre.fixed_transform())
>>> train = cache.dataset(pre.random_transform(train=True))
>>> test = cache.dataset(pre.random_transform(train=False))
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from facecore.data.base import FaceDataset

__all__ = ["CACHE_FORMAT_VERSION", "CACHE_MODES", "CachedImageDataset", "DecodedImageCache"]

CACHE_FORMAT_VERSION = 1
#: Where training keeps decoded images (``data.cache``): in each process's memory, in a
#: memory-mapped file shared by processes, or nowhere (decode every epoch).
CACHE_MODES = ("memory", "disk", "off")
_DATA, _INDEX, _META = "images.u8", "index.npz", "meta.json"


def _as_uint8(img: Any) -> np.ndarray:
    """A fixed-transform output as a C-contiguous ``uint8`` ``H x W x C`` array."""
    if isinstance(img, Image.Image):
        arr = np.asarray(img if img.mode in ("L", "RGB") else img.convert("RGB"))
    elif isinstance(img, np.ndarray):
        arr = img
    elif isinstance(img, torch.Tensor):
        t = img.detach().cpu()
        if t.dim() != 3:
            raise ValueError(f"fixed_transform must return one image, got shape {tuple(t.shape)}")
        if t.is_floating_point():
            t = (t * 255.0).round_().clamp_(0, 255).to(torch.uint8)
        arr = t.permute(1, 2, 0).numpy()
    else:
        raise TypeError(
            "fixed_transform must return a PIL image, numpy array or tensor, "
            f"got {type(img).__name__}"
        )
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"fixed_transform must return uint8 or float images, got {arr.dtype}")
        arr = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"fixed_transform must return HxW or HxWxC images, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _file_stamp(p: Any) -> str:
    try:
        st = os.stat(p)
        return f"{os.fspath(p)}\0{st.st_size}\0{st.st_mtime_ns}"
    except (OSError, TypeError):
        return f"{p!r}\0?"


class DecodedImageCache:
    """Decoded images of ``dataset`` after ``fixed_transform``, stored once (see the
    module docstring).

    Args:
        dataset: a reader with ``load(index) -> (PIL image, index used)`` and a label
            table (every :class:`~facecore.data.base.ImageFileDataset`).
        fixed_transform: deterministic image -> image (``PIL`` / ``uint8`` array);
            typically :meth:`PreprocessConfig.fixed_transform`. ``None``: the decoded
            image as is.
        cache_dir: ``None`` (memory) or a folder for memory-mapped caches.
        workers: decoding threads for the build (Pillow releases the GIL while
            decoding); default ``min(4, os.cpu_count())``.

    Attributes: ``key`` (the cache key), ``path`` (the cache folder or ``None``),
    ``built`` (``True`` when this call decoded the images, ``False`` when it reused a
    cache on disk), ``nbytes``, ``target_index`` (the dataset item each cached image
    came from).
    """

    def __init__(
        self,
        dataset: Any,
        fixed_transform: Callable[[Any], Any] | None = None,
        *,
        cache_dir: str | os.PathLike | None = None,
        workers: int | None = None,
    ) -> None:
        if not callable(getattr(dataset, "load", None)) or not hasattr(dataset, "_target"):
            raise TypeError(
                "dataset must be a facecore image reader (with load(index) and a label table), "
                f"got {type(dataset).__name__}"
            )
        self.source = dataset
        self.fixed_transform = fixed_transform
        self.workers = max(1, int(workers if workers is not None else min(4, os.cpu_count() or 1)))
        self.key = self._key()
        self.path: Path | None = None
        self.built = False
        self._data: np.ndarray | None = None
        if cache_dir is None:
            data, offsets, shapes, target = self._decode_all()
            self._data = np.concatenate(data) if data else np.zeros(0, np.uint8)
            self._data.flags.writeable = False
            self._set_index(offsets, shapes, target)
            self.built = True
            return
        root = Path(cache_dir).expanduser()
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / self.key
        if not (self.path / _META).is_file():
            self._build_on_disk(root)
        with np.load(self.path / _INDEX) as idx:
            self._set_index(idx["offsets"], idx["shapes"], idx["target_index"])
        if len(self.shapes) != len(self.source):
            raise RuntimeError(
                f"decoded-image cache {str(self.path)!r} holds {len(self.shapes)} images but the "
                f"dataset has {len(self.source)}; delete the folder to rebuild it"
            )

    # -- building ---------------------------------------------------------------------

    def _key(self) -> str:
        h = hashlib.sha256()
        h.update(f"facecore.decoded-image-cache/{CACHE_FORMAT_VERSION}\n".encode())
        h.update(f"{type(self.source).__name__}\nmode={getattr(self.source, 'mode', '?')}\n".encode())
        h.update(f"fixed={self.fixed_transform!r}\n".encode())
        paths = getattr(self.source, "paths", None)
        if paths is None:
            raise TypeError("dataset must list its image files in .paths to be cached")
        for p in paths:
            h.update(_file_stamp(p).encode("utf-8", "surrogateescape"))
            h.update(b"\n")
        return h.hexdigest()[:32]

    def _one(self, i: int) -> tuple[np.ndarray, int]:
        img, j = self.source.load(i)
        if self.fixed_transform is not None:
            img = self.fixed_transform(img)
        return _as_uint8(img), j

    def _images(self) -> Iterable[tuple[np.ndarray, int]]:
        """Decoded images in item order, a bounded chunk at a time."""
        n = len(self.source)
        if self.workers == 1 or n < 2:
            yield from (self._one(i) for i in range(n))
            return
        chunk = 64 * self.workers
        with ThreadPoolExecutor(self.workers) as ex:
            for start in range(0, n, chunk):
                yield from ex.map(self._one, range(start, min(n, start + chunk)))

    def _decode_all(self, sink: Any = None):
        data: list[np.ndarray] = []
        shapes, target = [], []
        offsets = [0]
        for arr, j in self._images():
            flat = arr.reshape(-1)
            if sink is None:
                data.append(flat)
            else:
                sink.write(flat.tobytes())
            shapes.append(arr.shape)
            target.append(j)
            offsets.append(offsets[-1] + flat.size)
        return (
            data,
            np.asarray(offsets, np.int64),
            np.asarray(shapes, np.int64).reshape(-1, 3),
            np.asarray(target, np.int64),
        )

    def _build_on_disk(self, root: Path) -> None:
        assert self.path is not None
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.key}.tmp-", dir=root))
        try:
            with open(tmp / _DATA, "wb") as f:
                _, offsets, shapes, target = self._decode_all(sink=f)
            np.savez(tmp / _INDEX, offsets=offsets, shapes=shapes, target_index=target)
            meta = {
                "format": "facecore.decoded-image-cache",
                "format_version": CACHE_FORMAT_VERSION,
                "dataset": type(self.source).__name__,
                "num_images": int(len(shapes)),
                "nbytes": int(offsets[-1]),
                "fixed_transform": repr(self.fixed_transform),
            }
            (tmp / _META).write_text(json.dumps(meta, indent=1))
            try:
                os.rename(tmp, self.path)
                self.built = True
            except OSError:
                if not (self.path / _META).is_file():  # not a lost race: a real error
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _set_index(self, offsets: np.ndarray, shapes: np.ndarray, target: np.ndarray) -> None:
        self.offsets = np.asarray(offsets, np.int64)
        self.shapes = np.asarray(shapes, np.int64).reshape(-1, 3)
        self.target_index = np.asarray(target, np.int64)
        self.nbytes = int(self.offsets[-1]) if len(self.offsets) else 0

    # -- access -----------------------------------------------------------------------

    def _buffer(self) -> np.ndarray:
        if self._data is None:
            assert self.path is not None
            if self.nbytes == 0:
                self._data = np.zeros(0, np.uint8)
            else:
                self._data = np.memmap(self.path / _DATA, dtype=np.uint8, mode="r")
        return self._data

    def __len__(self) -> int:
        return len(self.shapes)

    def image(self, index: int) -> np.ndarray:
        """The cached ``uint8`` ``H x W x C`` image of item ``index`` (read-only view)."""
        n = len(self.shapes)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a cache of {n} images")
        index %= n
        a, b = self.offsets[index], self.offsets[index + 1]
        arr = self._buffer()[a:b].reshape(tuple(self.shapes[index]))
        return arr[:, :, 0] if arr.shape[2] == 1 else arr

    def dataset(self, transform: Callable[[Any], Any] | None = None) -> CachedImageDataset:
        """A dataset over the cached images, ``transform`` applied per item (e.g.
        :meth:`PreprocessConfig.random_transform`); targets as the source reader's."""
        return CachedImageDataset(self, transform)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self.path is not None:
            state["_data"] = None  # workers map the file themselves
        return state

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "memory"
        return (
            f"DecodedImageCache({type(self.source).__name__}, {len(self)} images, "
            f"{self.nbytes / 2**20:.1f} MiB, {where})"
        )


class CachedImageDataset(FaceDataset):
    """The items of a :class:`DecodedImageCache`: ``(transform(cached image), target)``.

    Label API as the source reader (``targets``, ``class_counts``, ``label_keys``); other
    attributes (``num_classes``, ``age_offset``, ``age_range``, ``class_names``,
    ``paths`` ...) are the source's.
    """

    def __init__(self, cache: DecodedImageCache, transform: Callable[[Any], Any] | None = None):
        from facecore.data.transforms import ToTensor

        self.cache = cache
        self.source = cache.source
        self.transform = transform if transform is not None else ToTensor()
        idx = cache.target_index
        self._labels = {k: v[idx] for k, v in self.source._labels.items()}
        self._float_labels = getattr(self.source, "_float_labels", frozenset())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or "source" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["source"], name)

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        img = self.cache.image(index)
        n = len(self.cache)
        return self.transform(img), self._target(index % n)

    def record_positions(self) -> tuple[int, np.ndarray]:
        """The source reader's (cached item ``i`` is the source's item ``i``), so
        :func:`facecore.data.dataset_splits` cuts a cached dataset as the reader."""
        return self.source.record_positions()

    def record_labels(self, key: str) -> np.ndarray:
        return self.source.record_labels(key)

    def subset(self, indices: Iterable[int]) -> torch.utils.data.Subset:
        """A ``Subset`` of this (cached) dataset, e.g. one split."""
        return torch.utils.data.Subset(self, list(indices))
