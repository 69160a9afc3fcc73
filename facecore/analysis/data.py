"""Datasets as the analysis sees them: every integer attribute of a dataset with the names
of its values, and the datasets the ``facecore analyze`` command opens by name.

* :func:`dataset_labels`: ``{key: int64 [N]}`` and ``{key: [value names]}`` for any facecore
  dataset (or a ``torch.utils.data.Subset`` of one), without decoding images.
* datasets are opened by name with :func:`facecore.data.open_dataset` (the one dataset
  registry): e.g. ``synthetic`` (``race`` = skin-tone group), ``london`` (identity, gender,
  ``race`` = ethnicity, expression; ages with ``require_age=True``), ``fairface`` (``age`` =
  age group, gender), ``folders`` (ORL: identity).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import numpy as np
from torch.utils.data import Dataset, Subset

__all__ = ["base_dataset", "bin_values", "dataset_labels", "swap_transform"]


def base_dataset(dataset: Dataset) -> tuple[Dataset, np.ndarray | None]:
    """The facecore dataset under (possibly nested) ``Subset``s and the indices into it
    (``None``: all of it)."""
    idx: np.ndarray | None = None
    while isinstance(dataset, Subset):
        sub = np.asarray(dataset.indices, dtype=np.int64)
        idx = sub if idx is None else sub[idx]
        dataset = dataset.dataset
    return dataset, idx


def _value_names(ds: Any, key: str, values: np.ndarray) -> list[str]:
    n = int(values.max()) + 1 if values.size else 0
    names: Any = None
    if key == "gender":
        names = getattr(ds, "gender_names", ("male", "female"))
    elif key == "race":
        names = getattr(ds, "race_names", None)
    elif key == "expression":
        names = getattr(ds, "expression_names", None)
    elif key == "identity":
        names = getattr(ds, "person_names", None)
    elif key == "age":
        names = getattr(ds, "age_groups", None)
        if names is None and hasattr(ds, "age_offset"):
            names = [f"{int(ds.age_offset) + k}" for k in range(int(ds.num_classes))]
    names = [str(v) for v in names] if names is not None else []
    return names + [str(v) for v in range(len(names), n)]


def dataset_labels(dataset: Dataset) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Every one-dimensional label of ``dataset`` (``targets(key)``, no image decoding) and
    the names of their values (``age_years`` and other real-valued keys have none)."""
    ds, idx = base_dataset(dataset)
    if not hasattr(ds, "label_keys") or not hasattr(ds, "targets"):
        raise TypeError(
            f"{type(ds).__name__} is not a facecore dataset (needs label_keys and targets(key))"
        )
    labels: dict[str, np.ndarray] = {}
    names: dict[str, list[str]] = {}
    for key in ds.label_keys:
        arr = ds.targets(key).numpy()
        if arr.ndim != 1:
            continue
        if idx is not None:
            arr = arr[idx]
        labels[key] = arr
        if np.issubdtype(arr.dtype, np.integer) and key != "age_years":
            names[key] = _value_names(ds, key, arr)
    return labels, names


@contextmanager
def swap_transform(dataset: Dataset, transform: Any):
    """Temporarily give the underlying facecore dataset another ``transform``."""
    ds, _ = base_dataset(dataset)
    if not hasattr(ds, "transform"):
        raise TypeError(f"{type(ds).__name__} has no transform attribute to set")
    old = ds.transform
    ds.transform = transform
    try:
        yield dataset
    finally:
        ds.transform = old


def bin_values(
    values: np.ndarray, edges: list[float], value_names: list[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """``values`` cut at ``edges`` (``v < edges[0]`` -> 0, ``edges[0] <= v < edges[1]`` -> 1,
    ...) and the bins' names: built from ``value_names`` when the values are named classes
    (``"20-29..40-49"``), else from the numbers (``"<30"``, ``"30-45"``, ``">=45"``)."""
    e = sorted(float(x) for x in edges)
    if not e:
        raise ValueError("edges must not be empty")
    b = np.searchsorted(np.asarray(e), np.asarray(values), side="right").astype(np.int64)
    names = []
    for i in range(len(e) + 1):
        lo = None if i == 0 else e[i - 1]
        hi = None if i == len(e) else e[i]
        if value_names and all(x is None or float(x).is_integer() for x in (lo, hi)):
            first = 0 if lo is None else int(lo)
            last = len(value_names) - 1 if hi is None else int(hi) - 1
            if 0 <= first <= last < len(value_names):
                names.append(value_names[first] if first == last else f"{value_names[first]}..{value_names[last]}")
                continue
        if lo is None:
            names.append(f"<{hi:g}")
        elif hi is None:
            names.append(f">={lo:g}")
        else:
            names.append(f"{lo:g}-{hi:g}")
    return b, names
