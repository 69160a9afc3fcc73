"""export_model: TorchScript / torch.export files with metadata, equal to eager, and
loadable in a fresh process that has only torch and facecore's compiled library."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from serving_cases import AGE_KINDS, MODEL_KINDS, PREPROCESS, make_model, normalised

import facecore
from facecore.data.transforms import PreprocessConfig, as_preprocess
from facecore.extension import OP_VERSION
from facecore.formats import FormatError
from facecore.serving import ModelVersionError, ServingModule, export_model, load, read_metadata

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{kind: (eager model, export dir)}, exported once per module."""
    out = {}
    for kind in MODEL_KINDS:
        model = make_model(kind)
        d = tmp_path_factory.mktemp(f"export_{kind}")
        kwargs = {"age_offset": 16} if kind in AGE_KINDS else {}
        export_model(model, d, preprocess=PREPROCESS, **kwargs)
        out[kind] = (model, d)
    return out


def _eager(model, x):
    """Oracle: the model's serve on the batch normalised by hand."""
    with torch.no_grad():
        return model.serve(normalised(x))


def _assert_same(got, want):
    assert sorted(got) == sorted(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_torchscript_and_export_equal_eager_for_any_batch_size(exported, kind):
    model, d = exported[kind]
    scripted = torch.jit.load(str(d / "model.pt"))
    program = torch.export.load(str(d / "model.pt2")).module()
    for n in (1, 2, 7, 0):
        x = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(n))
        want = _eager(model, x)
        _assert_same(scripted(x), want)
        _assert_same(program(x), want)


def test_metadata_records_task_versions_preprocess_labels_and_outputs(exported):
    _, d = exported["coral"]
    meta = json.loads((d / "metadata.json").read_text())
    assert meta["format"] == "facecore.export" and meta["format_version"] == 1
    assert meta["task"] == "age"
    assert meta["op_version"] == OP_VERSION == facecore.extension.op_version()
    assert meta["facecore_version"] == facecore.__version__
    assert meta["torch_version"] == torch.__version__
    pre = meta["preprocess"]
    assert (pre["input_size"], pre["resize"], pre["grayscale"]) == (32, 36, False)
    assert pre["mean"] == PREPROCESS["mean"] and pre["std"] == PREPROCESS["std"]
    assert PreprocessConfig.from_dict(pre) == PreprocessConfig.from_dict(PREPROCESS)
    assert meta["age_offset"] == 16.0
    assert meta["class_names"] == [str(16 + k) for k in range(6)]
    assert meta["output_keys"] == ["label", "cum_probs", "class_probs", "expected"]
    assert meta["outputs"]["class_probs"] == {"shape": [-1, 6], "dtype": "float32"}
    assert meta["outputs"]["label"] == {"shape": [-1], "dtype": "int64"}
    assert meta["model"] == {"class": "AgeEstimator", "config": make_model("coral").config}
    # the same JSON rides inside both archives; the folder's copy adds each file's SHA-256
    files = meta.pop("files")
    assert read_metadata(d / "model.pt") == meta == read_metadata(d / "model.pt2")
    for name in ("model.pt", "model.pt2"):
        data = (d / name).read_bytes()
        assert files[name] == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    g = json.loads((exported["gender"][1] / "metadata.json").read_text())
    assert g["class_names"] == ["male", "female"] and g["age_offset"] == 0.0
    e = json.loads((exported["embedding"][1] / "metadata.json").read_text())
    assert e["class_names"] == [] and e["outputs"]["embedding"]["shape"] == [-1, 8]


def test_torchscript_module_carries_scriptable_attributes(exported):
    _, d = exported["corn"]
    m = torch.jit.load(str(d / "model.pt"))
    assert m.task == "age" and m.input_size == 32
    assert list(m.class_names) == [str(16 + k) for k in range(6)]
    assert m.age_offset == 16.0 and m.op_version == OP_VERSION
    assert m.crop_fraction == 1.0 and m.resize_mode == "shorter" and m.age_unit == ""
    assert json.loads(m.metadata_json)["task"] == "age"
    assert m.library_op_version() == OP_VERSION
    m.check_op_version()  # same version: no error
    m.op_version = OP_VERSION + 1
    with pytest.raises(Exception, match=f"op version {OP_VERSION + 1}.*op version {OP_VERSION}"):
        m.check_op_version()


