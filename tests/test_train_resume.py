"""Resume (issue 15): the learning-rate schedule of a resumed run (item 5; per-step
schedules, issue 10) and the checkpoint files a run resumes from (item 6; the SIGKILL test
is in ``test_train_kill_resume.py``)."""

from __future__ import annotations

import json

import pytest
import torch
from train_cases import MemorySession

from facecore.train import load_config
from facecore.train.loops import run_training

TINY = [
    "data.num_samples=96", "data.image_size=32", "data.batch_size=16", "model.width=4",
    "optim.lr=0.005", "run.workers=0",
]


@pytest.fixture
def step_lrs(monkeypatch):
    """Every optimiser step's learning rates (all groups), in order."""
    seen: list[list[float]] = []
    original = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        seen.append([g["lr"] for g in self.param_groups])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    return seen


def _train(epochs, restore=None, extra=()):
    cfg = load_config("age_coral_synthetic", [*TINY, f"optim.epochs={epochs}", *extra])
    s = MemorySession(restore)
    run_training(cfg, s)
    return s


def _weights(state):
    return state["model"]["state_dict"]


def _changed(a, b):
    return any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


def _same(got, want):
    torch.testing.assert_close(
        torch.tensor(got, dtype=torch.float64), torch.tensor(want, dtype=torch.float64),
        rtol=1e-12, atol=0,
    )


STEPS = 5  # 76 training images in batches of 16 (4 full, the last of 12 kept)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("scheduler", ["onecycle", "cosine"])
def test_resume_mid_run_trains_at_the_uninterrupted_learning_rates(step_lrs, scheduler):
    extra = [f"optim.scheduler={scheduler}"]
    whole = _train(4, extra=extra)
    uninterrupted = list(step_lrs)
    assert len(uninterrupted) == 4 * STEPS
    step_lrs.clear()
    cfg = load_config("age_coral_synthetic", [*TINY, "optim.epochs=4", *extra])

    class _Stop(Exception):
        pass

    class _StopAfter2(MemorySession):  # the run dies after epoch 2's checkpoint
        def report(self, metrics, state):
            super().report(metrics, state)
            if metrics["epoch"] == 2:
                raise _Stop

    first = _StopAfter2()
    with pytest.raises(_Stop):
        run_training(cfg, first)
    rest = _train(4, restore=first.states[-1], extra=extra)
    assert [r["epoch"] for r in rest.reports] == [3, 4]
    # every step of the interrupted + resumed run at the uninterrupted run's rates
    _same(step_lrs, uninterrupted)
    assert [r["lr"] for r in first.reports + rest.reports] == pytest.approx(
        [r["lr"] for r in whole.reports])
    # per-step: the rate changes within an epoch (warm-up, then the decay)
    assert len({round(v[0], 12) for v in uninterrupted[:STEPS]}) == STEPS


@pytest.mark.timeout(300)
@pytest.mark.parametrize("more", [4, 5])
def test_extending_a_finished_run_trains_every_new_epoch(step_lrs, more):
    done = _train(3)
    assert step_lrs[-1][0] < 0.005 / 1000  # a finished one-cycle ends near 0
    step_lrs.clear()
    _train(more)  # the uninterrupted run of the new horizon
    longer = list(step_lrs)
    step_lrs.clear()
    ext = _train(more, restore=done.states[-1])
    assert [r["epoch"] for r in ext.reports] == list(range(4, more + 1))
    # the schedule of the new horizon, picked up at the first step of epoch 4
    _same(step_lrs, longer[3 * STEPS:])
    assert step_lrs[0][0] > 0.005 / 10 and min(v[0] for v in step_lrs) > 0  # not the old end
    previous = _weights(done.states[-1])
    for state in ext.states:  # every epoch after the resume changes the weights
        assert _changed(previous, _weights(state)), state["epoch"]
        previous = _weights(state)


