"""Ordinal heads initialised from the training labels: with no information in the
features, every head predicts the labels' (smoothed) prior, checked against numpy
counts and scikit-learn's prior classifier; the monotone CORAL form reproduces the
plain biases; the default stays coral-pytorch's; scripting and export still work."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.dummy import DummyClassifier

from facecore import metrics
from facecore.models import AgeEstimator, CoralHead, build_ordinal_head
from facecore.models.ordinal import label_prior

K = 7
HEADS = [("ce", False), ("niu", False), ("coral", False), ("coral", True), ("corn", False)]


def _labels(seed=0, n=200):
    g = np.random.default_rng(seed)
    y = g.choice(K, size=n, p=[0.05, 0.1, 0.3, 0.25, 0.2, 0.1, 0.0])  # class 6 empty
    return torch.as_tensor(y)


def _numpy_prior(y, k, alpha):
    counts = np.bincount(np.asarray(y), minlength=k).astype(np.float64)
    return (counts + alpha) / (counts.sum() + alpha * k)


def _uninformed(model):
    """Zero the head's weights, so its output is the biases alone."""
    with torch.no_grad():
        model.head.fc.weight.zero_()
    return model.eval()


@pytest.mark.parametrize(("head", "mono"), HEADS)
@pytest.mark.parametrize("smoothing", [1.0, 0.5])
def test_untrained_model_predicts_the_label_prior(head, mono, smoothing):
    y = _labels()
    torch.manual_seed(0)
    model = AgeEstimator("small_cnn", head, K, width=4, monotone_biases=mono)
    model.init_head_from_labels(y, smoothing=smoothing)
    _uninformed(model)
    with torch.no_grad():
        pred = model.predict(torch.rand(5, 3, 32, 32))
    prior = _numpy_prior(y, K, smoothing)
    tail = prior[::-1].cumsum()[::-1][1:]  # P(y > k), k = 0..K-2
    for i in range(5):
        np.testing.assert_allclose(pred.class_probs[i].double().numpy(), prior, atol=2e-6)
        np.testing.assert_allclose(pred.cum_probs[i].double().numpy(), tail, atol=2e-6)
    # the first threshold near 1 (few in class 0), the last near 0 (class 6 empty)
    assert pred.cum_probs[0, 0] > 0.9 and pred.cum_probs[0, -1] < 0.01


@pytest.mark.parametrize(("head", "mono"), HEADS)
def test_without_smoothing_the_prior_is_the_frequencies_of_sklearn_prior_classifier(head, mono):
    g = np.random.default_rng(3)
    y = torch.as_tensor(g.integers(0, K, size=300))
    assert len(set(y.tolist())) == K
    ref = DummyClassifier(strategy="prior").fit(np.zeros((300, 1)), y.numpy())
    expected = ref.predict_proba(np.zeros((1, 1)))[0]
    np.testing.assert_allclose(label_prior(y, K, smoothing=0).numpy(), expected, rtol=1e-12)
    model = AgeEstimator("small_cnn", head, K, width=4, monotone_biases=mono)
    model.init_head_from_labels(y, smoothing=0.0)
    _uninformed(model)
    with torch.no_grad():
        pred = model.predict(torch.rand(2, 3, 32, 32))
    np.testing.assert_allclose(pred.class_probs[0].double().numpy(), expected, atol=2e-6)
    if head == "ce":  # the label is the prior's mode
        assert int(pred.labels[0]) == int(np.argmax(expected))


@given(
    counts=st.lists(st.integers(0, 40), min_size=3, max_size=12).filter(lambda c: sum(c) > 0),
    smoothing=st.sampled_from([0.0, 0.1, 1.0]),
)
def test_monotone_form_reproduces_the_plain_biases_and_stays_non_increasing(counts, smoothing):
    k = len(counts)
    y = torch.repeat_interleave(torch.arange(k), torch.tensor(counts))
    plain, mono = CoralHead(4, k), CoralHead(4, k, monotone_biases=True)
    plain.init_from_labels(y, smoothing)
    mono.init_from_labels(y, smoothing)
    b_plain, b_mono = plain.biases().detach(), mono.biases().detach()
    assert torch.isfinite(b_mono).all() and torch.isfinite(b_plain).all()
    assert (b_mono[1:] <= b_mono[:-1]).all()
    # exact wherever the prior is strictly decreasing (always with smoothing > 0)
    tol = 1e-4 if smoothing > 0 else 1e-4 + 1e-6 * k
    torch.testing.assert_close(b_mono, b_plain, atol=tol, rtol=1e-5)


