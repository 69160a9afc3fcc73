"""Optimisers and learning-rate schedules by name (the ``optim.name`` / ``optim.scheduler``
choices are defined here, next to what they build)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["OPTIMIZERS", "SCHEDULERS", "build_optimizer", "build_scheduler"]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step")


def build_optimizer(opts: Any, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """``opts.name`` (an ``optim`` config section) over ``params`` (the caller passes the
    parameters that require grad)."""
    if opts.name == "sgd":
        return torch.optim.SGD(
            params, lr=opts.lr, momentum=opts.momentum, weight_decay=opts.weight_decay
        )
    cls = torch.optim.AdamW if opts.name == "adamw" else torch.optim.Adam
    return cls(params, lr=opts.lr, weight_decay=opts.weight_decay)


def build_scheduler(opts: Any, opt: torch.optim.Optimizer):
    """``opts.scheduler``, stepped once per epoch: ``cosine`` (to 0 at ``opts.epochs``),
    ``step`` (``gamma`` every ``step_size`` epochs) or ``none``."""
    if opts.scheduler == "cosine":
        epochs = opts.epochs
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda e: 0.5 * (1.0 + math.cos(math.pi * min(e, epochs) / epochs))
        )
    if opts.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=opts.step_size, gamma=opts.gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
