"""Evaluation of a model on a split, for any task (the task supplies outputs and metrics).

* :func:`predict_dataset`: the task's per-image outputs over a dataset (eval mode, no
  grad), concatenated on CPU, plus ``target`` (the task's label).
* :func:`evaluate`: the task's metrics of one split, keys prefixed with the split's metric
  prefix (:data:`~facecore.train.tasks.base.METRIC_PREFIX`: ``val_`` for ``valid``,
  ``test_`` for ``test``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from facecore.train.sections import TrainConfig
from facecore.train.tasks import METRIC_PREFIX, get_task

__all__ = ["eval_mode", "evaluate", "predict_dataset"]


@contextmanager
def eval_mode(model: nn.Module):
    """``model.eval()`` and ``torch.no_grad()`` inside; the previous mode restored after."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was)


def predict_dataset(
    cfg: TrainConfig,
    model: nn.Module,
    dataset: Any,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """Run ``model`` (eval mode) over ``dataset``: the task's outputs concatenated on CPU,
    plus ``target`` (the task's label) and those of the task's ``eval_keys`` the dataset has;
    ``{}`` for an empty dataset."""
    task = get_task(cfg.task)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    parts: dict[str, list[torch.Tensor]] = {}
    with eval_mode(model):
        for images, target in loader:
            out = task.outputs(cfg, model, images.to(device))
            out["target"] = torch.as_tensor(target[task.label_key])
            for key in task.eval_keys:
                if key in target:  # e.g. expression: only some datasets have it
                    out[key] = torch.as_tensor(target[key])
            for k, v in out.items():
                parts.setdefault(k, []).append(v.detach().cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


def evaluate(
    cfg: TrainConfig,
    out: dict[str, torch.Tensor],
    train_labels: torch.Tensor,
    split: str = "valid",
) -> dict[str, float]:
    """The task's metrics of ``split`` (``"valid"`` or ``"test"``) from
    :func:`predict_dataset`'s outputs, as ``{prefix + name: float}``."""
    if split not in METRIC_PREFIX:
        raise ValueError(f"split must be one of {' | '.join(METRIC_PREFIX)}, got {split!r}")
    metrics = get_task(cfg.task).metrics(cfg, out, train_labels, split)
    return {METRIC_PREFIX[split] + k: float(v) for k, v in metrics.items()}
