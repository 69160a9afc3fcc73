"""The command-line arguments every sweep script shares (``tune/sweep.py``,
``tune/sweep_ordinal_heads.py``, ...): one parser section, one translation to
:func:`facecore.train.tune.run_sweep` keyword arguments, one error handling.

::

    ap = argparse.ArgumentParser()
    add_sweep_arguments(ap, default_config="age_coral_synthetic", default_name="my-sweep")
    a = ap.parse_args()
    base = base_config(a)                    # --config + --data/--data-root/--epochs + --set
    result = run_sweep(base, sweep_space(a), **sweep_kwargs(a))

:func:`run_main` runs a script's main: a :class:`~facecore.train.sections.ConfigError`
prints ``error: <one line>`` and exits 2; an interrupted sweep exits 130 after saying how
to continue it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from facecore.train.sections import ConfigError, TrainConfig
from facecore.train.tune.space import Dimension, parse_space

__all__ = ["add_sweep_arguments", "base_config", "run_main", "sweep_kwargs", "sweep_space"]


def _objective(text: str) -> tuple[str, str]:
    metric, sep, mode = text.rpartition(":")
    if not sep or mode not in ("min", "max") or not metric:
        raise argparse.ArgumentTypeError(f"expected METRIC:min or METRIC:max, got {text!r}")
    return metric, mode


def add_sweep_arguments(
    ap: argparse.ArgumentParser, *, default_config: str | None, default_name: str,
    asha_default: bool = False, num_samples_default: int = 1,
) -> None:
    """Add the shared arguments (grouped: base config, search, schedule, resources,
    output); ``asha_default``: ASHA on unless ``--no-asha``."""
    b = ap.add_argument_group("base config")
    b.add_argument("--config", default=default_config, required=default_config is None,
                   help="base training config: a YAML file or a packaged name"
                   + (f" (default {default_config})" if default_config else ""))
    b.add_argument("--data", metavar="NAME", help="dataset (data.name)")
    b.add_argument("--data-root", metavar="DIR", help="dataset folder (data.root)")
    b.add_argument("--epochs", type=int, metavar="N", help="epochs per trial (optim.epochs; ASHA's max)")
    b.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="fixed config override (repeatable)")

    s = ap.add_argument_group("search")
    s.add_argument("--space", action="append", default=[], metavar="KEY=KIND:ARGS",
                   help="searched config key (repeatable): loguniform:LOW:HIGH, uniform:LOW:HIGH, "
                   "randint:LOW:HIGH, choice:A,B,..., grid:A,B,...")
    s.add_argument("--space-file", metavar="YAML", help="search space file (dotted keys -> specs)")
    s.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="S",
                   help="repeat every configuration with these seeds (default 0)")
    s.add_argument("--seed-key", dest="seed_keys", action="append", metavar="KEY",
                   help="config key(s) that take the seed (default run.seed; add data.seed to "
                   "redraw the splits too)")
    s.add_argument("--objective", dest="objectives", action="append", type=_objective,
                   metavar="METRIC:MODE", help="objective (repeatable; default: the task's score)")
    s.add_argument("--weights", type=float, nargs="+", metavar="W",
                   help="weights of the objectives in sweep_score (default 1 each)")
    s.add_argument("--num-samples", type=int, default=num_samples_default, metavar="N",
                   help="draws of the sampled kinds (grid search) or Optuna suggestions "
                   f"(default {num_samples_default})")
    s.add_argument("--search", choices=("grid", "optuna"), default="grid",
                   help="grid: Tune's variant generator; optuna: Optuna TPE (the tune extra)")
    s.add_argument("--search-seed", type=int, default=0, metavar="S", help="seed of the sampler")

    e = ap.add_argument_group("early stopping")
    e.add_argument("--asha", action=argparse.BooleanOptionalAction, default=asha_default,
                   help="stop poor trials early (ASHA on sweep_score)"
                   + (" (default on)" if asha_default else ""))
    e.add_argument("--grace-period", type=int, default=None, metavar="EPOCHS",
                   help="epochs before ASHA may stop a trial (default 1"
                   + ("; the SAN sweep: its schedule's" if asha_default else "") + ")")
    e.add_argument("--reduction-factor", type=float, default=2.0, metavar="RF",
                   help="ASHA keeps the top 1/RF at each rung (default 2)")

    r = ap.add_argument_group("resources")
    r.add_argument("--workers-per-trial", type=int, default=1, metavar="N",
                   help="Ray Train workers per trial (1: the trial trains in its own process)")
    r.add_argument("--gpus-per-trial", type=float, default=0.0, metavar="G",
                   help="GPUs of each worker of a trial (fractions share a GPU between "
                   "single-worker trials; 0 or 1 with several workers)")
    r.add_argument("--cpus-per-worker", type=float, default=1.0, metavar="C")
    r.add_argument("--concurrent", type=int, metavar="K",
                   help="at most K trials at once (default: what the cluster's resources hold)")
    r.add_argument("--address", metavar="ADDR", help="Ray cluster (default RAY_ADDRESS or a local Ray)")

    o = ap.add_argument_group("output")
    o.add_argument("--storage", default="runs/tune", metavar="DIR",
                   help="sweeps folder (local or shared; default runs/tune)")
    o.add_argument("--name", default=default_name,
                   help="sweep name; the same storage + name continues an interrupted sweep "
                   f"(default {default_name})")
    o.add_argument("--checkpoint", choices=("best", "latest"), default="best",
                   help="the checkpoint of each trial the final evaluation uses")
    o.add_argument("--no-final-eval", action="store_true", help="skip the final evaluation")
    o.add_argument("--no-plots", action="store_true", help="write no plots")
    o.add_argument("--json", action="store_true", help="print the configurations as JSON at the end")
    o.add_argument("--verbose", type=int, default=0, help="2: Ray's and Tune's own output too")


def base_config(a: argparse.Namespace, overrides: list[str] | None = None) -> TrainConfig:
    """``--config`` with ``overrides`` (a script's defaults), then ``--data`` /
    ``--data-root`` / ``--epochs`` and ``--set``."""
    from facecore.train.config import load_config

    extra = list(overrides or [])
    for flag, key in (("data", "data.name"), ("data_root", "data.root"), ("epochs", "optim.epochs")):
        v = getattr(a, flag)
        if v is not None:
            extra.append(f"{key}={json.dumps(v) if isinstance(v, str) else v}")
    return load_config(a.config, [*extra, *a.overrides])


def sweep_space(a: argparse.Namespace) -> list[Dimension]:
    """The ``--space-file`` and ``--space`` dimensions."""
    return parse_space(a.space, a.space_file)


def sweep_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    """:func:`~facecore.train.tune.run_sweep` keyword arguments from the shared arguments
    (not ``base`` / ``space``)."""
    from facecore.train.tune.sweep import Asha, evaluate_on_test

    return {
        "name": a.name,
        "storage": a.storage,
        "seeds": a.seeds,
        "seed_keys": a.seed_keys or ["run.seed"],
        "objectives": a.objectives,
        "weights": a.weights,
        "num_samples": a.num_samples,
        "search": a.search,
        "search_seed": a.search_seed,
        "asha": Asha(a.grace_period or 1, a.reduction_factor) if a.asha else None,
        "workers_per_trial": a.workers_per_trial,
        "gpus_per_trial": a.gpus_per_trial,
        "cpus_per_worker": a.cpus_per_worker,
        "max_concurrent": a.concurrent,
        "address": a.address,
        "checkpoint": a.checkpoint,
        "evaluate": None if a.no_final_eval else evaluate_on_test,
        "plot": not a.no_plots,
        "verbose": a.verbose,
    }


def default_name(prefix: str) -> str:
    """``<prefix>-YYYYmmdd-HHMMSS`` (pass ``--name`` to be able to continue a sweep)."""
    return time.strftime(f"{prefix}-%Y%m%d-%H%M%S")


def run_main(main: Callable[[list[str] | None], Any], argv: list[str] | None = None) -> int:
    """Run a sweep script's ``main(argv)`` (returning a SweepResult): exit status 0, 2 for a
    usage error (one line), 130 when interrupted."""
    try:
        result = main(argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 130 if getattr(result, "interrupted", False) else 0


def print_json(a: argparse.Namespace, result: Any) -> None:
    """With ``--json``: the configurations (best first) and the files, as one JSON object."""
    if not a.json or result is None:
        return

    def clean(v):
        return None if isinstance(v, float) and v != v else v

    print(json.dumps({
        "sweep": str(result.path),
        "interrupted": result.interrupted,
        "configs": [{k: clean(v) for k, v in c.items()} for c in result.configs],
        "files": {k: str(v) for k, v in result.files.items()},
    }, indent=1, default=str))


__all__ += ["default_name", "print_json"]
