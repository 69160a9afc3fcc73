"""Bad input to the matching ops: one clear error per case, naming the argument.

Each case runs through the eager kernel and, where the check needs no data,
through the fake kernel too (torch.compile / torch.export trace with it)."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import facecore.ops.matching as M
from facecore.losses import ContrastiveLoss, TripletMarginLoss
from facecore.losses.distances import LpDistance
from facecore.losses.miners import TripletMarginMiner

X = torch.randn(4, 3)
D = torch.rand(4, 4)
Y = torch.tensor([0, 0, 1, 1])

DIST_CASES = [
    # (x, y, metric, error, message regex)
    (torch.randn(4), None, "euclidean", ValueError, r"x must be a 2-D tensor of shape \[B, D\], got a 1-D"),
    (X, torch.randn(2, 5), "euclidean", ValueError, r"x and y must have the same embedding dimension D"),
    (X, torch.randn(2, 3, 1), "euclidean", ValueError, r"y must be a 2-D tensor of shape \[M, D\]"),
    (X.long(), None, "euclidean", ValueError, r"x must be float32, float64, float16 or bfloat16, got Long"),
    (X, X.double(), "euclidean", ValueError, r"x and y must have the same dtype, got Float and Double"),
    (X, None, "manhattan", ValueError, r"metric must be 'euclidean', 'sqeuclidean' or 'cosine', got 'manhattan'"),
]


@pytest.mark.parametrize("case", DIST_CASES, ids=lambda c: c[-1][:40])
def test_distance_argument_errors(case):
    x, y, metric, err, msg = case
    with pytest.raises(err, match=msg):
        M.pairwise_distance(x, y, metric)
    with FakeTensorMode(allow_non_fake_inputs=True), pytest.raises(err, match=msg):
        M.pairwise_distance(x, y, metric)


TRIPLET_CASES = [
    # (dist, labels, kwargs, message regex)
    (torch.rand(4, 3), Y, {}, r"dist must be the square \[B, B\] distance matrix .* got shape \[4, 3\]"),
    (torch.rand(4), Y, {}, r"dist must be a 2-D tensor of shape \[B, B\]"),
    (D, Y[:3], {}, r"labels has 3 entries but dist is \[4, 4\]; labels must have B = 4 entries"),
    (D, Y.float(), {}, r"labels must be an integer tensor \(int64 or int32\) of identity ids, got dtype Float"),
    (D, Y.reshape(2, 2), {}, r"labels must be a 1-D tensor of shape \[B\]"),
    (D.long(), Y, {}, r"dist must be float32, float64, float16 or bfloat16, got Long"),
    (D, Y, {"mining": "hardest"}, r"mining must be 'none', 'all', 'hard', 'semihard', 'easy' or 'batch_hard', got 'hardest'"),
    (D, Y, {"reduction": "none"}, r"reduction must be 'mean_nonzero', 'mean' or 'sum', got 'none'"),
    (D, Y, {"margin": float("nan")}, r"margin must be a finite number, got nan"),
    (D, Y, {"mining_margin": float("inf")}, r"mining_margin must be a finite number, got inf"),
]


@pytest.mark.parametrize("case", TRIPLET_CASES, ids=lambda c: c[-1][:40])
def test_triplet_argument_errors(case):
    dist, labels, kwargs, msg = case
    with pytest.raises(ValueError, match=msg):
        M.triplet_margin_loss_from_dist(dist, labels, **kwargs)
    if dist.is_floating_point():  # the fused (autograd) path checks too
        with pytest.raises(ValueError, match=msg):
            M.triplet_margin_loss_from_dist(dist.clone().requires_grad_(True), labels, **kwargs)
    with FakeTensorMode(allow_non_fake_inputs=True), pytest.raises(ValueError, match=msg):
        M.triplet_margin_loss_from_dist(dist, labels, **kwargs)


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"form": "squared"}, r"form must be 'double_margin' or 'hadsell', got 'squared'"),
        ({"reduction": "avg"}, r"reduction must be 'mean_nonzero', 'mean' or 'sum', got 'avg'"),
        ({"neg_margin": float("nan")}, r"neg_margin must be a finite number"),
    ],
)
def test_contrastive_argument_errors(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        M.contrastive_loss_from_dist(D, Y, **kwargs)
    with FakeTensorMode(allow_non_fake_inputs=True), pytest.raises(ValueError, match=msg):
        M.contrastive_loss_from_dist(D, Y, **kwargs)


def test_device_mismatch_is_reported():
    # No GPU here: a meta tensor stands in for "another device"; the dispatcher
    # runs the fake kernel, which applies the same device check.
    with pytest.raises(RuntimeError, match=r"labels is on meta but dist is on cpu"):
        M.triplet_margin_loss_from_dist(D, Y.to("meta"))
    with pytest.raises(RuntimeError, match=r"y is on meta but x is on cpu"):
        M.pairwise_distance(X, X.to("meta"))


def test_sparse_input_is_rejected():
    with pytest.raises((ValueError, NotImplementedError, RuntimeError), match=r"(dense|Sparse|sparse)"):
        M.pairwise_distance(X.to_sparse())


def test_module_constructor_errors():
    with pytest.raises(ValueError, match=r"LpDistance: power must be 1 \(Euclidean\) or 2"):
        LpDistance(power=3)
    with pytest.raises(ValueError, match=r"only the L2 norm is supported, p must be 2, got 1"):
        LpDistance(p=1)
    with pytest.raises(ValueError, match=r"type_of_triplets must be 'all', 'hard', 'semihard' or 'easy'"):
        TripletMarginMiner(0.2, "hardest")
    with pytest.raises(ValueError, match="reduction must be"):
        TripletMarginLoss(reduction="none")
    with pytest.raises(TypeError, match="miner must be a facecore.losses.miners miner"):
        TripletMarginLoss(miner="semihard")
    with pytest.raises(TypeError, match="distance must be a facecore distance"):
        TripletMarginLoss(distance=torch.nn.Identity())
    with pytest.raises(ValueError, match="form must be"):
        ContrastiveLoss(form="squared")
