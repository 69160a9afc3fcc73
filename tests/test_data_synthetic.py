"""Synthetic faces: determinism (alone vs in any batch), label conventions / distribution,
splits, batched fetching, speed (batch vs single) and learnability (a ridge regression on
pixels and a small CORAL CNN beat the median baseline clearly, but are not perfect)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facecore.data import SyntheticFaces, make_splits
from facecore.data.synthetic import synthetic_labels
from facecore.data.transforms import Compose, RandomHorizontalFlip
from facecore.metrics import mae, median_baseline_mae
from facecore.models import AgeEstimator


def test_deterministic_per_seed_and_index():
    a = SyntheticFaces(64, seed=3)
    b = SyntheticFaces(200, seed=3)  # item i does not depend on num_samples (same num_identities)
    b2 = SyntheticFaces(64, seed=3, num_identities=a.num_identities)
    x1, t1 = a[5]
    x2, t2 = b2[5]
    torch.testing.assert_close(x1, x2, rtol=0, atol=0)
    assert t1 == t2
    assert SyntheticFaces(64, seed=3, num_identities=8)[5][1]["age_years"] == b[5][1]["age_years"]
    x3, _ = SyntheticFaces(64, seed=4)[5]
    assert (x1 - x3).abs().max() > 0.1
    assert x1.shape == (3, 64, 64) and x1.dtype == torch.float32
    assert 0.0 <= float(x1.min()) and float(x1.max()) <= 1.0
    # batch() renders the same pixels as __getitem__, and a cache returns them quantised
    xb, tb = a.batch([5, 6])
    torch.testing.assert_close(xb[0], x1, rtol=0, atol=0)
    assert int(tb["age"][1]) == a[6][1]["age"]
    c = SyntheticFaces(64, seed=3, cache=True)
    torch.testing.assert_close(c[5][0], x1, rtol=0, atol=0.5 / 255 + 1e-6)
    torch.testing.assert_close(c[5][0], c[5][0], rtol=0, atol=0)


@pytest.mark.parametrize("size", [64, 37])
def test_image_identical_alone_or_in_any_batch(size):
    """Every pixel of item i is bit-identical whether rendered alone, in a batch of any size
    or order, or in chunks (batch-wide windows / bands must never change a pixel)."""
    ds = SyntheticFaces(300, image_size=size, seed=11)
    ds.render_chunk = 300
    full = ds.render_batch(np.arange(300))
    rng = np.random.default_rng(0)
    for i in rng.choice(300, 12, replace=False):
        np.testing.assert_array_equal(ds.render(int(i)), full[i])
    sub = rng.permutation(300)[:37]
    np.testing.assert_array_equal(ds.render_batch(sub), full[sub])
    ds.render_chunk = 5
    np.testing.assert_array_equal(ds.render_batch(sub), full[sub])
    np.testing.assert_array_equal(ds.render_batch([4, 4, -1]), full[[4, 4, 299]])
    assert full.dtype == np.float32 and full.min() >= 0.0 and full.max() <= 1.0


def test_labels_unchanged_hashing():
    """Labels are the documented counter-based hash of (seed, index): compare against an
    independent splitmix64 implementation in pure Python."""
    m64 = (1 << 64) - 1

    def mix(x):
        x = (x + 0x9E3779B97F4A7C15) & m64
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m64
        return x ^ (x >> 31)

    def uniform(seed, i, stream):
        base = mix(seed & m64)
        x = mix(mix(i ^ mix((base + stream) & m64)) ^ base)
        return (x >> 11) / float(1 << 53)

    seed, idx = 5, np.arange(0, 4000, 37)
    lab = synthetic_labels(seed, idx, num_classes=8, num_identities=50, age_range=(16, 75))
    for j, i in enumerate(idx.tolist()):
        years = 16 + min(int(uniform(seed, i, 3) * 60), 59)
        assert lab["age_years"][j] == years
        assert lab["age"][j] == (years - 16) * 8 // 60
        assert lab["gender"][j] == int(uniform(seed, i % 50, 1) < 0.5)
        assert lab["race"][j] == min(int(uniform(seed, i % 50, 2) * 3), 2)
    ds = SyntheticFaces(4000, seed=seed, num_identities=50)
    np.testing.assert_array_equal(ds.targets("age_years").numpy()[idx], lab["age_years"])


def test_getitems_and_dataloader_batches():
    flip = SyntheticFaces(40, image_size=32, seed=2, transform=Compose([RandomHorizontalFlip(1.0)]))
    plain = SyntheticFaces(40, image_size=32, seed=2)
    items = flip.__getitems__([3, 0, 39])
    assert [t["age"] for _, t in items] == [plain[i][1]["age"] for i in (3, 0, 39)]
    for (x, t), i in zip(items, (3, 0, 39)):
        torch.testing.assert_close(x, plain[i][0].flip(-1), rtol=0, atol=0)
        assert t == plain[i][1]
    loader = torch.utils.data.DataLoader(plain, batch_size=16, shuffle=False)
    x, y = next(iter(loader))
    xb, yb = plain.batch(range(16))
    torch.testing.assert_close(x, xb, rtol=0, atol=0)
    torch.testing.assert_close(y["age"], yb["age"])
    with pytest.raises(IndexError, match="index 40 out of range for a dataset of 40 items"):
        plain.__getitems__([1, 40])
    with pytest.raises(IndexError, match="out of range"):
        plain.batch([-41])


def test_label_conventions_and_distribution():
    ds = SyntheticFaces(6000, num_classes=8, age_range=(16, 75), num_identities=300)
    ages, years = ds.targets("age").numpy(), ds.targets("age_years").numpy()
    assert years.min() >= 16 and years.max() <= 75
    np.testing.assert_array_equal(ages, (years - 16) * 8 // 60)  # 7.5-year bins
    counts = np.asarray(ds.class_counts("age"))
    assert counts.sum() == 6000 and len(counts) == 8
    # age_years uniform on 16..75: class c expects 6000 * (#years in bin c) / 60
    # (bins alternate 8 and 7 years); chi-square with 7 dof, 99.9% quantile 24.3
    expected = 6000.0 * np.bincount(np.arange(60) * 8 // 60, minlength=8) / 60.0
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 24.3, counts
    ident = ds.targets("identity").numpy()
    assert ds.class_counts("identity") == [20] * 300
    gender = ds.targets("gender").numpy()
    for i in range(300):  # gender and race are identity traits
        assert len(set(gender[ident == i])) == 1
        assert len(set(ds.targets("race").numpy()[ident == i])) == 1
    male, female = ds.class_counts("gender")
    assert abs(male - female) < 0.2 * 6000
    assert ds.class_counts("race") and len(ds.class_counts("race")) == 3
    # targets() agrees with items
    for i in (0, 17, 5999):
        t = ds[i][1] if i < 50 else {k: int(ds.targets(k)[i]) for k in ds.label_keys}
        assert t == {k: int(ds.targets(k)[i]) for k in ds.label_keys}


def test_splits_disjoint_and_deterministic():
    parts = [SyntheticFaces(500, split=s, seed=2) for s in ("train", "valid", "test")]
    idx = [set(p.indices.tolist()) for p in parts]
    assert [len(i) for i in idx] == [400, 50, 50]
    assert not (idx[0] & idx[1]) and not (idx[0] & idx[2]) and not (idx[1] & idx[2])
    assert set().union(*idx) == set(range(500))
    assert idx == [set(x) for x in make_splits(500, (0.8, 0.1, 0.1), 2)]
    # split item = the same generator item of the full dataset
    full = SyntheticFaces(500, seed=2)
    g = int(parts[2].indices[3])
    torch.testing.assert_close(parts[2][3][0], full[g][0], rtol=0, atol=0)
    assert parts[2][3][1] == full[g][1]


def test_transform_and_errors():
    ds = SyntheticFaces(8, transform=Compose([RandomHorizontalFlip(1.0)]))
    plain = SyntheticFaces(8)
    torch.testing.assert_close(ds[1][0], plain[1][0].flip(-1))
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        SyntheticFaces(8, num_classes=1)
    with pytest.raises(ValueError, match=r"age_range \(20, 22\) spans 3 years, fewer than num_classes=8"):
        SyntheticFaces(8, age_range=(20, 22))
    with pytest.raises(ValueError, match="split must be one of"):
        SyntheticFaces(8, split="val")
    with pytest.raises(IndexError, match="out of range"):
        plain[8]


def test_image_sizes():
    for s in (32, 96, 128):
        x, _ = SyntheticFaces(4, image_size=s)[0]
        assert x.shape == (3, s, s)


def test_age_is_learnable_but_not_trivial():
    """Ridge regression on 16x16 average-pooled pixels (fit in well under a second) must
    beat predicting the training median by a clear margin on held-out data, and must not
    be perfect (the age signal is noisy by design)."""
    tr = SyntheticFaces(3000, image_size=32, split="train", seed=1)
    te = SyntheticFaces(3000, image_size=32, split="test", seed=1)
    xtr, ytr = tr.batch()
    xte, yte = te.batch()
    a = F.avg_pool2d(xtr, 2).flatten(1).double()
    mu = a.mean(0)
    b = ytr["age"].double()
    a0 = a - mu
    w = torch.linalg.solve(a0.T @ a0 + 10.0 * torch.eye(a0.shape[1], dtype=torch.float64), a0.T @ (b - b.mean()))
    pred = ((F.avg_pool2d(xte, 2).flatten(1).double() - mu) @ w + b.mean()).round().clamp(0, 7)
    model_mae = mae(pred, yte["age"].double())
    base_mae = median_baseline_mae(ytr["age"], yte["age"])
    print(f"\nlearnability: ridge MAE {model_mae:.3f} vs median baseline {base_mae:.3f} (classes)")
    assert model_mae < 0.7 * base_mae
    assert model_mae > 0.3  # not trivially perfect


@pytest.mark.slow
def test_small_cnn_coral_beats_median_baseline():
    """A small CORAL CNN trained for a few seconds (32 px, 1 thread) beats the median
    baseline on held-out items by a clear margin, and is not perfect."""
    torch.manual_seed(0)
    tr = SyntheticFaces(3000, image_size=32, split="train", seed=4, split_fractions=(0.8, 0.0, 0.2))
    te = SyntheticFaces(3000, image_size=32, split="test", seed=4, split_fractions=(0.8, 0.0, 0.2))
    xtr, ytr = tr.batch()
    xte, yte = te.batch()
    xtr, xte = (xtr - 0.5) / 0.25, (xte - 0.5) / 0.25
    model = AgeEstimator("small_cnn", head="coral", num_classes=8)
    epochs, bs = 8, 64
    steps = epochs * (len(xtr) // bs)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xtr), generator=g)
        for b in range(len(xtr) // bs):
            j = perm[b * bs : (b + 1) * bs]
            loss = model.loss(model(xtr[j]), ytr["age"][j])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        pred = model.predict(xte).labels
    model_mae = mae(pred.double(), yte["age"].double())
    base_mae = median_baseline_mae(ytr["age"], yte["age"])
    print(f"\nsmall_cnn CORAL MAE {model_mae:.3f} vs median baseline {base_mae:.3f} (classes)")
    assert model_mae < 0.75 * base_mae
    assert model_mae > 0.2
