r"""Convolutional backbones for face crops of 64-224 px (from scratch, or fine-tuned from
local torchvision-layout weights with :mod:`facecore.models.pretrained`).

* :class:`ResNet` with basic blocks (He et al. 2016), the architecture of the
  CORAL paper's experiments (Cao, Mirjalili & Raschka 2020, ResNet-34 on
  120 px crops), with an **adaptive** average pool instead of the paper's fixed
  ``AvgPool2d(7)`` so any input from 64 to 224 px (and beyond) works. The base
  width (channels of the first stage, 64 in the paper) is a parameter; stage
  ``i`` has ``width * 2**i`` channels, so ``out_features = 8 * width``.
  Depth: ``resnet10`` = (1, 1, 1, 1), ``resnet18`` = (2, 2, 2, 2),
  ``resnet34`` = (3, 4, 6, 3) blocks, or any ``layers`` tuple.
  ``resnet50`` = (3, 4, 6, 3) and ``resnet101`` = (3, 4, 23, 3) use
  :class:`Bottleneck` blocks (1x1 -> 3x3 with the stride -> 1x1 with 4x the
  channels, torchvision's "ResNet v1.5"), so ``out_features = 32 * width``.
  The parameter names follow torchvision's ResNet (``conv1``, ``bn1``,
  ``layer1.0.conv1``, ``layer2.0.downsample.0`` ...), so a torchvision
  ResNet-18/34/50/101 ``state_dict`` (without ``fc.*``) loads into ``width=64``
  (:func:`facecore.models.pretrained.load_pretrained`).
* :class:`SmallCNN`: a plain conv-BN-ReLU stack for CPU demos and tests; a
  stride-2 stem then ``depth - 1`` stages of (max-pool 2, conv 3x3), channels
  ``width * 2**i``; ``out_features = width * 2**(depth-1)``.

Every backbone maps ``[N, C, H, W]`` to features ``[N, out_features]``, has
``out_features`` and a JSON-able ``config``, and scripts / exports.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = [
    "BACKBONES",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "SmallCNN",
    "build_backbone",
    "resolve_backbone",
]

RESNET_LAYERS: dict[str, tuple[int, ...]] = {
    "resnet10": (1, 1, 1, 1),
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
}
# block type of each named ResNet (the others use basic blocks)
RESNET_BLOCK: dict[str, str] = {"resnet50": "bottleneck", "resnet101": "bottleneck"}
RESNET_BLOCKS = ("basic", "bottleneck")
DEFAULT_WIDTH = {
    "resnet10": 64, "resnet18": 64, "resnet34": 64, "resnet50": 64, "resnet101": 64, "small_cnn": 16,
}
BACKBONES = (*RESNET_LAYERS, "small_cnn")


def _check_positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )
        else:
            self.downsample = nn.Sequential()  # identity, no parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 (``4 * channels``) convolutions with batch norm and an
    identity (or 1x1 projection) shortcut; torchvision's layout and stride placement."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or in_channels != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out, 1, stride, bias=False), nn.BatchNorm2d(out)
            )
        else:
            self.downsample = nn.Sequential()  # identity, no parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


def _resnet_name(layers: tuple[int, ...], block: str) -> str:
    return next(
        (
            k
            for k, v in RESNET_LAYERS.items()
            if v == layers and RESNET_BLOCK.get(k, "basic") == block
        ),
        "resnet",
    )


class ResNet(nn.Module):
    """ResNet with basic or bottleneck blocks; see the module docstring."""

    def __init__(
        self,
        layers: tuple[int, ...] | list[int] = (2, 2, 2, 2),
        *,
        width: int = 64,
        in_channels: int = 3,
        name: str | None = None,
        block: str = "basic",
    ) -> None:
        super().__init__()
        layers = tuple(int(n) for n in layers)
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers must be 4 positive block counts, got {layers}")
        if block not in RESNET_BLOCKS:
            raise ValueError(f"block must be one of {list(RESNET_BLOCKS)}, got {block!r}")
        _check_positive("width", width)
        _check_positive("in_channels", in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels = width
        stages = []
        for i, blocks in enumerate(layers):
            planes = width * 2**i
            stride = 1 if i == 0 else 2
            if block == "bottleneck":
                out = planes * Bottleneck.expansion
                stage: list[nn.Module] = [Bottleneck(channels, planes, stride)]
                stage += [Bottleneck(out, planes) for _ in range(blocks - 1)]
            else:
                out = planes
                stage = [BasicBlock(channels, out, stride)]
                stage += [BasicBlock(out, out) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            channels = out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_features = channels
        if name is None:
            name = _resnet_name(layers, block)
        self.config: dict[str, Any] = {
            "name": name,
            "width": width,
            "in_channels": in_channels,
            "layers": list(layers),
        }
        if block != "basic":  # basic-block configs stay as they were
            self.config["block"] = block
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


class SmallCNN(nn.Module):
    """Small conv-BN-ReLU network for CPU demos; see the module docstring."""

    def __init__(self, *, width: int = 16, depth: int = 4, in_channels: int = 3) -> None:
        super().__init__()
        _check_positive("width", width)
        _check_positive("depth", depth)
        _check_positive("in_channels", in_channels)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 3, 2, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        channels = width
        for i in range(1, depth):
            out = width * 2**i
            layers += [
                nn.MaxPool2d(2),
                nn.Conv2d(channels, out, 3, 1, 1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_features = channels
        self.config = {
            "name": "small_cnn",
            "width": width,
            "in_channels": in_channels,
            "depth": depth,
        }
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.features(x)), 1)


def _init_weights(module: nn.Module) -> None:
    """He (fan-out) init for convolutions, BN weight 1 / bias 0 (as the CORAL code)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_backbone(
    name: str,
    *,
    width: int | None = None,
    in_channels: int = 3,
    depth: int | None = None,
    layers: tuple[int, ...] | list[int] | None = None,
    block: str | None = None,
) -> nn.Module:
    """Build a backbone by name: ``"resnet10"``, ``"resnet18"``, ``"resnet34"``,
    ``"resnet50"``, ``"resnet101"`` or ``"small_cnn"``.

    Args:
        name: backbone name (see :data:`BACKBONES`), or ``"resnet"`` with ``layers``.
        width: base channels (default 64 for ResNets as in the CORAL paper, 16 for
            ``small_cnn``).
        in_channels: 3 for RGB, 1 for grayscale.
        depth: ``small_cnn`` only: number of conv stages (default 4).
        layers: ResNets only: blocks per stage, overriding the named depth.
        block: ResNets only: ``"basic"`` or ``"bottleneck"`` (default: the named
            network's, basic for ``"resnet"``).

    The returned module has ``out_features`` and ``config`` (``build_backbone(**config)``
    rebuilds it).
    """
    if name == "resnet" and layers is not None:
        b = "basic" if block is None else block
        name = _resnet_name(tuple(int(n) for n in layers), b)
        w = 64 if width is None else width
        return ResNet(layers, width=w, in_channels=in_channels, name=name, block=b)
    if name not in BACKBONES:
        raise ValueError(
            f"backbone name must be one of {list(BACKBONES)} (or 'resnet' with layers=), "
            f"got {name!r}"
        )
    w = DEFAULT_WIDTH[name] if width is None else width
    if name == "small_cnn":
        for arg, value in (("layers", layers), ("block", block)):
            if value is not None:
                raise ValueError(f"{arg} applies to ResNet backbones only, not 'small_cnn'")
        return SmallCNN(width=w, depth=4 if depth is None else depth, in_channels=in_channels)
    if depth is not None:
        raise ValueError(
            f"depth applies to 'small_cnn' only; for {name!r} choose the name or pass layers="
        )
    return ResNet(
        RESNET_LAYERS[name] if layers is None else layers,
        width=w,
        in_channels=in_channels,
        name=name,
        block=RESNET_BLOCK.get(name, "basic") if block is None else block,
    )


