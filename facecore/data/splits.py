"""Deterministic train / valid / test splits.

:func:`make_splits` shuffles ``range(n)`` with ``numpy.random.default_rng(seed)`` and cuts
the permutation at ``round(n * cumsum(fractions))``; the result depends only on ``n``,
``fractions`` and ``seed``. With ``groups=`` (e.g. identities) whole groups are assigned to
one split (sorted unique groups are shuffled and cut the same way), so no person is in two
splits (open-set face matching, or leakage-free age estimation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["SPLIT_NAMES", "make_splits", "split_indices"]

SPLIT_NAMES = ("train", "valid", "test")


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    f = np.asarray(list(fractions), dtype=np.float64)
    if f.ndim != 1 or f.size == 0 or np.any(f < 0) or not np.isfinite(f).all():
        raise ValueError(f"fractions must be a non-empty sequence of non-negative numbers, got {fractions!r}")
    if abs(f.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {tuple(fractions)} (sum {f.sum():g})")
    return f


def _cuts(n: int, f: np.ndarray) -> list[int]:
    c = np.rint(np.cumsum(f) * n).astype(np.int64)
    c[-1] = n
    return [0, *c.tolist()]


def make_splits(
    dataset_or_len: Any,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    *,
    groups: Sequence[int] | np.ndarray | torch.Tensor | None = None,
) -> list[list[int]]:
    """Split ``range(n)`` into ``len(fractions)`` disjoint, covering, sorted index lists.

    ``dataset_or_len`` is an int or anything with ``len``. The part sizes are
    ``round(n * cumsum(fractions))`` differences (so they sum to ``n``). With ``groups``
    (one label per item), groups rather than items are shuffled and cut, and each part
    gets every item of its groups (part sizes then follow the group sizes).
    """
    n = int(dataset_or_len) if isinstance(dataset_or_len, int | np.integer) else len(dataset_or_len)
    if n < 0:
        raise ValueError(f"dataset_or_len must be >= 0, got {n}")
    f = _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    if groups is None:
        perm = rng.permutation(n)
        c = _cuts(n, f)
        return [sorted(perm[c[j] : c[j + 1]].tolist()) for j in range(len(f))]
    g = np.asarray(groups.tolist() if isinstance(groups, torch.Tensor) else groups)
    if g.shape != (n,):
        raise ValueError(f"groups must have one entry per item ({n}), got shape {g.shape}")
    uniq, inv = np.unique(g, return_inverse=True)
    perm = rng.permutation(len(uniq))
    c = _cuts(len(uniq), f)
    part_of_group = np.empty(len(uniq), dtype=np.int64)
    for j in range(len(f)):
        part_of_group[perm[c[j] : c[j + 1]]] = j
    part = part_of_group[inv]
    return [np.flatnonzero(part == j).tolist() for j in range(len(f))]


def split_indices(
    n: int,
    split: str | None,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    groups: Sequence[int] | np.ndarray | None = None,
) -> list[int]:
    """Indices of ``split`` (``"train"``, ``"valid"``, ``"test"``, or ``None``/``"all"``)."""
    if split is None or split == "all":
        return list(range(n))
    if split not in SPLIT_NAMES:
        raise ValueError(f"split must be one of {SPLIT_NAMES} or None, got {split!r}")
    if len(fractions) != 3:
        raise ValueError(f"split_fractions must have 3 entries (train, valid, test), got {fractions!r}")
    return make_splits(n, fractions, seed, groups=groups)[SPLIT_NAMES.index(split)]
