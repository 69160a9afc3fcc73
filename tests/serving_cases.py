"""Models for the export / predict tests: facecore's own, small and fast.

``small_cnn`` backbones (width 4, depth 3) keep the tests quick; BatchNorm gets
non-trivial running statistics and the gender classifier a non-unit temperature
so that eval-mode export and calibration are actually exercised.
"""

import torch
from torch import nn

from facecore.models import AgeEstimator, FaceEmbedder, GenderClassifier

BACKBONE = {"width": 4, "backbone_options": {"depth": 3}}
MODEL_KINDS = ("coral", "corn", "ce", "niu", "gender", "embedding")
AGE_KINDS = ("coral", "corn", "ce", "niu")
PREPROCESS = {"input_size": 32, "resize": 36, "mean": [0.5, 0.45, 0.4], "std": [0.25, 0.2, 0.3]}


def randomize_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        if hasattr(model, "temperature"):
            model.temperature.fill_(1.7)
    return model


def make_model(kind: str, seed: int = 0, in_channels: int = 3, num_classes: int = 6) -> nn.Module:
    torch.manual_seed(seed)
    common = dict(BACKBONE, in_channels=in_channels)
    if kind in AGE_KINDS:
        model = AgeEstimator("small_cnn", head=kind, num_classes=num_classes, **common)
    elif kind == "gender":
        model = GenderClassifier("small_cnn", **common)
    elif kind == "embedding":
        model = FaceEmbedder("small_cnn", embedding_dim=8, **common)
    else:
        raise ValueError(kind)
    return randomize_stats(model, seed).eval()


def normalised(x: torch.Tensor, pre: dict = PREPROCESS) -> torch.Tensor:
    """The normalisation by hand: (x - mean) / std per channel."""
    mean = torch.tensor(pre["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(pre["std"]).view(1, -1, 1, 1)
    return (x - mean) / std
