"""Optimisers and learning-rate schedules by name (the ``optim.name`` / ``optim.scheduler``
choices are defined here, next to what they build).

Resume rule (what a run restored from a checkpoint trains with): the optimiser's
*hyper-parameters* (learning rate, weight decay, momentum, ...) and the *schedule* always
come from the current config, its *state* (moments, step counts) from the checkpoint
(:func:`load_optimizer_state`). The schedule is a function of the epoch: it is rebuilt
for the current ``optim.epochs`` and advanced to the epoch training resumes at
(:func:`build_scheduler` ``(..., last_epoch=completed)``), so epoch ``e`` trains at the
current schedule's ``lr(e)`` whatever happened before. A run restarted after a crash with
the same config trains at exactly the learning rates of an uninterrupted run; a finished
run extended from ``E`` to ``E' > E`` epochs continues on the ``E'``-epoch curve at epoch
``E + 1`` (cosine: ``lr * 0.5 * (1 + cos(pi * E / E'))`` > 0, not the old curve's final
0). The scheduler state stored in checkpoints is informational and not loaded back.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "build_optimizer",
    "build_scheduler",
    "load_optimizer_state",
]

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


def load_optimizer_state(opt: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """Load a checkpoint's optimiser ``state`` (moments, step counts) into ``opt`` but keep
    the hyper-parameters ``opt`` was built with from the current config (``lr``, weight
    decay, ...; ``torch``'s ``load_state_dict`` would restore the old run's, e.g. the final
    learning rate 0 of a finished cosine schedule). Build the scheduler afterwards."""
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    opt.load_state_dict(state)
    for group, hyper in zip(opt.param_groups, fresh):
        group.pop("initial_lr", None)  # a scheduler built next takes the config's lr as base
        group.update(hyper)


def build_scheduler(opts: Any, opt: torch.optim.Optimizer, *, last_epoch: int = 0):
    """``opts.scheduler``, stepped once per epoch: ``cosine`` (to 0 at ``opts.epochs``),
    ``step`` (``gamma`` every ``step_size`` epochs) or ``none``.

    ``last_epoch``: epochs already completed (a resumed run); the schedule, built for the
    current ``opts.epochs``, is advanced by that many steps, so ``opt``'s learning rate is
    the one of epoch ``last_epoch + 1`` (the module's resume rule). ``opt`` must carry the
    config's base learning rates (a fresh optimiser, or :func:`load_optimizer_state`).
    """
    if last_epoch < 0:
        raise ValueError(f"last_epoch must be >= 0, got {last_epoch}")
    if opts.scheduler == "cosine":
        epochs = opts.epochs
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda e: 0.5 * (1.0 + math.cos(math.pi * min(e, epochs) / epochs))
        )
    elif opts.scheduler == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=opts.step_size, gamma=opts.gamma)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
    with warnings.catch_warnings():  # stepping without optimizer.step() is the point here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(last_epoch):
            sched.step()
    return sched