def test_corn_conditional_logits_by_hand():
    y = torch.tensor([0, 1, 1, 2, 2, 2, 3, 3, 3, 3])  # counts 1, 2, 3, 4
    head = build_ordinal_head("corn", 3, 4)
    head.init_from_labels(y, smoothing=0.0)
    # P(y>0|y>=0) = 9/10, P(y>1|y>=1) = 7/9, P(y>2|y>=2) = 4/7
    expected = torch.logit(torch.tensor([9 / 10, 7 / 9, 4 / 7], dtype=torch.float64)).float()
    torch.testing.assert_close(head.fc.bias.detach(), expected)
    ce = build_ordinal_head("ce", 3, 4)
    ce.init_from_labels(y, smoothing=0.0)
    torch.testing.assert_close(ce.fc.bias.detach(), torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4])))


def test_init_keeps_weights_and_the_default_stays_coral_pytorch():
    torch.manual_seed(0)
    model = AgeEstimator("small_cnn", "coral", K, width=4)
    default = model.head.biases().detach().clone()
    torch.testing.assert_close(default, torch.arange(K - 1, 0, -1).float() / (K - 1))
    w = model.head.fc.weight.detach().clone()
    model.init_head_from_labels(_labels())
    assert not torch.equal(model.head.biases().detach(), default)
    torch.testing.assert_close(model.head.fc.weight.detach(), w)


def test_init_makes_predictions_rank_consistent_for_the_monotone_head():
    model = AgeEstimator("small_cnn", "coral", K, width=4, monotone_biases=True)
    model.init_head_from_labels(_labels(), smoothing=0.0)  # empty class 6: zero-width step
    with torch.no_grad():
        cum = model.eval().predict(torch.rand(8, 3, 32, 32)).cum_probs
    assert metrics.rank_inconsistency(cum, tol=0.0).counts.sum() == 0


def test_errors_name_the_argument():
    model = AgeEstimator("small_cnn", "coral", K, width=4)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 6\] for num_classes=7, got labels\[1\] = 7"):
        model.init_head_from_labels(torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="labels must be a 1-D integer tensor"):
        model.init_head_from_labels(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="labels is empty"):
        model.init_head_from_labels(torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="smoothing must be a finite number >= 0"):
        model.init_head_from_labels(torch.tensor([0, 1]), smoothing=-1)


@pytest.mark.parametrize(("head", "mono"), HEADS)
def test_scripting_and_export_are_unaffected(head, mono):
    torch.manual_seed(0)
    model = AgeEstimator("small_cnn", head, K, width=4, monotone_biases=mono)
    model.init_head_from_labels(_labels())
    model.eval()
    x = torch.rand(3, 3, 32, 32)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        for key, value in model.serve(x).items():
            torch.testing.assert_close(scripted.serve(x)[key], value)
        batch = torch.export.Dim("batch", min=1, max=64)
        ep = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
        assert ep.module()(torch.rand(5, 3, 32, 32)).shape[0] == 5
        torch.testing.assert_close(ep.module()(x), model(x))


def test_ce_cumulative_probabilities_never_round_above_one():
    # suffix sums of a confident softmax used to round to 1 + 1 ulp, which the metrics
    # (rank_inconsistency in every evaluation) reject as not a probability
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2000, 37, generator=g) * 10
    logits[:, 0] -= 50
    probs = torch.softmax(logits, 1)
    raw = torch.flip(torch.cumsum(torch.flip(probs[:, 1:], [1]), 1), [1])
    assert (raw > 1).any()  # the case exists in float32
    cum = build_ordinal_head("ce", 3, 37).decode(logits).cum_probs
    assert cum.max() <= 1.0 and cum.min() >= 0.0
    metrics.rank_inconsistency(cum)  # accepted
