"""The ordinal-head sweep (CE, Niu et al.'s OR-CNN, CORAL, CORN) on :func:`run_sweep`.

Every head runs once per seed and the table gives validation and test MAE as mean ± sd
over the seeds: how the CORAL paper's ordering (CORAL <= OR-CNN <= CE in MAE) is checked on
any dataset.

::

    from facecore.train.tune import sweep_ordinal_heads
    res = sweep_ordinal_heads(seeds=(0, 1, 2), name="heads", storage="runs/tune")
    print(res.table())        # head, seeds, epochs, val_mae / test_mae mean ± sd
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from facecore.models.ordinal import HEADS
from facecore.train.config import load_config
from facecore.train.sections import TrainConfig
from facecore.train.tune.space import Dimension, parse_dimension
from facecore.train.tune.sweep import SweepResult, run_sweep

__all__ = ["TUNE_SMALL", "ordinal_space", "sweep_ordinal_heads"]

# A base that runs in a few minutes on 2 CPUs (override any key).
TUNE_SMALL = [
    "data.num_samples=1200",
    "data.image_size=32",
    "optim.epochs=3",
]


def ordinal_space(
    heads: Sequence[str] | None = HEADS,
    lrs: Sequence[float] | None = None,
    space: Sequence[Dimension | str] = (),
) -> list[Dimension]:
    """``space`` plus ``ordinal.head=grid:<heads>`` and ``optim.lr=grid:<lrs>`` unless
    ``space`` already searches those keys (``heads=None`` / ``lrs=None``: not searched)."""
    dims = [parse_dimension(d) if isinstance(d, str) else d for d in space]
    keys = {d.key for d in dims}
    extra = []
    if heads and "ordinal.head" not in keys:
        extra.append(Dimension("ordinal.head", "grid", tuple(heads)))
    if lrs and "optim.lr" not in keys:
        extra.append(Dimension("optim.lr", "grid", tuple(float(v) for v in lrs)))
    return extra + dims


def sweep_ordinal_heads(
    base: TrainConfig | None = None,
    *,
    heads: Sequence[str] | None = HEADS,
    lrs: Sequence[float] | None = None,
    space: Sequence[Dimension | str] = (),
    name: str = "ordinal-heads",
    storage: str = "runs/tune",
    **kwargs: Any,
) -> SweepResult:
    """Sweep the ordinal heads (and ``lrs``, and ``space``) of an age config with
    :func:`run_sweep` (``kwargs``: its keyword arguments: ``seeds``, ``asha``,
    ``workers_per_trial``, ...). ``base`` defaults to ``age_coral_synthetic`` reduced by
    :data:`TUNE_SMALL`. The objective defaults to ``val_mae`` (min), whatever the
    config's ``run.score``; the final evaluation gives ``test_mae`` per trial."""
    base = base if base is not None else load_config("age_coral_synthetic", TUNE_SMALL)
    if kwargs.get("objectives") is None:  # not the config's run.score (e.g. "epoch")
        kwargs["objectives"] = [("val_mae", "min")]
    return run_sweep(base, ordinal_space(heads, lrs, space), name=name, storage=storage, **kwargs)
