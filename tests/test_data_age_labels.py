"""Age labels: the CORAL paper's fixed CSV splits in each dataset's own format (UTKFace,
AFAD, MORPH-2, CACD, written here as the coral-cnn repository ships them), ``age_range``
honoured by every age reader, and one offset contract (``age = age_years - age_offset``,
``age_range = (age_offset, age_offset + K - 1)``) so a label is never silently shifted."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from facecore.data import (
    CORAL_NUM_CLASSES,
    AFADFolder,
    CoralCSV,
    FairFace,
    LondonFaces,
    UTKFace,
    coral_csv_splits,
)


def _img(path, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((10, 12, 3), value, np.uint8)).save(path)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# --------------------------------------------------------------- CORAL CSV formats


def _utk_or_cacd(tmp_path, name, offset, rows):
    """``,file,age`` files as coral-cnn's utk_*.csv / cacd_*.csv; rows: split -> [(file, years)]."""
    img = tmp_path / f"{name}_img"
    for split, items in rows.items():
        lines = [",file,age"]
        for i, (f, years) in enumerate(items):
            _img(img / f, years)
            lines.append(f"{i},{f},{years - offset}")
        (tmp_path / "csv").mkdir(exist_ok=True)
        (tmp_path / "csv" / f"{name}_{split}.csv").write_text("\n".join(lines) + "\n")
    return img


def test_utk_and_cacd_fixed_splits(tmp_path):
    img = _utk_or_cacd(
        tmp_path, "utk", 21,
        {
            "train": [("36_0_1_20170117163203851.jpg.chip.jpg", 36), ("21_0_0_2017.jpg.chip.jpg", 21)],
            "valid": [("60_1_0_20170110141610416.jpg.chip.jpg", 60)],
            "test": [("26_1_0_20170116171048641.jpg.chip.jpg", 26)],
        },
    )
    parts = coral_csv_splits(tmp_path / "csv" / "utk", img)
    assert list(parts) == ["train", "valid", "test"]
    for ds in parts.values():  # every split agrees on the classes (the paper's 21..60)
        assert (ds.age_offset, ds.num_classes, ds.age_range, ds.age_unit) == (21, 40, (21, 60), "year")
    assert sorted(t["age_years"] for _, t in parts["train"]) == [21, 36]
    assert sorted(t["age"] for _, t in parts["train"]) == [0, 15]
    assert parts["valid"][0][1] == {"age": 39, "age_years": 60}
    # the same from the folder, and from a mapping
    again = coral_csv_splits(tmp_path / "csv", img)
    assert [len(again[s]) for s in again] == [2, 1, 1]
    one_file = coral_csv_splits(tmp_path / "csv" / "utk_valid.csv", img)
    assert [len(one_file[s]) for s in one_file] == [2, 1, 1]
    m = coral_csv_splits({s: tmp_path / "csv" / f"utk_{s}.csv" for s in ("train", "test")}, img,
                         dataset="utk", splits=("train", "test"))
    assert list(m) == ["train", "test"] and m["test"].age_offset == 21

    cimg = _utk_or_cacd(tmp_path / "c", "cacd", 14, {
        "train": [("54_Bill_Pullman_0006.jpg", 54), ("14_Someone_0001.jpg", 14)],
        "test": [("62_Cristine_Rose_0009.jpg", 62)],
    })
    c = coral_csv_splits(tmp_path / "c" / "csv" / "cacd", cimg, splits=("train", "test"))
    assert (c["test"].num_classes, c["test"].age_offset) == (CORAL_NUM_CLASSES["cacd"], 14)
    assert c["test"][0][1] == {"age": 48, "age_years": 62}


