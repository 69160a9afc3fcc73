"""The task registry: what a new task (e.g. a semi-adversarial privacy network) relies on.

A toy task added as "one module + one registry line" (here: a class + one dict entry)
trains through the generic loop with an objective that returns loss terms, follows an
epoch schedule (``set_epoch``) and carries a frozen auxiliary model that is neither
optimised nor checkpointed. And nothing in facecore/train outside the task modules
switches on the task.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from conftest import REPO_ROOT
from torch import nn
from train_cases import MemorySession

import facecore.train.tasks as registry
from facecore.train import load_config
from facecore.train.loops import run_training
from facecore.train.sections import TrainConfig
from facecore.train.tasks.age import AgeTask, OrdinalOptions


@dataclass
class ToyConfig(TrainConfig):
    DEFAULT_SCORE: ClassVar[tuple[str, str]] = ("val_mae", "min")

    task: str = "toy"
    ordinal: OrdinalOptions = field(default_factory=OrdinalOptions)


class ToyObjective(registry.Objective):
    """CORAL loss + an epoch-weighted penalty towards a frozen teacher's features."""

    def __init__(self, model):
        super().__init__(model)
        self.freeze("teacher", nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4),
                                              nn.BatchNorm1d(4)))
        self.extra = nn.Parameter(torch.zeros(4))  # trained and checkpointed
        self.weight = 0.0
        self.epochs_seen: list[int] = []
        self.teacher_modes: set[bool] = set()

    def set_epoch(self, epoch: int) -> None:
        self.epochs_seen.append(epoch)
        self.weight = 0.5 * epoch  # an epoch-dependent loss schedule

    def forward(self, images, labels):
        logits = self.model(images)
        self.teacher_modes.add(self.teacher.training)
        with torch.no_grad():
            target = self.teacher(images)
        penalty = ((self.extra - target) ** 2).mean()
        ce = self.model.loss(logits, labels)
        terms = {"ce": ce.detach(), "penalty": penalty.detach(),
                 "weight": torch.tensor(self.weight)}
        return ce + self.weight * penalty, logits, terms


class ToyTask(AgeTask):
    name = "toy"
    config_class = ToyConfig

    def build_objective(self, cfg, model, splits):
        return ToyObjective(model)


@pytest.fixture
def toy_task(monkeypatch):
    task = ToyTask()
    monkeypatch.setitem(registry.TASKS, "toy", task)  # the one registry line
    return task


def test_a_new_task_with_terms_schedule_and_frozen_auxiliary(toy_task, monkeypatch):
    built = []
    real = ToyTask.build_objective

    def spy(self, cfg, model, splits):
        obj = real(self, cfg, model, splits)
        built.append(obj)
        return obj

    monkeypatch.setattr(ToyTask, "build_objective", spy)
    cfg = load_config(task="toy", overrides=[
        "data.num_samples=96", "data.image_size=32", "data.batch_size=16", "optim.epochs=2",
        "model.width=4"])
    assert type(cfg) is ToyConfig and cfg.score() == ("val_mae", "min")
    teacher_before = None
    s = MemorySession()
    run_training(cfg, s)
    [obj] = built
    assert obj.epochs_seen == [1, 2]
    assert obj.teacher_modes == {False}  # frozen auxiliaries stay in eval mode
    teacher_before = {k: v.clone() for k, v in obj.teacher.state_dict().items()}
    for epoch, metrics in zip((1, 2), s.reports):
        assert metrics["train_weight"] == pytest.approx(0.5 * epoch)
        assert metrics["train_ce"] > 0 and metrics["train_penalty"] > 0
        assert metrics["train_loss"] == pytest.approx(
            metrics["train_ce"] + 0.5 * epoch * metrics["train_penalty"], rel=1e-5)
        assert "val_mae" in metrics
    state = s.states[-1]
    # the optimizer holds the trainable parameters only (model + extra, not the teacher),
    # in two groups (weights decayed, biases / norms not: facecore.train.optim)
    trainable = [p for p in obj.parameters() if p.requires_grad]
    assert sum(len(g["params"]) for g in state["optimizer"]["param_groups"]) == len(trainable)
    assert sum(p.numel() for p in trainable) == sum(p.numel() for p in obj.model.parameters()) + 4
    # the checkpoint keeps the objective's own state, not the frozen teacher
    assert sorted(state["objective"]) == ["extra"]
    assert not torch.equal(state["objective"]["extra"], torch.zeros(4))  # it trained
    for k, v in obj.teacher.state_dict().items():  # never updated (BN stats included)
        assert torch.equal(v, teacher_before[k])
    assert json.loads(s.reports[-1]["history"])[0]["train_weight"] == pytest.approx(0.5)

    # resume: the objective's state comes back, the teacher is rebuilt
    more = load_config(task="toy", overrides=[
        "data.num_samples=96", "data.image_size=32", "data.batch_size=16", "optim.epochs=3",
        "model.width=4"])

    class Resume(MemorySession):
        def restore(self):
            return state

    r = Resume()
    run_training(more, r)
    assert built[-1].epochs_seen == [3] and [m["epoch"] for m in r.reports] == [3]


def test_the_registry_is_the_only_task_switch_in_train():
    """No ``isinstance(cfg, XConfig)`` / ``cfg.task == ...`` outside the task modules."""
    pattern = re.compile(
        r"isinstance\([^)]*(Config|Options)\b|\.task\s*[!=]=|\btask\s*(==|in)\s*[\"'(]"
    )
    offenders = []
    train = REPO_ROOT / "facecore" / "train"
    for path in sorted(train.rglob("*.py")):
        if path.parent.name == "tasks":
            continue  # the task modules
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{n}: {line.strip()}")
    assert offenders == []
    for name, task in registry.TASKS.items():
        assert task.name == name and task.config_class().task == name
        assert task.split_by in ("sample", "identity")
        assert (REPO_ROOT / "facecore" / "train" / "configs" / f"{task.default_config}.yaml").is_file()
    assert registry.TASKS["embedding"].split_by == "identity"


def test_how_to_add_a_task_is_documented():
    doc = registry.__doc__
    for word in ("How to add a task", "Objective", "set_epoch", "freeze", "TASKS",
                 "MODEL_BUILDERS", "split_by", "DEFAULT_SCORE"):
        assert word in doc, word
    assert Path(registry.__file__).name == "__init__.py"
