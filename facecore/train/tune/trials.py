"""What runs inside one sweep trial: the Ray Tune function trainable :func:`sweep_trial`.

A trial's Tune ``config`` is ``{"params": {dotted key: value}, "seed": int (or Tune's
``__trial_index__`` under Optuna's repeater), "sweep": settings}`` (built by
:func:`facecore.train.tune.run_sweep`). :func:`trial_config` turns it into the trial's
:class:`~facecore.train.sections.TrainConfig`: the base config, the params, the seed on
every seed key, and the run section pointed at the trial's own folder
``<sweep>/trials/<trial id>`` (deterministic: Tune keeps trial ids across a restore).

* **One worker** (``workers_per_trial = 1``): the trial process trains
  (:func:`facecore.train.loops.run_training`) with a :class:`TuneSession`, on its GPU
  when the trial holds one. Checkpoints go to the trial folder atomically
  (:func:`facecore.train.checkpoints.persist_checkpoint`) and a restarted trial resumes
  from the newest complete one.
* **N > 1 workers**: the trial is the driver of a Ray Train run, Ray's documented
  Train V2 pattern: :func:`facecore.train.fit` (``TorchTrainer`` of
  :func:`facecore.train.loops.train_loop_per_worker``, N workers) with the run name = the
  trial id and the storage = ``<sweep>/trials``, so the Ray Train run folder *is* the trial
  folder, and a :class:`~facecore.train.tune.callbacks.ForwardToTune` callback on the Train controller that forwards
  rank 0's metrics to Tune every epoch (Train V2 keeps metrics only with checkpoints; Tune
  needs every epoch for ASHA). When Tune stops the trial before ``fit`` returns (ASHA,
  also at the last epoch; the sweep's end; Ctrl-C), the trainable's ``cleanup`` aborts the
  Train run and waits until its workers' placement group is removed
  (:class:`~facecore.train.tune.callbacks.TrainRunHandle`; without it the group outlives
  the trial and the next trial waits for its CPUs for ever).

Either way, every epoch (:func:`epoch_report`): the scalarised score
``sweep_score`` is added to the metrics (:func:`scalarised_score`), the trial's
``history.json`` is rewritten, checkpoints other than the latest and the best (by
``sweep_score``) are deleted, and the metrics (without the history) go to Tune. Every start
of a trial process appends a line to ``starts.jsonl`` in the trial folder (time, host,
pid, the epoch it resumes after), so restarts are visible.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from facecore.train.checkpoints import (
    checkpoint_epoch,
    persist_checkpoint,
    remove_stale_temporaries,
    resume_checkpoint,
)
from facecore.train.config import apply_overrides, config_from_dict
from facecore.train.loops import Session, run_training
from facecore.train.sections import ConfigError, TrainConfig

__all__ = [
    "HISTORY_FILE",
    "SCORE",
    "STARTS_FILE",
    "TuneSession",
    "add_relative",
    "epoch_report",
    "prune_checkpoints",
    "scalarised_score",
    "sweep_trial",
    "trial_config",
    "trial_seed",
]

#: The metric ASHA (and Optuna) optimise, always maximised: see :func:`scalarised_score`.
SCORE = "sweep_score"
HISTORY_FILE = "history.json"
STARTS_FILE = "starts.jsonl"
#: Ray Train keeps this many checkpoints in its list; facecore prunes the folder itself.
_RAY_KEEP = 10_000


def scalarised_score(
    metrics: Mapping[str, Any], objectives: Sequence[Sequence[str]], weights: Sequence[float]
) -> float:
    """``sweep_score = sum_i w_i * s_i * metrics[m_i]`` with ``s_i = +1`` for a maximised
    objective and ``-1`` for a minimised one, so larger is always better (one objective
    ``val_mae``/min gives ``-val_mae``). A missing objective metric is a
    :class:`ConfigError` listing the metrics there are; a non-finite one gives ``-inf``
    (worst), so ASHA stops a diverged trial instead of keeping it."""
    total = 0.0
    for (metric, mode), w in zip(objectives, weights):
        if metric not in metrics:
            have = ", ".join(sorted(k for k in metrics if k != "history"))
            raise ConfigError(f"objective {metric!r} is not a reported metric; metrics: {have}")
        v = metrics[metric]
        if not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            return -math.inf
        total += float(w) * (1.0 if mode == "max" else -1.0) * float(v)
    return total


def add_relative(metrics: dict[str, Any], relative: Mapping[str, float]) -> dict[str, Any]:
    """Add ``<m>_rel = metrics[m] / reference`` for every ``m: reference`` of ``relative``
    (a sweep's reference run, e.g. the SAN's autoencoder-only utility) that ``metrics``
    holds; returns ``metrics``."""
    for m, ref in relative.items():
        v = metrics.get(m)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            metrics[f"{m}_rel"] = float(v) / float(ref) if ref else math.nan
    return metrics


def trial_seed(config: Mapping[str, Any]) -> int:
    """The trial's seed: ``config["seed"]``, or ``seeds[__trial_index__]`` (Optuna + Tune's
    ``Repeater``)."""
    if "seed" in config:
        return int(config["seed"])
    seeds = config["sweep"]["seeds"]
    return int(seeds[int(config.get("__trial_index__", 0)) % len(seeds)])


def trial_config(config: Mapping[str, Any], trial_id: str) -> TrainConfig:
    """The :class:`TrainConfig` of the trial (module doc)."""
    s = config["sweep"]
    seed = trial_seed(config)
    overrides: dict[str, Any] = dict(config.get("params") or {})
    overrides.update({k: seed for k in s["seed_keys"]})
    gpus = float(s.get("gpus_per_worker", 0.0))
    overrides.update({
        "run.name": trial_id,
        "run.storage": s["trials_dir"],
        # fit() writes its own history.json / config.yaml in run.output: not over the trial's
        "run.output": str(Path(s["trials_dir"]) / trial_id / "train"),
        "run.workers": int(s["workers"]),
        "run.use_gpu": gpus > 0,
        "run.cpus_per_worker": float(s["cpus_per_worker"]),
        "run.num_to_keep": _RAY_KEEP,
        "run.verbose": 0,
        "run.export": False,
        "run.plot": False,
        "run.address": None,
    })
    return config_from_dict(apply_overrides(s["base"], overrides))


# ----------------------------------------------------------------- per epoch


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def prune_checkpoints(run_dir: str | Path, history: Sequence[Mapping[str, Any]]) -> list[Path]:
    """Delete the ``checkpoint_epoch_*`` folders of ``run_dir`` except the latest and the
    best by ``sweep_score`` in ``history`` (a tie keeps the earliest); returns what was
    deleted. Only epochs in ``history`` are touched (never one being written)."""
    run_dir = Path(run_dir)
    scored = [(h[SCORE], int(h["epoch"])) for h in history if isinstance(h.get(SCORE), (int, float))]
    if not scored:
        return []
    latest = max(e for _, e in scored)
    best = max(scored, key=lambda se: (se[0], -se[1]))[1]
    known = {e for _, e in scored}
    gone = []
    for d in run_dir.iterdir() if run_dir.is_dir() else ():
        e = checkpoint_epoch(d)
        if e is not None and d.is_dir() and e in known and e not in (latest, best):
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d)
    return gone


def epoch_report(run_dir: str | Path, metrics: Mapping[str, Any], sweep: Mapping[str, Any]) -> dict[str, Any]:
    """The per-epoch bookkeeping of a trial (module doc); returns what goes to Tune."""
    run_dir = Path(run_dir)
    objectives, weights = sweep["objectives"], sweep["weights"]
    relative = sweep.get("relative") or {}
    out = add_relative({k: v for k, v in metrics.items() if k != "history"}, relative)
    out[SCORE] = scalarised_score(out, objectives, weights)
    history = metrics.get("history")
    history = json.loads(history) if isinstance(history, str) else list(history or [out])
    for h in history:
        add_relative(h, relative)
        h[SCORE] = scalarised_score(h, objectives, weights) if all(m in h for m, _ in objectives) else None
    _write_json(run_dir / HISTORY_FILE, history)
    prune_checkpoints(run_dir, history)
    return out


# ------------------------------------------------------------ single worker


class TuneSession(Session):
    """The trial process trains alone (no DDP): checkpoints in the trial folder,
    metrics to ``ray.tune.report`` through :func:`epoch_report`."""

    def __init__(self, run_dir: str | Path, sweep: Mapping[str, Any], device: torch.device | None = None):
        self.run_dir = Path(run_dir)
        self.sweep = sweep
        if device is not None:
            self.device = device

    def restore(self) -> dict[str, Any] | None:
        found = resume_checkpoint(self.run_dir)
        return None if found is None else found[1]

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        import ray.tune

        if state is not None:
            persist_checkpoint(self.run_dir, metrics, state)
        ray.tune.report(epoch_report(self.run_dir, metrics, self.sweep))


# ----------------------------------------------------------------- the trial


def _record_start(run_dir: Path, trial_id: str) -> None:
    found = resume_checkpoint(run_dir)
    line = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "trial_id": trial_id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "resume_after_epoch": None if found is None else int(found[1]["epoch"]),
    }
    with open(run_dir / STARTS_FILE, "a") as f:
        f.write(json.dumps(line) + "\n")


def sweep_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable of every facecore sweep (module doc)."""
    import ray
    import ray.tune

    s = config["sweep"]
    trial_id = ray.tune.get_context().get_trial_id()
    cfg = trial_config(config, trial_id)
    run_dir = Path(s["trials_dir"]) / trial_id
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(run_dir)
    trial_file = run_dir / "trial.json"
    if not trial_file.exists():
        _write_json(trial_file, {"trial_id": trial_id, "params": config.get("params") or {},
                                 "seed": trial_seed(config)})
    _record_start(run_dir, trial_id)
    if int(s["workers"]) > 1:
        from facecore.train.runner import fit

        # The sweep sized its concurrency to the cluster, so the workers' resources exist;
        # on a busy node their processes can take longer than Ray Train's 60 s to start
        # (measured on 2 shared CPUs), which Train would count as a failed start.
        os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "600")
        from facecore.train.tune.callbacks import ForwardToTune, TrainRunHandle, active_train_run

        # When Tune stops the trial (ASHA, the sweep's end, Ctrl-C), the trainable's
        # cleanup aborts the Train run through this handle, so that its workers and their
        # placement group are gone before Tune frees the trial (see TrainRunHandle).
        with active_train_run(TrainRunHandle()) as handle:
            try:
                fit(cfg, finalize_run=False,
                    callbacks=[ForwardToTune(str(run_dir), s, epoch_report), handle])
            except Exception:  # an aborted run fails in fit(); that is the stop, not an error
                if not handle.stopped:
                    raise
        return
    torch.set_num_threads(max(1, int(float(s["cpus_per_worker"]))))
    device = None
    if float(s.get("gpus_per_worker", 0.0)) > 0 and torch.cuda.is_available():
        device = torch.device("cuda")  # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU
    run_training(cfg, TuneSession(run_dir, s, device))
