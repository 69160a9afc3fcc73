"""Readers on fixture trees written here (naming edge cases, CSV offsets, corrupt and
truncated files, empty folders) and on the real sample data in ../shared/data."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facecore.data import (
    AFADFolder,
    CelebA,
    CoralCSV,
    FairFace,
    IdentityFolders,
    UTKFace,
    compute_gender_prototypes,
    load_prototypes,
    save_prototypes,
)


def _img(path: Path, value: int = 128, size=(12, 10), fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3), value, np.uint8)
    arr[0, 0] = (value + 40) % 256
    Image.fromarray(arr).save(path, format=fmt)
    return path


def _truncated_jpeg(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path, "JPEG", quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def utk(tmp_path) -> Path:
    root = tmp_path / "utk"
    _img(root / "25_0_0_20170116174525125.jpg.chip.jpg", 10)
    _img(root / "30_1_2_20170116174525126.jpg.chip.jpg", 20)
    _img(root / "21_1_4_20170116174525127.jpg", 30)  # without .chip.jpg
    _img(root / "60_0_1_20170116174525128.jpg.chip.jpg", 40)
    _img(root / "70_0_1_20170116174525129.jpg.chip.jpg", 50)  # outside 21..60
    _img(root / "39_1_20170116174525125.jpg.chip.jpg", 60)  # missing race (real UTKFace case)
    _img(root / "30_2_0_20170116174525125.jpg.chip.jpg", 70)  # gender 2
    _img(root / "abc_0_0_20170116174525125.jpg.chip.jpg", 80)
    _truncated_jpeg(root / "45_0_3_20170116174525130.jpg.chip.jpg")
    (root / "notes.txt").write_text("not an image")
    return root


def test_utkface_names_offsets_and_corrupt(utk):
    with pytest.warns(UserWarning, match=r"3 malformed name .*39_1_2017.*; 1 age out of range.*; 1 corrupt \(45_0_3"):
        ds = UTKFace(utk, age_range=(21, 60))
    assert ds.num_classes == 40 and ds.age_offset == 21
    assert len(ds) == 4 and ds.num_skipped == 5
    assert sorted(ds.skipped["malformed_name"]) == sorted(
        ["39_1_20170116174525125.jpg.chip.jpg", "30_2_0_20170116174525125.jpg.chip.jpg",
         "abc_0_0_20170116174525125.jpg.chip.jpg"]
    )
    items = {int(t["age_years"]): t for _, t in (ds[i] for i in range(len(ds)))}
    assert items[25] == {"age": 4, "age_years": 25, "gender": 0, "race": 0}
    assert items[30] == {"age": 9, "age_years": 30, "gender": 1, "race": 2}
    assert items[21]["age"] == 0 and items[60]["age"] == 39
    counts = ds.class_counts("age")
    assert len(counts) == 40 and counts[0] == counts[4] == counts[9] == counts[39] == 1
    assert ds.class_counts("race") == [1, 1, 1, 0, 1]
    x, _ = ds[0]
    assert x.shape == (3, 10, 12) and x.dtype == torch.float32
    # without a filter: all well-named readable images, offset = youngest age
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        all_ = UTKFace(utk)
    assert len(all_) == 5 and all_.age_offset == 21 and all_.num_classes == 50


def test_utkface_splits_deterministic(tmp_path):
    root = tmp_path / "u"
    for i in range(40):
        _img(root / f"{20 + i}_{i % 2}_{i % 5}_2017011617452{i:04d}.jpg.chip.jpg", i)
    parts = [UTKFace(root, split=s, split_seed=3) for s in ("train", "valid", "test")]
    assert [len(p) for p in parts] == [32, 4, 4]
    names = [{p.name for p in d.paths} for d in parts]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    again = UTKFace(root, split="test", split_seed=3)
    assert [p.name for p in again.paths] == [p.name for p in parts[2].paths]
    assert {p.name for p in UTKFace(root, split="test", split_seed=4).paths} != names[2]


def test_missing_and_empty_roots(tmp_path):
    with pytest.raises(FileNotFoundError, match="UTKFace root .*nope.* does not exist"):
        UTKFace(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="UTKFace: no usable images found under"):
        UTKFace(tmp_path / "empty")
    with pytest.raises(RuntimeError, match="IdentityFolders: no usable images found"):
        IdentityFolders(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="FairFace annotations"):
        FairFace(tmp_path / "empty")


def test_corrupt_only_dataset_errors(tmp_path):
    _truncated_jpeg(tmp_path / "c" / "s1" / "1.jpg")
    with pytest.warns(UserWarning, match="1 corrupt"), pytest.raises(RuntimeError, match="no readable images left"):
        IdentityFolders(tmp_path / "c")


def test_lazy_mode_falls_back_inside_dataloader_workers(utk):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = UTKFace(utk, age_range=(21, 60), verify=False)
    assert len(ds) == 5  # the truncated file is still listed
    bad = [i for i, p in enumerate(ds.paths) if p.name.startswith("45_")][0]
    with pytest.warns(UserWarning, match="could not load .*45_0_3.*next readable item"):
        x, t = ds[bad]
    assert t == ds[(bad + 1) % len(ds)][1]
    loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xb, tb = next(iter(loader))
    assert xb.shape == (5, 3, 10, 12) and len(tb["age"]) == 5


def test_coral_csv_offsets(tmp_path):
    root = tmp_path / "img"
    _img(root / "39" / "112" / "a.jpg")
    _img(root / "15" / "111" / "b.jpg")
    _img(root / "20" / "111" / "c.jpg")
    csv = tmp_path / "afad_test.csv"
    csv.write_text(
        "file,path,age,gender\n"
        "a.jpg,39/112/a.jpg,24,female\n"
        "b.jpg,15/111/b.jpg,0,male\n"
        "c.jpg,20/111/c.jpg,x,male\n"  # malformed age
        "d.jpg,20/111/d.jpg,5,male\n"  # missing file
    )
    with pytest.warns(UserWarning, match="1 malformed row \\(line 4\\); 1 missing file \\(20/111/d.jpg\\)"):
        ds = CoralCSV(csv, root, dataset="afad", num_classes=26)
    assert ds.age_offset == 15 and ds.num_classes == 26 and len(ds) == 2
    assert sorted((t["age"], t["age_years"], t["gender"]) for _, t in ds) == [(0, 15, 0), (24, 39, 1)]
    # UTK-style CSV: unnamed index column, only file and age; offset 21
    (tmp_path / "u").mkdir()
    _img(tmp_path / "u" / "40_1_3_2017.jpg.chip.jpg")
    csv2 = tmp_path / "utk_test.csv"
    csv2.write_text(",file,age\n18896,40_1_3_2017.jpg.chip.jpg,19\n")
    u = CoralCSV(csv2, tmp_path / "u", dataset="utk", num_classes=40)
    assert u[0][1] == {"age": 19, "age_years": 40} and "gender" not in u.label_keys
    with pytest.raises(ValueError, match="needs an 'age' column"):
        bad = tmp_path / "bad.csv"
        bad.write_text("file,label\na.jpg,1\n")
        CoralCSV(bad, root)
    with pytest.raises(ValueError, match="age label 24 >= num_classes=10"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            CoralCSV(csv, root, dataset="afad", num_classes=10)
    with pytest.raises(ValueError, match="dataset must be one of"):
        CoralCSV(csv, root, dataset="imdb")


def test_afad_folder(tmp_path):
    root = tmp_path / "AFAD-Full"
    _img(root / "15" / "111" / "1.jpg")
    _img(root / "40" / "112" / "2.jpg")
    _img(root / "41" / "112" / "3.jpg")
    _img(root / "20" / "113" / "4.jpg")  # unknown gender code
    _img(root / "x" / "111" / "5.jpg")  # non-numeric age
    with pytest.warns(UserWarning, match="2 malformed path"):
        ds = AFADFolder(root, age_range=(15, 40))
    assert ds.num_classes == 26 and len(ds) == 2
    assert sorted((t["age"], t["gender"]) for _, t in ds) == [(0, 0), (25, 1)]


def test_celeba(tmp_path):
    root = tmp_path / "celeba"
    names = ["Male", "Smiling", "Young"]
    rows = [("000001.jpg", "1 -1 1", 7, 0), ("000002.jpg", "-1 1 1", 9, 0),
            ("000003.jpg", "-1 -1 -1", 7, 1), ("000004.jpg", "1 1 -1", 12, 2),
            ("000005.jpg", "1 1", 12, 2)]  # malformed: too few attributes
    (root).mkdir()
    (root / "list_attr_celeba.txt").write_text(
        f"{len(rows)}\n" + " ".join(names) + "\n" + "".join(f"{f}  {a}\n" for f, a, _, _ in rows)
    )
    (root / "identity_CelebA.txt").write_text("".join(f"{f} {i}\n" for f, _, i, _ in rows))
    (root / "list_eval_partition.txt").write_text("".join(f"{f} {p}\n" for f, _, _, p in rows))
    for f, *_ in rows:
        _img(root / "img_align_celeba" / f)
    with pytest.warns(UserWarning, match="1 malformed row"):
        tr = CelebA(root, split="train")
    assert len(tr) == 2 and tr.attribute_names == tuple(names)
    x, t = tr[0]
    assert t["gender"] == 0 and t["attributes"].tolist() == [1, 0, 1]
    assert tr[1][1]["gender"] == 1 and tr.targets("attributes").shape == (2, 3)
    assert tr.num_identities == 2 and tr.identity_ids == [7, 9]
    assert tr.targets("identity").tolist() == [0, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(CelebA(root, split="valid")) == 1
        assert len(CelebA(root, split=None)) == 4
    with pytest.raises(FileNotFoundError, match="identity file"):
        (root / "identity_CelebA.txt").unlink()
        CelebA(root)


def test_identity_folders_fixture(tmp_path):
    root = tmp_path / "ids"
    for person, n in (("s1", 3), ("s2", 2), ("s10", 1)):
        for m in range(1, n + 1):
            _img(root / person / f"{m}.pgm", 10 * m, fmt="PPM")
    (root / "s3").mkdir()
    with pytest.warns(UserWarning, match="1 empty identity \\(s3\\)"):
        ds = IdentityFolders(root)
    assert ds.person_names == ["s1", "s2", "s10"]
    assert ds.class_counts("identity") == [3, 2, 1]
    assert ds.num_identities == 3


@pytest.mark.data
def test_fairface_real(fairface_dir):
    ds = FairFace(fairface_dir)
    assert len(ds) == 540 and ds.num_skipped == 0
    assert ds.num_classes == 9 and ds.class_counts("age") == [60] * 9
    assert ds.class_counts("gender") == [270, 270]
    x, t = ds[0]
    assert x.shape == (3, 448, 448) and set(t) == {"age", "gender"}
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    tr = FairFace(fairface_dir, split="train", verify=False)
    te = FairFace(fairface_dir, split="test", verify=False)
    assert len(tr) == 432 and len(te) == 54
    assert not ({p.name for p in tr.paths} & {p.name for p in te.paths})


@pytest.mark.data
def test_orl_real(orl_dir):
    ds = IdentityFolders(orl_dir)
    assert len(ds) == 400 and ds.num_identities == 40
    assert ds.class_counts("identity") == [10] * 40
    assert ds.person_names[:3] == ["s1", "s2", "s3"] and ds.person_names[-1] == "s40"
    x, t = ds[0]
    assert x.shape == (3, 112, 92) and t == {"identity": 0}
    torch.testing.assert_close(x[0], x[1])  # greyscale replicated
    g = IdentityFolders(orl_dir, mode="L", verify=False)
    assert g[0][0].shape == (1, 112, 92)
    tr = IdentityFolders(orl_dir, split="train", verify=False)
    te = IdentityFolders(orl_dir, split="test", verify=False)
    assert tr.num_identities == 32 and te.num_identities == 4 and len(tr) == 320
    assert not (set(tr.person_names) & set(te.person_names))  # split by identity
    smp = IdentityFolders(orl_dir, split="train", split_by="sample", verify=False)
    assert len(smp) == 320 and smp.num_identities > 32


def test_prototypes_roundtrip(tmp_path):
    # oracle: per-class means computed by hand on a tiny fixture
    root = tmp_path / "ff"
    entries = []
    for i, (g, v) in enumerate([("Male", 10), ("Male", 30), ("Female", 200), ("Male", 50)]):
        _img(root / f"{i}.png", v)
        entries.append(f'{{"filename": "{i}.png", "age": "20-29", "gender": "{g}"}}')
    (root / "ground_truth.json").write_text("[" + ",".join(entries) + "]")
    ds = FairFace(root)
    p = compute_gender_prototypes(ds, batch_size=3)
    imgs = torch.stack([ds[i][0] for i in range(4)])
    g = ds.targets("gender")
    torch.testing.assert_close(p["male"], imgs[g == 0].mean(0))
    torch.testing.assert_close(p["female"], imgs[g == 1].mean(0))
    torch.testing.assert_close(p["neutral"], imgs.mean(0))  # class-frequency weighted = overall mean
    assert p["counts"].tolist() == [3, 1]
    save_prototypes(p, tmp_path / "p.pt")
    q = load_prototypes(tmp_path / "p.pt")
    for k in p:
        torch.testing.assert_close(q[k], p[k])
    assert torch.load(tmp_path / "p.pt", weights_only=True).keys() == p.keys()
    small = compute_gender_prototypes(ds, image_size=4)
    assert small["male"].shape == (3, 4, 4)
    with pytest.raises(ValueError, match="no female images"):
        compute_gender_prototypes(ds, max_samples=2)
    with pytest.raises(KeyError, match="prototypes lack keys"):
        save_prototypes({"male": p["male"]}, tmp_path / "x.pt")


def _london_fixture(root, rows):
    from PIL import Image

    root.mkdir()
    lines = ["file,person,age,gender,ethnicity,expression"]
    for i, (fname, person, age, gender, eth, expr) in enumerate(rows):
        Image.new("RGB", (32, 32), (i * 20 % 256, 90, 30)).save(root / fname)
        lines.append(f"{fname},{person},{age},{gender},{eth},{expr}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")


def test_london_faces_fixture(tmp_path):
    from facecore.data import LondonFaces

    root = tmp_path / "london"
    _london_fixture(
        root,
        [
            ("a_n.jpg", "007", "30", "female", "white", "neutral"),
            ("a_s.jpg", "007", "30", "female", "white", "smiling"),
            ("b_n.jpg", "010", "NA", "male", "black", "neutral"),
            ("b_s.jpg", "010", "NA", "male", "black", "smiling"),
            ("c_n.jpg", "002", "41", "male", "east_asian", "neutral"),
            ("bad.jpg", "003", "20", "other", "white", "neutral"),
        ],
    )
    with pytest.warns(UserWarning, match="malformed record"):
        ds = LondonFaces(root)
    assert len(ds) == 5 and ds.num_identities == 3
    assert ds.person_names == ["002", "007", "010"]
    assert "age" not in ds.label_keys
    order = [p.name for p in ds.paths]
    assert ds.targets("identity").tolist() == [{"a_n.jpg": 1, "a_s.jpg": 1, "b_n.jpg": 2,
                                                "b_s.jpg": 2, "c_n.jpg": 0}[n] for n in order]
    assert ds.targets("gender").tolist() == [{"a": 1, "b": 0, "c": 0}[n[0]] for n in order]
    assert ds.targets("race").tolist() == [{"a": 0, "b": 1, "c": 2}[n[0]] for n in order]
    assert ds.targets("expression").tolist() == [int(n.endswith("_s.jpg")) for n in order]
    with pytest.warns(UserWarning, match="age unknown"):
        aged = LondonFaces(root, require_age=True)
    assert sorted(aged.targets("age_years").tolist()) == [30, 30, 41]
    assert aged.age_offset == 30 and aged.num_classes == 12
    assert sorted(aged.targets("age").tolist()) == [0, 0, 11]


def test_london_faces_real(london_dir):
    from facecore.data import LondonFaces

    ds = LondonFaces(london_dir, verify=False)
    assert len(ds) == 204 and ds.num_identities == 102
    assert ds.class_counts("gender") == [106, 98]
    assert ds.class_counts("expression") == [102, 102]
    parts = [set(LondonFaces(london_dir, split=s, verify=False).targets("identity").tolist())
             for s in ("train", "valid", "test")]
    names = [set(LondonFaces(london_dir, split=s, verify=False).person_names)
             for s in ("train", "valid", "test")]
    assert sum(len(n) for n in names) == 102 and not (names[0] & names[1] or names[0] & names[2])
    assert all(parts)
    with pytest.warns(UserWarning, match="age unknown"):
        aged = LondonFaces(london_dir, age_range=(18, 60), verify=False)
    assert len(aged) == 200 and aged.age_offset == 18