def resolve_backbone(
    backbone: str | nn.Module,
    *,
    width: int | None = None,
    in_channels: int = 3,
    options: dict[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any] | None, int]:
    """``(module, config or None, out_features)`` for a backbone name or a user module.

    A user ``nn.Module`` must map images to ``[N, F]`` and have an int
    ``out_features``; its ``config`` (if any, as our backbones have) is kept so
    :func:`facecore.models.build_model` can rebuild it, otherwise the model config
    records ``backbone: None`` and rebuilding needs the user's module.
    """
    if isinstance(backbone, str):
        module = build_backbone(backbone, width=width, in_channels=in_channels, **(options or {}))
    elif isinstance(backbone, nn.Module):
        if width is not None or options:
            raise ValueError("width / backbone options apply to a backbone given by name only")
        module = backbone
    else:
        raise TypeError(
            f"backbone must be a name in {list(BACKBONES)} or an nn.Module, "
            f"got {type(backbone).__name__}"
        )
    out = getattr(module, "out_features", None)
    if isinstance(out, bool) or not isinstance(out, int) or out < 1:
        raise ValueError(
            "a backbone module must have an int attribute out_features (the feature size), "
            f"got {out!r}"
        )
    config = getattr(module, "config", None)
    config = dict(config) if isinstance(config, dict) and "name" in config else None
    return module, config, out
