r"""Optimisers and learning-rate schedules by name (the ``optim.name`` /
``optim.scheduler`` choices are defined here, next to what they build), the default
learning rate per backbone, and the resume rule.

Plain-argument builders (usable without a config): :func:`parameter_groups`,
:func:`make_optimizer`, :func:`make_step_scheduler`, :func:`default_lr`. The training loop
calls their config-section forms: :func:`build_optimizer` (``optim`` section, peak
learning rate from :func:`config_lr`) and :func:`build_scheduler` (``optim`` section, steps
per epoch, epochs already completed).

The recipe (issue 10; the defaults of :class:`facecore.train.sections.OptimConfig`):

* :func:`parameter_groups`: weight decay on the weights of convolutions and linear
  layers only (parameters with 2 or more dimensions). Biases, batch-norm scales / shifts
  and every other 0-D / 1-D parameter (the CORAL biases ``b_k``, ``bias0``,
  ``bias_deltas``; a temperature) are **not** decayed: decaying them pulls the ordinal
  thresholds towards 0 (the middle class) and the normalisation scales towards 0, which
  is never what a regulariser is for. Parameters with ``requires_grad=False`` (frozen
  stages) are left out.
* :func:`make_optimizer`: ``"adamw"`` (decoupled weight decay, Loshchilov & Hutter
  2019; the default), ``"adam"`` (L2 in the gradient, as the CORAL code) or ``"sgd"``
  (Nesterov momentum), on those groups.
* :func:`make_step_scheduler`: a per-**step** schedule (``scheduler.step()`` after every
  optimiser step; :data:`SCHEDULERS`): ``"onecycle"`` (the default;
  :class:`torch.optim.lr_scheduler.OneCycleLR`: a warm-up from ``lr / div_factor`` to
  ``lr`` over ``pct_start`` of the steps, cosine annealing to ``lr / (div_factor *
  final_div_factor)``; Smith & Topin 2019), ``"cosine"`` (linear warm-up from 0 over
  ``warmup_steps``, then cosine to ``min_lr_ratio * lr``) or ``"constant"`` (linear
  warm-up, then flat).
* :data:`DEFAULT_LR`: the AdamW peak learning rate per backbone (batch 64, from
  scratch); :func:`default_lr` looks it up, scales it by ``sqrt(batch / 64)`` and divides
  it by :data:`FINETUNE_LR_DIVISOR` for fine-tuning; ``optim.lr: null`` uses it.

Why these defaults (issue 10; every figure with its command in
``benchmarks/age_recipe.py``'s docstring): on FairFace-540 (small_cnn, 64 px, CORAL, 3
seeds, label MAE in age groups; median baseline 2.275) the packaged recipe before issue
10 (Adam 5e-4, cosine per epoch, coral-pytorch biases) gives 2.938 -- worse than the
median, with flat ``P(y > k)`` curves (2.534 with the face-centred crop) -- while AdamW
1e-2 one-cycle with undecayed biases, weight decay 0.05, the head initialised from the
labels and ``crop_fraction=0.5`` gives 1.605. On the same three splits, warm-up + cosine
instead of one-cycle costs +0.17, decaying the biases +0.10, and the coral-pytorch head
initialisation +0.17; weight decay 0 / 0.05 / 0.3 made no difference (1.833 / 1.836 /
1.818).

Resume rule (what a run restored from a checkpoint trains with): the optimiser's
*hyper-parameters* (learning rate, weight decay, momentum, ...) and the *schedule* always
come from the current config, its *state* (moments, step counts) from the checkpoint
(:func:`load_optimizer_state`). The schedule is a function of the optimiser step: it is
rebuilt for the current horizon (``optim.epochs`` x the current steps per epoch) and
advanced by the steps of the epochs already completed (:func:`build_scheduler`
``(..., completed_epochs=E)`` steps it ``E x steps_per_epoch`` times), so every step of
epoch ``e`` trains at the current schedule's rate for that step whatever happened before.
A run restarted after a crash with the same config trains at exactly the learning rates
of an uninterrupted run; a finished run extended from ``E`` to ``E' > E`` epochs
continues on the ``E'``-epoch curve at the first step of epoch ``E + 1`` (for one-cycle
or cosine a rate well above 0, not the old curve's final one). The scheduler state stored
in checkpoints is informational and not loaded back.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = [
    "DEFAULT_LR",
    "FINETUNE_LR_DIVISOR",
    "OPTIMIZERS",
    "SCHEDULERS",
    "build_optimizer",
    "build_scheduler",
    "config_lr",
    "default_lr",
    "load_optimizer_state",
    "make_optimizer",
    "make_step_scheduler",
    "parameter_groups",
]

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("onecycle", "cosine", "constant")  # all stepped once per optimiser step

# AdamW peak learning rate (one-cycle per step), batch 64, trained from scratch at 64 px.
# Measured (benchmarks/age_recipe.py, FairFace-540, CORAL, label MAE in groups):
#   small_cnn, 40 epochs, 3 seeds: 1e-3 1.880, 3e-3 1.836, 1e-2 1.731 (crop 0.6);
#                                  1e-2 1.605, 2e-2 1.735 (crop 0.5)
#   resnet18, 20 epochs, 2 seeds (crop 0.5): 1e-3 1.949, 3e-3 1.713, 1e-2 1.829 +- 0.41
#                                  (one of the two 1e-2 runs diverged to 2.12)
# resnet10 / resnet34 / resnet50 / resnet101 were not measured (a 20-epoch resnet18 run
# already takes 4-10 CPU-minutes here): resnet10 follows resnet18, the deeper ones the
# usual halving with depth.
DEFAULT_LR: dict[str, float] = {
    "small_cnn": 1e-2,
    "resnet10": 3e-3,
    "resnet18": 3e-3,
    "resnet34": 2e-3,
    "resnet50": 1e-3,
    "resnet101": 1e-3,
}
# Fine-tuning a pretrained backbone: the peak rate is divided by this.
FINETUNE_LR_DIVISOR = 10.0


def default_lr(backbone: str, *, pretrained: bool = False, batch_size: int = 64) -> float:
    """The default peak learning rate of ``backbone`` (see :data:`DEFAULT_LR`), divided by
    :data:`FINETUNE_LR_DIVISOR` when fine-tuning pretrained weights and scaled by
    ``sqrt(batch_size / 64)`` (the square-root rule suited to Adam-type optimisers)."""
    if backbone not in DEFAULT_LR:
        raise ValueError(f"backbone must be one of {list(DEFAULT_LR)}, got {backbone!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    lr = DEFAULT_LR[backbone] * math.sqrt(batch_size / 64)
    return lr / FINETUNE_LR_DIVISOR if pretrained else lr


def _check_nonneg(name: str, value: Any) -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def parameter_groups(
    model: nn.Module | Iterable[tuple[str, nn.Parameter]], weight_decay: float
) -> list[dict[str, Any]]:
    """Two optimiser groups: ``{"params": weights, "weight_decay": weight_decay}`` (the
    parameters with 2 or more dimensions: conv / linear weights) and ``{"params": rest,
    "weight_decay": 0.0}`` (biases, norm parameters, ordinal thresholds). ``model`` is a
    module or its ``named_parameters()``; frozen parameters are skipped; each group has
    a ``"names"`` list (for logging; optimisers ignore unknown keys)."""
    wd = _check_nonneg("weight_decay", weight_decay)
    named = model.named_parameters() if isinstance(model, nn.Module) else model
    decay: list[nn.Parameter] = []
    plain: list[nn.Parameter] = []
    decay_names: list[str] = []
    plain_names: list[str] = []
    seen: set[int] = set()
    for name, p in named:
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if p.ndim >= 2:
            decay.append(p)
            decay_names.append(name)
        else:
            plain.append(p)
            plain_names.append(name)
    if not decay and not plain:
        raise ValueError("the model has no trainable parameters (all frozen?)")
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": wd, "names": decay_names})
    if plain:
        groups.append({"params": plain, "weight_decay": 0.0, "names": plain_names})
    return groups


def make_optimizer(
    model: nn.Module,
    name: str = "adamw",
    *,
    lr: float,
    weight_decay: float = 0.05,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """``name`` (``"adamw"``, ``"adam"``, ``"sgd"``) on :func:`parameter_groups`:
    ``weight_decay`` applies to conv / linear weights only. For ``"adamw"`` the decay is
    decoupled (the step multiplies the weights by ``1 - lr * weight_decay``), so its
    scale differs from ``"adam"``'s / ``"sgd"``'s L2 coefficient."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer name must be one of {list(OPTIMIZERS)}, got {name!r}")
    lr = float(lr)
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    groups = parameter_groups(model, weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas)
    m = _check_nonneg("momentum", momentum)
    return torch.optim.SGD(groups, lr=lr, momentum=m, nesterov=m > 0)


