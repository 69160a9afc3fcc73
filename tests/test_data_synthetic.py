"""Synthetic faces: determinism, label conventions / distribution, splits, speed (measured,
not asserted) and learnability (a ridge regression on pixels beats the median baseline)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facecore.data import SyntheticFaces, make_splits
from facecore.data.transforms import Compose, RandomHorizontalFlip
from facecore.metrics import mae, median_baseline_mae


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


def test_speed_measured(capsys):
    for size in (64, 128):
        ds = SyntheticFaces(400, image_size=size, seed=1)
        ds.render(0)
        t = time.process_time()
        for i in range(200):
            ds.render(i)
        rate = 200 / max(time.process_time() - t, 1e-9)
        with capsys.disabled():
            print(f"\nsynthetic faces {size}px: {rate:.0f} images/s (1 thread, CPU time)")
        assert rate > 0


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
