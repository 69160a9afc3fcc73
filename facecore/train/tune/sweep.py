"""``run_sweep``: a Ray Tune sweep of any training task over any config keys, with repeats
over seeds, ASHA, Optuna, multi-worker trials, resume, a final evaluation of every finished
trial, tables, plots and a Pareto front.

See :mod:`facecore.train.tune` for the walk-through; the rules in short:

* Trials: :func:`facecore.train.tune.trials.sweep_trial` (one worker: a plain function
  trainable; N > 1 workers: a ``TorchTrainer`` inside the trial), run as Tune's function
  trainable whose ``cleanup`` stops a trial's Train run when Tune stops the trial
  (:func:`facecore.train.tune.callbacks.sweep_trainable`). Trial ``t`` lives in
  ``<storage>/<name>/trials/<t>/`` (checkpoints, ``history.json``, ``starts.jsonl``,
  ``final/``).
* Concurrency: ``max_concurrent_trials`` = how many trials the cluster's resources hold
  at once (``ray.cluster_resources()``: CPUs / (workers x cpus per worker), GPUs / (workers
  x GPUs per worker)), capped by ``max_concurrent``. A multi-worker trial's own process
  (the Train driver) asks for 0.01 CPU, its workers for the rest.
* Resume: a sweep whose folder Tune can restore (``Tuner.can_restore``) is continued with
  ``Tuner.restore`` (finished trials are not rerun; unfinished and failed ones continue
  from their newest complete checkpoint), after checking that the settings are the ones it
  was started with (``sweep.json``).
* Output (``<storage>/<name>/``): ``trials.csv|json`` (one row per trial), ``configs.csv|json``
  (one row per configuration: mean and sd over the seeds), ``box.png`` (per configuration,
  over seeds), ``learning_curves.png`` (the best configurations' trials),
  ``pareto.csv|json|png`` (with two front objectives), ``sweep.json`` (the settings).
"""

from __future__ import annotations

import functools
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from facecore.train.checkpoints import checkpoint_dir_name, complete_checkpoints
from facecore.train.config import config_to_dict
from facecore.train.sections import ConfigError, TrainConfig, check_run_name
from facecore.train.tune.space import Dimension, check_space, parse_dimension, space_to_tune
from facecore.train.tune.trials import (
    HISTORY_FILE,
    SCORE,
    STARTS_FILE,
    sweep_trial,
    trial_config,
    trial_seed,
)

__all__ = [
    "Asha",
    "FinishedTrial",
    "SweepResult",
    "export_trial",
    "run_sweep",
    "evaluate_on_test",
]

SETTINGS_FILE = "sweep.json"
#: CPUs a multi-worker trial's own process (the Ray Train driver) asks for: next to none
#: (Tune refuses an empty request), its workers hold the real resources.
DRIVER_CPUS = 0.01
TRIALS_DIR = "trials"
#: Tune trial states (ray.tune.experiment.Trial)
_TERMINATED, _ERROR = "TERMINATED", "ERROR"


@dataclass(frozen=True)
class Asha:
    """ASHA (``ray.tune.schedulers.ASHAScheduler``) on ``sweep_score`` with ``epoch`` as
    time: a trial reaching a rung (``grace_period`` x ``reduction_factor``^k epochs) stops
    unless its score is in the top ``1 / reduction_factor`` of the trials recorded there;
    ``max_t`` is the config's ``optim.epochs`` (the largest in the search space)."""

    grace_period: int = 1
    reduction_factor: float = 2.0

    def __post_init__(self) -> None:
        if self.grace_period < 1:
            raise ConfigError(f"--grace-period must be >= 1, got {self.grace_period}")
        if self.reduction_factor <= 1:
            raise ConfigError(f"--reduction-factor must be > 1, got {self.reduction_factor}")


@dataclass
class FinishedTrial:
    """What the final evaluation hook gets for every finished trial (stopped early ones
    included): its id, params, seed, :class:`TrainConfig`, folder, the chosen checkpoint
    folder (best ``sweep_score``, or the latest), the per-epoch history and the status
    (``finished`` / ``stopped early``)."""

    trial_id: str
    params: dict[str, Any]
    seed: int
    config: TrainConfig
    run_dir: Path
    checkpoint: Path
    history: list[dict[str, Any]]
    status: str


def evaluate_on_test(trial: FinishedTrial) -> dict[str, float]:
    """The default final evaluation: the chosen checkpoint on its config's test split
    (:func:`facecore.train.finalize`, no export or plots; ``evaluation.json`` in
    ``<trial>/final``): the task's ``test_*`` metrics."""
    from facecore.train.runner import finalize

    return finalize(trial.checkpoint, trial.run_dir / "final", export=False, plot=False)["test_metrics"]


