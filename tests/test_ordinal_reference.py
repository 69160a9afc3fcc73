"""The pure-PyTorch reference against coral-pytorch (an independent oracle) and
against values computed by hand. The kernels are then tested against the
reference (test_ordinal_ops.py) and against coral-pytorch directly."""

from __future__ import annotations

import math

import pytest
import torch
from coral_pytorch.dataset import corn_label_from_logits, levels_from_labelbatch, proba_to_label
from coral_pytorch.losses import coral_loss as cp_coral_loss
from coral_pytorch.losses import corn_loss as cp_corn_loss
from ordinal_cases import random_batch

from facecore.reference import ordinal as R


def bce(x, t):
    s = 1 / (1 + math.exp(-x))
    return -(t * math.log(s) + (1 - t) * math.log(1 - s))


def test_coral_hand_example():
    x = torch.tensor([[0.5, -1.0, 2.0], [-0.3, 0.1, 0.0]], dtype=torch.float64)
    y = torch.tensor([2, 0])
    w = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    row0 = bce(0.5, 1) * 1.0 + bce(-1.0, 1) * 0.5 + bce(2.0, 0) * 2.0
    row1 = bce(-0.3, 0) * 1.0 + bce(0.1, 0) * 0.5 + bce(0.0, 0) * 2.0
    got = R.coral_loss(x, y, w, reduction="none")
    torch.testing.assert_close(got, torch.tensor([row0, row1], dtype=torch.float64))
    assert R.coral_loss(x, y, w).item() == pytest.approx((row0 + row1) / 2)
    assert R.coral_loss(x, y, w, reduction="sum").item() == pytest.approx(row0 + row1)


def test_corn_hand_example():
    # K = 4 classes, T = 3 tasks. Row 0 (y=1) uses tasks 0, 1 with targets 1, 0;
    # row 1 (y=3) uses all three with targets 1, 1, 1; row 2 (y=0) uses task 0.
    x = torch.tensor([[0.2, -0.4, 1.0], [1.5, 0.3, -0.7], [-2.0, 5.0, 5.0]], dtype=torch.float64)
    y = torch.tensor([1, 3, 0])
    rows = [
        bce(0.2, 1) + bce(-0.4, 0),
        bce(1.5, 1) + bce(0.3, 1) + bce(-0.7, 1),
        bce(-2.0, 0),
    ]
    torch.testing.assert_close(R.corn_loss(x, y, reduction="none"), torch.tensor(rows, dtype=torch.float64))
    assert R.corn_loss(x, y).item() == pytest.approx(sum(rows) / 6)  # 2 + 3 + 1 pairs


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_coral_loss_matches_coral_pytorch(reduction, weighted):
    x, y = random_batch(64, 9, seed=1, dtype=torch.float64)
    w = torch.linspace(0.2, 2.0, 9, dtype=torch.float64) if weighted else None
    levels = levels_from_labelbatch(y, num_classes=10).double()
    expected = cp_coral_loss(x, levels, importance_weights=w, reduction=None if reduction == "none" else reduction)
    torch.testing.assert_close(R.coral_loss(x, y, w, reduction), expected)


@pytest.mark.parametrize("t", [1, 4, 30])
def test_corn_loss_matches_coral_pytorch(t):
    x, y = random_batch(50, t, seed=t, dtype=torch.float64)
    torch.testing.assert_close(R.corn_loss(x, y), cp_corn_loss(x, y, num_classes=t + 1))


@pytest.mark.parametrize("t", [1, 7, 40])
def test_labels_match_coral_pytorch(t):
    x, _ = random_batch(200, t, seed=t)
    assert torch.equal(R.ordinal_labels(x, "coral"), proba_to_label(torch.sigmoid(x)))
    assert torch.equal(R.ordinal_labels(x, "corn"), corn_label_from_logits(x))


def test_class_probs_are_a_distribution_and_expected_is_their_mean():
    x, _ = random_batch(100, 8, seed=3, dtype=torch.float64)
    for head in ("coral", "corn"):
        p = R.ordinal_probs(x, head)
        assert (p.class_probs >= 0).all()
        torch.testing.assert_close(p.class_probs.sum(1), torch.ones(100, dtype=torch.float64))
        k = torch.arange(9, dtype=torch.float64)
        torch.testing.assert_close(p.expected, (p.class_probs * k).sum(1))


def test_corn_cumulative_probs_are_products():
    x, _ = random_batch(20, 6, seed=4, dtype=torch.float64)
    p = R.ordinal_probs(x, "corn")
    torch.testing.assert_close(p.cum_probs, torch.cumprod(torch.sigmoid(x), dim=1))


def test_coral_class_probs_use_the_monotone_envelope():
    # P(y>1) > P(y>0): rank inconsistent; class probabilities stay non-negative.
    x = torch.tensor([[0.0, 1.0, -1.0]], dtype=torch.float64)
    p = R.ordinal_probs(x, "coral")
    s = torch.sigmoid(x[0])
    env = torch.tensor([s[0], s[0], s[2]])
    expected = torch.tensor([1 - env[0], env[0] - env[1], env[1] - env[2], env[2]])
    torch.testing.assert_close(p.class_probs[0], expected.double())
    torch.testing.assert_close(p.cum_probs[0], s)
