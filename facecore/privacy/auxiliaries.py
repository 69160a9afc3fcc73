"""The frozen models of a SAN run (task ``san``, :mod:`facecore.train.tasks.san`): the
auxiliaries in its loss and the unseen evaluators, each a facecore **training checkpoint**
(a ``checkpoint_epoch_NNNN`` folder or its ``checkpoint.pt``) referenced by path and
SHA-256, loaded as a frozen :class:`~facecore.models.GrayscaleAdapter` (grayscale
``[N, 1, S, S]`` in [0, 1] in, the model's own normalisation from the checkpoint's export
settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facecore.data.transforms import PreprocessConfig
from facecore.formats import FormatError
from facecore.losses.san import file_sha256
from facecore.models.factory import model_from_checkpoint
from facecore.models.san import GrayscaleAdapter

# facecore.train imports the task registry, which imports this module: the training
# helpers are imported where they are used

__all__ = ["AUXILIARIES", "IN_LOSS", "auxiliary", "checkpoint_file", "clear_cache", "load_auxiliary"]

#: The frozen models a SAN run references: ``san.<key>`` -> the task that trains it.
AUXILIARIES: dict[str, str] = {
    "gender_classifier": "gender",
    "matcher": "embedding",
    "unseen_gender_classifier": "gender",
    "unseen_matcher": "embedding",
}
#: The two that are in the loss (the other two only evaluate).
IN_LOSS = ("gender_classifier", "matcher")


def checkpoint_file(path: str | Path) -> Path:
    """``path/checkpoint.pt`` for a checkpoint folder, else ``path``."""
    from facecore.train.checkpoints import CHECKPOINT_FILE

    p = Path(path).expanduser()
    return p / CHECKPOINT_FILE if p.is_dir() else p


def load_auxiliary(path: str | Path, key: str = "model") -> tuple[GrayscaleAdapter, dict[str, Any]]:
    """A facecore training checkpoint (folder or ``checkpoint.pt``) as a frozen
    :class:`GrayscaleAdapter` (grayscale ``[N, 1, S, S]`` in [0, 1] in, the model's
    normalisation from the checkpoint's export settings); returns ``(model, info)`` with
    ``info = {"task", "config", "image_size", "valid": {metrics}}``. ``ConfigError``
    naming ``key`` when the file is missing or not such a checkpoint."""
    from facecore.train.checkpoints import load_checkpoint
    from facecore.train.sections import ConfigError

    f = checkpoint_file(path)
    if not f.is_file():
        raise ConfigError(f"{key}: training checkpoint not found: {path}")
    try:
        state = load_checkpoint(f.parent)
        model = model_from_checkpoint(state["model"])
        pre = PreprocessConfig.from_dict(state["export"]["preprocess"])
    except (FormatError, KeyError, ValueError, OSError) as exc:
        raise ConfigError(f"{key}={str(path)!r} is not a facecore training checkpoint: {exc}") from None
    adapter = GrayscaleAdapter(model, pre.mean, pre.std)
    adapter.eval().requires_grad_(False)
    metrics = {k: v for k, v in state.get("metrics", {}).items() if k.startswith("val_")}
    return adapter, {"task": state["train_config"].get("task"), "config": state["model"]["config"],
                     "image_size": pre.input_size, "valid": metrics}


_CACHE: dict[tuple[str, str], tuple[GrayscaleAdapter, dict[str, Any]]] = {}


def auxiliary(cfg: Any, key: str) -> tuple[GrayscaleAdapter, dict[str, Any]]:
    """``load_auxiliary`` of ``cfg.san.<key>`` once per process (keyed by file and
    SHA-256), checked against ``cfg.san.sha256[key]`` (``ConfigError`` when they differ)."""
    from facecore.train.sections import ConfigError

    path = getattr(cfg.san, key)
    if path is None:
        raise ConfigError(f"san.{key} is null: run the SAN through facecore.train.fit (stage 1 "
                          "trains it) or give a training checkpoint")
    want = (cfg.san.sha256 or {}).get(key)
    f = checkpoint_file(path)
    have = file_sha256(f) if f.is_file() else None
    if have is None:
        raise ConfigError(f"san.{key}: training checkpoint not found: {path}")
    if want is not None and want != have:
        raise ConfigError(f"san.{key}={path}: SHA-256 {have[:12]}... differs from san.sha256.{key} "
                          f"{want[:12]}... (the file changed since the run was configured)")
    if (str(f), have) not in _CACHE:
        _CACHE[(str(f), have)] = load_auxiliary(path, f"san.{key}")
    return _CACHE[(str(f), have)]


def clear_cache() -> None:
    """Forget the loaded models (tests)."""
    _CACHE.clear()