def export_trial(row: Mapping[str, Any], directory: str | os.PathLike) -> Path:
    """Export a trial row's chosen checkpoint (``row["checkpoint"]``) for serving
    (TorchScript + torch.export + metadata, :func:`facecore.train.runner.export_checkpoint`)."""
    from facecore.train.runner import export_checkpoint, model_from_training_checkpoint

    if not row.get("checkpoint"):
        raise ValueError(f"trial {row.get('trial_id')} has no checkpoint to export")
    model, _, state = model_from_training_checkpoint(row["checkpoint"])
    return export_checkpoint(model, state, Path(directory))


@dataclass
class SweepResult:
    """``trials``: one row per trial (params, ``seed``, ``status``, ``epochs`` /
    ``max_epochs``, ``best_epoch``, ``sweep_score`` and the metrics of the best epoch, the
    final evaluation's metrics, ``checkpoint``, ``time_s``, ``error``), best first;
    ``configs``: one row per configuration (params, ``n`` seeds, ``stopped`` early, and
    ``<metric>_mean`` / ``<metric>_sd`` over the seeds), best first; ``front``: the
    non-dominated configurations (two or more front objectives); ``files``: name -> path;
    ``interrupted``: the sweep stopped before every trial ended (rerun to continue)."""

    name: str
    path: Path
    objectives: list[tuple[str, str]]
    params: list[str]
    trials: list[dict[str, Any]]
    configs: list[dict[str, Any]]
    front: list[dict[str, Any]] | None = None
    files: dict[str, Path] = field(default_factory=dict)
    interrupted: bool = False
    total_trials: int = 0

    @property
    def best(self) -> dict[str, Any] | None:
        """The best configuration's row (``configs[0]``)."""
        return self.configs[0] if self.configs else None

    def table(self) -> str:
        """The configurations, best first: params, seeds, epochs, and mean ± sd of each
        objective and of its final-evaluation counterpart (``test_*``)."""
        return format_table(self.configs, self.params, self.objectives, self.trials)


# ------------------------------------------------------------------ helpers


def _objectives(objectives, base: TrainConfig) -> list[tuple[str, str]]:
    objs = [tuple(o) for o in (objectives or [base.score()])]
    for o in objs:
        if len(o) != 2 or o[1] not in ("min", "max") or not isinstance(o[0], str) or not o[0]:
            raise ConfigError(f"an objective is (metric, 'min' | 'max'), got {o!r}")
    if len({m for m, _ in objs}) != len(objs):
        raise ConfigError(f"an objective is named twice: {[m for m, _ in objs]}")
    return objs  # type: ignore[return-value]


