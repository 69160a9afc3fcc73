"""The ``facecore`` command line: complete help, one-line usage errors with exit code 2,
``eval`` / ``export`` on a training checkpoint, ``predict --json`` on an exported model
(in a fresh process). No Ray here: the checkpoint comes from the loop in-process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from train_cases import MemorySession

from facecore.cli import build_parser, main
from facecore.train import load_config
from facecore.train.checkpoints import write_checkpoint
from facecore.train.loops import run_training


def _run(argv, capsys):
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_help_lists_every_command_and_train_option(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("train", "eval", "export", "predict", "bench"):
        assert cmd in out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for opt in ("--task", "--config", "--data", "--data-root", "--workers", "--gpus", "--epochs",
                "--storage", "--name", "--set", "age_coral_synthetic", "utkface", "RAY_ADDRESS"):
        assert opt in out, opt
    for sub in ("eval", "export", "predict", "bench"):
        assert build_parser().parse_known_args([sub, "x", "--model", "m", "--output", "o"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["fly"], "invalid choice: 'fly'"),
        (["train", "--task", "age", "--set", "ordinal.head=foo"],
         "ordinal.head must be one of ce | niu | coral | corn, got 'foo'"),
        (["train", "--set", "optim.lrr=1"], "unknown config key 'optim.lrr'"),
        (["train", "--data", "utkface"], "data.root is required for data.name='utkface'"),
        (["train", "--data", "utkface", "--data-root", "/nonexistent/utk"],
         "data root not found: /nonexistent/utk"),
        (["train", "--config", "/nonexistent/c.yaml"], "config file not found: /nonexistent/c.yaml"),
        (["train", "--task", "gender", "--config", "age_coral_synthetic"],
         "task 'gender' does not match the config file's task 'age'"),
        (["train", "--workers", "two"], "argument --workers: invalid int value: 'two'"),
        (["predict", "--model", "/nonexistent/m", "/nonexistent/a.jpg"],
         "image not found: /nonexistent/a.jpg"),
        (["eval", "/nonexistent/run"], "no training checkpoint at /nonexistent/run"),
        (["train", "--name", ".."], "run.name must be a plain folder name"),
        (["train", "--name", "a/../b"], "run.name must be a plain folder name"),
    ],
)
def test_usage_errors_are_one_line_exit_2(argv, message, capsys):
    code, out, err = _run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("facecore: error: ")
    assert message in err


def test_print_config_applies_flags(capsys):
    code, out, _ = _run(
        ["train", "--task", "age", "--epochs", "3", "--workers", "1", "--name", "x",
         "--set", "ordinal.head=corn", "--print-config"], capsys)
    assert code == 0
    import yaml

    d = yaml.safe_load(out)
    assert (d["optim"]["epochs"], d["run"]["workers"], d["run"]["name"], d["ordinal"]["head"]) == (
        3, 1, "x", "corn")


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    """A real training checkpoint from one tiny in-process epoch."""

    cfg = load_config("age_coral_synthetic", [
        "data.num_samples=120", "data.image_size=32", "optim.epochs=1", "model.width=4"])
    s = MemorySession()
    run_training(cfg, s)
    d = tmp_path_factory.mktemp("run") / "checkpoint_epoch_0001"
    write_checkpoint(d, *s.last)
    return d


@pytest.mark.timeout(300)
def test_eval_export_and_predict_json_in_a_fresh_process(checkpoint_dir, tmp_path, capsys):
    code, out, err = _run(["eval", str(checkpoint_dir.parent), "--json"], capsys)
    assert code == 0, err
    m = json.loads(out)
    assert m["checkpoint"] == str(checkpoint_dir)  # the run folder resolves to its best
    assert m["test_rank_inconsistency"] == 0.0 and m["test_mae"] >= 0

    export = tmp_path / "exported"
    code, out, err = _run(["export", str(checkpoint_dir), "--output", str(export)], capsys)
    assert code == 0, err
    assert (export / "model.pt").is_file() and (export / "metadata.json").is_file()

    from PIL import Image

    from facecore.data import SyntheticFaces

    ds = SyntheticFaces(2, image_size=32, seed=11)
    paths = []
    for i in range(2):
        img, _ = ds[i]
        p = tmp_path / f"f{i}.png"
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(p)
        paths.append(str(p))
    proc = subprocess.run(
        [sys.executable, "-m", "facecore.cli", "predict", "--json", "--model", str(export), *paths],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["image"] for r in rows] == paths
    # oracle: the checkpoint's model run by hand on the training pipeline's eval transform
    from facecore.data import load_image
    from facecore.train.datasets import preprocess_for
    from facecore.train.runner import model_from_training_checkpoint

    model, cfg, _ = model_from_training_checkpoint(checkpoint_dir)
    tf = preprocess_for(cfg.data).eval_transform()
    batch = torch.stack([tf(load_image(p)) for p in paths])
    with torch.no_grad():
        ref = model.predict(batch)
    assert [r["label"] for r in rows] == ref.labels.tolist()
    torch.testing.assert_close(
        torch.tensor([r["expected"] for r in rows]), ref.expected.float(), atol=1e-4, rtol=1e-4)

    code, out, _ = _run(["predict", "--model", str(export), *paths], capsys)
    assert code == 0 and out.count("age ") == 2


def test_export_needs_no_dataset(tmp_path, capsys):
    """`facecore export RUN` works from what the training checkpoint stores (preprocess,
    class names, age offset), with the dataset root gone."""
    import shutil

    from facecore.data import FAIRFACE_AGE_GROUPS, PreprocessConfig
    from facecore.serving import read_metadata
    from facecore.train.checkpoints import load_checkpoint

    root = tmp_path / "fairface"
    root.mkdir()
    from PIL import Image

    rng = torch.Generator().manual_seed(0)
    records = []
    for i in range(45):
        a = (torch.rand(40, 40, 3, generator=rng) * 255).byte().numpy()
        Image.fromarray(a).save(root / f"{i}.jpg")
        records.append({"filename": f"{i}.jpg", "age": FAIRFACE_AGE_GROUPS[i % 9],
                        "gender": "Male" if i % 2 else "Female"})
    (root / "ground_truth.json").write_text(json.dumps(records))

    cfg = load_config(task="age", overrides=[
        "data.name=fairface", f"data.root={root}", "data.image_size=32", "optim.epochs=1",
        "model.width=4", "ordinal.age_offset=0", "data.fractions=[0.6, 0.2, 0.2]"])
    s = MemorySession()
    run_training(cfg, s)
    d = tmp_path / "run" / "checkpoint_epoch_0001"
    write_checkpoint(d, *s.last)
    shutil.rmtree(root)  # the dataset is gone
    code, out, err = _run(["export", str(d.parent), "--output", str(tmp_path / "exp")], capsys)
    assert code == 0, err
    meta = read_metadata(tmp_path / "exp")
    stored = load_checkpoint(d)["export"]
    assert meta["class_names"] == list(FAIRFACE_AGE_GROUPS) == stored["class_names"]
    pre = PreprocessConfig.from_dict(meta["preprocess"])
    assert pre == PreprocessConfig.from_dict(stored["preprocess"])
    assert (pre.input_size, pre.resize) == (32, round(32 * 128 / 120))


def test_bench_reports_missing_benchmarks_dir(monkeypatch, tmp_path, capsys):
    import facecore.cli as cli

    monkeypatch.setattr(cli, "__file__", str(tmp_path / "facecore" / "cli.py"))
    code, _, err = _run(["bench"], capsys)
    assert code == 2 and "benchmarks/ not found" in err
