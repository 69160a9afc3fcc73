"""Decoded-image cache: cached items equal the reader's items bit for bit (same random
state), augmentation still varies per epoch, the disk cache is keyed by files and
preprocessing and reused, DataLoader workers (fork and spawn) read it, every reader
works, and corrupt files follow the reader's policy (speed: benchmarks/bench_data.py)."""

from __future__ import annotations

import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from facecore.data import (
    AFADFolder,
    CoralCSV,
    FairFace,
    IdentityFolders,
    LondonFaces,
    PreprocessConfig,
    UTKFace,
)
from facecore.data.cache import CachedImageDataset, DecodedImageCache

PRE = PreprocessConfig(input_size=24, resize=28, horizontal_flip=0.5, mean=(0.5,) * 3, std=(0.25,) * 3)


def _face(path, seed, size=(40, 36), mode="RGB"):
    g = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(g.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


@pytest.fixture
def utk_dir(tmp_path):
    d = tmp_path / "utk"
    d.mkdir()
    for i, age in enumerate([1, 5, 23, 40, 41, 60, 75, 33]):
        # different sizes: the cache holds images of any shape
        _face(d / f"{age}_{i % 2}_{i % 5}_2017010{i}.jpg.chip.jpg", i, size=(40 + i, 36))
    return d


def _items(ds, indices, seed):
    torch.manual_seed(seed)
    return [ds[i] for i in indices]


def test_cached_items_equal_the_readers_items_for_the_same_random_state(utk_dir):
    train_reader = UTKFace(utk_dir, transform=PRE.train_transform())
    eval_reader = UTKFace(utk_dir, transform=PRE.eval_transform())
    cache = DecodedImageCache(UTKFace(utk_dir), PRE.fixed_transform())
    train = cache.dataset(PRE.random_transform(train=True))
    evaluation = cache.dataset(PRE.random_transform(train=False))
    idx = list(range(len(train_reader)))
    for (xa, ta), (xb, tb) in zip(_items(train_reader, idx, 3), _items(train, idx, 3), strict=True):
        assert torch.equal(xa, xb) and ta == tb
    for (xa, ta), (xb, tb) in zip(_items(eval_reader, idx, 0), _items(evaluation, idx, 1), strict=True):
        assert torch.equal(xa, xb) and ta == tb
    # the cache holds the resized image (shorter side 28), not the crop
    assert cache.image(0).shape[:2] == (28, int(28 * 40 / 36)) and cache.image(0).dtype == np.uint8
    assert cache.built and cache.path is None and len(cache) == len(train_reader)


def test_augmentation_still_runs_per_epoch(utk_dir):
    cache = DecodedImageCache(UTKFace(utk_dir), PRE.fixed_transform())
    train = cache.dataset(PRE.random_transform(train=True))
    torch.manual_seed(0)
    epoch1 = torch.stack([train[i][0] for i in range(len(train))])
    epoch2 = torch.stack([train[i][0] for i in range(len(train))])
    assert not torch.equal(epoch1, epoch2)
    evaluation = cache.dataset(PRE.random_transform(train=False))
    assert torch.equal(evaluation[2][0], evaluation[2][0])


def test_label_api_and_reader_attributes_pass_through(utk_dir):
    reader = UTKFace(utk_dir, age_range=(1, 60))
    ds = DecodedImageCache(reader).dataset()
    assert isinstance(ds, CachedImageDataset)
    assert ds.class_counts() == reader.class_counts()
    assert torch.equal(ds.targets("age"), reader.targets("age"))
    assert (ds.num_classes, ds.age_offset, ds.age_range) == (reader.num_classes, 1, (1, 60))
    assert ds.label_keys == reader.label_keys
    x, t = ds[0]  # default transform: float tensor in [0, 1] at the stored size
    assert x.dtype == torch.float32 and x.shape[0] == 3 and t == reader[0][1]
    sub = ds.subset([2, 0])
    assert sub.dataset is ds and torch.equal(sub[1][0], x)
    with pytest.raises(IndexError, match="out of range"):
        ds.cache.image(len(ds))


def test_disk_cache_is_keyed_by_files_and_preprocessing_and_reused(utk_dir, tmp_path):
    root = tmp_path / "cache"
    a = DecodedImageCache(UTKFace(utk_dir), PRE.fixed_transform(), cache_dir=root)
    assert a.built and a.path.parent == root and (a.path / "meta.json").is_file()
    b = DecodedImageCache(UTKFace(utk_dir), PRE.fixed_transform(), cache_dir=root)
    assert not b.built and b.key == a.key
    assert isinstance(b._buffer(), np.memmap)
    for i in range(len(a)):
        assert np.array_equal(a.image(i), b.image(i))
    # another preprocessing: another cache
    other = PreprocessConfig(input_size=24, resize=30)
    c = DecodedImageCache(UTKFace(utk_dir), other.fixed_transform(), cache_dir=root)
    assert c.built and c.key != a.key and c.image(0).shape[0] == 30
    # a changed file: another cache, holding the new pixels
    f = sorted(utk_dir.iterdir())[0]
    _face(f, 99, size=(40, 36))
    os.utime(f, ns=(1, 1))
    d = DecodedImageCache(UTKFace(utk_dir), PRE.fixed_transform(), cache_dir=root)
    assert d.built and d.key != a.key
    fresh = UTKFace(utk_dir)
    i = [p.name for p in fresh.paths].index(f.name)
    assert np.array_equal(d.image(i), np.asarray(PRE.fixed_transform()(fresh.load(i)[0])))
    assert not [p for p in root.iterdir() if ".tmp-" in p.name]  # no leftovers


def test_pickling_a_disk_cache_carries_the_path_not_the_pixels(utk_dir, tmp_path):
    cache = DecodedImageCache(UTKFace(utk_dir), PRE.fixed_transform(), cache_dir=tmp_path)
    ds = cache.dataset(PRE.random_transform(train=False))
    ds[0]
    blob = pickle.dumps(ds)
    assert len(blob) < cache.nbytes
    again = pickle.loads(blob)
    assert torch.equal(again[3][0], ds[3][0])


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_read_the_memmap(utk_dir, tmp_path, context):
    cache = DecodedImageCache(UTKFace(utk_dir), PRE.fixed_transform(), cache_dir=tmp_path)
    ds = cache.dataset(PRE.random_transform(train=False))
    loader = DataLoader(ds, batch_size=3, num_workers=2, multiprocessing_context=context)
    got = torch.cat([x for x, _ in loader])
    expected = torch.stack([ds[i][0] for i in range(len(ds))])
    assert torch.equal(got, expected)


def test_every_reader(tmp_path, utk_dir):
    # AFAD layout AGE/GENDER/ID.jpg
    afad = tmp_path / "afad"
    for i, (age, g) in enumerate([(15, "111"), (20, "112"), (40, "111")]):
        (afad / str(age) / g).mkdir(parents=True)
        _face(afad / str(age) / g / f"{i}.jpg", i)
    # CORAL CSV over the UTK folder
    csv = tmp_path / "utk_test.csv"
    names = sorted(p.name for p in utk_dir.iterdir() if 21 <= int(p.name.split("_")[0]) <= 60)
    csv.write_text(",file,age\n" + "".join(f"{i},{n},{int(n.split('_')[0]) - 21}\n" for i, n in enumerate(names)))
    # identity folders, greyscale PGM, mode L
    orl = tmp_path / "orl"
    for s in (1, 2):
        (orl / f"s{s}").mkdir(parents=True)
        for m in (1, 2):
            _face(orl / f"s{s}" / f"{m}.pgm", 10 * s + m, mode="L")
    readers = [
        AFADFolder(afad),
        CoralCSV(csv, utk_dir, dataset="utk"),
        IdentityFolders(orl, mode="L"),
        UTKFace(utk_dir),
    ]
    channels = []
    for reader in readers:
        reader.transform = PRE.eval_transform() if reader.mode == "RGB" else None
        ds = DecodedImageCache(reader, PRE.fixed_transform() if reader.mode == "RGB" else None).dataset(
            PRE.random_transform(train=False) if reader.mode == "RGB" else None
        )
        for i in range(len(reader)):
            xa, ta = reader[i]
            xb, tb = ds[i]
            assert torch.equal(xa, xb) and ta == tb, type(reader).__name__
        channels.append(ds[0][0].shape[0])
    assert channels == [3, 3, 1, 3]  # mode L stays one channel


def test_real_readers(fairface_dir, london_dir):
    for reader in (FairFace(fairface_dir), LondonFaces(london_dir, require_age=True)):
        idx = [0, len(reader) // 2, len(reader) - 1]
        reader.transform = PRE.eval_transform()
        cache = DecodedImageCache(reader, PRE.fixed_transform(), workers=2)
        ds = cache.dataset(PRE.random_transform(train=False))
        for i in idx:
            assert torch.equal(ds[i][0], reader[i][0]) and ds[i][1] == reader[i][1]


def test_a_file_corrupted_after_verification_follows_the_readers_policy(utk_dir):
    reader = UTKFace(utk_dir, verify=False)
    bad = 2
    reader.paths[bad].write_bytes(b"not a jpeg")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = DecodedImageCache(reader, PRE.fixed_transform(), workers=1).dataset()
    assert any("could not load" in str(m.message) for m in w)
    assert ds.cache.target_index[bad] == bad + 1
    # the substituted image carries its own targets
    assert ds[bad][1] == UTKFace.__getitem__(reader, bad + 1)[1]


def test_errors():
    with pytest.raises(TypeError, match="dataset must be a facecore image reader"):
        DecodedImageCache([1, 2, 3])
