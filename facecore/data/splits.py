"""Deterministic train / valid / test splits: the one implementation, used by the dataset
readers (``split=``), the synthetic faces and training.

Split names are ``train`` / ``valid`` / ``test`` everywhere (:data:`SPLIT_NAMES`).
:func:`make_splits` shuffles ``range(n)`` with ``numpy.random.default_rng(seed)`` and cuts
the permutation at ``round(n * cumsum(fractions))``; the result depends only on ``n``,
``fractions`` and ``seed``. With ``groups=`` (e.g. identities) whole groups are assigned to
one split (sorted unique groups are shuffled and cut the same way), so no person is in two
splits (open-set face matching, or leakage-free age estimation).

:func:`dataset_splits` cuts a dataset opened without ``split=`` into the same items the
dataset opened with ``split="train"`` / ``"valid"`` / ``"test"`` holds (same seed and
fractions; ``by="identity"`` for the readers that split by identity), also when corrupt
files were dropped, because both cut the records before verification. Training uses it,
so a reader's ``split="train"`` is training's train split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "SPLIT_BY",
    "SPLIT_NAMES",
    "dataset_splits",
    "filter_indices",
    "limit_indices",
    "make_splits",
    "split_indices",
]

SPLIT_NAMES = ("train", "valid", "test")
#: What a split keeps together: single images (``"sample"``) or all images of a person.
SPLIT_BY = ("sample", "identity")


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


def dataset_splits(
    dataset: Any,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    *,
    by: str = "sample",
) -> dict[str, list[int]]:
    """``{"train", "valid", "test"}`` -> positions in ``dataset`` (opened without ``split=``).

    The records are cut with :func:`make_splits` (``by="identity"``: grouped by the
    records' ``identity`` labels) and mapped to the dataset's items, so each part is exactly
    what the same dataset opened with ``split=<name>``, ``split_fractions=fractions``,
    ``split_seed=seed`` (and ``split_by=by`` where the reader has it) holds. Datasets
    without record bookkeeping (a plain ``torch`` dataset with ``targets``) are cut over
    their items.
    """
    if by not in SPLIT_BY:
        raise ValueError(f"by must be one of {' | '.join(SPLIT_BY)}, got {by!r}")
    if getattr(dataset, "split", None) is not None:
        raise ValueError(
            f"dataset_splits needs a dataset opened with split=None, got split={dataset.split!r}"
        )
    if hasattr(dataset, "record_positions"):
        n, index = dataset.record_positions()
    else:
        n, index = len(dataset), np.arange(len(dataset))
    groups = None
    if by == "identity":
        try:
            groups = (
                dataset.record_labels("identity") if hasattr(dataset, "record_labels")
                else np.asarray(dataset.targets("identity"))
            )
        except (KeyError, AttributeError):
            raise ValueError(
                f"{type(dataset).__name__} has no identity labels: it cannot be split by identity"
            ) from None
    parts = make_splits(n, fractions, seed, groups=groups)
    where = np.full(n, -1, dtype=np.int64)
    where[np.asarray(index, dtype=np.int64)] = np.arange(len(index))
    out = {}
    for name, part in zip(SPLIT_NAMES, parts):
        pos = where[np.asarray(part, dtype=np.int64)] if part else np.empty(0, np.int64)
        out[name] = pos[pos >= 0].tolist()
    return out


def filter_indices(
    indices: Sequence[int], labels: dict[str, np.ndarray], include: dict[str, Sequence[int]]
) -> list[int]:
    """The ``indices`` whose label ``key`` is one of ``include[key]`` for every key
    (``labels``: key -> one value per dataset item). Training's ``data.include`` applies it
    to each split after the split, so kept items stay in their split."""
    idx = np.asarray(list(indices), dtype=np.int64)
    keep = np.ones(len(idx), dtype=bool)
    for key, values in include.items():
        keep &= np.isin(np.asarray(labels[key])[idx], np.asarray(list(values)))
    return idx[keep].tolist()


def limit_indices(
    indices: Sequence[int],
    n: int,
    seed: int = 0,
    *,
    groups: Sequence[int] | np.ndarray | None = None,
) -> list[int]:
    """At most ``n`` of ``indices`` (sorted), drawn with ``seed``: a random subset, or with
    ``groups`` (one group label per dataset item, e.g. identities) whole groups, taken in a
    seeded random order while they fit (at least one group). The same draw for the same
    arguments; used for training's ``data.max_train_samples`` and the bias matrix's equal
    training sizes."""
    idx = np.asarray(list(indices), dtype=np.int64)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if len(idx) <= n:
        return sorted(idx.tolist())
    rng = np.random.default_rng([int(seed), 0x51AB])  # independent of the split's draw
    if groups is None:
        return sorted(rng.choice(idx, n, replace=False).tolist())
    g = np.asarray(groups)[idx]
    uniq, inv, counts = np.unique(g, return_inverse=True, return_counts=True)
    chosen, total = [], 0
    for u in rng.permutation(len(uniq)):
        if total + counts[u] <= n or not chosen:
            chosen.append(u)
            total += int(counts[u])
        if total >= n:
            break
    return sorted(idx[np.isin(inv, chosen)].tolist())
