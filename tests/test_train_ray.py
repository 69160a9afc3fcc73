"""Ray Train runs (kept few: one session-scoped Ray, four TorchTrainer runs; the Ray Tune
sweeps are in test_tune_sweep.py and test_tune_san.py).

* age (CORAL, 2 workers): a worker crash after epoch 2 with ``max_failures=1`` is
  recovered from the last checkpoint; a second ``fit`` with the same storage and
  name continues at the next epoch; the exported model predicts in a fresh process.
* gender and embedding (triplet, P x K batches): 2 workers, 1 epoch, checkpoint +
  metrics.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from ray_fixtures import ray_session  # noqa: F401

from facecore.train import fit, load_config
from facecore.train.checkpoints import load_checkpoint

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = ["data.num_samples=240", "data.image_size=32", "data.batch_size=32", "model.width=4"]


def _cfg(name, tmp_path, extra, task_config="age_coral_synthetic"):
    return load_config(
        task_config,
        [*TINY, f"run.storage={tmp_path / 'store'}", f"run.name={name}", "run.workers=2", *extra],
    )


@pytest.mark.timeout(420)
def test_age_run_recovers_from_a_crash_and_resumes(ray_session, tmp_path, capsys):  # noqa: F811
    cfg = _cfg(
        "age-crash", tmp_path,
        ["optim.epochs=3", "run.max_failures=1", "run.fail_after_epoch=2", "run.num_to_keep=1"],
    )
    res = fit(cfg)
    printed = capsys.readouterr().out
    # epoch 3 ran once, after the restart from the epoch-2 checkpoint
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    assert res.epochs_completed == 3
    assert printed.count("epoch   3/3") == 1 and printed.count("epoch   2/3") == 1
    assert "worker failure (worker 0: " in printed and "simulated worker crash" in printed
    assert printed.index("simulated worker crash") < printed.index("epoch   3/3")
    latest = load_checkpoint(res.latest_checkpoint)
    assert latest["epoch"] == 3 and latest["train_config"]["run"]["name"] == "age-crash"
    assert res.latest_checkpoint.endswith("checkpoint_epoch_0003")
    # the best checkpoint is kept besides the latest one (num_to_keep=1 + latest)
    assert load_checkpoint(res.best_checkpoint)["epoch"] in (1, 2, 3)
    m = res.metrics
    assert m["val_rank_inconsistency"] == 0.0
    assert all(math.isfinite(m[k]) for k in ("train_loss", "val_mae", "val_median_mae"))
    t = res.test_metrics
    assert t["test_rank_inconsistency"] == 0.0 and t["test_mae"] >= 0
    assert (res.export_dir / "model.pt").is_file() and (res.export_dir / "model.pt2").is_file()
    assert {"learning_curves", "age_scatter", "cumulative_probs"} <= set(res.plots)

    # restart with the same storage + name and more epochs: continues at epoch 4
    more = _cfg("age-crash", tmp_path, ["optim.epochs=4", "run.num_to_keep=1"])
    res2 = fit(more, finalize_run=False)
    assert [h["epoch"] for h in res2.history] == [1, 2, 3, 4]
    assert res2.history[:3] == res.history
    assert "epoch   4/4" in capsys.readouterr().out

    # the exported model predicts in a fresh process through the CLI
    from PIL import Image

    from facecore.data import SyntheticFaces

    img, _ = SyntheticFaces(1, image_size=32, seed=5)[0]
    path = tmp_path / "face.png"
    Image.fromarray((img.permute(1, 2, 0).numpy() * 255).astype("uint8")).save(path)
    proc = subprocess.run(
        [sys.executable, "-m", "facecore.cli", "predict", "--json", "--model",
         str(res.export_dir), str(path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    [row] = json.loads(proc.stdout)
    assert 0 <= row["label"] < cfg.data.num_classes and len(row["class_probs"]) == 8


@pytest.mark.timeout(300)
def test_gender_run_two_workers(ray_session, tmp_path):  # noqa: F811
    cfg = _cfg("gender", tmp_path, ["optim.epochs=1", "run.plot=false"], "gender_synthetic")
    res = fit(cfg)
    assert res.epochs_completed == 1
    assert 0.0 <= res.metrics["val_accuracy"] <= 1.0 and 0.0 <= res.metrics["val_ece"] <= 1.0
    ck = load_checkpoint(res.best_checkpoint)
    assert ck["model"]["config"]["task"] == "gender"
    assert float(ck["model"]["state_dict"]["temperature"]) > 0  # calibrated on val
    assert json.loads((res.export_dir / "metadata.json").read_text())["task"] == "gender"


@pytest.mark.timeout(300)
def test_embedding_triplet_run_two_workers(ray_session, tmp_path):  # noqa: F811
    cfg = _cfg(
        "embed", tmp_path,
        ["optim.epochs=1", "data.num_identities=20", "metric.p=4", "metric.k=4",
         "model.embedding_dim=16", "run.export=false"],
        "embedding_triplet_synthetic",
    )
    res = fit(cfg)
    assert res.epochs_completed == 1
    assert 0.0 <= res.metrics["val_eer"] <= 1.0 and 0.0 <= res.metrics["val_auc"] <= 1.0
    assert "test_eer" in res.test_metrics and "roc" in res.plots
    assert load_checkpoint(res.best_checkpoint)["model"]["config"]["embedding_dim"] == 16
