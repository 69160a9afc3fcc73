"""Ray Tune sweeps (facecore.train.tune.run_sweep), kept few and small on the session's
one Ray (2 CPUs):

* ASHA stops a trial early and the table still lists it (single-worker trials);
* a sweep interrupted (SIGINT, as Ctrl-C) after its first trial ends resumes by name
  without rerunning the finished trial;
* a 2-worker trial (a TorchTrainer inside the Tune trial): metrics forwarded every epoch,
  and every Train worker / controller is gone afterwards;
* ASHA stopping 2-worker trials (at ``max_t`` and early) tears their Train runs down: the
  next 2-worker trial gets the CPUs (each trial needs half of them), and afterwards no
  Train actor or placement group of the sweep is left.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time

import pytest
from ray_fixtures import ray_session  # noqa: F401

from facecore.train import load_config
from facecore.train.tune import Asha, sweep_ordinal_heads

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = ["data.num_samples=160", "data.image_size=32", "data.batch_size=32", "model.width=4"]


def _starts(res, trial_id):
    lines = (res.path / "trials" / trial_id / "starts.jsonl").read_text().splitlines()
    return [json.loads(ln) for ln in lines]


@pytest.mark.timeout(300)
def test_asha_stops_a_trial_and_the_table_lists_it(ray_session, tmp_path):  # noqa: F811
    # The objective is the lr the one-cycle schedule starts each epoch at (a reported
    # metric fixed by optim.lr): the ranking at ASHA's first rung is certain, so the
    # second trial (lr 1e-3 < 1e-2) is stopped there. One trial at a time: the first
    # has recorded its rung when the second reaches it.
    base = load_config("age_coral_synthetic", [*TINY, "optim.epochs=3"])
    res = sweep_ordinal_heads(
        base, heads=("coral",), lrs=(1e-2, 1e-3), storage=tmp_path, name="asha",
        objectives=[("lr", "max")], asha=Asha(grace_period=1, reduction_factor=2),
        max_concurrent=1, plot=False,
    )
    assert not res.interrupted
    by_lr = {t["optim.lr"]: t for t in res.trials}
    assert by_lr[1e-2]["status"] == "finished" and by_lr[1e-2]["epochs"] == 3
    assert by_lr[1e-3]["status"] == "stopped early" and by_lr[1e-3]["epochs"] == 1
    # the final evaluation ran on the stopped trial too, and the table lists it
    assert math.isfinite(by_lr[1e-3]["test_mae"])
    lines = res.table().splitlines()
    assert lines[0].split()[:5] == ["head", "lr", "seeds", "stopped", "epochs"]
    assert [ln.split()[:5] for ln in lines[1:]] == [["coral", "0.01", "1", "0", "3.0"],
                                                    ["coral", "0.001", "1", "1", "1.0"]]
    assert [c["optim.lr"] for c in res.configs] == [1e-2, 1e-3]
    saved = json.loads((res.path / "trials.json").read_text())
    assert {r["status"] for r in saved} == {"finished", "stopped early"}


class _InterruptAfterFirst:
    """A Tune callback sending SIGINT (as Ctrl-C) to the driver when a first trial ends."""

    def __init__(self):
        from ray.tune import Callback

        class Cb(Callback):
            fired = False

            def on_trial_complete(self, iteration, trials, trial, **info):
                if not Cb.fired:
                    Cb.fired = True
                    os.kill(os.getpid(), signal.SIGINT)

        self.callback = Cb()


@pytest.mark.timeout(300)
def test_an_interrupted_sweep_resumes_without_rerunning_finished_trials(ray_session, tmp_path, capsys):  # noqa: F811
    base = load_config("age_coral_synthetic", [*TINY, "optim.epochs=4"])
    kw = dict(heads=("coral",), lrs=(3e-3,), seeds=(0, 1, 2), storage=tmp_path, name="resume",
              max_concurrent=1, plot=False, evaluate=None)
    first = sweep_ordinal_heads(base, callbacks=[_InterruptAfterFirst().callback], **kw)
    assert first.interrupted and first.total_trials == 3
    done = [t["trial_id"] for t in first.trials if t["status"] == "finished"]
    assert len(done) >= 1
    assert "run the same command again" in capsys.readouterr().out

    again = sweep_ordinal_heads(base, **kw)
    out = capsys.readouterr().out
    assert not again.interrupted and "resuming sweep resume" in out
    assert sorted(t["seed"] for t in again.trials) == [0, 1, 2]
    assert all(t["status"] == "finished" and t["epochs"] == 4 for t in again.trials)
    for tid in done:  # started once, never again
        assert len(_starts(again, tid)) == 1
    # every trial trained each epoch once: its history is epochs 1..4
    for t in again.trials:
        hist = json.loads((again.path / "trials" / t["trial_id"] / "history.json").read_text())
        assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    # other settings under the same name are refused in one line
    from facecore.train.sections import ConfigError

    with pytest.raises(ConfigError, match=r"sweep 'resume' .* was started with other settings \(differs in seeds"):
        sweep_ordinal_heads(base, **{**kw, "seeds": (0, 1)})


def _alive_train_actors():
    from ray._private import state

    names = ("RayTrainWorker", "TrainController")
    return [a["ActorClassName"] for a in state.actors().values()
            if a["ActorClassName"] in names and a["State"] != "DEAD"]


@pytest.mark.timeout(420)
def test_a_two_worker_trial_forwards_every_epoch_and_tears_its_workers_down(ray_session, tmp_path):  # noqa: F811
    import ray

    cpus = ray.cluster_resources()["CPU"]
    base = load_config("age_coral_synthetic", [*TINY, "optim.epochs=2"])
    res = sweep_ordinal_heads(
        base, heads=("coral",), lrs=(1e-2,), storage=tmp_path, name="workers",
        workers_per_trial=2, cpus_per_worker=0.5, plot=False, evaluate=None,
    )
    (t,) = res.trials
    assert t["status"] == "finished" and t["epochs"] == 2
    folder = res.path / "trials" / t["trial_id"]
    # the Ray Train run is named by the trial id and lives in the trial folder; rank 0's
    # metrics reached Tune every epoch (Tune's own record) with the sweep's score
    assert t["checkpoint"] == str(folder / "checkpoint_epoch_0002")
    hist = json.loads((folder / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    assert all(h["sweep_score"] == pytest.approx(-h["val_mae"]) for h in hist)
    tune_rows = [json.loads(ln) for ln in next(res.path.glob("sweep_trial_*/result.json")).read_text().splitlines()]
    assert [r["epoch"] for r in tune_rows] == [1, 2] and all("val_mae" in r for r in tune_rows)
    # the trial's Train controller and workers are gone, their CPUs free again
    deadline = time.monotonic() + 60
    while (_alive_train_actors() or ray.available_resources().get("CPU", 0) < cpus) and time.monotonic() < deadline:
        time.sleep(1)
    assert _alive_train_actors() == []
    assert ray.available_resources().get("CPU", 0) == cpus


_TRAIN_ACTORS = ("RayTrainWorker", "TrainController", "PlacementGroupCleaner")


def _live_actors(names=_TRAIN_ACTORS):
    from ray._private import state

    return {aid: a["ActorClassName"] for aid, a in state.actors().items()
            if a["ActorClassName"] in names and a["State"] != "DEAD"}


@pytest.mark.timeout(480)
def test_asha_stopping_two_worker_trials_frees_their_workers_for_the_next_trial(ray_session, tmp_path):  # noqa: F811
    # Three 2-worker trials one after the other (each reserves 2 x 0.5 of the session's 2
    # CPUs plus 0.01 for the trial: one at a time). The objective is the reported lr (as in
    # the ASHA test above), so ASHA's decisions are certain: lr 1e-2 runs its 2 epochs and is
    # stopped by ASHA at max_t, lr 1e-3 is stopped at the first rung (below 1e-2), lr 2e-2
    # is above the rung's cutoff and runs 2 epochs. Before the fix, the Train run of a trial
    # Tune stopped kept its placement group (1 CPU) for as long as Ray ran, and the second
    # trial waited for its workers for ever.
    import ray

    cpus = ray.cluster_resources()["CPU"]
    groups_before = set(ray.util.placement_group_table())
    actors_before = set(_live_actors())
    base = load_config("age_coral_synthetic", [*TINY, "optim.epochs=2"])
    res = sweep_ordinal_heads(
        base, heads=("coral",), lrs=(1e-2, 1e-3, 2e-2), storage=tmp_path, name="asha-workers",
        objectives=[("lr", "max")], asha=Asha(grace_period=1, reduction_factor=2),
        workers_per_trial=2, cpus_per_worker=0.5, max_concurrent=1, plot=False, evaluate=None,
    )
    assert not res.interrupted
    by_lr = {t["optim.lr"]: t for t in res.trials}
    assert (by_lr[1e-2]["status"], by_lr[1e-2]["epochs"]) == ("finished", 2)
    assert (by_lr[1e-3]["status"], by_lr[1e-3]["epochs"]) == ("stopped early", 1)
    assert (by_lr[2e-2]["status"], by_lr[2e-2]["epochs"]) == ("finished", 2)
    # the trial after the early-stopped one trained with its own 2 workers (Ray Train's
    # run folder is the trial folder: its checkpoints and history are there)
    folder = res.path / "trials" / by_lr[2e-2]["trial_id"]
    assert [h["epoch"] for h in json.loads((folder / "history.json").read_text())] == [1, 2]
    assert by_lr[2e-2]["checkpoint"] == str(folder / "checkpoint_epoch_0002")
    # every Train run was shut down by its trial (not left to die with it): no worker,
    # controller or placement-group cleaner of the sweep is alive, every placement group
    # it reserved (Tune's trial groups, Train's worker groups) is removed ...
    groups = ray.util.placement_group_table()
    new = {g: groups[g]["state"] for g in set(groups) - groups_before}
    assert len(new) >= 6 and set(new.values()) == {"REMOVED"}, new
    assert {a: n for a, n in _live_actors().items() if a not in actors_before} == {}
    # ... and the CPUs are free again (Ray's resource view follows within seconds)
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < cpus and time.monotonic() < deadline:
        time.sleep(1)
    assert ray.available_resources().get("CPU", 0) == cpus
