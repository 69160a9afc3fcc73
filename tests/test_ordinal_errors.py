"""Bad input to the ordinal ops: one clear error per case, naming the argument.

Each case runs through the eager kernel and, where the check needs no data,
through the fake kernel too (torch.compile / torch.export trace with it)."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import facecore

X = torch.randn(4, 3)
Y = torch.tensor([0, 1, 2, 3])

LOSS_CASES = [
    # (logits, labels, weights, reduction, error, message regex)
    (torch.randn(4), Y, None, "mean", ValueError, r"logits must be a 2-D tensor of shape \[N, K-1\], got a 1-D"),
    (torch.randn(4, 3, 1), Y, None, "mean", ValueError, r"logits must be a 2-D tensor"),
    (torch.randn(4, 0), Y, None, "mean", ValueError, r"at least one column \(K-1 >= 1"),
    (torch.randint(0, 3, (4, 3)), Y, None, "mean", ValueError, r"logits must be float32, float64, float16 or bfloat16, got Long"),
    (X, Y.float(), None, "mean", ValueError, r"labels must be an integer tensor \(int64 or int32\).*got dtype Float"),
    (X, Y.bool(), None, "mean", ValueError, r"labels must be an integer tensor"),
    (X, Y[:3], None, "mean", ValueError, r"labels has 3 entries but logits has 4 rows"),
    (X, Y.reshape(4, 1), None, "mean", ValueError, r"labels must be a 1-D tensor of shape \[N\]"),
    (X, Y, torch.ones(4), "mean", ValueError, r"importance_weights must be a 1-D tensor with one weight per task \(K-1 = 3\)"),
    (X, Y, torch.ones(3, dtype=torch.long), "mean", ValueError, r"importance_weights must be a floating-point tensor"),
    (X, Y, None, "avg", ValueError, r"reduction must be 'mean', 'sum' or 'none', got 'avg'"),
]


@pytest.mark.parametrize("fn", [facecore.coral_loss, facecore.corn_loss], ids=["coral", "corn"])
@pytest.mark.parametrize("case", LOSS_CASES, ids=lambda c: c[-1][:40])
def test_loss_argument_errors(fn, case):
    logits, labels, weights, reduction, err, msg = case
    with pytest.raises(err, match=msg):
        fn(logits, labels, weights, reduction)
    with FakeTensorMode(allow_non_fake_inputs=True), pytest.raises(err, match=msg):
        fn(logits, labels, weights, reduction)


@pytest.mark.parametrize("fn", [facecore.coral_loss, facecore.corn_loss], ids=["coral", "corn"])
@pytest.mark.parametrize("bad", [-1, 4, 10**12])
def test_labels_out_of_range(fn, bad):
    labels = torch.tensor([0, 1, bad, 2])
    with pytest.raises(ValueError, match=rf"labels must be class indices in \[0, K-1\] = \[0, 3\].*labels\[2\] = {bad}"):
        fn(X, labels)
    with pytest.raises(ValueError, match="labels must be class indices"):
        fn(X.requires_grad_(True), labels)  # the fused path checks too


def test_device_mismatch_is_reported():
    # No GPU here: a meta tensor stands in for "another device"; the dispatcher
    # runs the fake kernel, which applies the same device check.
    with pytest.raises(RuntimeError, match=r"labels is on meta but logits is on cpu"):
        facecore.coral_loss(X, Y.to("meta"))
    with pytest.raises(RuntimeError, match=r"importance_weights is on meta but logits is on cpu"):
        facecore.corn_loss(X, Y, torch.ones(3, device="meta"))


@pytest.mark.parametrize(
    "call, msg",
    [
        (lambda: facecore.ordinal_labels(X, "softmax"), r"head must be 'coral', 'niu' or 'corn', got 'softmax'"),
        (lambda: facecore.ordinal_labels(X, "coral", 0.0), r"threshold must be a probability strictly between 0 and 1, got 0"),
        (lambda: facecore.ordinal_labels(X, "corn", 1.5), r"threshold must be a probability strictly between 0 and 1"),
        (lambda: facecore.ordinal_probs(X, "cumulative"), r"head must be 'coral', 'niu' or 'corn'"),
        (lambda: facecore.ordinal_predict(X, "ce"), r"ordinal_predict: head must be 'coral', 'niu' or 'corn', got 'ce'"),
        (lambda: facecore.ordinal_predict(X, "corn", 1.0), r"ordinal_predict: threshold must be a probability"),
        (lambda: facecore.ordinal_predict(X, "coral", 0.5, True, False, False, False).labels.sum()
         + facecore.ordinal_predict(torch.randn(2, 3, 1)).labels.sum(), r"ordinal_predict: logits must be a 2-D tensor"),
        (lambda: facecore.ordinal_predict(torch.ones(2, 3, dtype=torch.long)), r"logits must be float32, float64, float16 or bfloat16, got Long"),
        (lambda: facecore.ordinal_probs(torch.randn(3)), r"logits must be a 2-D tensor"),
        (lambda: facecore.ordinal_labels(torch.randn(2, 0)), r"at least one column"),
    ],
)
def test_prediction_argument_errors(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()
    with FakeTensorMode(allow_non_fake_inputs=True), pytest.raises(ValueError, match=msg):
        call()


def test_sparse_logits_are_rejected():
    with pytest.raises((ValueError, NotImplementedError, RuntimeError), match=r"(dense|Sparse|sparse)"):
        facecore.coral_loss(X.to_sparse(), Y)


def test_module_constructor_errors():
    with pytest.raises(ValueError, match="reduction must be"):
        facecore.CoralLoss(reduction="avg")
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        facecore.CornLoss(num_classes=1)
    with pytest.raises(ValueError, match=r"importance_weights must have K-1 = 4 entries"):
        facecore.CoralLoss(num_classes=5, importance_weights=torch.ones(3))
