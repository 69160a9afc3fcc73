"""Ordinal heads and AgeEstimator: losses and decoders against coral-pytorch and
hand-written references, the fused ops, monotone CORAL biases, a short training
run that beats the median baseline, and errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from coral_pytorch.dataset import corn_label_from_logits, levels_from_labelbatch, proba_to_label
from coral_pytorch.layers import CoralLayer
from coral_pytorch.losses import coral_loss as cp_coral_loss
from coral_pytorch.losses import corn_loss as cp_corn_loss

import facecore
from facecore import metrics
from facecore.models import (
    AgeEstimator,
    CEHead,
    CoralHead,
    build_ordinal_head,
    importance_weights_from_labels,
)

K = 6


def _features(n=12, d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, K, (n,), generator=g)


@pytest.mark.parametrize(("kind", "width"), [("ce", K), ("niu", K - 1), ("coral", K - 1), ("corn", K - 1)])
def test_head_logit_shapes(kind, width):
    x, _ = _features()
    head = build_ordinal_head(kind, 10, K)
    assert head(x).shape == (12, width)
    assert head.num_classes == K
    assert type(head).__name__ == {"ce": "CEHead", "niu": "NiuHead", "coral": "CoralHead",
                                   "corn": "CornHead"}[kind]


def test_ce_decoder_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 3.0]])
    p = torch.softmax(logits, 1)
    out = CEHead(4, 3).decode(logits)
    assert out.labels.tolist() == [0, 2]
    torch.testing.assert_close(out.class_probs, p)
    torch.testing.assert_close(out.cum_probs, 1 - torch.cumsum(p, 1)[:, :-1])
    torch.testing.assert_close(out.expected, p[:, 1] + 2 * p[:, 2])
    assert isinstance(out, facecore.OrdinalPrediction)


def test_coral_and_niu_losses_match_coral_pytorch_and_bce():
    x, y = _features()
    w = importance_weights_from_labels(y, K)
    levels = levels_from_labelbatch(y, K).float()
    for kind in ("coral", "niu"):
        head = build_ordinal_head(kind, 10, K)
        logits = head(x)
        torch.testing.assert_close(head.loss(logits, y), cp_coral_loss(logits, levels))
        torch.testing.assert_close(head.loss(logits, y, w), cp_coral_loss(logits, levels, w))
        # Niu et al.: sum over tasks of weighted BCE, mean over the batch
        bce = F.binary_cross_entropy_with_logits(logits, levels, reduction="none")
        torch.testing.assert_close(head.loss(logits, y, w), (bce * w).sum(1).mean())


def test_corn_loss_matches_coral_pytorch_and_the_fused_op():
    x, y = _features()
    head = build_ordinal_head("corn", 10, K)
    logits = head(x)
    torch.testing.assert_close(head.loss(logits, y), cp_corn_loss(logits, y, K))
    w = torch.linspace(1.0, 0.3, K - 1)
    torch.testing.assert_close(head.loss(logits, y, w), facecore.corn_loss(logits, y, w))


def test_ce_loss_is_cross_entropy_and_rejects_importance_weights():
    x, y = _features()
    head = build_ordinal_head("ce", 10, K)
    logits = head(x)
    torch.testing.assert_close(head.loss(logits, y), F.cross_entropy(logits, y))
    with pytest.raises(ValueError, match="importance_weights apply to the binary-task heads"):
        head.loss(logits, y, torch.ones(K - 1))


def test_decoders_agree_with_the_ops_and_coral_pytorch():
    x, _ = _features(n=40)
    for kind, op_head in (("niu", "coral"), ("coral", "coral"), ("corn", "corn")):
        head = build_ordinal_head(kind, 10, K)
        with torch.no_grad():
            logits = head(x) * 3
        out = head.decode(logits)
        ref = facecore.ordinal_predict(logits, op_head)
        for a, b in zip(out, ref, strict=True):
            torch.testing.assert_close(a, b)
        if op_head == "coral":
            assert out.labels.tolist() == proba_to_label(torch.sigmoid(logits)).tolist()
        else:
            assert out.labels.tolist() == corn_label_from_logits(logits).tolist()
        torch.testing.assert_close(out.class_probs.sum(1), torch.ones(40))


def test_coral_head_initial_biases_as_coral_pytorch():
    torch.manual_seed(0)
    ref = CoralLayer(10, K)
    for mono in (False, True):
        head = CoralHead(10, K, monotone_biases=mono)
        torch.testing.assert_close(head.biases().detach(), ref.coral_bias.detach())


def test_monotone_biases_formula_and_rank_consistency_for_any_parameters():
    head = CoralHead(10, K, monotone_biases=True)
    g = torch.Generator().manual_seed(1)
    for scale in (0.1, 10.0, 100.0):
        with torch.no_grad():
            head.bias0.copy_(torch.randn(1, generator=g) * scale)
            head.bias_deltas.copy_(torch.randn(K - 2, generator=g) * scale)
            head.fc.weight.copy_(torch.randn(1, 10, generator=g) * scale)
        b = head.biases().detach()
        expected = torch.cat(
            [head.bias0, head.bias0 - torch.cumsum(F.softplus(head.bias_deltas), 0)]
        ).detach()
        torch.testing.assert_close(b, expected)
        assert (b[1:] <= b[:-1]).all()
        x, _ = _features(n=50, seed=int(scale))
        with torch.no_grad():
            cum = head.decode(head(x)).cum_probs
        assert metrics.rank_inconsistency(cum, tol=0.0).counts.sum() == 0
    # unconstrained biases can be rank inconsistent
    plain = CoralHead(10, K)
    with torch.no_grad():
        plain.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 2.0, -2.0]))
        cum = plain.decode(plain(_features()[0])).cum_probs
    assert metrics.rank_inconsistency(cum).counts.sum() > 0
    assert set(dict(head.named_parameters())) == {"fc.weight", "bias0", "bias_deltas"}


def test_monotone_biases_receive_gradients():
    head = CoralHead(10, K, monotone_biases=True)
    x, y = _features()
    head.loss(head(x), y).backward()
    assert head.bias0.grad is not None and head.bias_deltas.grad.abs().sum() > 0


@pytest.mark.parametrize("head", ["ce", "niu", "coral", "corn"])
def test_age_estimator_predict_serve_decode_agree(head):
    torch.manual_seed(0)
    model = AgeEstimator("small_cnn", head, K, width=4).eval()
    x = torch.rand(3, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (3, K if head == "ce" else K - 1)
    pred = model.predict(x)
    assert isinstance(pred, facecore.OrdinalPrediction)
    for a, b in zip(pred, model.decode(logits), strict=True):
        torch.testing.assert_close(a, b)
    out = model.serve(x)
    assert set(out) == {"label", "cum_probs", "class_probs", "expected"}
    assert out["label"].dtype == torch.int64
    assert out["cum_probs"].shape == (3, K - 1) and out["class_probs"].shape == (3, K)
    torch.testing.assert_close(out["expected"], pred.expected)
    assert model.task == "age" and model.config["head"] == head and model.num_classes == K
    assert model.config["head"] == head and model.config["backbone"]["name"] == "small_cnn"
    y = torch.tensor([0, 2, 5])
    torch.testing.assert_close(model.loss(logits, y), model.head.loss(logits, y))


def test_age_estimator_errors():
    with pytest.raises(ValueError, match="num_classes is required"):
        AgeEstimator("small_cnn", "coral")
    with pytest.raises(ValueError, match="num_classes must be an int >= 2, got 1"):
        AgeEstimator("small_cnn", "coral", 1)
    with pytest.raises(ValueError, match=r"head must be one of \['ce', 'niu', 'coral', 'corn'\]"):
        AgeEstimator("small_cnn", "ordinal", 5)
    with pytest.raises(ValueError, match="monotone_biases applies to the 'coral' head only"):
        AgeEstimator("small_cnn", "corn", 5, monotone_biases=True)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        AgeEstimator("small_cnn", "coral", 5, dropout=1.0)
    with pytest.raises(TypeError, match="backbone must be a name"):
        AgeEstimator(3, "coral", 5)
    with pytest.raises(ValueError, match="must have an int attribute out_features"):
        AgeEstimator(torch.nn.Flatten(), "coral", 5)
    model = AgeEstimator("small_cnn", "coral", 5, width=4)
    with pytest.raises(ValueError, match="labels"):
        model.loss(torch.zeros(2, 4), torch.tensor([0, 7]))


def test_user_backbone_module():
    class Tiny(torch.nn.Module):
        out_features = 12

        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(12))

        def forward(self, x):
            return self.net(x)

    model = AgeEstimator(Tiny(), "corn", 4)
    assert model(torch.rand(2, 3, 8, 8)).shape == (2, 3)
    assert model.config["backbone"] is None


def _ordinal_images(n, k, size, seed):
    """A learnable ordinal task: brightness rises with the label, plus noise and a
    random texture that carries no label information."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    level = (y.float() + 0.5) / k
    texture = torch.rand(n, 1, size // 4, size // 4, generator=g).repeat_interleave(4, 2)
    texture = texture.repeat_interleave(4, 3)
    x = 0.6 * level.view(n, 1, 1, 1) + 0.25 * texture + 0.08 * torch.randn(n, 3, size, size, generator=g)
    return x.clamp(0, 1), y


@pytest.mark.parametrize("head", ["coral", "corn"])
def test_short_training_beats_the_median_baseline(head):
    torch.manual_seed(0)
    k = 6
    x_train, y_train = _ordinal_images(512, k, 32, seed=0)
    x_test, y_test = _ordinal_images(256, k, 32, seed=1)
    model = AgeEstimator("small_cnn", head, k, width=8, monotone_biases=head == "coral")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    w = importance_weights_from_labels(y_train, k)
    g = torch.Generator().manual_seed(2)
    for _ in range(150):
        idx = torch.randint(0, 512, (32,), generator=g)
        loss = model.loss(model(x_train[idx]), y_train[idx], w if head == "coral" else None)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model.predict(x_test)
    baseline = metrics.median_baseline_mae(y_train, y_test)
    assert math.isfinite(loss.item())
    # measured: CORAL about 0.47 (labels) / 0.24 (expected), CORN about 0.2; baseline 1.5
    assert metrics.mae(pred.labels, y_test) < 0.5 * baseline
    assert metrics.mae(pred.expected, y_test) < 0.5 * baseline