def test_afad_and_morph2_formats(tmp_path):
    img = tmp_path / "afad"
    _img(img / "39" / "112" / "406208-0.jpg")
    _img(img / "15" / "111" / "1-0.jpg")
    (tmp_path / "afad_test.csv").write_text(
        "file,path,age,gender\n406208-0.jpg,39/112/406208-0.jpg,24,female\n1-0.jpg,15/111/1-0.jpg,0,male\n"
    )
    afad = CoralCSV(tmp_path / "afad_test.csv", img, dataset="afad")
    assert (afad.age_offset, afad.num_classes) == (15, 26)
    assert sorted((t["age_years"], t["gender"]) for _, t in afad) == [(15, 0), (39, 1)]

    mimg = tmp_path / "morph"
    _img(mimg / "273546_01M22.jpg")
    _img(mimg / "306329_00F32.jpg")
    (tmp_path / "morph2_test.csv").write_text(
        ",id_num,picture_num,race,Male,facial_hair,age,glasses,quality\n"
        "273546_01M22.jpg,273546,1,B,1,,6,,GOOD\n"
        "306329_00F32.jpg,306329,0,B,-1,,16,,GOOD\n"
    )
    morph = CoralCSV(tmp_path / "morph2_test.csv", mimg, dataset="morph2")
    assert (morph.age_offset, morph.num_classes, morph.age_range) == (16, 55, (16, 70))
    got = sorted((p.name, t["age"], t["age_years"], t["gender"]) for p, (_, t) in zip(morph.paths, morph))
    assert got == [("273546_01M22.jpg", 6, 22, 0), ("306329_00F32.jpg", 16, 32, 1)]


def test_a_csv_written_with_another_offset_is_an_error_not_a_shift(tmp_path):
    img = tmp_path / "u"
    _img(img / "36_0_1_2017.jpg.chip.jpg")
    (tmp_path / "utk_train.csv").write_text(",file,age\n0,36_0_1_2017.jpg.chip.jpg,36\n")  # years
    with pytest.raises(ValueError, match=r"line 2: '36_0_1_2017.jpg.chip.jpg' is 36 years old but age 36 \+ age_offset 21 = 57"):
        CoralCSV(tmp_path / "utk_train.csv", img, dataset="utk")
    ds = CoralCSV(tmp_path / "utk_train.csv", img, age_offset=0, num_classes=61)
    assert ds[0][1]["age_years"] == 36
    loose = _quiet(CoralCSV, tmp_path / "utk_train.csv", img, dataset="utk", check_names=False,
                   num_classes=100)
    assert loose[0][1]["age_years"] == 57  # what the user asked for, explicitly


def test_csv_age_range_and_errors(tmp_path):
    img = tmp_path / "u"
    lines = [",file,age"]
    for i, years in enumerate([21, 30, 45, 60]):
        f = f"{years}_0_0_{i}.jpg"
        _img(img / f)
        lines.append(f"{i},{f},{years - 21}")
    (tmp_path / "utk_test.csv").write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="2 age out of range"):
        ds = CoralCSV(tmp_path / "utk_test.csv", img, dataset="utk", age_range=(25, 50))
    assert (ds.age_offset, ds.num_classes, ds.age_range) == (21, 30, (21, 50))
    assert sorted(ds.targets("age_years").tolist()) == [30, 45]
    assert sorted(ds.targets("age").tolist()) == [9, 24]  # never re-offset
    with pytest.raises(ValueError, match="starts below age_offset=21"):
        CoralCSV(tmp_path / "utk_test.csv", img, dataset="utk", age_range=(16, 60))
    (tmp_path / "utk_train.csv").write_text((tmp_path / "utk_test.csv").read_text())
    with pytest.raises(FileNotFoundError, match="CORAL valid split file .*utk_valid.csv"):
        coral_csv_splits(tmp_path / "utk", img)
    with pytest.raises(FileNotFoundError, match="CORAL valid split file"):
        coral_csv_splits(tmp_path, img)  # the folder's one *_train.csv names the set
    with pytest.raises(ValueError, match="csv mapping has no \\['valid'\\]"):
        coral_csv_splits({"train": tmp_path / "utk_test.csv", "test": tmp_path / "utk_test.csv"}, img)
    (tmp_path / "afad_train.csv").write_text("file,path,age\n")
    with pytest.raises(ValueError, match="exactly one \\*_train.csv"):
        coral_csv_splits(tmp_path, img)