def test_lone_files_are_self_describing(exported, tmp_path):
    model, d = exported["gender"]
    x = torch.rand(3, 3, 32, 32)
    want = _eager(model, x)
    for name in ("model.pt", "model.pt2"):
        lone = tmp_path / name.replace("model", "lone")
        shutil.copy(d / name, lone)
        p = load(lone)
        assert p.task == "gender" and p.class_names == ["male", "female"]
        _assert_same(p.run(x), want)


@pytest.mark.slow
def test_fresh_process_loads_with_only_torch_and_the_library(exported, fresh_python):
    model, d = exported["coral"]
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    want = _eager(model, x)
    out = fresh_python(
        f"""
        import json, sys, torch
        torch.ops.load_library({facecore.library_path()!r})
        x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))
        ts = torch.jit.load({str(d / "model.pt")!r})
        ep = torch.export.load({str(d / "model.pt2")!r}).module()
        res = {{name: {{k: v.tolist() for k, v in m(x).items()}} for name, m in
               (("pt", ts), ("pt2", ep))}}
        res["modules"] = sorted(k for k in sys.modules if k.split(".")[0] == "facecore")
        print(json.dumps(res))
        """
    )
    got = json.loads(out.strip().splitlines()[-1])
    assert got["modules"] == []  # facecore's Python package was never imported
    for name in ("pt", "pt2"):
        for k, v in want.items():
            torch.testing.assert_close(torch.tensor(got[name][k], dtype=v.dtype), v)


