r"""Fine-tuning from weights already on disk: torchvision-layout ResNet state dicts or
facecore checkpoints, with a report of what loaded, and frozen stages.

facecore's ResNets use torchvision's parameter names (``conv1.weight``, ``bn1.*``,
``layer1.0.conv1.weight``, ``layer2.0.downsample.0.weight`` ...), so an ImageNet
``resnet18/34/50/101`` state dict a user already has loads into the backbone of the same
name at ``width=64`` without renaming. Nothing is downloaded.

:func:`load_pretrained` accepts

* a **torchvision-layout** state dict (a path to a ``torch.save`` file, loaded with
  ``weights_only=True``, or the dict itself): its keys are the backbone's; ``fc.*`` (the
  ImageNet classifier) is ignored and reported as such;
* a **facecore checkpoint** (:func:`facecore.models.model_checkpoint`, or a training
  ``checkpoint.pt`` holding one under ``"model"``) or a model's ``state_dict``: keys
  ``backbone.*`` go to the backbone, and, when the target is a whole model whose head
  has the same shapes, ``head.*`` too;

into a whole model (anything with a ``.backbone``: :class:`AgeEstimator`,
:class:`GenderClassifier`, :class:`FaceEmbedder` ...) or a bare backbone. ``module.`` /
``_orig_mod.`` prefixes (DDP, ``torch.compile``) are stripped. Tensors whose shapes differ
(e.g. ``conv1`` of a greyscale model) are **not** loaded and are reported; with
``strict=True`` any missing backbone key, unexpected key or shape mismatch is an error
(nothing is changed then). A source of which no key fits is always an error.

:func:`freeze_stages` stops training the named stages (``"stem"`` = ``conv1`` + ``bn1``,
``"layer1"`` .. ``"layer4"``): their parameters get ``requires_grad=False`` and their
batch-norm layers become :class:`FrozenBatchNorm2d` (running statistics used and kept
also in ``train()``), with the same state-dict keys, so checkpoints, scripting and
export are unchanged.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "STAGES",
    "FrozenBatchNorm2d",
    "PretrainedReport",
    "freeze_stages",
    "load_pretrained",
]

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")
_STAGE_PREFIXES = {
    "stem": ("conv1.", "bn1."),
    "layer1": ("layer1.",),
    "layer2": ("layer2.",),
    "layer3": ("layer3.",),
    "layer4": ("layer4.",),
}
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class PretrainedReport:
    """What :func:`load_pretrained` did. Key names are the target's (``backbone.`` prefixed
    when loading into a whole model)."""

    source: str
    kind: str  # "torchvision" | "facecore"
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # target backbone keys not in the source
    unexpected: list[str] = field(default_factory=list)  # source keys with no target
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # fc.* of a torchvision dict
    not_in_source: list[str] = field(default_factory=list)  # the head (trained from scratch)

    @property
    def ok(self) -> bool:
        """Every backbone tensor loaded and nothing unexpected or mismatched."""
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        """One line: counts, then the first few names of each problem."""

        def first(names: list[str]) -> str:
            return ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")

        parts = [f"loaded {len(self.loaded)} tensors from {self.source} ({self.kind})"]
        if self.ignored:
            parts.append(f"ignored {len(self.ignored)} ({first(self.ignored)})")
        if self.not_in_source:
            parts.append(f"{len(self.not_in_source)} head tensors keep their initialisation")
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({first(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({first(self.unexpected)})")
        if self.mismatched:
            shown = [f"{k} {tuple(a)} vs {tuple(b)}" for k, a, b in self.mismatched]
            parts.append(f"{len(self.mismatched)} shape mismatches, not loaded ({first(shown)})")
        return "; ".join(parts)

    def __str__(self) -> str:
        return self.summary()


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def _read(source: Any) -> tuple[dict[str, torch.Tensor], str]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights file {str(path)!r} does not exist")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001  (pickle / zip errors of many kinds)
            raise ValueError(
                f"pretrained weights {str(path)!r} could not be read with torch.load("
                f"weights_only=True): {type(e).__name__}: {e}"
            ) from None
        name = str(path)
    else:
        obj, name = source, f"a {type(source).__name__}"
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping) and "state_dict" in obj["model"]:
        obj = obj["model"]  # a training checkpoint.pt
    if isinstance(obj, Mapping) and obj.get("format") == "facecore.model":
        obj = obj["state_dict"]
    elif isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]  # {"state_dict": ...} as many training scripts save
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(
            f"pretrained weights {name} must be a state dict (name -> tensor), a facecore "
            "checkpoint or a training checkpoint.pt"
        )
    return {_strip(str(k)): v for k, v in obj.items()}, name


def load_pretrained(
    model: nn.Module,
    source: str | os.PathLike | Mapping[str, torch.Tensor],
    *,
    strict: bool = False,
    freeze: Iterable[str] = (),
    verbose: bool = True,
) -> PretrainedReport:
    """Load pretrained weights into ``model`` (a model with ``.backbone`` or a backbone);
    see the module docstring. ``freeze``: stages for :func:`freeze_stages` after loading.
    ``verbose``: warn with :meth:`PretrainedReport.summary` when anything did not load
    (missing, unexpected, mismatched). Returns the :class:`PretrainedReport`."""
    state, name = _read(source)
    target = model.state_dict()
    backbone = getattr(model, "backbone", None)
    whole = isinstance(backbone, nn.Module)
    prefix = "backbone." if whole else ""
    facecore_layout = any(k.startswith("backbone.") for k in state)
    report = PretrainedReport(source=name, kind="facecore" if facecore_layout else "torchvision")
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if facecore_layout:
            if key.startswith("backbone."):
                dst = prefix + key[len("backbone.") :]
            elif whole:
                dst = key  # head.*, dropout ... of a whole model
            else:
                report.ignored.append(key)
                continue
        else:
            if key.startswith("fc."):
                report.ignored.append(key)
                continue
            dst = prefix + key
        if dst not in target:
            report.unexpected.append(dst)
            continue
        if tuple(target[dst].shape) != tuple(value.shape):
            report.mismatched.append((dst, tuple(value.shape), tuple(target[dst].shape)))
            continue
        mapped[dst] = value
    for key in target:
        if key in mapped or any(key == m[0] for m in report.mismatched):
            continue
        if key.startswith(prefix) or not whole:
            report.missing.append(key)
        else:
            report.not_in_source.append(key)
    if not mapped:
        raise ValueError(
            f"no tensor of the pretrained weights {name} fits the model ({report.summary()}); "
            "is it the right architecture (resnet18/34/50/101 at width 64)?"
        )
    if strict and not report.ok:
        raise ValueError(f"load_pretrained(strict=True): {report.summary()}")
    with torch.no_grad():
        for key, value in mapped.items():
            target[key].copy_(value)
    report.loaded = sorted(mapped)
    if verbose and not report.ok:
        warnings.warn(f"load_pretrained: {report.summary()}", stacklevel=2)
    freeze = tuple(freeze)
    if freeze:
        freeze_stages(model, freeze)
    return report


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """Batch norm that always normalises with its running statistics and never updates
    them (in ``train()`` too); same parameters, buffers and state-dict keys as
    :class:`torch.nn.BatchNorm2d`, so checkpoints load either way."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d) -> FrozenBatchNorm2d:
        out = cls(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                  track_running_stats=bn.track_running_stats)
        ref = bn.running_mean if bn.running_mean is not None else bn.weight
        if ref is not None:
            out = out.to(device=ref.device, dtype=ref.dtype)
        out.load_state_dict(bn.state_dict())
        for p in out.parameters():
            p.requires_grad_(False)
        return out.train(bn.training)


