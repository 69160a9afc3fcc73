"""The UTK offset bug (issue 10): every age offset comes from the dataset that produced
the labels. A UTKFace folder read without an age range starts at age 1 (offset 1), so a
1-year-old's label is 0 and the exported / predicted age of class 0 is 1, not 1 + 21;
``data.age_range: [21, 60]`` makes 21 class 0; a config offset that disagrees with the
reader is a ConfigError, never a silent shift."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from train_cases import MemorySession

from facecore.serving import load
from facecore.train import ConfigError, load_config
from facecore.train.checkpoints import write_checkpoint
from facecore.train.datasets import build_splits
from facecore.train.loops import run_training
from facecore.train.runner import finalize

YEARS = [1, 1, 2, 5, 9, 15, 21, 21, 30, 30, 44, 60, 70, 80] * 2


@pytest.fixture
def utk(tmp_path):
    """A UTKFace-named folder whose youngest person is 1 year old."""
    root = tmp_path / "UTKFace"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i, years in enumerate(YEARS):
        img = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / f"{years}_{i % 2}_{i % 5}_2017{i:04d}.jpg.chip.jpg")
    return root


def _cfg(root, tmp_path, *overrides):
    return load_config(task="age", overrides=[
        "data.name=utkface", f"data.root={root}", "data.image_size=16", "optim.epochs=1",
        "model.width=4", "data.batch_size=8", "data.fractions=[0.6, 0.2, 0.2]",
        "run.workers=0", f"run.storage={tmp_path}", "run.name=utk", *overrides,
    ])


def _train_and_export(cfg, tmp_path, *, force_class0: bool):
    s = MemorySession()
    run_training(cfg, s)
    metrics, state = s.last
    if force_class0:  # a head that predicts class 0 for every face: P(y > k) ~ 0
        sd = state["model"]["state_dict"]
        sd["head.bias"] = torch.full_like(sd["head.bias"], -30.0)
        sd["head.fc.weight"] = torch.zeros_like(sd["head.fc.weight"])
    d = tmp_path / "ckpt" / "checkpoint_epoch_0001"
    write_checkpoint(d, metrics, state)
    out = finalize(d, tmp_path / "out", plot=False)
    return state, out["export_dir"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_one_year_olds_label_and_the_exported_age_agree(utk, tmp_path):
    cfg = _cfg(utk, tmp_path, "ordinal.head=coral")
    splits = build_splits(cfg)
    ds = splits.dataset
    # the reader: no age range -> class 0 is the youngest age present, 1 year
    assert (ds.age_offset, ds.num_classes, ds.age_unit) == (1, 80, "year")
    one = [i for i, p in enumerate(ds.paths) if p.name.startswith("1_")]
    assert one and all(int(ds.targets("age")[i]) == 0 for i in one)
    assert splits.config.ordinal.age_offset == 1.0

    state, export_dir = _train_and_export(cfg, tmp_path, force_class0=True)
    assert state["export"]["age_offset"] == 1.0 and state["export"]["age_unit"] == "year"
    predictor = load(export_dir)
    assert predictor.age_offset == 1.0 and predictor.age_unit == "year"
    assert predictor.metadata["age_offset"] == 1.0 and predictor.metadata["age_unit"] == "year"
    assert predictor.class_names[:3] == ["1", "2", "3"] and len(predictor.class_names) == 80
    face = Image.open(ds.paths[one[0]])
    [p] = predictor.predict(face)
    # the model says class 0; class 0 is what the reader gave the 1-year-old; the age is 1
    assert p.label == 0 and p.class_name == "1"
    assert p.age == pytest.approx(1.0, abs=1e-6)
    assert p.age - p.expected == pytest.approx(1.0)
    # the TorchScript module carries the same offset (what a C++ service reads)
    scripted = torch.jit.load(str(export_dir / "model.pt"))
    assert scripted.age_offset == 1.0 and scripted.age_unit == "year"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_age_range_makes_21_class_0_and_the_export_says_21(utk, tmp_path):
    cfg = _cfg(utk, tmp_path, "data.age_range=[21, 60]", "ordinal.head=corn")
    splits = build_splits(cfg)
    ds = splits.dataset
    assert (ds.age_offset, ds.num_classes, ds.age_range) == (21, 40, (21, 60))
    assert all(21 <= int(p.name.split("_")[0]) <= 60 for p in ds.paths)  # 1..15, 70, 80 skipped
    state, export_dir = _train_and_export(cfg, tmp_path, force_class0=False)
    predictor = load(export_dir)
    assert predictor.age_offset == 21.0 and predictor.class_names[0] == "21"
    [p] = predictor.predict(Image.open(ds.paths[0]))
    assert p.age == pytest.approx(p.expected + 21.0)
    assert p.class_name == str(21 + p.label)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_config_offset_that_disagrees_with_the_reader_is_an_error(utk, tmp_path):
    # the old packaged config's mistake: offset 21 on labels that start at age 1
    with pytest.raises(ConfigError, match=r"ordinal.age_offset=21 disagrees with the labels of "
                       r"data.name='utkface' \(class 0 is age 1 with no data.age_range\)"):
        build_splits(_cfg(utk, tmp_path, "ordinal.age_offset=21"))
    with pytest.raises(ConfigError, match=r"class 0 is age 21 with data.age_range=\[21, 60\]"):
        build_splits(_cfg(utk, tmp_path, "ordinal.age_offset=0", "data.age_range=[21, 60]"))
    # an offset that agrees is accepted (a check, not a shift)
    ok = build_splits(_cfg(utk, tmp_path, "ordinal.age_offset=21", "data.age_range=[21, 60]"))
    assert ok.config.ordinal.age_offset == 21.0


def test_the_packaged_utkface_config_takes_its_offset_from_the_reader():
    cfg = load_config("age_corn_utkface")
    assert cfg.data.age_range == [21, 60]
    assert cfg.ordinal.age_offset is None  # from the reader, never from the config