def _forge(src: Path, dst: Path, **changes) -> Path:
    """Copy an archive with edited metadata (as if exported by another facecore)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("extra/metadata.json"):
                meta = json.loads(data)
                meta.update(changes)
                data = json.dumps(meta).encode()
            zout.writestr(item, data)
    return dst


@pytest.mark.parametrize("name", ["model.pt", "model.pt2"])
def test_op_version_mismatch_is_refused_with_both_versions(exported, tmp_path, name):
    _, d = exported["coral"]
    forged = _forge(d / name, tmp_path / name, op_version=OP_VERSION + 1, facecore_version="9.0")
    with pytest.raises(
        ModelVersionError,
        match=rf"op version {OP_VERSION + 1} \(facecore 9.0\).*implements op version "
        rf"{OP_VERSION}.*re-export",
    ):
        load(forged)


def test_forged_directory_metadata_and_newer_format_are_refused(exported, tmp_path):
    _, d = exported["gender"]
    forged = tmp_path / "forged"
    shutil.copytree(d, forged)
    meta = json.loads((forged / "metadata.json").read_text())
    (forged / "metadata.json").write_text(json.dumps({**meta, "op_version": 0}))
    with pytest.raises(ModelVersionError, match=f"op version 0 .*op version {OP_VERSION}"):
        load(forged)
    (forged / "metadata.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ModelVersionError, match="format_version 99.*upgrade facecore"):
        load(forged)
    (forged / "metadata.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(FormatError, match="not a facecore export"):
        load(forged)


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such facecore model"):
        load(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="none of"):
        load(tmp_path)
    (tmp_path / "x.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match=r"a \.pt or a \.pt2"):
        load(tmp_path / "x.onnx")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a TorchScript / torch.export archive"):
        load(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="format must be"):
        load(tmp_path, format="onnx")


def test_directory_format_choice(exported):
    _, d = exported["embedding"]
    assert load(d).source.endswith("model.pt")
    assert load(d, format="export").source.endswith("model.pt2")


def test_export_one_format_and_leave_the_model_unchanged(tmp_path):
    model = make_model("corn").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    paths = export_model(model, tmp_path / "new" / "dir", preprocess=PREPROCESS, formats=["export"])
    assert sorted(paths) == ["export", "metadata"]
    assert sorted(p.name for p in (tmp_path / "new" / "dir").iterdir()) == [
        "metadata.json",
        "model.pt2",
    ]
    assert model.training  # the eval-mode copy was exported, not the model
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_grayscale_models_see_the_luma_of_the_input(tmp_path):
    pre = {"input_size": 32, "resize": 32, "mean": [0.5], "std": [0.5], "grayscale": True}
    model = make_model("coral", in_channels=1)
    export_model(model, tmp_path, preprocess=pre)
    x = torch.rand(4, 3, 32, 32)
    luma = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    with torch.no_grad():
        want = model.serve((luma - 0.5) / 0.5)
    for name in ("model.pt", "model.pt2"):
        _assert_same(load(tmp_path / name).run(x), want)
    # 3-channel model with grayscale=True: gray replicated; gray images are unchanged
    model3 = make_model("coral")
    pre3 = {**PREPROCESS, "grayscale": True}
    export_model(model3, tmp_path / "g3", preprocess=pre3, formats=["torchscript"])
    m = torch.jit.load(str(tmp_path / "g3" / "model.pt"))
    gray = torch.rand(2, 1, 32, 32).expand(-1, 3, -1, -1)
    _assert_same(m(gray), _eager(model3, gray))


def test_export_argument_errors(tmp_path):
    model = make_model("coral")
    with pytest.raises(ValueError, match="formats must be a non-empty subset"):
        export_model(model, tmp_path, preprocess=PREPROCESS, formats=["onnx"])
    with pytest.raises(ValueError, match="age_offset applies to age models only"):
        export_model(make_model("gender"), tmp_path, preprocess=PREPROCESS, age_offset=3)
    with pytest.raises(ValueError, match="class_names must have 6 entries"):
        export_model(model, tmp_path, preprocess=PREPROCESS, class_names=["a", "b"])
    with pytest.raises(ValueError, match="class_names do not apply to embedding"):
        export_model(make_model("embedding"), tmp_path, preprocess=PREPROCESS, class_names=["a"])
    with pytest.raises(ValueError, match="model.task must be one of"):
        export_model(torch.nn.Linear(2, 2), tmp_path, preprocess=PREPROCESS)
    with pytest.raises(ValueError, match="failed on an example batch"):
        export_model(model, tmp_path, preprocess={**PREPROCESS, "mean": [0.5], "std": [0.5]})
    assert not any(tmp_path.iterdir())  # nothing written on errors


@pytest.mark.parametrize(
    "pre, exc, match",
    [
        ({"mean": [0.5] * 3}, ValueError, "preprocess is missing input_size"),
        ({**PREPROCESS, "resize": 20}, ValueError, r"preprocess.resize must be >= input_size \(32\)"),
        ({**PREPROCESS, "input_size": 0}, ValueError, "preprocess.input_size must be a positive int"),
        ({**PREPROCESS, "input_size": [32, 40]}, ValueError, "preprocess.input_size must be a positive"),
        ({**PREPROCESS, "std": [0.2, 0.0, 0.3]}, ValueError, r"preprocess.std must be positive"),
        ({**PREPROCESS, "mean": [0.5, 0.5]}, ValueError, "preprocess.mean must be a list of 1 or 3"),
        ({**PREPROCESS, "bogus": 1}, ValueError, r"unknown preprocess keys \['bogus'\]"),
        ([32, 36], TypeError, "preprocess must be a PreprocessConfig or a mapping"),
    ],
)
def test_invalid_preprocess_gives_the_same_error_from_every_entry_point(exported, tmp_path, pre, exc, match):
    """One validator: the config itself, export_model, and a predictor reading metadata
    (an edited metadata.json) raise the same message."""
    with pytest.raises(exc, match=match) as direct:
        as_preprocess(pre)
    message = str(direct.value)
    with pytest.raises(exc) as via_export:
        export_model(make_model("coral"), tmp_path / "x", preprocess=pre)
    assert str(via_export.value) == message
    assert not (tmp_path / "x").exists()  # nothing written
    _, d = exported["gender"]
    forged = tmp_path / "forged"
    shutil.copytree(d, forged)
    meta = json.loads((forged / "metadata.json").read_text())
    (forged / "metadata.json").write_text(json.dumps({**meta, "preprocess": pre}))
    with pytest.raises(exc) as via_load:
        load(forged)
    assert str(via_load.value) == f"{forged / 'metadata.json'}: {message}"  # the edited file
    from facecore.serving import Predictor

    with pytest.raises(exc) as via_predictor:
        Predictor(lambda x: {}, {**meta, "preprocess": pre}, source="m")
    assert str(via_predictor.value) == f"m: {message}"


def test_preprocess_defaults_and_exact_metadata_round_trip(tmp_path):
    pre = as_preprocess({"input_size": [64, 64], "resize": None, "mean": [0], "std": [1]})
    assert pre.to_dict() == {
        "input_size": 64,
        "resize": 64,
        "mean": [0.0],
        "std": [1.0],
        "grayscale": False,
        "resize_mode": "shorter",
        "horizontal_flip": 0.0,
    }
    config = PreprocessConfig(40, 44, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), grayscale=True,
                              resize_mode="square", horizontal_flip=0.5)
    export_model(make_model("coral"), tmp_path, preprocess=config, formats=["torchscript"])
    meta = read_metadata(tmp_path)
    assert PreprocessConfig.from_dict(meta["preprocess"]) == config
    assert load(tmp_path).preprocess_config == config


def test_serving_module_rejects_wrong_shapes():
    m = torch.jit.script(ServingModule(
        make_model("coral"), task="age",
        preprocess=PreprocessConfig(32, mean=(0.5,) * 3, std=(0.2,) * 3),
    ))
    with pytest.raises(Exception, match=r"\[N, 3, S, S\].*got shape \[2, 1, 32, 32\]"):
        m(torch.rand(2, 1, 32, 32))
    with pytest.raises(Exception, match="must be 32x32 pixels.*got 30x32"):
        m(torch.rand(2, 3, 30, 32))


def test_crop_fraction_and_age_unit_reach_every_serving_path(tmp_path):
    """A model trained with ``crop_fraction`` < 1 (FairFace's 0.5) and age groups: the
    metadata, the TorchScript attributes (what a C++ service reads), and the predictor of
    both formats crop the same way; ``age_unit`` says what the age counts."""
    from facecore.data.transforms import CenterCrop, CenterCropFraction, Resize, to_tensor

    pre = {**PREPROCESS, "crop_fraction": 0.5}
    model = make_model("coral")
    export_model(model, tmp_path, preprocess=pre, age_unit="group",
                 class_names=[f"g{k}" for k in range(6)])
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["preprocess"]["crop_fraction"] == 0.5 and meta["age_unit"] == "group"
    m = torch.jit.load(str(tmp_path / "model.pt"))
    assert m.crop_fraction == 0.5 and m.age_unit == "group"
    img = Image.fromarray((np.random.default_rng(0).random((90, 70, 3)) * 255).astype(np.uint8))
    cfg = as_preprocess(pre)
    manual = to_tensor(CenterCrop(cfg.input_size)(Resize(cfg.resize)(CenterCropFraction(0.5)(img))))
    outs = []
    for name in ("model.pt", "model.pt2"):
        predictor = load(tmp_path / name)
        assert predictor.age_unit == "group" and predictor.preprocess_config.crop_fraction == 0.5
        batch, _ = predictor.preprocess(img)
        assert torch.equal(batch[0], manual)
        outs.append(predictor.predict(img)[0])
    assert outs[0].class_probs == pytest.approx(outs[1].class_probs, abs=1e-6)
    with pytest.raises(ValueError, match=r"age_unit must be one of year \| group for an age model"):
        export_model(model, tmp_path / "x", preprocess=pre, age_unit="decade")
    with pytest.raises(ValueError, match=r"age_unit must be one of year \| group"):
        export_model(make_model("gender"), tmp_path / "y", preprocess=PREPROCESS, age_unit="year")
