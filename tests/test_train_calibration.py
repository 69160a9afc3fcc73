"""Gender calibration never aborts training (issue 15, item 1): where no temperature can be
fitted after an epoch, the model keeps T = 1 and a ``CalibrationWarning`` says why; every
checkpoint carries the temperature fitted on its own validation logits."""

from __future__ import annotations

import warnings

import pytest
import torch
from train_cases import MemorySession

from facecore.models import GenderClassifier
from facecore.models.binary import fit_temperature
from facecore.train import get_task, load_config
from facecore.train.loops import run_training
from facecore.train.tasks.gender import CalibrationWarning


def _after_epoch(logits, labels):
    cfg = load_config("gender_synthetic", ["run.workers=0"])
    model = GenderClassifier("small_cnn", width=4)
    with torch.no_grad():
        model.temperature.fill_(3.0)  # a previous epoch's temperature
    changed = get_task("gender").after_epoch(
        cfg, model, {"logits": torch.as_tensor(logits), "target": torch.as_tensor(labels)}
    )
    return changed, float(model.temperature)


def test_impossible_fit_keeps_training_with_temperature_one():
    # logits anti-correlated with the labels: no positive temperature improves on T = inf
    with pytest.warns(CalibrationWarning, match="T = 1.*not positively associated"):
        changed, t = _after_epoch([2.0, -1.0, 0.5, -3.0], [0, 1, 0, 1])
    assert changed and t == 1.0
    with pytest.warns(CalibrationWarning, match="finite"):
        _, t = _after_epoch([float("nan"), 1.0], [0, 1])
    assert t == 1.0


def test_possible_fit_is_unchanged():
    z = torch.tensor([2.0, -1.0, 0.5, -3.0, 1.5, -0.2])
    y = torch.tensor([1, 0, 1, 0, 0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        changed, t = _after_epoch(z, y)
    assert changed and t == pytest.approx(fit_temperature(z, y), rel=1e-6)


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fairface_gender_trains_for_every_seed(fairface_dir, seed):
    """The issue's command (small_cnn, 64 px, FairFace-540) crashed in epoch 1 for data.seed
    0 and 1; one epoch per seed, without Ray."""
    torch.set_num_threads(1)
    cfg = load_config("gender_synthetic", [
        "data.name=fairface", f"data.root={fairface_dir}", "model.backbone=small_cnn",
        "data.image_size=64", f"data.seed={seed}", "optim.epochs=1", "run.workers=0",
    ])
    session = MemorySession()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CalibrationWarning)
        run_training(cfg, session)
    [(metrics, state)] = list(zip(session.reports, session.states))
    t = float(state["model"]["state_dict"]["temperature"])
    assert state["epoch"] == 1 and 0.0 <= metrics["val_accuracy"] <= 1.0
    if any(issubclass(w.category, CalibrationWarning) for w in caught):
        assert t == 1.0
    else:
        assert 1e-2 <= t <= 1e2
