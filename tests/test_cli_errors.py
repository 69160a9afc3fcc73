"""User errors are one line naming the file and the problem, no traceback (issue 15,
item 9): damaged training checkpoints, export archives and metadata, label files; and
Ctrl-C during ``facecore train --workers 1`` prints ``facecore: interrupted``, exit 130."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from serving_cases import make_model
from train_cases import MemorySession

from facecore.cli import main
from facecore.data import FairFace
from facecore.data.transforms import PreprocessConfig
from facecore.serving import export_model
from facecore.train import load_config
from facecore.train.checkpoints import write_checkpoint
from facecore.train.loops import run_training

REPO = Path(__file__).resolve().parents[1]
CONFIG = PreprocessConfig(input_size=32, resize=36, mean=(0.5,) * 3, std=(0.25,) * 3)


def _one_line_error(argv, capfd, *needles, code=1):
    """Run the CLI; its stderr (file descriptor level) must be one line with every needle."""
    assert main(argv) == code
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("facecore: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert "Traceback" not in err and "weights_only" not in err
    return lines[0]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    cfg = load_config("age_coral_synthetic", [
        "data.num_samples=96", "data.image_size=32", "optim.epochs=1", "model.width=4"])
    s = MemorySession()
    run_training(cfg, s)
    d = tmp_path_factory.mktemp("run") / "checkpoint_epoch_0001"
    write_checkpoint(d, *s.last)
    return d


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    export_model(make_model("coral", seed=1), d, preprocess=CONFIG, age_offset=10)
    return d


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from PIL import Image

    p = tmp_path_factory.mktemp("img") / "face.png"
    Image.new("RGB", (48, 48), (120, 100, 90)).save(p)
    return str(p)


@pytest.mark.parametrize("command", ["eval", "export"])
def test_damaged_training_checkpoints(checkpoint, tmp_path, capfd, command, image):
    trunc = tmp_path / "trunc" / "checkpoint_epoch_0001"
    shutil.copytree(checkpoint, trunc)
    data = (trunc / "checkpoint.pt").read_bytes()
    (trunc / "checkpoint.pt").write_bytes(data[: len(data) // 3])
    jpeg = tmp_path / "jpeg" / "checkpoint.pt"
    jpeg.parent.mkdir()
    from PIL import Image

    Image.open(image).save(jpeg, format="JPEG")
    extra = ["--output", str(tmp_path / "out")] if command == "export" else []
    for target in (trunc, jpeg):
        line = _one_line_error([command, str(target), *extra], capfd, "checkpoint.pt",
                               "not a readable facecore training checkpoint")
        assert "truncated, corrupt or not a file written by torch.save" in line


def _edit_zip(src: Path, dst: Path, suffix: str, change) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith(suffix):
                data = change(data)
            zout.writestr(item, data)
    return dst


def test_damaged_export_archives(export, tmp_path, capfd, image):
    lone = tmp_path / "lone"
    lone.mkdir()
    data = (export / "model.pt2").read_bytes()
    (lone / "model.pt2").write_bytes(data[: len(data) // 2])
    _one_line_error(["predict", "--model", str(lone / "model.pt2"), image], capfd,
                    str(lone / "model.pt2"), "not a TorchScript / torch.export archive")
    # a readable zip whose program is damaged: torch's own error, in one line with the file
    bad = _edit_zip(export / "model.pt2", tmp_path / "bad.pt2", "models/model.json",
                    lambda b: b[: len(b) // 2])
    _one_line_error(["predict", "--model", str(bad), image], capfd,
                    str(bad), "could not be loaded (truncated, corrupt")
    # in its export folder a truncated file is caught by its checksum
    folder = tmp_path / "folder"
    shutil.copytree(export, folder)
    (folder / "model.pt2").write_bytes(data[: len(data) // 2])
    _one_line_error(["predict", "--model", str(folder), "--format", "export", image], capfd,
                    "ChecksumError", str(folder / "model.pt2"))


def test_broken_or_edited_metadata(export, tmp_path, capfd, image):
    folder = tmp_path / "folder"
    shutil.copytree(export, folder)
    meta_file = folder / "metadata.json"
    meta = json.loads(meta_file.read_text())
    cases = [
        ('{"format": "facecore.export", ', "is not valid JSON"),
        (json.dumps({k: v for k, v in meta.items() if k != "preprocess"}), "preprocess must be"),
        (json.dumps([1, 2]), "is not a facecore export (expected a mapping"),
        (json.dumps({**meta, "preprocess": {**meta["preprocess"], "input_size": 30}}),
         "differs from the metadata inside"),
    ]
    for text, problem in cases:
        meta_file.write_text(text)
        _one_line_error(["predict", "--model", str(folder), image], capfd, str(meta_file), problem)
    # the copy inside a lone file edited: the program's own input size disagrees
    def resize(b):
        m = json.loads(b)
        m["preprocess"]["input_size"] = 30
        m["preprocess"]["resize"] = 34
        return json.dumps(m).encode()

    for name in ("model.pt", "model.pt2"):
        lone = _edit_zip(export / name, tmp_path / f"lone-{name}", "extra/metadata.json", resize)
        _one_line_error(["predict", "--model", str(lone), image], capfd, str(lone),
                        "takes 32x32 images but its metadata says input_size 30")


def test_broken_label_file(tmp_path, capfd):
    root = tmp_path / "fairface"
    root.mkdir()
    (root / "ground_truth.json").write_text('[{"filename": "a.jpg", ')
    with pytest.raises(ValueError, match=r"FairFace: cannot read the label file '.*ground_truth"
                       r".json' \(JSONDecodeError: "):
        FairFace(root)
    (root / "ground_truth.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="cannot read the label file .*UnicodeDecodeError"):
        FairFace(root)
    _one_line_error(["train", "--task", "gender", "--data", "fairface", "--data-root", str(root),
                     "--workers", "0", "--storage", str(tmp_path / "runs"), "--name", "x",
                     "--set", "run.verbose=0"],
                    capfd, "ground_truth.json", "cannot read the label file", code=2)


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ctrl_c_during_training_with_a_worker(tmp_path):
    """SIGINT to the process group (what Ctrl-C in a terminal does) while epochs run."""
    env = dict(os.environ, RAY_ADDRESS="local", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "facecore.cli", "train", "--task", "age", "--workers", "1",
           "--storage", str(tmp_path), "--name", "ctrl-c", "--set", "data.num_samples=200",
           "--set", "data.image_size=32", "--set", "model.width=4", "--set", "optim.epochs=500"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, cwd=tmp_path,
                            # a terminal's foreground job starts with SIGINT at its default; an
                            # ignored SIGINT is inherited through exec (Python then installs no
                            # KeyboardInterrupt handler), and the pytest process may carry one
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # wait for the first epoch line
            line = proc.stdout.readline()
            if not line or "epoch   1/500" in line:
                break
        assert proc.poll() is None, proc.stderr.read()
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "facecore: interrupted"


def test_torchscript_runtime_errors_keep_their_message(export):
    import torch

    from facecore.serving import load

    with pytest.raises(RuntimeError) as e:
        load(export).run(torch.rand(1, 3, 30, 30))
    text = str(e.value)
    assert "images must be 32x32 pixels" in text and "TorchScript interpreter" not in text
    assert len(text.splitlines()) == 1 and text.startswith(str(export / "model.pt"))
