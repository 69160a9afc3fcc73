"""Build models from their JSON-able ``config``; checkpoints that load with
``torch.load(weights_only=True)``.

A model's ``config`` (``model.config``) holds ``task`` (``"age"``, ``"gender"``,
``"binary"``, ``"embedding"``), ``backbone`` (``build_backbone`` arguments, or
``None`` for a user module) and the task's options; :func:`build_model` is its
inverse. A checkpoint is a plain dict::

    {"format": "facecore.model", "format_version": 1, "facecore_version": "0.1.0",
     "config": {...}, "state_dict": {name: tensor}}

of strings, numbers, lists, dicts and CPU tensors only, so it loads with
``torch.load(path, weights_only=True)`` (no pickled classes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facecore.models.binary import BinaryAttributeClassifier, GenderClassifier
from facecore.models.embedding import FaceEmbedder
from facecore.models.ordinal import AgeEstimator

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION",
    "build_model",
    "load_weights",
    "model_checkpoint",
    "model_from_checkpoint",
]

CHECKPOINT_FORMAT = "facecore.model"
CHECKPOINT_FORMAT_VERSION = 1
_TASKS = ("age", "gender", "binary", "embedding", "san")


def _backbone_args(config: dict[str, Any]) -> dict[str, Any]:
    spec = config.get("backbone")
    if spec is None:
        raise ValueError(
            "config['backbone'] is None: the model was built on a user backbone module; "
            "construct it again with that module and load_state_dict the weights"
        )
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"config['backbone'] must be a dict with a 'name', got {spec!r}")
    spec = dict(spec)
    name = spec.pop("name")
    width = spec.pop("width", None)
    in_channels = spec.pop("in_channels", 3)
    if "layers" in spec:
        spec["layers"] = tuple(spec["layers"])
    return {"backbone": name, "width": width, "in_channels": in_channels, "backbone_options": spec}


def build_model(config: dict[str, Any]) -> nn.Module:
    """The (untrained) model described by ``config`` (the inverse of ``model.config``)."""
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    task = config.get("task")
    if task not in _TASKS:
        raise ValueError(f"config['task'] must be one of {list(_TASKS)}, got {task!r}")
    if task == "san":  # no backbone: the privacy autoencoder has its own config
        from facecore.models.san import san_from_config

        return san_from_config(config)
    args = _backbone_args(config)
    dropout = float(config.get("dropout", 0.0))
    if task == "age":
        return AgeEstimator(
            args.pop("backbone"),
            config.get("head", "coral"),
            config.get("num_classes"),
            monotone_biases=bool(config.get("monotone_biases", False)),
            dropout=dropout,
            **args,
        )
    if task == "embedding":
        return FaceEmbedder(
            args.pop("backbone"), int(config.get("embedding_dim", 128)), dropout=dropout, **args
        )
    attribute = config.get("attribute", "gender")
    class_names = tuple(config.get("class_names", ("male", "female")))
    if attribute == "gender" and class_names == ("male", "female"):
        return GenderClassifier(args.pop("backbone"), dropout=dropout, **args)
    return BinaryAttributeClassifier(
        args.pop("backbone"), attribute, class_names, dropout=dropout, **args
    )


def model_checkpoint(model: nn.Module) -> dict[str, Any]:
    """``{"format", "format_version", "facecore_version", "config", "state_dict"}`` (CPU
    tensors); save it with ``torch.save`` and load it with ``weights_only=True``."""
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or "task" not in config:
        raise ValueError("model has no facecore config (model.config with a 'task')")
    import facecore

    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "facecore_version": facecore.__version__,
        "config": _plain(config),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }


def _plain(value: Any) -> Any:
    """Deep copy as JSON-like containers (tuples become lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _load(source: Any) -> Any:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        return torch.load(path, map_location="cpu", weights_only=True)
    return source


def model_from_checkpoint(checkpoint: dict[str, Any] | str | os.PathLike) -> nn.Module:
    """Rebuild a model from :func:`model_checkpoint`'s dict or a file saved from it
    (loaded with ``weights_only=True``); weights load strictly; returned in ``eval()``."""
    ckpt = _load(checkpoint)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"not a facecore model checkpoint (expected format {CHECKPOINT_FORMAT!r}); "
            "for a bare state_dict use facecore.models.load_weights(model, state_dict)"
        )
    version = ckpt.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise ValueError(
            f"checkpoint format_version {version!r} is not supported by this facecore "
            f"(supports {CHECKPOINT_FORMAT_VERSION})"
        )
    model = build_model(ckpt["config"])
    model.load_state_dict(ckpt["state_dict"], strict=True)
    return model.eval()


_PREFIXES = ("module.", "_orig_mod.")


def load_weights(
    model: nn.Module, source: Any, *, strict: bool = True
) -> torch.nn.modules.module._IncompatibleKeys:
    """Load user weights into ``model``: a ``state_dict``, a facecore checkpoint dict,
    or a path to either (``weights_only=True``). ``module.`` (DataParallel / DDP) and
    ``_orig_mod.`` (``torch.compile``) prefixes are stripped."""
    state = _load(source)
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("source must be a state_dict (name -> tensor) or a facecore checkpoint")
    clean = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        clean[key] = value
    return model.load_state_dict(clean, strict=strict)
