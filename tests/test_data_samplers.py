"""PKSampler invariants: batch shape, K per identity, replacement rule, coverage,
determinism, epochs and disjoint ranks."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from facecore.data import PKSampler, SyntheticFaces

# 13 identities with 1..13 images each
LABELS = np.repeat(np.arange(13) * 10, np.arange(1, 14))


def _check_batch(batch, labels, p, k):
    assert len(batch) == p * k
    ids = [labels[i] for i in batch]
    groups = [ids[j * k : (j + 1) * k] for j in range(p)]
    assert all(len(set(g)) == 1 for g in groups)  # grouped identity by identity
    assert len({g[0] for g in groups}) == p  # P distinct identities
    for g0, j in zip((g[0] for g in groups), range(p)):
        idx = batch[j * k : (j + 1) * k]
        n_avail = int((labels == g0).sum())
        if n_avail >= k:
            assert len(set(idx)) == k  # without replacement
        else:
            assert set(idx) <= set(np.flatnonzero(labels == g0).tolist())


def test_batches_invariants_and_coverage():
    s = PKSampler(LABELS, p=4, k=3, seed=0, drop_last=False)
    batches = list(s)
    assert len(batches) == len(s) == 4  # ceil(13 / 4)
    for b in batches:
        _check_batch(b, LABELS, 4, 3)
    seen = {LABELS[i] for b in batches for i in b}
    assert seen == set(LABELS.tolist())  # every identity at least once
    s2 = PKSampler(LABELS, p=4, k=3, seed=0, drop_last=True)
    assert len(list(s2)) == len(s2) == 3
    # identities appear once per pass with drop_last=True
    firsts = Counter(LABELS[b[j * 3]] for b in s2 for j in range(4))
    assert max(firsts.values()) == 1


def test_deterministic_and_epochs():
    a = PKSampler(torch.as_tensor(LABELS), 3, 2, seed=5)
    b = PKSampler(LABELS.tolist(), 3, 2, seed=5)
    assert list(a) == list(b)
    e0 = list(a)
    a.set_epoch(1)
    assert list(a) != e0
    a.set_epoch(0)
    assert list(a) == e0
    assert list(PKSampler(LABELS, 3, 2, seed=6)) != e0


def test_batches_per_epoch():
    s = PKSampler(LABELS, 4, 2, batches_per_epoch=10)
    batches = list(s)
    assert len(batches) == 10
    for b in batches:
        _check_batch(b, LABELS, 4, 2)


def test_two_ranks_disjoint_and_equal_length():
    labels = SyntheticFaces(800, num_identities=100).targets("identity")
    r0 = PKSampler(labels, 8, 4, seed=1, rank=0, world_size=2)
    r1 = PKSampler(labels, 8, 4, seed=1, rank=1, world_size=2)
    b0, b1 = list(r0), list(r1)
    assert len(b0) == len(b1) == len(r0) == 6  # 100 // 8 = 12 batches over 2 ranks
    i0 = {i for b in b0 for i in b}
    i1 = {i for b in b1 for i in b}
    assert not (i0 & i1)
    ids0 = {int(labels[i]) for i in i0}
    ids1 = {int(labels[i]) for i in i1}
    assert not (ids0 & ids1)
    single = PKSampler(labels, 8, 4, seed=1)
    allb = list(single)
    assert b0 == allb[0::2][:6] and b1 == allb[1::2][:6]


def test_dataloader_integration():
    ds = SyntheticFaces(64, num_identities=8, image_size=32)
    dl = torch.utils.data.DataLoader(ds, batch_sampler=PKSampler(ds.targets("identity"), 2, 4))
    x, t = next(iter(dl))
    assert x.shape == (8, 3, 32, 32)
    ids = t["identity"].tolist()
    assert ids[:4] == [ids[0]] * 4 and ids[4:] == [ids[4]] * 4 and ids[0] != ids[4]


def test_errors():
    with pytest.raises(ValueError, match="p=20 identities per batch but labels have only 13"):
        PKSampler(LABELS, 20, 2)
    with pytest.raises(ValueError, match="k \\(images per identity\\) must be a positive int"):
        PKSampler(LABELS, 2, 0)
    with pytest.raises(ValueError, match=r"rank must be in \[0, world_size\)"):
        PKSampler(LABELS, 2, 2, rank=2, world_size=2)
    with pytest.raises(TypeError, match="labels must be integers"):
        PKSampler([0.5, 1.5], 1, 1)
    with pytest.raises(ValueError, match="cannot feed world_size=4"):
        PKSampler(LABELS, 6, 2, world_size=4, rank=0)
