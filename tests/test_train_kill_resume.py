"""SIGKILL a 2-worker ``facecore train`` run at three points; every rerun resumes from the
newest complete checkpoint in the run folder, never rewrites a complete checkpoint, and the
finished run has trained every epoch exactly once (issue 15, item 6).

The run stops at a named point (``FACECORE_TEST_STOP_AT``, see
:func:`facecore.train.checkpoints.fault_point`); the test then SIGKILLs every process of
its session (driver, Ray's GCS / raylet, both workers), as a machine failure would:

1. ``report:1``: checkpoint 1 is complete on disk, Ray Train's list does not have it yet;
2. ``write:2``: checkpoint 2's files are in the temporary directory, not yet renamed;
3. ``train:3``: in the middle of epoch 3, after epoch 2 was reported; Ray Train's
   checkpoint-list snapshot is then torn as if the kill had hit its write (Ray Train
   alone would refuse to start on it).

Each launch starts its own small Ray cluster (``RAY_ADDRESS=local``).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facecore.train.checkpoints import checkpoint_problem, load_checkpoint

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 3
SETTINGS = [
    "data.num_samples=192", "data.image_size=32", "data.batch_size=32", "model.width=4",
    f"optim.epochs={EPOCHS}", "run.export=false", "run.plot=false", "run.num_to_keep=5",
]


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if int(fields[3]) == sid:  # field 6 of stat: the session id
            pids.append(int(entry))
    return pids


def _kill_session(proc: subprocess.Popen) -> None:
    for _ in range(3):  # Ray may still be spawning a process
        for pid in _session_pids(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
    proc.wait(timeout=60)


def _train(store: Path, stop_at: str | None, log: Path, timeout: float = 300) -> str:
    """Run ``facecore train`` (2 workers); with ``stop_at``, SIGKILL it there."""
    marker = store.parent / "stopped"
    marker.unlink(missing_ok=True)
    env = dict(os.environ, RAY_ADDRESS="local", OMP_NUM_THREADS="1", RAY_DEDUP_LOGS="0",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("FACECORE_TEST_STOP_AT", None)
    if stop_at:
        env.update(FACECORE_TEST_STOP_AT=stop_at, FACECORE_TEST_STOP_FILE=str(marker))
    cmd = [sys.executable, "-m", "facecore.cli", "train", "--task", "age", "--workers", "2",
           "--storage", str(store), "--name", "run", "--output", str(store.parent / "out")]
    for s in SETTINGS:
        cmd += ["--set", s]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=store.parent)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if stop_at and marker.exists():
                    _kill_session(proc)
                    return log.read_text()
                if proc.poll() is not None:
                    break
                time.sleep(0.5)
            else:
                pytest.fail(f"facecore train did not reach {stop_at or 'its end'}:\n{log.read_text()[-3000:]}")
        finally:
            if proc.poll() is None or _session_pids(proc.pid):
                _kill_session(proc)
    text = log.read_text()
    assert not stop_at, f"the run ended before {stop_at} (exit {proc.returncode}):\n{text[-3000:]}"
    assert proc.returncode == 0, text[-3000:]
    return text


def _digest(d: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(d.iterdir()):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def _ckpt(run: Path, epoch: int) -> Path:
    return run / f"checkpoint_epoch_{epoch:04d}"


@pytest.mark.timeout(900)
def test_sigkill_at_three_points_then_every_epoch_exactly_once(tmp_path):
    store = tmp_path / "store"
    run = store / "run"

    # 1. killed with checkpoint 1 complete on disk, before Ray Train recorded it
    _train(store, "report:1", tmp_path / "a.log")
    assert checkpoint_problem(_ckpt(run, 1)) is None
    one = _digest(_ckpt(run, 1))

    # 2. resumed after epoch 1 (not from scratch); killed before checkpoint 2's rename
    _train(store, "write:2", tmp_path / "b.log")
    assert _digest(_ckpt(run, 1)) == one  # epoch 1 was not trained or written again
    assert not _ckpt(run, 2).exists()
    assert len(list(run.glob(".tmp-checkpoint_epoch_0002-*"))) == 1

    # 3. resumed after epoch 1 again; epoch 2 written and reported; killed during epoch 3
    _train(store, "train:3", tmp_path / "c.log")
    assert _digest(_ckpt(run, 1)) == one and checkpoint_problem(_ckpt(run, 2)) is None
    assert [h["epoch"] for h in load_checkpoint(_ckpt(run, 2))["history"]] == [1, 2]
    assert not list(run.glob(".tmp-*"))  # the killed writer's leftovers were removed
    two = _digest(_ckpt(run, 2))
    # Ray Train writes its snapshot in place, after the report: torn by a kill mid-write
    snap = run / "checkpoint_manager_snapshot.json"
    text = snap.read_text() if snap.is_file() else '{"checkpoint_results": [{"checkpoint_dir_name": "c"}]}'
    snap.write_text(text[: len(text) // 2])

    # the rerun finishes: epoch 3 only, every epoch exactly once
    log_d = _train(store, None, tmp_path / "d.log")
    assert "epoch   3/3" in log_d and "epoch   2/3" not in log_d and "epoch   1/3" not in log_d
    assert _digest(_ckpt(run, 1)) == one and _digest(_ckpt(run, 2)) == two
    final = load_checkpoint(_ckpt(run, 3))
    assert [h["epoch"] for h in final["history"]] == [1, 2, 3]
    for e in (1, 2, 3):
        assert load_checkpoint(_ckpt(run, e))["epoch"] == e
    assert sorted(p.name for p in run.glob("checkpoint_epoch_*")) == [
        "checkpoint_epoch_0001", "checkpoint_epoch_0002", "checkpoint_epoch_0003"]
    assert "best checkpoint:" in log_d and "checkpoint_epoch_000" in log_d
