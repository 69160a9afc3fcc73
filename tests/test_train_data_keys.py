"""The ``data`` keys of issue 10 through training's one path (``build_splits`` /
``prepare_run``): ``data.age_range`` honoured by every age reader, ``data.csv`` (the CORAL
paper's fixed train / valid / test CSVs, replacing the fractions), ``data.horizontal_flip``
/ ``data.crop_fraction`` (into the preprocessing and the export), ``data.cache``
``memory | disk | off`` (same items; the disk cache built once by the driver and mapped by
the workers), each with a one-line error naming the key."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from facecore.data import CORAL_NUM_CLASSES, DecodedImageCache
from facecore.data.cache import CachedImageDataset
from facecore.train import ConfigError, load_config
from facecore.train.config import check_data_root
from facecore.train.datasets import build_splits, cache_dir_of
from facecore.train.runner import prepare_run
from facecore.train.tasks import get_task


def _img(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (30, 26, 3), dtype=np.uint8)).save(path)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


YEARS = [1, 15, 21, 25, 30, 35, 44, 50, 60, 70] * 3


@pytest.fixture
def age_sets(tmp_path):
    """UTKFace, AFAD and London folders with the same ages (1 .. 70)."""
    utk, afad, london = tmp_path / "utk", tmp_path / "afad", tmp_path / "london"
    rows = ["file,person,age,gender,ethnicity,expression"]
    for i, years in enumerate(YEARS):
        _img(utk / f"{years}_{i % 2}_0_2017{i:03d}.jpg.chip.jpg", i)
        _img(afad / str(years) / ("111" if i % 2 else "112") / f"{i}.jpg", i)
        _img(london / f"{i}.jpg", i)
        rows.append(f"{i}.jpg,{i // 2:03d},{years},male,white,{'neutral' if i % 2 else 'smiling'}")
    (london / "labels.csv").write_text("\n".join(rows) + "\n")
    return {"utkface": utk, "afad": afad, "london": london}


def _cfg(*overrides):
    return load_config(task="age", overrides=[
        "data.image_size=16", "data.batch_size=8", "model.width=4", "run.workers=0", *overrides,
    ])


@pytest.mark.parametrize("name", ["utkface", "afad", "london"])
def test_age_range_is_honoured_by_every_year_reader(age_sets, name, tmp_path):
    extra = ["data.split_by=identity"] if name == "london" else []
    splits = _quiet(build_splits, _cfg(f"data.name={name}", f"data.root={age_sets[name]}",
                                       "data.age_range=[21, 60]", *extra))
    ds = splits.dataset
    assert (ds.age_offset, ds.num_classes, ds.age_range, ds.age_unit) == (21, 40, (21, 60), "year")
    years = ds.targets("age_years")
    assert sorted(set(years.tolist())) == [21, 25, 30, 35, 44, 50, 60]
    assert torch.equal(ds.targets("age"), years - 21)
    assert splits.num_classes == 40
    settings = get_task("age").export_settings(splits.config, ds)
    assert settings == {"age_offset": 21.0, "age_unit": "year"}


def test_london_ages_need_the_age_range(age_sets):
    with pytest.raises(ConfigError, match=r"data.name='london' has no 'age' labels for task 'age' "
                       r"\(set data.age_range: \[MIN, MAX\] to read its ages\)"):
        _quiet(build_splits, _cfg("data.name=london", f"data.root={age_sets['london']}"))


def test_fairface_age_range_keeps_groups(fairface_dir):
    splits = _quiet(build_splits, _cfg("data.name=fairface", f"data.root={fairface_dir}",
                                       "data.age_range=[20, 59]", "data.cache=off"))
    ds = splits.dataset
    assert list(ds.class_names) == ["20-29", "30-39", "40-49", "50-59"] and len(ds) == 240
    assert get_task("age").export_settings(splits.config, ds) == {
        "age_offset": 0.0, "class_names": ["20-29", "30-39", "40-49", "50-59"], "age_unit": "group"}


# ------------------------------------------------------------------------ data.csv


def _coral_csvs(tmp_path, name, offset, rows):
    """coral-cnn style ``,file,age`` CSVs (age already minus the offset)."""
    img, csvdir = tmp_path / f"{name}_img", tmp_path / "csv"
    csvdir.mkdir(exist_ok=True)
    for split, items in rows.items():
        lines = [",file,age"]
        for i, (f, years) in enumerate(items):
            _img(img / f, years * 7 + i)
            lines.append(f"{i},{f},{years - offset}")
        (csvdir / f"{name}_{split}.csv").write_text("\n".join(lines) + "\n")
    return img, csvdir


UTK_ROWS = {
    "train": [(f"{y}_0_1_2017{i:03d}.jpg.chip.jpg", y) for i, y in enumerate([21, 30, 44, 60, 25, 33, 52, 41])],
    "valid": [(f"{y}_1_0_2018{i:03d}.jpg.chip.jpg", y) for i, y in enumerate([22, 48, 37])],
    "test": [(f"{y}_1_2_2019{i:03d}.jpg.chip.jpg", y) for i, y in enumerate([26, 59])],
}


@pytest.mark.parametrize("form", ["prefix", "file", "folder"])
def test_csv_gives_the_papers_fixed_splits(tmp_path, form):
    img, csvdir = _coral_csvs(tmp_path, "utk", 21, UTK_ROWS)
    csv = {"prefix": csvdir / "utk", "file": csvdir / "utk_valid.csv", "folder": csvdir}[form]
    cfg = _cfg("data.name=utkface", f"data.root={img}", f"data.csv={csv}",
               "data.fractions=[0.34, 0.33, 0.33]")  # not used with fixed splits
    splits = build_splits(cfg)
    ds = splits.dataset
    for split, items in UTK_ROWS.items():
        assert [ds.paths[i].name for i in splits.indices[split]] == [f for f, _ in items], split
        assert splits.labels(split).tolist() == [y - 21 for _, y in items]
    assert splits.fixed and splits.num_classes == CORAL_NUM_CLASSES["utk"] == 40
    assert (ds.age_offset, ds.age_range) == (21, (21, 60))
    assert get_task("age").export_settings(splits.config, ds)["age_offset"] == 21.0


def test_csv_splits_for_morph2_and_cacd(tmp_path):
    img, csvdir = _coral_csvs(tmp_path, "cacd", 14, {
        "train": [(f"{y}_Person_{i}.jpg", y) for i, y in enumerate([14, 20, 33, 62, 45])],
        "valid": [("30_Anne_1.jpg", 30)], "test": [("50_Bob_2.jpg", 50)],
    })
    splits = build_splits(_cfg("data.name=cacd", f"data.root={img}", f"data.csv={csvdir}/cacd"))
    assert splits.sizes() == {"train": 5, "valid": 1, "test": 1}
    assert (splits.dataset.age_offset, splits.num_classes) == (14, CORAL_NUM_CLASSES["cacd"])
    with pytest.raises(ConfigError, match=r"data.csv is required for data.name='morph2' \(the CORAL "
                       r"paper's morph2_train/valid/test.csv"):
        check_data_root(_cfg("data.name=morph2", f"data.root={img}"))


def test_csv_errors_name_the_key(tmp_path, age_sets):
    img, csvdir = _coral_csvs(tmp_path, "utk", 21, {"train": UTK_ROWS["train"], "valid": UTK_ROWS["valid"]})
    with pytest.raises(ConfigError, match=r"data.csv='.*utk': CORAL test split file '.*utk_test.csv' does not exist"):
        build_splits(_cfg("data.name=utkface", f"data.root={img}", f"data.csv={csvdir}/utk"))
    with pytest.raises(ConfigError, match=r"data.csv \(the CORAL paper's fixed train/valid/test CSVs\) "
                       r"applies to utkface \| afad \| morph2 \| cacd, not data.name='fairface'"):
        _cfg("data.name=fairface", f"data.csv={csvdir}/utk")
    # a CSV written with another offset is refused, not shifted
    (csvdir / "utk_test.csv").write_text(",file,age\n0,26_1_2_2019000.jpg.chip.jpg,26\n")
    _img(img / "26_1_2_2019000.jpg.chip.jpg", 1)
    with pytest.raises(ConfigError, match=r"data.csv=.*is 26 years old but age 26 \+ age_offset 21 = 47"):
        build_splits(_cfg("data.name=utkface", f"data.root={img}", f"data.csv={csvdir}/utk"))


# ------------------------------------------------------ preprocessing keys and the cache


def test_flip_and_crop_fraction_reach_training_and_the_export(age_sets):
    root = age_sets["utkface"]
    splits = _quiet(build_splits, _cfg("data.name=utkface", f"data.root={root}",
                                       "data.crop_fraction=0.5", "data.horizontal_flip=0.25"))
    pre = splits.preprocess
    assert (pre.crop_fraction, pre.horizontal_flip) == (0.5, 0.25)
    assert "RandomHorizontalFlip(p=0.25)" in repr(splits.train.dataset.transform)
    assert "CenterCropFraction(fraction=0.5)" in repr(splits.train.dataset.cache.fixed_transform)
    assert pre.to_dict()["crop_fraction"] == 0.5  # what the export's metadata records
    still = _quiet(build_splits, _cfg("data.name=utkface", f"data.root={root}", "data.augment=false"))
    assert still.preprocess.horizontal_flip == 0.0  # no augmentation: no flip, none exported
    defaults = _cfg()
    assert (defaults.data.horizontal_flip, defaults.data.crop_fraction, defaults.data.cache) == (0.5, 1.0, "memory")


def test_cache_modes_serve_the_same_items(age_sets):
    root = age_sets["utkface"]
    items = {}
    for mode in ("off", "memory"):
        splits = _quiet(build_splits, _cfg("data.name=utkface", f"data.root={root}", f"data.cache={mode}",
                                           "data.crop_fraction=0.8"))
        assert isinstance(splits.dataset, CachedImageDataset) == (mode == "memory")
        valid = [splits.valid[i] for i in range(len(splits.valid))]
        torch.manual_seed(5)
        train = [splits.train[i] for i in range(len(splits.train))]
        items[mode] = (valid, train, splits.indices)
    assert items["off"][2] == items["memory"][2]
    for a, b in zip(items["off"][0] + items["off"][1], items["memory"][0] + items["memory"][1]):
        assert torch.equal(a[0], b[0]) and a[1] == b[1]


def test_disk_cache_is_built_once_by_the_driver(age_sets, tmp_path, monkeypatch):
    root = age_sets["utkface"]
    cfg = _cfg("data.name=utkface", f"data.root={root}", "data.cache=disk",
               f"run.storage={tmp_path / 'runs'}", "run.name=r")
    assert cache_dir_of(cfg) == tmp_path / "runs" / "r" / "image_cache"
    built = []
    original = DecodedImageCache._build_on_disk

    def counting(self, where):
        built.append(where)
        return original(self, where)

    monkeypatch.setattr(DecodedImageCache, "_build_on_disk", counting)
    work = _quiet(prepare_run, cfg)
    assert work.data.cache_dir == str(tmp_path / "runs" / "r" / "image_cache") and len(built) == 1
    splits = _quiet(build_splits, work)  # a worker: maps the cache, builds nothing
    assert len(built) == 1 and splits.dataset.cache.path.parent == cache_dir_of(cfg)
    assert not splits.dataset.cache.built
    with pytest.raises(ConfigError, match=r"data.cache=disk with run.storage='s3://b/r' \(a URI\) needs data.cache_dir"):
        cache_dir_of(_cfg("data.cache=disk", "run.storage=s3://b/r"))


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["data.age_range=[21, 60]"], r"data.age_range applies to the age datasets \(utkface \| afad \| "
                                      r"morph2 \| cacd \| fairface \| london\), not data.name='synthetic'"),
        (["data.name=utkface", "data.age_range=[60, 21]"], r"data.age_range must be \[MIN, MAX\] years"),
        (["data.name=utkface", "data.age_range=[21]"], r"data.age_range must be \[MIN, MAX\] years"),
        (["data.crop_fraction=0"], r"data.crop_fraction must be in \(0, 1\], got 0.0"),
        (["data.horizontal_flip=2"], r"data.horizontal_flip must be in \[0, 1\], got 2.0"),
        (["data.cache=ram"], r"data.cache must be one of memory \| disk \| off, got 'ram'"),
        (["data.cache_dir=/tmp/x"], r"data.cache_dir applies to data.cache=disk, got data.cache='memory'"),
    ],
)
def test_data_key_errors_are_one_line_naming_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match) as info:
        _cfg(*overrides)
    assert "\n" not in str(info.value)