def make_step_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str = "onecycle",
    *,
    total_steps: int,
    warmup_steps: int | None = None,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    min_lr_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step learning-rate schedule over ``total_steps`` optimiser steps
    (``epochs * steps_per_epoch``) peaking at each group's current ``lr``.

    * ``"onecycle"``: :class:`~torch.optim.lr_scheduler.OneCycleLR` (``pct_start`` of the
      steps warming up from ``lr / div_factor``; ``warmup_steps``, if given, overrides
      ``pct_start``; momentum / Adam's beta1 cycles 0.95 -> 0.85 -> 0.95).
    * ``"cosine"``: linear warm-up from 0 over ``warmup_steps`` (default: 5% of the
      steps, at least 1), then cosine from ``lr`` to ``min_lr_ratio * lr``.
    * ``"constant"``: the same warm-up, then ``lr``.

    Call ``scheduler.step()`` after every ``optimizer.step()``; ``state_dict()`` /
    ``load_state_dict()`` resume it.
    """
    if name not in SCHEDULERS:
        raise ValueError(f"scheduler name must be one of {list(SCHEDULERS)}, got {name!r}")
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
    if warmup_steps is not None and (
        isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int)
        or not 0 <= warmup_steps < total_steps
    ):
        raise ValueError(
            f"warmup_steps must be an int in [0, total_steps={total_steps}), got {warmup_steps!r}"
        )
    if name == "onecycle":
        if warmup_steps is not None:
            pct_start = max(warmup_steps, 1) / total_steps
        if not 0.0 < pct_start < 1.0:
            raise ValueError(f"pct_start must be in (0, 1), got {pct_start!r}")
        peaks = [g["lr"] for g in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=peaks,
            total_steps=total_steps,
            pct_start=pct_start,
            div_factor=div_factor,
            final_div_factor=final_div_factor,
            anneal_strategy="cos",
        )
    ratio = _check_nonneg("min_lr_ratio", min_lr_ratio)
    if ratio > 1:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio!r}")
    warm = max(1, round(0.05 * total_steps)) if warmup_steps is None else warmup_steps
    decay_steps = max(1, total_steps - warm)
    cosine = name == "cosine"

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        if not cosine:
            return 1.0
        t = min(step - warm, decay_steps) / decay_steps
        return ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ------------------------------------------------------ from an ``optim`` config section


def config_lr(cfg: Any) -> float:
    """The run's peak learning rate: ``optim.lr``, or where it is ``null``
    :func:`default_lr` of ``model.backbone`` at ``data.batch_size`` (divided by
    :data:`FINETUNE_LR_DIVISOR` when ``model.pretrained`` is set)."""
    if cfg.optim.lr is not None:
        return float(cfg.optim.lr)
    pretrained = getattr(cfg.model, "pretrained", None) is not None
    return default_lr(cfg.model.backbone, pretrained=pretrained, batch_size=cfg.data.batch_size)


def build_optimizer(opts: Any, module: nn.Module, lr: float) -> torch.optim.Optimizer:
    """``opts.name`` (an ``optim`` config section) at peak ``lr`` (:func:`config_lr`) on
    :func:`parameter_groups` of ``module`` (trainable parameters only; ``opts.weight_decay``
    on conv / linear weights, none on biases, norms and ordinal thresholds)."""
    return make_optimizer(
        module, opts.name, lr=lr, weight_decay=opts.weight_decay, momentum=opts.momentum
    )


def load_optimizer_state(opt: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """Load a checkpoint's optimiser ``state`` (moments, step counts) into ``opt`` but keep
    the hyper-parameters ``opt`` was built with from the current config (``lr``, weight
    decay, ...; ``torch``'s ``load_state_dict`` would restore the old run's, e.g. the final
    learning rate of a finished schedule). Build the scheduler afterwards."""
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    opt.load_state_dict(state)
    for group, hyper in zip(opt.param_groups, fresh):
        for key in ("initial_lr", "max_lr", "min_lr"):  # a scheduler built next sets them
            group.pop(key, None)
        group.update(hyper)


def build_scheduler(
    opts: Any, opt: torch.optim.Optimizer, *, steps_per_epoch: int, completed_epochs: int = 0
) -> torch.optim.lr_scheduler.LRScheduler:
    """``opts.scheduler`` over ``opts.epochs * steps_per_epoch`` optimiser steps
    (:func:`make_step_scheduler`; ``opts.warmup_epochs``, where set, is the warm-up in
    epochs), to be stepped after every optimiser step.

    ``completed_epochs``: epochs already trained (a resumed run); the schedule, built for
    the current horizon, is advanced by ``completed_epochs * steps_per_epoch`` steps, so
    ``opt``'s learning rate is the one of the first step of epoch ``completed_epochs + 1``
    (the module's resume rule). ``opt`` must carry the config's peak learning rates (a
    fresh optimiser, or :func:`load_optimizer_state`).
    """
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a positive int, got {steps_per_epoch!r}")
    if completed_epochs < 0:
        raise ValueError(f"completed_epochs must be >= 0, got {completed_epochs}")
    total = opts.epochs * steps_per_epoch
    warm = None
    if getattr(opts, "warmup_epochs", None) is not None:
        warm = min(total - 1, round(opts.warmup_epochs * steps_per_epoch))
    sched = make_step_scheduler(opt, opts.scheduler, total_steps=total, warmup_steps=warm)
    with warnings.catch_warnings():  # stepping without optimizer.step() is the point here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(min(completed_epochs * steps_per_epoch, total)):
            sched.step()
    return sched
