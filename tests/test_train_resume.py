"""Resume (issue 15): the learning-rate schedule of a resumed run (item 5) and the
checkpoint files a run resumes from (item 6; the SIGKILL test is in
``test_train_kill_resume.py``)."""

from __future__ import annotations

import math

import pytest
import torch

from facecore.train import load_config
from facecore.train.loops import Session, run_training

TINY = [
    "data.num_samples=96", "data.image_size=32", "data.batch_size=32", "model.width=4",
    "optim.lr=0.005", "run.workers=0",
]


class _Keep(Session):
    def __init__(self, restore_state=None):
        self.reports, self.states, self._restore = [], [], restore_state

    def restore(self):
        return self._restore

    def report(self, metrics, state):
        self.reports.append(metrics)
        self.states.append(state)


def _train(epochs, restore=None, extra=()):
    cfg = load_config("age_coral_synthetic", [*TINY, f"optim.epochs={epochs}", *extra])
    s = _Keep(restore)
    run_training(cfg, s)
    return s


def _weights(state):
    return state["model"]["state_dict"]


def _changed(a, b):
    return any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


def _cosine(lr, e, epochs):
    return lr * 0.5 * (1 + math.cos(math.pi * e / epochs))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("more", [4, 5])
def test_extending_a_finished_run_trains_every_new_epoch(more):
    done = _train(3)
    assert [r["lr"] for r in done.reports] == pytest.approx([_cosine(0.005, e, 3) for e in range(3)])
    ext = _train(more, restore=done.states[-1])
    assert [r["epoch"] for r in ext.reports] == list(range(4, more + 1))
    lrs = [r["lr"] for r in ext.reports]
    # the schedule of the new horizon, picked up at the resumed epoch (not the old final 0)
    assert lrs == pytest.approx([_cosine(0.005, e - 1, more) for e in range(4, more + 1)])
    assert all(lr > 0 for lr in lrs)
    previous = _weights(done.states[-1])
    for state in ext.states:  # every epoch after the resume changes the weights
        assert _changed(previous, _weights(state)), state["epoch"]
        previous = _weights(state)


@pytest.mark.timeout(300)
def test_restart_with_the_same_config_keeps_the_uninterrupted_learning_rates():
    whole = _train(4, extra=["optim.scheduler=step", "optim.step_size=1", "optim.gamma=0.5"])
    part = _train(2, extra=["optim.scheduler=step", "optim.step_size=1", "optim.gamma=0.5"])
    rest = _train(4, restore=part.states[-1],
                  extra=["optim.scheduler=step", "optim.step_size=1", "optim.gamma=0.5"])
    lrs = [r["lr"] for r in part.reports[:2] + rest.reports]
    assert lrs == pytest.approx([r["lr"] for r in whole.reports])
    assert lrs == pytest.approx([0.005, 0.0025, 0.00125, 0.000625])


@pytest.mark.timeout(300)
def test_resumed_hyper_parameters_come_from_the_config():
    part = _train(2)
    saved = {k: int(v["step"]) for k, v in part.states[-1]["optimizer"]["state"].items()}
    rest = _train(3, restore=part.states[-1], extra=["optim.lr=0.001", "optim.scheduler=none"])
    assert [r["lr"] for r in rest.reports] == pytest.approx([0.001])
    # the optimiser state (Adam's step counts and moments) is restored, not rebuilt
    steps = {k: int(v["step"]) for k, v in rest.states[-1]["optimizer"]["state"].items()}
    assert saved and steps.keys() == saved.keys()
    assert all(steps[k] == saved[k] * 3 // 2 for k in saved)  # 2 epochs of steps, then 3