def _display_metric(metric: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """``test_X`` when the final evaluation reported it for ``val_X``, else ``metric``."""
    if metric.startswith("val_"):
        t = "test_" + metric[4:]
        if any(isinstance(r.get(t), (int, float)) for r in rows):
            return t
    return metric


def _short_names(params: Sequence[str]) -> dict[str, str]:
    last = [p.rsplit(".", 1)[-1] for p in params]
    return {p: (s if last.count(s) == 1 else p) for p, s in zip(params, last)}


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return str(v)
    return f"{v:.4g}" if math.isfinite(v) else str(v)


def _config_key(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def aggregate(
    trials: Sequence[Mapping[str, Any]], params: Sequence[str], sort_key: Callable[[Mapping], float]
) -> list[dict[str, Any]]:
    """One row per configuration (same params): ``n``, ``stopped``, ``seeds`` and
    ``<m>_mean`` / ``<m>_sd`` (sample sd; ``nan`` for one seed) of every numeric metric of
    the finished trials (stopped early ones included, failed ones left out)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for t in trials:
        if t["status"] in ("finished", "stopped early"):
            groups.setdefault(_config_key({p: t.get(p) for p in params}), []).append(t)
    skip = {"seed", "trial_id", "status", "checkpoint", "error", *params}
    rows = []
    for members in groups.values():
        row: dict[str, Any] = {p: members[0].get(p) for p in params}
        row["n"] = len(members)
        row["stopped"] = sum(m["status"] == "stopped early" for m in members)
        row["seeds"] = sorted(m["seed"] for m in members)
        keys: list[str] = []
        for m in members:
            keys += [k for k in m if k not in keys and k not in skip]
        for k in keys:
            vals = [float(m[k]) for m in members if _numeric(m.get(k))]
            if not vals:
                continue
            row[f"{k}_mean"] = statistics.fmean(vals)
            row[f"{k}_sd"] = statistics.stdev(vals) if len(vals) > 1 else math.nan
        rows.append(row)
    rows.sort(key=sort_key)
    return rows


def format_table(
    configs: Sequence[Mapping[str, Any]],
    params: Sequence[str],
    objectives: Sequence[tuple[str, str]],
    trials: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The configurations as aligned text (see :meth:`SweepResult.table`)."""
    short = _short_names(params)
    metrics: list[str] = []
    for m, _ in objectives:
        metrics.append(m)
        shown = _display_metric(m, trials)
        if shown != m:
            metrics.append(shown)
    head = [short[p] for p in params] + ["seeds", "stopped", "epochs"] + [
        f"{m} (mean ± sd)" for m in metrics
    ]
    body = []
    for c in configs:
        cells = [_fmt(c.get(p)) for p in params] + [str(c["n"]), str(c["stopped"]), _fmt_mean(c, "epochs", 1)]
        cells += [_fmt_pm(c, m) for m in metrics]
        body.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in body]
    return "\n".join(lines)


def _fmt_mean(c: Mapping[str, Any], k: str, digits: int) -> str:
    v = c.get(f"{k}_mean")
    return f"{v:.{digits}f}" if _numeric(v) else "-"


def _fmt_pm(c: Mapping[str, Any], k: str) -> str:
    m, s = c.get(f"{k}_mean"), c.get(f"{k}_sd")
    if not _numeric(m):
        return "-"

    def num(v: float) -> str:  # 3 decimals, or 3 significant digits for small values
        return f"{v:.3f}" if v == 0 or abs(v) >= 0.01 else f"{v:.3g}"

    return f"{num(m)} ± {num(s)}" if _numeric(s) else num(m)


def _write_table(rows: Sequence[Mapping[str, Any]], prefix: Path) -> dict[str, Path]:
    import csv

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(prefix.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()})

    def clean(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v

    prefix.with_suffix(".json").write_text(
        json.dumps([{k: clean(v) for k, v in r.items()} for r in rows], indent=1, default=str)
    )
    return {prefix.name: prefix.with_suffix(".csv"), prefix.name + "_json": prefix.with_suffix(".json")}


# ---------------------------------------------------------------- progress


def _trial_label(params: Sequence[str], trial) -> str:
    short = _short_names(params)
    p = trial.config.get("params") or {}
    return " ".join([f"{short[k]}={_fmt(p.get(k))}" for k in params] + [f"seed={trial_seed(trial.config)}"])


def _trial_summary(sweep: Mapping[str, Any], trial) -> str:
    run_dir = Path(sweep["trials_dir"]) / trial.trial_id
    history = _read_history(run_dir)
    last = trial.last_result or {}
    max_epochs = trial_config(trial.config, trial.trial_id).optim.epochs
    epochs = int(history[-1]["epoch"]) if history else int(last.get("epoch", 0) or 0)
    text = f"{epochs}/{max_epochs} epochs"
    if epochs < max_epochs:
        text += " (stopped early by ASHA)"
    latest = sweep.get("checkpoint") == "latest"
    best = (history[-1] if history else None) if latest else _best_entry(history)
    if best is not None:
        objs = ", ".join(f"{m} {_fmt(best.get(m))}" for m, _ in sweep["objectives"])
        text += f"; {'last' if latest else 'best'} epoch {int(best['epoch'])}: {objs}"
    if "time_total_s" in last:
        text += f"; {last['time_total_s']:.0f} s"
    return text


def _error_line(trial) -> str:
    msg = getattr(trial, "error_msg", None) or ""
    if not msg and getattr(trial, "error_file", None):
        try:
            msg = Path(trial.error_file).read_text()
        except OSError:
            msg = ""
    lines = [ln.strip() for ln in str(msg).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "see the trial's error file"


def _read_history(run_dir: Path) -> list[dict[str, Any]]:
    try:
        return json.loads((run_dir / HISTORY_FILE).read_text())
    except (OSError, ValueError):
        return []


def _best_entry(history: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    scored = [h for h in history if _numeric(h.get(SCORE)) or h.get(SCORE) == -math.inf]
    if not scored:
        return None
    return max(scored, key=lambda h: (h[SCORE], -int(h["epoch"])))


# ------------------------------------------------------------------- ray


def _cluster_concurrency(workers: int, cpus_per_worker: float, gpus_per_worker: float,
                         cap: int | None) -> int:
    import ray

    res = ray.cluster_resources()
    cpus, gpus = float(res.get("CPU", 0)), float(res.get("GPU", 0))
    need_cpu, need_gpu = workers * cpus_per_worker, workers * gpus_per_worker
    if workers > 1:
        need_cpu += DRIVER_CPUS
    fits = math.floor(cpus / need_cpu + 1e-9) if need_cpu > 0 else 10**6
    if need_gpu > 0:
        fits = min(fits, math.floor(gpus / need_gpu + 1e-9))
    if fits < 1:
        raise ConfigError(
            f"a trial needs {need_cpu:g} CPUs and {need_gpu:g} GPUs ({workers} worker(s) x "
            f"{cpus_per_worker:g} CPU, {gpus_per_worker:g} GPU), the Ray cluster has {cpus:g} "
            f"CPUs and {gpus:g} GPUs (--workers-per-trial / --cpus-per-worker / --gpus-per-trial)"
        )
    return max(1, min(fits, cap)) if cap else fits


def _init_ray(base: TrainConfig, address: str | None, verbose: int) -> None:
    import dataclasses

    from facecore.train.runner import _ensure_ray

    run = dataclasses.replace(base.run, address=address or base.run.address, verbose=2 if verbose >= 2 else 0)
    _ensure_ray(dataclasses.replace(base, run=run))


# ------------------------------------------------------------------- sweep


def _settings(base: TrainConfig, dims, seeds, seed_keys, objectives, weights, num_samples,
              search, search_seed, asha, workers, gpus, cpus) -> dict[str, Any]:
    """What a sweep is (compared on resume): everything but resources and concurrency."""
    b = config_to_dict(base)
    for k in ("name", "storage", "output", "workers", "use_gpu", "cpus_per_worker", "num_to_keep",
              "verbose", "export", "plot", "address"):
        b["run"].pop(k, None)
    return json.loads(json.dumps({
        "base": b,
        "space": [d.spec() for d in dims],
        "seeds": list(seeds),
        "seed_keys": list(seed_keys),
        "objectives": [list(o) for o in objectives],
        "weights": list(weights),
        "num_samples": num_samples,
        "search": search,
        "search_seed": search_seed,
        "asha": None if asha is None else {"grace_period": asha.grace_period,
                                           "reduction_factor": asha.reduction_factor},
        "workers_per_trial": workers,
        "gpus_per_worker": gpus,
        "cpus_per_worker": cpus,
    }))


_MISSING = object()


def _differences(a: Any, b: Any, prefix: str = "", defaults: Any = _MISSING) -> list[str]:
    """Dotted keys where stored settings ``a`` and this run's ``b`` differ. A key ``a``
    lacks (written by an older facecore) is no difference when ``b`` holds its default
    (``defaults``: the same tree with the default values) or an empty value."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            d = defaults.get(k, _MISSING) if isinstance(defaults, dict) else _MISSING
            if k not in a and (b[k] in (None, {}, [], ()) or (d is not _MISSING and b[k] == d)):
                continue
            out += _differences(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k, d)
        return out
    return [] if a == b else [prefix or "settings"]


def _total_trials(dims: Sequence[Dimension], seeds, num_samples: int, search: str) -> int:
    grid = 1
    if search != "optuna":
        for d in dims:
            if d.kind == "grid":
                grid *= len(d.values)
    return grid * num_samples * len(seeds)


def run_sweep(
    base: TrainConfig,
    space: Sequence[Dimension | str] = (),
    *,
    name: str,
    storage: str | os.PathLike = "runs/tune",
    seeds: Sequence[int] = (0,),
    seed_keys: Sequence[str] = ("run.seed",),
    objectives: Sequence[tuple[str, str]] | None = None,
    weights: Sequence[float] | None = None,
    num_samples: int = 1,
    search: str = "grid",
    search_seed: int = 0,
    asha: Asha | None = None,
    workers_per_trial: int = 1,
    gpus_per_trial: float = 0.0,
    cpus_per_worker: float = 1.0,
    max_concurrent: int | None = None,
    evaluate: Callable[[FinishedTrial], Mapping[str, float]] | None = evaluate_on_test,
    checkpoint: str = "best",
    front: Sequence[tuple[str, str]] | None = None,
    reference: Mapping[str, float] | None = None,
    reference_label: str = "reference",
    plot: bool = True,
    address: str | None = None,
    verbose: int = 0,
    out: TextIO | None = None,
    callbacks: Sequence[Any] = (),
    relative: Mapping[str, float] | None = None,
) -> SweepResult:
    """Run (or continue) the sweep ``<storage>/<name>`` of ``base`` over ``space``.

    ``space``: :class:`Dimension` objects or ``KEY=KIND:ARGS`` strings
    (:mod:`facecore.train.tune.space`). Every configuration runs once per seed in
    ``seeds``; the seed goes to every key of ``seed_keys`` (``run.seed``: weights and
    augmentation; add ``data.seed`` to redraw the splits too). ``objectives``: ``(metric,
    mode)`` pairs reported every epoch (default: the task's checkpoint score, e.g.
    ``("val_mae", "min")``); ``weights`` (default 1 each) make the scalarised score
    ``sweep_score`` that ASHA and Optuna optimise and that picks each trial's best epoch
    (:func:`~facecore.train.tune.trials.scalarised_score`). ``search``: ``grid`` (Tune's
    variant generator: every grid value x ``num_samples`` draws of the sampled kinds,
    each draw held constant across the grid and the seeds, drawn with ``search_seed``) or
    ``optuna`` (``num_samples`` suggestions, each run once per seed through Tune's
    ``Repeater``; needs the ``tune`` extra). ``asha``: early stopping (:class:`Asha`).

    ``workers_per_trial``: 1 trains in the trial process; N > 1 runs a Ray Train
    ``TorchTrainer`` of N workers inside the trial. ``gpus_per_trial``: GPUs of each
    worker of a trial (a single-worker trial may take a fraction, e.g. 0.25 to share a GPU;
    multi-worker trials take 0 or 1 per worker). ``cpus_per_worker``: CPUs of each worker.
    ``max_concurrent``: cap on the trials at once (default: what the cluster holds).

    ``evaluate(FinishedTrial) -> metrics`` runs on the driver after the trials, on every
    finished trial (stopped early ones included) with its chosen ``checkpoint``
    (``best``: best ``sweep_score``; ``latest``); results are cached in
    ``<trial>/final_eval.json``. Default: :func:`evaluate_on_test` (the test split);
    ``None``: none. ``front``: the objectives of the Pareto front over the configurations
    (default: ``objectives`` when there are two or more; the final evaluation's ``test_``
    counterparts where reported), plotted with ``reference`` (a point such as the
    autoencoder-only run).

    Raises :class:`ConfigError` (one line naming the key / argument) before any trial
    starts. Returns a :class:`SweepResult`; prints one line per finished trial and the
    table to ``out`` (default stdout). ``callbacks``: extra ``ray.tune.Callback`` objects
    for the Tune driver loop (after the progress printer). ``relative``: ``{metric:
    reference value}``; every epoch's metrics gain ``<metric>_rel = metric / reference``
    (usable as an objective, e.g. the SAN's utility relative to the autoencoder-only run).
    """
    out = sys.stdout if out is None else out
    if search not in ("grid", "optuna"):
        raise ConfigError(f"--search must be grid | optuna, got {search!r}")
    if checkpoint not in ("best", "latest"):
        raise ConfigError(f"checkpoint must be best | latest, got {checkpoint!r}")
    if num_samples < 1:
        raise ConfigError(f"--num-samples must be >= 1, got {num_samples}")
    if workers_per_trial < 1:
        raise ConfigError(f"--workers-per-trial must be >= 1, got {workers_per_trial}")
    if cpus_per_worker <= 0:
        raise ConfigError(f"--cpus-per-worker must be > 0, got {cpus_per_worker}")
    if gpus_per_trial < 0 or (workers_per_trial > 1 and gpus_per_trial not in (0, 1)):
        raise ConfigError(
            f"--gpus-per-trial must be >= 0 (0 or 1 with --workers-per-trial > 1: one GPU per "
            f"worker), got {gpus_per_trial}"
        )
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must list distinct integers, got {list(seeds)}")
    if not seed_keys:
        raise ConfigError("seed_keys must name at least one config key (e.g. run.seed)")
    dims = [parse_dimension(d) if isinstance(d, str) else d for d in space]
    if len({d.key for d in dims}) != len(dims):
        raise ConfigError("a --space key is given twice")
    objs = _objectives(objectives, base)
    weights = [1.0] * len(objs) if weights is None else [float(w) for w in weights]
    if len(weights) != len(objs):
        raise ConfigError(f"--weights needs one weight per objective ({len(objs)}), got {len(weights)}")
    if reference is not None:
        given = [m for m, _ in front] if front else ([m for m, _ in objs] if len(objs) > 1 else [])
        for m in given:
            alts = {m} | ({"test_" + m[4:]} if m.startswith("val_") and not front else set())
            if not alts & set(reference):
                raise ConfigError(f"reference point {dict(reference)} lacks the front objective {m!r}")
    base_dict = config_to_dict(base)
    check_space(dims, base_dict, fixed={k: seeds[0] for k in seed_keys})
    from facecore.train.config import check_data_root

    check_data_root(base)
    storage_path = Path(storage).expanduser().resolve()
    if "://" in str(storage):
        raise ConfigError(f"sweep storage must be a local or shared (NFS) folder, got the URI {storage}")
    check_run_name(name, storage_path, key="--name")
    if search == "optuna":
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise ConfigError(
                "--search optuna needs Optuna: pip install 'facecore[tune]' (or pip install optuna)"
            ) from None
    # every configuration's epochs (optim.epochs may be searched): ASHA's max_t
    max_epochs = max(
        [base.optim.epochs]
        + [int(v) for d in dims if d.key == "optim.epochs" for v in d.probes]
    )

    import ray
    from ray import tune

    _init_ray(base, address, verbose)
    concurrent = _cluster_concurrency(workers_per_trial, cpus_per_worker, gpus_per_trial, max_concurrent)

    path = storage_path / name
    settings = _settings(base, dims, seeds, seed_keys, objs, weights, num_samples, search,
                         search_seed, asha, workers_per_trial, gpus_per_trial, cpus_per_worker)
    settings["relative"] = {k: float(v) for k, v in (relative or {}).items()}
    sweep = {
        **{k: settings[k] for k in ("seeds", "seed_keys", "objectives", "weights")},
        "base": base_dict,
        "workers": workers_per_trial,
        "gpus_per_worker": float(gpus_per_trial),
        "cpus_per_worker": float(cpus_per_worker),
        "trials_dir": str(path / TRIALS_DIR),
        "checkpoint": checkpoint,
        "relative": {k: float(v) for k, v in (relative or {}).items()},
    }
    if workers_per_trial > 1:  # the trial drives a TorchTrainer; its workers hold the CPUs
        resources = {"cpu": DRIVER_CPUS}
    else:
        resources = {"cpu": cpus_per_worker} | ({"gpu": gpus_per_trial} if gpus_per_trial else {})
    from facecore.train.tune.callbacks import sweep_trainable

    # sweep_trial as Tune's function trainable, with a cleanup that stops a trial's Train run
    trainable = tune.with_resources(sweep_trainable(sweep_trial), resources)
    total = _total_trials(dims, seeds, num_samples, search)

    restoring = tune.Tuner.can_restore(str(path))
    if restoring:
        try:
            stored = json.loads((path / SETTINGS_FILE).read_text())["settings"]
        except (OSError, ValueError, KeyError):
            stored = None
        if stored is None:
            raise ConfigError(f"{path} holds a Tune experiment that is not a facecore sweep (no {SETTINGS_FILE}); choose another --name")
        from facecore.train.config import config_from_dict

        defaults = {"base": config_to_dict(config_from_dict({"task": base.task}))}
        diff = _differences(stored, settings, defaults=defaults)
        if diff:
            raise ConfigError(
                f"sweep {name!r} in {storage_path} was started with other settings (differs in "
                f"{', '.join(diff[:6])}{' ...' if len(diff) > 6 else ''}); rerun it with the same "
                "arguments to continue it, or choose another --name"
            )
        # a trial whose path is gone keeps its old absolute trials_dir: the folder moved
        if json.loads((path / SETTINGS_FILE).read_text()).get("trials_dir") != sweep["trials_dir"]:
            raise ConfigError(f"sweep {name!r} was moved from where it ran; it resumes only in place")
    else:
        path.mkdir(parents=True, exist_ok=True)
        (path / SETTINGS_FILE).write_text(json.dumps(
            {"name": name, "trials_dir": sweep["trials_dir"], "total_trials": total,
             "settings": settings}, indent=1))

    progress_done = 0
    if restoring:
        progress_done = _finished_before(path)
        print(f"resuming sweep {name}: {progress_done} of {total} trials ended before "
              f"(finished trials are not rerun)", file=out, flush=True)
    params = [d.key for d in dims]
    from facecore.train.tune.callbacks import SweepProgress

    progress = SweepProgress(
        functools.partial(_trial_label, params), functools.partial(_trial_summary, sweep),
        _error_line, total, progress_done, out,
    )

    if restoring:
        tuner = tune.Tuner.restore(
            str(path), trainable=trainable, resume_unfinished=True, resume_errored=True,
        )
        # Tune restores the callbacks it saved; this run's progress printer replaces them
        tuner._local_tuner.get_run_config().callbacks = [progress, *callbacks]  # noqa: SLF001
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=_param_space(dims, seeds, search, sweep),
            tune_config=tune.TuneConfig(
                metric=SCORE,
                mode="max",
                num_samples=num_samples * (len(seeds) if search == "optuna" else 1),
                search_alg=_search_alg(search, search_seed, seeds, concurrent),
                scheduler=None if asha is None else tune.schedulers.ASHAScheduler(
                    time_attr="epoch", max_t=max_epochs, grace_period=min(asha.grace_period, max_epochs),
                    reduction_factor=asha.reduction_factor,
                ),
                # the grid search's generator limits itself; Optuna's through Tune
                max_concurrent_trials=concurrent if search == "optuna" else None,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(storage_path),
                verbose=0 if verbose < 2 else 1,
                callbacks=[progress, *callbacks],
            ),
        )
    t0 = time.perf_counter()
    print(
        f"sweep {name}: {total} trials ({len(dims)} searched key(s) x {len(seeds)} seed(s)"
        f"{', ASHA' if asha else ''}, {search} search), {workers_per_trial} worker(s) per trial, "
        f"{concurrent} at once; results in {path}", file=out, flush=True,
    )
    quiet = verbose < 2 and "RAY_AIR_NEW_OUTPUT" not in os.environ
    if quiet:  # Tune's own reporter prints its header and tables even at verbose=0
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        grid = tuner.fit()
    finally:
        if quiet:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
    _ = ray  # Ray stays up for the caller
    trials = list(getattr(grid, "_experiment_analysis").trials)  # noqa: B009 - statuses live there
    interrupted = any(t.status not in (_TERMINATED, _ERROR) for t in trials) or len(trials) < total
    rows = [_trial_row(t, sweep, params, checkpoint) for t in trials]
    n_done = sum(r["status"] in ("finished", "stopped early") for r in rows)
    if interrupted:
        print(f"sweep interrupted: {n_done} of {total} trials finished; run the same command "
              f"again (same --storage / --name) to continue it", file=out, flush=True)
    elif evaluate is not None:
        _final_evaluation(rows, trials, sweep, evaluate, out)
    result = _summarise(name, path, objs, params, rows, front, reference, reference_label,
                        plot and not interrupted, out)
    result.interrupted = interrupted
    result.total_trials = total
    if not interrupted:
        print(result.table(), file=out, flush=True)
        best = result.best
        if best is not None:
            short = _short_names(params)
            desc = " ".join(f"{short[p]}={_fmt(best.get(p))}" for p in params) or "the base config"
            print(f"best configuration: {desc} ({n_done} trials, {time.perf_counter() - t0:.0f} s; "
                  f"tables and plots in {path})", file=out, flush=True)
    return result


def _finished_before(path: Path) -> int:
    """Trials an earlier run of the sweep ended (finished, stopped or failed)."""
    try:
        from ray.tune import ExperimentAnalysis

        ea = ExperimentAnalysis(str(path))
        return sum(t.status in (_TERMINATED, _ERROR) for t in ea.trials)
    except Exception:  # noqa: BLE001 - only for the message
        return 0


def _param_space(dims, seeds, search, sweep) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {"params": space_to_tune(dims, search), "sweep": sweep}
    if search != "optuna":
        space["seed"] = tune.grid_search(list(seeds))
    return space


def _search_alg(search: str, search_seed: int, seeds: Sequence[int], concurrent: int):
    if search == "optuna":
        from ray.tune.search import Repeater
        from ray.tune.search.optuna import OptunaSearch

        return Repeater(OptunaSearch(seed=search_seed), repeat=len(seeds), set_index=True)
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(
        constant_grid_search=True, random_state=search_seed, max_concurrent=concurrent
    )


def _trial_row(trial, sweep, params, which: str) -> dict[str, Any]:
    cfg = trial_config(trial.config, trial.trial_id)
    p = trial.config.get("params") or {}
    run_dir = Path(sweep["trials_dir"]) / trial.trial_id
    history = _read_history(run_dir)
    last = trial.last_result or {}
    epochs = int(history[-1]["epoch"]) if history else int(last.get("epoch", 0) or 0)
    row: dict[str, Any] = {"trial_id": trial.trial_id, **{k: p.get(k) for k in params},
                           "seed": trial_seed(trial.config)}
    if trial.status == _ERROR:
        status = "error"
    elif trial.status != _TERMINATED:
        status = "unfinished"
    else:
        status = "finished" if epochs >= cfg.optim.epochs else "stopped early"
    row.update(status=status, epochs=epochs, max_epochs=cfg.optim.epochs)
    chosen = _best_entry(history) if which == "best" else (history[-1] if history else None)
    if chosen is not None:
        row["best_epoch"] = int(chosen["epoch"])
        row[SCORE] = chosen.get(SCORE)
        row.update({k: v for k, v in chosen.items() if k not in ("epoch", SCORE)})
        d = run_dir / checkpoint_dir_name(int(chosen["epoch"]))
        if not d.is_dir():  # pruned or never written: the newest complete one
            done = complete_checkpoints(run_dir)
            d = done[-1] if done else None
        row["checkpoint"] = str(d) if d is not None else None
    row["time_s"] = float(last.get("time_total_s", math.nan))
    if status == "error":
        row["error"] = _error_line(trial)
    return row


def _final_evaluation(rows, trials, sweep, evaluate, out) -> None:
    by_id = {t.trial_id: t for t in trials}
    todo = [r for r in rows if r["status"] in ("finished", "stopped early") and r.get("checkpoint")]
    if not todo:
        return
    hook = f"{getattr(evaluate, '__module__', '')}.{getattr(evaluate, '__qualname__', repr(evaluate))}"
    print(f"final evaluation ({hook}) of {len(todo)} trials", file=out, flush=True)
    for r in todo:
        run_dir = Path(sweep["trials_dir"]) / r["trial_id"]
        cache = run_dir / "final_eval.json"
        try:
            cached = json.loads(cache.read_text())
        except (OSError, ValueError):
            cached = None
        if cached and cached.get("checkpoint") == r["checkpoint"] and cached.get("hook") == hook:
            metrics = cached["metrics"]
        else:
            t = by_id[r["trial_id"]]
            info = FinishedTrial(
                trial_id=r["trial_id"], params={k: v for k, v in (t.config.get("params") or {}).items()},
                seed=r["seed"], config=trial_config(t.config, r["trial_id"]), run_dir=run_dir,
                checkpoint=Path(r["checkpoint"]), history=_read_history(run_dir), status=r["status"],
            )
            metrics = {k: float(v) for k, v in dict(evaluate(info)).items()}
            cache.write_text(json.dumps({"checkpoint": r["checkpoint"], "hook": hook, "metrics": metrics}, indent=1))
        r.update(metrics)


def _summarise(name, path, objs, params, rows, front, reference, reference_label, plot, out) -> SweepResult:
    from facecore.train.tune.pareto import pareto_front, save_front

    # the table's order: the objective at each trial's best epoch (validation), or the
    # scalarised score with several objectives
    first, mode = objs[0]
    sign = 1.0 if mode == "min" else -1.0
    if len(objs) > 1:
        first, sign = SCORE, -1.0

    def trial_key(r):
        v = r.get(first)
        return (r["status"] not in ("finished", "stopped early"), not _numeric(v), sign * v if _numeric(v) else 0.0)

    def config_key(c):
        v = c.get(f"{first}_mean")
        return (not _numeric(v), sign * v if _numeric(v) else 0.0)

    rows.sort(key=trial_key)
    configs = aggregate(rows, params, config_key)
    res = SweepResult(name=name, path=path, objectives=list(objs), params=list(params),
                      trials=rows, configs=configs)
    res.files.update(_write_table(rows, path / "trials"))
    res.files.update(_write_table(configs, path / "configs"))
    # the Pareto front over the configurations (means over the seeds)
    if front:
        front_metrics = [(m, md) for m, md in front]
    elif len(objs) > 1:  # the objectives, by their final-evaluation names where reported
        front_metrics = [(_display_metric(m, rows), md) for m, md in objs]
    else:
        front_metrics = []
    if front_metrics:
        cols = [(f"{m}_mean", md) for m, md in front_metrics]
        ref = None
        if reference:  # keys: the front metrics, or (default front) the objectives' names
            given = [m for m, _ in front] if front else [m for m, _ in objs]
            ref = {f"{d}_mean": float(reference[d] if d in reference else reference[g])
                   for (d, _), g in zip(front_metrics, given)}
        short = _short_names(params)
        for c in configs:
            c["label"] = " ".join(f"{short[p]}={_fmt(c.get(p))}" for p in params)
        res.front = [dict(c) for c in pareto_front(configs, cols)]
        files = save_front(configs, cols, path / "pareto", reference=ref, reference_label=reference_label,
                           label_key="label", title=f"sweep {name}", plot=plot)
        res.files.update({f"pareto_{k}": v for k, v in files.items()})
    if plot:
        from facecore.train.plots import MissingMatplotlib
        from facecore.train.tune.plots import plot_box, plot_curves

        try:
            metrics = []  # each objective (validation) and its final-evaluation counterpart
            for m, _ in objs:
                metrics += [m] + ([_display_metric(m, rows)] if _display_metric(m, rows) != m else [])
            res.files["box"] = plot_box(rows, configs, params, metrics, path / "box.png", title=f"sweep {name}")
            res.files["learning_curves"] = plot_curves(
                rows, configs, params, [m for m, _ in objs], Path(path / TRIALS_DIR),
                path / "learning_curves.png", title=f"sweep {name}",
            )
        except MissingMatplotlib as exc:
            print(f"warning: {exc}; no plots written", file=out, flush=True)
    return res


__all__ += ["aggregate", "format_table", "SETTINGS_FILE", "STARTS_FILE"]
