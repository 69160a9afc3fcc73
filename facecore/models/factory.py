"""Build models from their JSON-able ``config``; checkpoints that load with
``torch.load(weights_only=True)``.

A model's ``config`` (``model.config``) holds ``task`` (``"age"``, ``"gender"``,
``"binary"``, ``"embedding"``), ``backbone`` (``build_backbone`` arguments, or
``None`` for a user module) and the task's options; :func:`build_model` is its
inverse. A checkpoint is a plain dict (:mod:`facecore.formats`, kind ``model``)::

    {"format": "facecore.model", "format_version": 1, "facecore_version": "0.1.0",
     "config": {...}, "state_dict": {name: tensor}}

of strings, numbers, lists, dicts and CPU tensors only, so it loads with
``torch.load(path, weights_only=True)`` (no pickled classes).

Adding a model family: write its module (``task`` attribute, JSON-able ``config`` with
``task`` and ``backbone``, ``serve``) and add one ``builder(config, backbone_args)``
line to :data:`MODEL_BUILDERS`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facecore.formats import check_format, format_name, header, load_torch_file
from facecore.models.binary import BinaryAttributeClassifier, GenderClassifier
from facecore.models.embedding import FaceEmbedder
from facecore.models.ordinal import AgeEstimator

__all__ = [
    "MODEL_BUILDERS",
    "build_model",
    "load_weights",
    "model_checkpoint",
    "model_from_checkpoint",
]


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


def _build_age(config: dict[str, Any], args: dict[str, Any]) -> nn.Module:
    return AgeEstimator(
        args.pop("backbone"),
        config.get("head", "coral"),
        config.get("num_classes"),
        monotone_biases=bool(config.get("monotone_biases", False)),
        **args,
    )


def _build_binary(config: dict[str, Any], args: dict[str, Any]) -> nn.Module:
    attribute = config.get("attribute", "gender")
    class_names = tuple(config.get("class_names", ("male", "female")))
    if attribute == "gender" and class_names == ("male", "female"):
        return GenderClassifier(args.pop("backbone"), **args)
    return BinaryAttributeClassifier(args.pop("backbone"), attribute, class_names, **args)


def _build_san(config: dict[str, Any], args: dict[str, Any] | None) -> nn.Module:
    from facecore.models.san import san_from_config  # the privacy autoencoder, no backbone

    return san_from_config(config, build=build_model)


def _build_embedding(config: dict[str, Any], args: dict[str, Any]) -> nn.Module:
    return FaceEmbedder(args.pop("backbone"), int(config.get("embedding_dim", 128)), **args)


#: ``config["task"]`` -> ``builder(config, args)``; ``args`` holds ``backbone``,
#: ``width``, ``in_channels``, ``backbone_options`` and ``dropout`` from the config
#: (the SAN has no backbone: its builder reads its own keys and gets ``args=None``).
MODEL_BUILDERS: dict[str, Callable[[dict[str, Any], dict[str, Any]], nn.Module]] = {
    "age": _build_age,
    "gender": _build_binary,
    "binary": _build_binary,
    "embedding": _build_embedding,
    "san": _build_san,
}


def build_model(config: dict[str, Any]) -> nn.Module:
    """The (untrained) model described by ``config`` (the inverse of ``model.config``)."""
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    task = config.get("task")
    if task not in MODEL_BUILDERS:
        raise ValueError(f"config['task'] must be one of {list(MODEL_BUILDERS)}, got {task!r}")
    if task == "san":
        return MODEL_BUILDERS[task](config, None)
    args = _backbone_args(config)
    args["dropout"] = float(config.get("dropout", 0.0))
    return MODEL_BUILDERS[task](config, args)


def model_checkpoint(model: nn.Module) -> dict[str, Any]:
    """``{"format", "format_version", "facecore_version", "config", "state_dict"}`` (CPU
    tensors); save it with ``torch.save`` and load it with ``weights_only=True``."""
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or "task" not in config:
        raise ValueError("model has no facecore config (model.config with a 'task')")
    return {
        **header("model"),
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
        return load_torch_file(path, "facecore checkpoint")
    return source


def model_from_checkpoint(checkpoint: dict[str, Any] | str | os.PathLike) -> nn.Module:
    """Rebuild a model from :func:`model_checkpoint`'s dict or a file saved from it
    (loaded with ``weights_only=True``); weights load strictly; returned in ``eval()``."""
    source = str(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else "checkpoint"
    ckpt = _load(checkpoint)
    if isinstance(ckpt, dict) and "format" not in ckpt:
        raise ValueError(
            f"{source} is not a facecore model checkpoint (no 'format' key); for a bare "
            "state_dict use facecore.models.load_weights(model, state_dict)"
        )
    check_format(ckpt, "model", source)
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
    if isinstance(state, dict) and state.get("format") == format_name("model"):
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
