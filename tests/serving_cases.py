"""Small models following the facecore model contract, for the export / predict tests.

``forward(x)`` on the normalised batch, ``@torch.jit.export serve(x) -> Dict[str, Tensor]``,
``task`` and ``config``. Tiny convolutional trunks keep the tests fast; the
ordinal heads decode with the fused ops, as the real models do.
"""

import torch
import torch.nn.functional as F
from torch import nn

import facecore


class _Trunk(nn.Module):
    def __init__(self, in_channels: int = 3, width: int = 6):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.conv(x)))
        return F.relu(self.conv2(h)).mean(dim=(2, 3))


class TinyAge(nn.Module):
    def __init__(self, head: str = "coral", num_classes: int = 6, in_channels: int = 3):
        super().__init__()
        self.task = "age"
        self.head_type = head
        self.num_classes = num_classes
        self.config = {"head": head, "num_classes": num_classes, "in_channels": in_channels}
        self.trunk = _Trunk(in_channels)
        out = num_classes if head == "ce" else num_classes - 1
        if head == "coral":
            self.fc = nn.Linear(self.trunk.out_features, 1, bias=False)
            self.bias = nn.Parameter(torch.linspace(1.0, -1.0, num_classes - 1))
        else:
            self.fc = nn.Linear(self.trunk.out_features, out)
            self.bias = nn.Parameter(torch.zeros(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.trunk(x)) + self.bias

    @torch.jit.export
    def serve(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.forward(x)
        if self.head_type == "ce":
            probs = torch.softmax(logits, dim=1)
            cum = 1.0 - torch.cumsum(probs, dim=1)[:, :-1]
            ranks = torch.arange(self.num_classes, dtype=probs.dtype, device=probs.device)
            return {
                "label": probs.argmax(dim=1),
                "cum_probs": cum,
                "class_probs": probs,
                "expected": (probs * ranks).sum(dim=1),
            }
        p = facecore.ordinal_predict(logits, self.head_type, 0.5)
        return {
            "label": p.labels,
            "cum_probs": p.cum_probs,
            "class_probs": p.class_probs,
            "expected": p.expected,
        }


class TinyGender(nn.Module):
    def __init__(self):
        super().__init__()
        self.task = "gender"
        self.class_names = ("male", "female")
        self.config = {"attribute": "gender"}
        self.trunk = _Trunk()
        self.fc = nn.Linear(self.trunk.out_features, 1)
        self.register_buffer("temperature", torch.tensor(1.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.trunk(x)).squeeze(1)

    @torch.jit.export
    def serve(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        prob = torch.sigmoid(self.forward(x) / self.temperature)
        return {"prob": prob, "label": (prob > 0.5).long()}


class TinyEmbedder(nn.Module):
    def __init__(self, dim: int = 8):
        super().__init__()
        self.task = "embedding"
        self.config = {"embedding_dim": dim}
        self.trunk = _Trunk()
        self.fc = nn.Linear(self.trunk.out_features, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc(self.trunk(x)), dim=1)

    @torch.jit.export
    def serve(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": self.forward(x)}


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics, so eval-mode export is actually exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def make_model(kind: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if kind in ("coral", "corn", "ce"):
        model = TinyAge(kind)
    elif kind == "gender":
        model = TinyGender()
    elif kind == "embedding":
        model = TinyEmbedder()
    else:
        raise ValueError(kind)
    return randomize_bn(model, seed).eval()


MODEL_KINDS = ("coral", "corn", "ce", "gender", "embedding")
PREPROCESS = {"input_size": 32, "resize": 36, "mean": [0.5, 0.45, 0.4], "std": [0.25, 0.2, 0.3]}


def normalised(x: torch.Tensor, pre: dict = PREPROCESS) -> torch.Tensor:
    """The normalisation by hand: (x - mean) / std per channel."""
    mean = torch.tensor(pre["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(pre["std"]).view(1, -1, 1, 1)
    return (x - mean) / std