@pytest.mark.timeout(300)
def test_resumed_hyper_parameters_come_from_the_config(step_lrs):
    part = _train(2)
    saved = {k: int(v["step"]) for k, v in part.states[-1]["optimizer"]["state"].items()}
    step_lrs.clear()
    rest = _train(3, restore=part.states[-1], extra=["optim.lr=0.001", "optim.scheduler=constant"])
    # constant after its warm-up (5% of 15 steps = 1 step, long past at step 10)
    assert [v[0] for v in step_lrs] == pytest.approx([0.001] * STEPS)
    assert all(len(set(v)) == 1 for v in step_lrs)  # every group at the config's rate
    # the optimiser state (AdamW's step counts and moments) is restored, not rebuilt
    steps = {k: int(v["step"]) for k, v in rest.states[-1]["optimizer"]["state"].items()}
    assert saved and steps.keys() == saved.keys()
    assert all(steps[k] == saved[k] * 3 // 2 for k in saved)  # 2 epochs of steps, then 3
    # the decay of the config, on conv / linear weights only
    groups = rest.states[-1]["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]


# ------------------------------------------------------------- item 6: checkpoint files


def _state(epoch):
    from facecore.train.checkpoints import new_checkpoint

    return new_checkpoint(epoch=epoch, weights=torch.full((3,), float(epoch)), history=[])


def _digest(d):
    import hashlib

    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(d.iterdir())}


def test_checkpoints_are_written_atomically_and_never_overwritten(tmp_path):
    from facecore.train.checkpoints import (
        CheckpointExistsError,
        checkpoint_problem,
        persist_checkpoint,
    )

    d = persist_checkpoint(tmp_path, {"epoch": 1}, _state(1))
    assert d == tmp_path / "checkpoint_epoch_0001" and checkpoint_problem(d) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch_0001"]  # no temp
    before = _digest(d)
    with pytest.raises(CheckpointExistsError, match="checkpoint_epoch_0001 is a complete"):
        persist_checkpoint(tmp_path, {"epoch": 1}, _state(1))
    assert _digest(d) == before
    # an incomplete directory of that name (a partial copy) is replaced
    partial = tmp_path / "checkpoint_epoch_0002"
    partial.mkdir()
    (partial / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    assert checkpoint_problem(partial) is not None
    persist_checkpoint(tmp_path, {"epoch": 2}, _state(2))
    assert checkpoint_problem(partial) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch_0001", "checkpoint_epoch_0002"]


def test_a_killed_writer_leaves_only_a_temporary_directory(tmp_path, monkeypatch):
    import facecore.train.checkpoints as C

    C.persist_checkpoint(tmp_path, {"epoch": 1}, _state(1))

    def killed(point, epoch):  # the process dies after the files, before the rename
        if point == "write":
            raise KeyboardInterrupt

    monkeypatch.setattr(C, "fault_point", killed)
    with pytest.raises(KeyboardInterrupt):
        C.persist_checkpoint(tmp_path, {"epoch": 2}, _state(2))
    [tmp] = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-checkpoint_epoch_0002")]
    assert not (tmp_path / "checkpoint_epoch_0002").exists()
    assert C.resume_checkpoint(tmp_path)[0].name == "checkpoint_epoch_0001"
    assert C.remove_stale_temporaries(tmp_path) == [tmp] and not tmp.exists()


def test_resume_takes_the_newest_complete_loadable_checkpoint(tmp_path):
    from facecore.train.checkpoints import (
        complete_checkpoints,
        latest_checkpoint,
        persist_checkpoint,
        resume_checkpoint,
    )

    for e in (1, 2, 3, 4):
        persist_checkpoint(tmp_path, {"epoch": e}, _state(e))
    p4 = tmp_path / "checkpoint_epoch_0004" / "checkpoint.pt"
    p4.write_bytes(p4.read_bytes()[:-100])                      # truncated
    (tmp_path / "checkpoint_epoch_0003" / "metrics.json").write_text("{")  # torn metrics
    (tmp_path / "checkpoint_epoch_0005").mkdir()                # empty
    with pytest.warns(UserWarning, match="skipping .*checkpoint_epoch_0004"):
        d, state = resume_checkpoint(tmp_path)
    assert d.name == "checkpoint_epoch_0002" and state["epoch"] == 2
    assert latest_checkpoint(tmp_path) == d
    assert [p.name for p in complete_checkpoints(tmp_path)] == [
        "checkpoint_epoch_0001", "checkpoint_epoch_0002"]
    # a directory holding another epoch's checkpoint is not that epoch
    import shutil

    shutil.copytree(tmp_path / "checkpoint_epoch_0001", tmp_path / "checkpoint_epoch_0006")
    with pytest.warns(UserWarning, match="holds epoch 1, not 6"):
        assert resume_checkpoint(tmp_path)[0].name == "checkpoint_epoch_0002"


def test_unusable_ray_snapshot_is_moved_aside(tmp_path):
    from facecore.train.runner import _check_ray_snapshot

    snap = tmp_path / "checkpoint_manager_snapshot.json"
    snap.write_text('{"checkpoint_results": [{"checkpoint_dir_name": "checkpoint_ep')  # torn
    with pytest.warns(UserWarning, match="could not be used.*resuming from the checkpoints"):
        _check_ray_snapshot(str(tmp_path))
    assert not snap.exists() and len(list(tmp_path.glob(snap.name + ".invalid-*"))) == 1
    (tmp_path / "checkpoint_epoch_0001").mkdir()
    snap.write_text(json.dumps({"checkpoint_results": [
        {"checkpoint_dir_name": "checkpoint_epoch_0001"}]}))
    _check_ray_snapshot(str(tmp_path))  # usable: kept
    assert snap.exists()


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_local_mode_resume_skips_a_partial_checkpoint_and_keeps_complete_ones(tmp_path):
    """A run whose newest checkpoint is incomplete (e.g. copied partially) resumes from the
    one before it, rewrites the broken epoch and leaves the complete checkpoints as they are."""
    from facecore.train import fit

    def cfg(epochs):
        return load_config("age_coral_synthetic", [
            *TINY, f"optim.epochs={epochs}", f"run.storage={tmp_path}", "run.name=r",
            "run.export=false", "run.plot=false", "run.verbose=0", "run.num_to_keep=3"])

    fit(cfg(2), finalize_run=False)
    run = tmp_path / "r"
    first = _digest(run / "checkpoint_epoch_0001")
    p2 = run / "checkpoint_epoch_0002" / "checkpoint.pt"
    p2.write_bytes(p2.read_bytes()[: len(p2.read_bytes()) // 2])
    with pytest.warns(UserWarning, match="skipping .*checkpoint_epoch_0002"):
        res = fit(cfg(3), finalize_run=False)
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    assert _digest(run / "checkpoint_epoch_0001") == first   # not retrained, not rewritten
    assert res.latest_checkpoint.endswith("checkpoint_epoch_0003")


def test_local_mode_keeps_num_to_keep_checkpoints_best_and_newest(tmp_path):
    """run.workers=0 (Ray Train local mode, the loop writes the checkpoints): the run keeps
    run.num_to_keep checkpoints by the score, plus the newest, as Ray Train does for worker
    runs (a 200-epoch SAN run kept all 200 before)."""
    from facecore.train.checkpoints import (
        complete_checkpoints,
        new_checkpoint,
        prune_checkpoints,
        write_checkpoint,
    )

    run = tmp_path / "run"
    for epoch, loss in enumerate([0.9, 0.2, 0.5, 0.1, 0.7, 0.8], start=1):
        write_checkpoint(run / f"checkpoint_epoch_{epoch:04d}", {"epoch": epoch, "val_loss": loss},
                         new_checkpoint(epoch=epoch, model={}))
    removed = prune_checkpoints(run, 2, "val_loss", "min")
    assert [d.name for d in complete_checkpoints(run)] == [
        "checkpoint_epoch_0002", "checkpoint_epoch_0004", "checkpoint_epoch_0006"]
    assert len(removed) == 3 and not any(d.exists() for d in removed)
    assert prune_checkpoints(run, 5, "val_loss", "min") == []
