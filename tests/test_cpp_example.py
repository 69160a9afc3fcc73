"""The C++ example (csrc/examples/predict_age): configure and build it against the libtorch
of the torch wheel, run it on an exported age model and compare with Python."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, shared_data_dir
from PIL import Image
from serving_cases import make_model

import facecore
from facecore.extension import OP_VERSION
from facecore.serving import export_model, load

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed"),
]

EXAMPLE = REPO_ROOT / "csrc" / "examples" / "predict_age"
PREPROCESS = {"input_size": 48, "resize": 56, "mean": [0.5, 0.45, 0.4], "std": [0.25, 0.2, 0.3]}


@pytest.fixture(scope="module")
def predict_age(tmp_path_factory) -> Path:
    build = tmp_path_factory.mktemp("predict_age_build")
    env = dict(os.environ, CMAKE_BUILD_PARALLEL_LEVEL="1")
    for cmd in (
        ["cmake", "-S", str(EXAMPLE), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
         f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"],
        ["cmake", "--build", str(build)],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    exe = build / "predict_age"
    assert exe.is_file()
    return exe


@pytest.fixture(scope="module")
def age_export(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cpp_age")
    export_model(make_model("coral", seed=3), d, preprocess=PREPROCESS, age_offset=21)
    return d


def _face() -> Image.Image:
    """A real FairFace photo when the shared data is there, else a synthetic face."""
    photo = shared_data_dir() / "fairface540" / "fairface_0001.jpg"
    if photo.is_file():
        return Image.open(photo).convert("RGB")
    yy, xx = np.mgrid[0:120, 0:100] / 100.0
    skin = ((xx - 0.5) ** 2 / 0.16 + (yy - 0.6) ** 2 / 0.25 < 1).astype(np.float32)
    rgb = np.stack([0.3 + 0.6 * skin, 0.25 + 0.45 * skin, 0.2 + 0.35 * skin], axis=2)
    return Image.fromarray((rgb * 255).astype(np.uint8))


def _run(exe: Path, *args, lib: str | None = None):
    argv = [str(exe), *map(str, args)] + ([lib] if lib else [])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("FACECORE_LIBRARY", None)
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


def _parse(stdout: str) -> dict:
    age = float(re.search(r"^age: (\S+)$", stdout, re.M).group(1))
    label = int(re.search(r"^label: (\d+)", stdout, re.M).group(1))
    probs = [float(v) for v in re.search(r"^class_probs: (.*)$", stdout, re.M).group(1).split()]
    return {"age": age, "label": label, "class_probs": probs}


def _write_pnm(path: Path, a: np.ndarray) -> Path:
    magic = b"P6" if a.ndim == 3 else b"P5"
    h, w = a.shape[:2]
    path.write_bytes(magic + b"\n# facecore test\n%d %d\n255\n" % (w, h) + a.tobytes())
    return path


def test_cpp_prediction_equals_python(predict_age, age_export, tmp_path):
    predictor = load(age_export / "model.pt")
    face = _face()
    batch, _ = predictor.preprocess(face)  # [1, 3, 48, 48] = uint8 / 255
    pixels = np.rint(batch[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert torch.equal(torch.from_numpy(pixels).permute(2, 0, 1).float().div(255), batch[0])
    ppm = _write_pnm(tmp_path / "face.ppm", pixels)

    proc = _run(predict_age, age_export / "model.pt", ppm, lib=facecore.library_path())
    assert proc.returncode == 0, proc.stderr
    got = _parse(proc.stdout)
    [want] = predictor.predict(face)
    assert got["age"] == pytest.approx(want.age, abs=1e-5)
    assert got["label"] == want.label
    assert got["class_probs"] == pytest.approx(list(want.class_probs), abs=1e-6)
    assert "note: resizing" not in proc.stderr

    # the library path from the environment works as well
    env = dict(os.environ, OMP_NUM_THREADS="1", FACECORE_LIBRARY=facecore.library_path())
    proc = subprocess.run(
        [str(predict_age), str(age_export / "model.pt"), str(ppm)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0 and _parse(proc.stdout)["age"] == got["age"]


def test_cpp_resizes_other_sizes_and_reads_pgm(predict_age, age_export, tmp_path):
    predictor = load(age_export / "model.pt")
    orl = shared_data_dir() / "orl_faces" / "s1" / "1.pgm"
    if orl.is_file():
        gray = np.asarray(Image.open(orl).convert("L"))  # 92 x 112
    else:
        gray = np.asarray(_face().convert("L").resize((92, 112)))
    pgm = _write_pnm(tmp_path / "face.pgm", gray)
    proc = _run(predict_age, age_export / "model.pt", pgm, lib=facecore.library_path())
    assert proc.returncode == 0, proc.stderr
    assert "note: resizing 92x112 (shorter side 56 px) and center-cropping 48x48" in proc.stderr
    got = _parse(proc.stdout)
    [want] = predictor.predict(gray)
    # libtorch's antialiased bilinear resize vs Pillow's: close, not bit-identical
    assert got["age"] == pytest.approx(want.age, abs=0.05)
    assert sum(got["class_probs"]) == pytest.approx(1.0, abs=1e-6)


def test_cpp_errors_exit_nonzero_with_a_message(predict_age, age_export, tmp_path):
    lib = facecore.library_path()
    model = age_export / "model.pt"
    ppm = _write_pnm(tmp_path / "ok.ppm", np.zeros((48, 48, 3), np.uint8))

    proc = _run(predict_age)
    assert proc.returncode == 2 and "usage:" in proc.stderr

    cases = [
        ((model, ppm), None, "no facecore library given"),
        ((model, ppm), str(tmp_path / "nope.so"), "cannot load facecore's library"),
        ((tmp_path / "missing.pt", ppm), lib, "cannot load TorchScript model"),
        ((model, tmp_path / "missing.ppm"), lib, "cannot open image file"),
        ((model, Path(__file__)), lib, "not a binary PPM \\(P6\\) or PGM \\(P5\\)"),
    ]
    truncated = tmp_path / "truncated.ppm"
    truncated.write_bytes(b"P6\n48 48\n255\n" + bytes(100))
    cases.append(((model, truncated), lib, "truncated raster"))

    gender = tmp_path / "gender"
    export_model(make_model("gender"), gender, preprocess=PREPROCESS, formats=["torchscript"])
    cases.append(((gender / "model.pt", ppm), lib, "is a 'gender' model"))

    stale = torch.jit.load(str(model))
    stale.op_version = OP_VERSION + 1
    stale.save(str(tmp_path / "stale.pt"))
    cases.append(
        ((tmp_path / "stale.pt", ppm), lib,
         f"exported with facecore op version {OP_VERSION + 1}.*implements op version {OP_VERSION}")
    )
    for args, library, message in cases:
        proc = _run(predict_age, *args, lib=library)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert re.search("error: .*" + message, proc.stderr), (message, proc.stderr)


def test_cpp_applies_the_models_crop_fraction(predict_age, tmp_path):
    """A model trained on centre crops (``crop_fraction`` < 1, e.g. FairFace's 0.5): the C++
    example reads the attribute and crops before resizing, as the Python predictor does."""
    d = tmp_path / "cropped"
    export_model(make_model("coral", seed=3), d, preprocess={**PREPROCESS, "crop_fraction": 0.5},
                 age_offset=21, formats=["torchscript"])
    predictor = load(d / "model.pt")
    assert predictor.preprocess_config.crop_fraction == 0.5
    assert torch.jit.load(str(d / "model.pt")).crop_fraction == 0.5
    face = np.asarray(_face().resize((150, 170)))
    ppm = _write_pnm(tmp_path / "face.ppm", np.ascontiguousarray(face))
    proc = _run(predict_age, d / "model.pt", ppm, lib=facecore.library_path())
    assert proc.returncode == 0, proc.stderr
    assert "keeping the centred 75x75 square (crop_fraction 0.5)" in proc.stderr
    assert "note: resizing 75x75 (shorter side 56 px) and center-cropping 48x48" in proc.stderr
    got = _parse(proc.stdout)
    [want] = predictor.predict(face)
    # libtorch's antialiased bilinear resize vs Pillow's: close, not bit-identical
    assert got["age"] == pytest.approx(want.age, abs=0.05)
    assert sum(got["class_probs"]) == pytest.approx(1.0, abs=1e-6)
    # what the Python side fed the model: the centred square first, then resize and crop
    from facecore.data.transforms import CenterCrop, CenterCropFraction, Resize, to_tensor

    batch, _ = predictor.preprocess(face)
    manual = to_tensor(CenterCrop(48)(Resize(56)(CenterCropFraction(0.5)(Image.fromarray(face)))))
    assert torch.equal(batch[0], manual)