# ------------------------------------------------------- age_range in every reader


def _year_readers(tmp_path):
    utk = tmp_path / "utk"
    afad = tmp_path / "afad"
    london = tmp_path / "london"
    london.mkdir()
    rows = ["file,person,age,gender,ethnicity,expression"]
    for i, years in enumerate([1, 15, 21, 30, 44, 60, 70]):
        _img(utk / f"{years}_{i % 2}_0_2017{i}.jpg.chip.jpg")
        _img(afad / str(years) / "111" / f"{i}.jpg")
        _img(london / f"{i}.jpg")
        rows.append(f"{i}.jpg,{i:03d},{years},male,white,neutral")
    (london / "labels.csv").write_text("\n".join(rows) + "\n")
    return {
        "utk": lambda **kw: UTKFace(utk, **kw),
        "afad": lambda **kw: AFADFolder(afad, **{"age_offset": None, **kw}),
        "london": lambda **kw: LondonFaces(london, require_age=True, **kw),
    }


@pytest.mark.parametrize("name", ["utk", "afad", "london"])
def test_every_year_reader_honours_age_range_and_reports_the_offset_it_used(tmp_path, name):
    make = _year_readers(tmp_path)[name]
    full = _quiet(make)
    # the 1-year-old: without a range class 0 is age 1, and that is the offset reported
    assert (full.age_offset, full.num_classes, full.age_range, full.age_unit) == (1, 70, (1, 70), "year")
    assert 0 in full.targets("age").tolist()
    with pytest.warns(UserWarning, match="3 age out of range"):
        ds = make(age_range=(21, 60))
    assert (ds.age_offset, ds.num_classes, ds.age_range) == (21, 40, (21, 60))
    years, age = ds.targets("age_years"), ds.targets("age")
    assert sorted(years.tolist()) == [21, 30, 44, 60]
    assert (age == years - ds.age_offset).all() and age.min() >= 0 and age.max() < ds.num_classes
    shifted = _quiet(make, age_range=(21, 60), age_offset=16)  # the CORAL MORPH-2 style offset
    assert (shifted.age_offset, shifted.num_classes, shifted.age_range) == (16, 45, (16, 60))
    assert (shifted.targets("age") == shifted.targets("age_years") - 16).all()
    with pytest.raises(ValueError, match="age_offset=30 is above the youngest kept age 21"):
        _quiet(make, age_range=(21, 60), age_offset=30)
    with pytest.raises(ValueError, match="min <= max"):
        _quiet(make, age_range=(60, 21))


def test_fairface_age_range_keeps_whole_groups(tmp_path):
    root = tmp_path / "ff"
    groups = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"]
    entries = []
    for i, g in enumerate(groups):
        _img(root / f"{i}.jpg")
        entries.append(f'{{"filename": "{i}.jpg", "age": "{g}", "gender": "Male"}}')
    (root / "ground_truth.json").write_text("[" + ",".join(entries) + "]")
    full = FairFace(root)
    assert (full.age_offset, full.age_unit, full.num_classes, full.age_range) == (0, "group", 9, (0, 70))
    assert full.class_names == tuple(groups)
    with pytest.warns(UserWarning, match="5 age out of range"):
        adults = FairFace(root, age_range=(20, 59))
    assert adults.class_names == ("20-29", "30-39", "40-49", "50-59") and adults.num_classes == 4
    assert sorted(adults.targets("age").tolist()) == [0, 1, 2, 3]
    assert adults.age_range == (20, 50)
    assert _quiet(FairFace, root, age_range=(20, 70)).class_names[-1] == "70+"
    with pytest.raises(ValueError, match="keeps none of the age groups"):
        FairFace(root, age_range=(80, 90))
