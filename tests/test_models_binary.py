"""Binary / gender classifier: temperature scaling against scipy's optimiser, ECE
drops on a miscalibrated case, serve / checkpoint behaviour, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar

from facecore import metrics
from facecore.models import (
    BinaryAttributeClassifier,
    GenderClassifier,
    fit_temperature,
    model_checkpoint,
    model_from_checkpoint,
)


def _miscalibrated(n=4000, overconfidence=4.0, seed=0):
    """True logits z, labels ~ Bernoulli(sigmoid(z)); the model reports c * z."""
    g = torch.Generator().manual_seed(seed)
    z = 1.5 * torch.randn(n, generator=g)
    y = (torch.rand(n, generator=g) < torch.sigmoid(z)).long()
    return overconfidence * z, y


def _scipy_temperature(logits, labels):
    z = logits.double().numpy()
    t = 2.0 * labels.double().numpy() - 1.0

    def nll(log_temp):
        return np.logaddexp(0.0, -t * z / np.exp(log_temp)).sum()

    return float(np.exp(minimize_scalar(nll, bounds=(-5, 5), method="bounded",
                                        options={"xatol": 1e-10}).x))


@pytest.mark.parametrize(("overconfidence", "seed"), [(4.0, 0), (0.5, 1), (1.0, 2)])
def test_fit_temperature_matches_scipy(overconfidence, seed):
    logits, labels = _miscalibrated(overconfidence=overconfidence, seed=seed)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(_scipy_temperature(logits, labels), rel=1e-5)
    assert t == pytest.approx(overconfidence, rel=0.1)


def test_calibration_lowers_ece_and_nll():
    logits, labels = _miscalibrated()
    model = GenderClassifier("small_cnn", width=4)
    before = torch.sigmoid(logits)
    t = model.calibrate(logits, labels)
    after = model.calibrated_probs(logits)
    torch.testing.assert_close(after, torch.sigmoid(logits / t))
    ece_before = metrics.expected_calibration_error(before, labels)
    ece_after = metrics.expected_calibration_error(after, labels)
    assert ece_before > 0.1 and ece_after < 0.03
    assert metrics.log_loss(after, labels) < metrics.log_loss(before, labels)
    assert float(model.temperature) == pytest.approx(t)


def test_separable_logits_clip_the_temperature():
    logits = torch.tensor([-3.0, -1.0, 2.0, 5.0])
    assert fit_temperature(logits, torch.tensor([0, 0, 1, 1])) == pytest.approx(1e-2)


def test_serve_uses_the_temperature_and_keeps_labels():
    torch.manual_seed(0)
    model = GenderClassifier("small_cnn", width=4).eval()
    x = torch.rand(5, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (5,)
    with torch.no_grad():
        model.temperature.fill_(2.5)
    out = model.serve(x)
    assert set(out) == {"prob", "label"} and out["label"].dtype == torch.int64
    torch.testing.assert_close(out["prob"], torch.sigmoid(logits / 2.5))
    assert out["label"].tolist() == (logits > 0).long().tolist()
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted.serve(x)["prob"], out["prob"])
    # the temperature is part of the checkpoint
    again = model_from_checkpoint(model_checkpoint(model))
    assert float(again.temperature) == 2.5
    torch.testing.assert_close(again.serve(x)["prob"], out["prob"])


def test_loss_is_bce_with_logits():
    model = GenderClassifier("small_cnn", width=4)
    logits = torch.tensor([0.3, -1.2, 2.0])
    labels = torch.tensor([1, 0, 0])
    torch.testing.assert_close(
        model.loss(logits, labels), F.binary_cross_entropy_with_logits(logits, labels.float())
    )


def test_task_names_and_config():
    g = GenderClassifier("small_cnn", width=4)
    assert g.task == "gender" and g.class_names == ["male", "female"]
    b = BinaryAttributeClassifier("small_cnn", "eyeglasses", ("no", "yes"), width=4)
    assert b.task == "binary"
    assert b.config == {
        "task": "binary",
        "backbone": {"name": "small_cnn", "width": 4, "in_channels": 3, "depth": 4},
        "attribute": "eyeglasses",
        "class_names": ["no", "yes"],
        "dropout": 0.0,
    }


def test_errors():
    with pytest.raises(ValueError, match="same number of entries, got 3 and 2"):
        fit_temperature(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        fit_temperature(torch.ones(3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="need at least one"):
        fit_temperature(torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match="logits must be finite"):
        fit_temperature(torch.tensor([float("nan"), 1.0]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="not positively associated"):
        fit_temperature(torch.tensor([2.0, -2.0]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="class_names must be two strings"):
        BinaryAttributeClassifier("small_cnn", "gender", ("a", "b", "c"))
    with pytest.raises(ValueError, match="GenderClassifier fixes attribute"):
        GenderClassifier("small_cnn", attribute="smile")
