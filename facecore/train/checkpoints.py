"""Training checkpoints on disk: one directory per epoch, ``checkpoint_epoch_EEEE``, with
``checkpoint.pt`` (a :mod:`facecore.formats` ``train`` dict; loads with
``torch.load(weights_only=True)``) and ``metrics.json`` (the same metrics, readable
without torch).

``checkpoint.pt`` holds ``format`` / ``format_version`` / ``facecore_version``, ``epoch``
(1-based, completed), ``model`` (:func:`facecore.models.model_checkpoint`: config +
weights), ``objective`` (the objective's own state, e.g. margin-head weights or centres;
not its frozen auxiliaries), ``optimizer`` / ``scheduler`` state, ``train_config`` (the
whole config as a dict), ``metrics`` (this epoch), ``history`` (every epoch so far),
``split_sizes`` and ``export`` (``preprocess`` as
:meth:`~facecore.data.transforms.PreprocessConfig.to_dict` plus the task's export settings
such as ``class_names`` / ``age_offset``: what ``facecore export`` needs, so it needs no
dataset).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from facecore.formats import check_format, header

__all__ = [
    "CHECKPOINT_FILE",
    "METRICS_FILE",
    "checkpoint_dir_name",
    "latest_checkpoint",
    "load_checkpoint",
    "new_checkpoint",
    "write_checkpoint",
]

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.json"


def checkpoint_dir_name(epoch: int) -> str:
    """Deterministic checkpoint directory name of a (1-based) epoch."""
    return f"checkpoint_epoch_{epoch:04d}"


def new_checkpoint(**content: Any) -> dict[str, Any]:
    """A training checkpoint dict: the ``train`` format header plus ``content``."""
    return {**header("train"), **content}


def write_checkpoint(d: Path, metrics: dict[str, Any], state: dict[str, Any]) -> None:
    """Write ``checkpoint.pt`` and ``metrics.json`` into directory ``d`` (created)."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    torch.save(state, d / CHECKPOINT_FILE)
    (d / METRICS_FILE).write_text(json.dumps(metrics, indent=1, sort_keys=True))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read ``checkpoint.pt`` from a checkpoint directory (or the file itself), checked to
    be a facecore training checkpoint this facecore reads."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_FILE
    if not p.is_file():
        raise FileNotFoundError(f"no facecore checkpoint at {path} (expected {CHECKPOINT_FILE})")
    state = torch.load(p, map_location="cpu", weights_only=True)
    check_format(state, "train", str(p))
    return state


def latest_checkpoint(path: str | Path) -> Path | None:
    """The highest-epoch ``checkpoint_epoch_*`` directory under a local run folder."""
    p = Path(path)
    found = sorted(p.glob("checkpoint_epoch_*/" + CHECKPOINT_FILE)) if p.is_dir() else []
    return found[-1].parent if found else None