def _resnet_of(model: nn.Module) -> nn.Module:
    backbone = getattr(model, "backbone", model)
    if not all(hasattr(backbone, a) for a in ("conv1", "bn1", "layer1", "layer4")):
        raise ValueError(
            f"freeze applies to ResNet backbones (conv1, bn1, layer1..layer4), "
            f"got {type(backbone).__name__}"
        )
    return backbone


def freeze_stages(model: nn.Module, stages: Iterable[str]) -> list[str]:
    """Freeze ResNet ``stages`` (names in :data:`STAGES`; ``"all"`` = every one) of
    ``model`` (or of ``model.backbone``): ``requires_grad=False`` and batch norm as
    :class:`FrozenBatchNorm2d`. Returns the frozen parameter names (backbone-relative).
    Re-apply after rebuilding a model from a checkpoint to keep training it frozen."""
    names = list(stages)
    if names == ["all"]:
        names = list(STAGES)
    bad = [s for s in names if s not in STAGES]
    if bad:
        raise ValueError(f"freeze stages must be in {list(STAGES)} (or 'all'), got {bad}")
    backbone = _resnet_of(model)
    prefixes = tuple(p for s in names for p in _STAGE_PREFIXES[s])
    frozen = []
    for pname, p in backbone.named_parameters():
        if pname.startswith(prefixes):
            p.requires_grad_(False)
            frozen.append(pname)
    for mname, m in list(backbone.named_modules()):
        if type(m) is nn.BatchNorm2d and (mname + ".").startswith(prefixes):
            parent_name, _, child = mname.rpartition(".")
            parent = backbone.get_submodule(parent_name) if parent_name else backbone
            setattr(parent, child, FrozenBatchNorm2d.from_batchnorm(m))
    return frozen
