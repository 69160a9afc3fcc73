r"""P x K identity batch sampler for metric learning (triplet / contrastive losses).

Each batch holds ``P`` distinct identities and ``K`` images of each (``P * K`` indices,
grouped identity by identity: ``[id_a x K, id_b x K, ...]``).

Epoch construction (seeded by ``seed + epoch``, identical on every rank):

1. the identities are shuffled and cut into groups of ``P``; with ``drop_last=False`` the
   last, short group is filled up with other identities drawn at random (so every batch
   has exactly ``P`` distinct identities and every identity appears at least once);
   ``batches_per_epoch`` (if given) repeats step 1 with fresh permutations until that many
   batches exist, then truncates;
2. for each identity in a batch, ``K`` of its images are drawn **without** replacement when
   it has at least ``K``, otherwise **with** replacement (so an identity with fewer than
   ``K`` images contributes repeated images; one with a single image gives only duplicate
   positives).

Distributed: the epoch's batch list is split round-robin, rank ``r`` taking batches
``r, r + W, r + 2W, ...``, truncated to ``len(batches) // W`` so all ranks run the same number
of steps (``drop_last=True``) or padded by wrapping around (``drop_last=False``). Batches of
one pass over the identities are disjoint, so different ranks never see the same identity
in the same pass. ``rank`` / ``world_size`` default to ``torch.distributed``'s when it is
initialised, else 0 / 1. Call :meth:`PKSampler.set_epoch` each epoch (as with
``DistributedSampler``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["PKSampler"]


class PKSampler(Sampler[list[int]]):
    """Batch sampler yielding lists of ``p * k`` dataset indices (see module docstring).

    Use as ``DataLoader(dataset, batch_sampler=PKSampler(dataset.targets("identity"), p, k))``.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        p: int,
        k: int,
        *,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = True,
        batches_per_epoch: int | None = None,
    ) -> None:
        lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        if lab.ndim != 1 or lab.size == 0:
            raise ValueError(f"labels must be a non-empty 1-D sequence, got shape {lab.shape}")
        if not np.issubdtype(lab.dtype, np.integer):
            raise TypeError(f"labels must be integers (identity ids), got dtype {lab.dtype}")
        if not isinstance(p, int) or p < 1:
            raise ValueError(f"p (identities per batch) must be a positive int, got {p!r}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k (images per identity) must be a positive int, got {k!r}")
        ids, inv = np.unique(lab, return_inverse=True)
        if len(ids) < p:
            raise ValueError(f"p={p} identities per batch but labels have only {len(ids)} identities")
        if batches_per_epoch is not None and batches_per_epoch < 1:
            raise ValueError(f"batches_per_epoch must be positive, got {batches_per_epoch}")
        if rank is None or world_size is None:
            dist = torch.distributed
            if dist.is_available() and dist.is_initialized():
                rank = dist.get_rank() if rank is None else rank
                world_size = dist.get_world_size() if world_size is None else world_size
            else:
                rank = 0 if rank is None else rank
                world_size = 1 if world_size is None else world_size
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        self.p, self.k = p, k
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.drop_last = drop_last
        self.batches_per_epoch = batches_per_epoch
        self.epoch = 0
        self.identities = ids
        order = np.argsort(inv, kind="stable")
        bounds = np.cumsum(np.bincount(inv, minlength=len(ids)))[:-1]
        self._members = np.split(order, bounds)
        n_batches = self._global_num_batches()
        if n_batches < self.world_size and drop_last:
            raise ValueError(
                f"{n_batches} batches per epoch cannot feed world_size={self.world_size} ranks "
                f"with drop_last=True ({len(ids)} identities, p={p})"
            )

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (every rank must call it with the same value)."""
        self.epoch = int(epoch)

    def _global_num_batches(self) -> int:
        if self.batches_per_epoch is not None:
            return self.batches_per_epoch
        n = len(self.identities)
        return n // self.p if self.drop_last else -(-n // self.p)

    def __len__(self) -> int:
        g = self._global_num_batches()
        return g // self.world_size if self.drop_last else -(-g // self.world_size)

    def _identity_groups(self, rng: np.random.Generator) -> list[np.ndarray]:
        n = len(self.identities)
        target = self._global_num_batches()
        groups: list[np.ndarray] = []
        while len(groups) < target:
            perm = rng.permutation(n)
            full = n // self.p
            groups.extend(perm[j * self.p : (j + 1) * self.p] for j in range(full))
            rest = perm[full * self.p :]
            if len(rest) and (not self.drop_last or self.batches_per_epoch is not None):
                others = np.setdiff1d(np.arange(n), rest)
                fill = rng.choice(others, self.p - len(rest), replace=False)
                groups.append(np.concatenate([rest, fill]))
        return groups[:target]

    def batches(self) -> list[list[int]]:
        """All batches of the current epoch for *all* ranks (before the rank split)."""
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, self.epoch])
        out = []
        for group in self._identity_groups(rng):
            idx: list[int] = []
            for g in group:
                m = self._members[g]
                take = rng.choice(m, self.k, replace=len(m) < self.k)
                idx.extend(int(i) for i in take)
            out.append(idx)
        return out

    def __iter__(self) -> Iterator[list[int]]:
        all_batches = self.batches()
        mine = all_batches[self.rank :: self.world_size]
        n = len(self)
        if len(mine) < n:  # drop_last=False: pad by wrapping around
            mine = mine + all_batches[: n - len(mine)]
        yield from mine[:n]
