"""``fit(config)``: run a training config on Ray Train, then evaluate, export and plot.

::

    from facecore.train import fit, load_config
    result = fit(load_config("age_coral_synthetic", ["optim.epochs=3"]))
    print(result.test_metrics["test_mae"], result.export_dir)

What ``fit`` builds: ``TorchTrainer(train_loop_per_worker)`` with
``ScalingConfig(num_workers=run.workers, use_gpu=run.use_gpu)`` and
``RunConfig(name=run.name, storage_path=run.storage,
CheckpointConfig(num_to_keep, checkpoint_score_attribute=<score>),
FailureConfig(max_failures))``. Checkpoints live in ``<storage>/<name>``; starting
``fit`` again with the same storage and name resumes from the newest *complete*
checkpoint there (raise ``optim.epochs`` to train further; a finished run is not
retrained), and so does a crashed worker group restarted up to ``max_failures`` times.
With local storage the run folder is the truth, not Ray Train's checkpoint list (which a
killed driver may not have written): checkpoints are written atomically and never
overwritten, and the result's best / latest checkpoints and history come from the folder
(:mod:`facecore.train.checkpoints` states the rules).

Cluster: ``run.address`` (or ``RAY_ADDRESS``) connects to an existing cluster
(``ray start --head`` / ``ray job submit``); otherwise a local Ray instance is
started (or the one already initialised is used). ``run.workers = 0`` uses Ray
Train's in-process local mode (no cluster; checkpoints written by the loop to
``<storage>/<name>``).

Progress: Ray's own logging is lowered to warnings (``run.verbose < 2``) and the
driver prints one line per epoch, fed by a :class:`ray.train.UserCallback` on the
Train controller through a small queue actor.

Before the workers start, on the driver (:func:`prepare_run`): ``model.pretrained`` is
read and checked against the backbone (what loads is printed; a file of which nothing
fits is a :class:`~facecore.train.config.ConfigError`), and with ``data.cache: disk`` the
decoded-image cache is built once (the workers map it). The start line names the peak
learning rate (``optim.lr``, or the backbone's default).

At the end, on the driver: the best checkpoint (by the score attribute) is
evaluated on the test split (:func:`finalize`; ``evaluation.json`` states the protocol,
``image-level`` or ``identity-disjoint``), exported with
:func:`facecore.serving.export_model` (TorchScript + torch.export, with the settings
stored in the checkpoint: :func:`export_checkpoint`) and plotted
(:func:`plot_run`); everything lands in ``run.output``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from facecore.models.factory import model_from_checkpoint
from facecore.serving.export import export_model
from facecore.train import plots as P
from facecore.train.checkpoints import (
    METRICS_FILE,
    complete_checkpoints,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    remove_stale_temporaries,
    score_rank,
)
from facecore.train.config import (
    ConfigError,
    TrainConfig,
    check_data_root,
    config_from_dict,
    config_to_dict,
    save_config,
    validate,
)
from facecore.train.datasets import (
    build_splits,
    cache_dir_of,
    open_data,
    open_image_cache,
    preprocess_for,
)
from facecore.train.evaluation import evaluate, predict_dataset
from facecore.train.loops import train_loop_per_worker
from facecore.train.optim import config_lr
from facecore.train.progress import format_progress
from facecore.train.tasks import get_task

__all__ = [
    "TrainResult",
    "TrainingError",
    "export_checkpoint",
    "fit",
    "finalize",
    "latest_checkpoint",
    "model_from_training_checkpoint",
    "output_dir",
    "plot_run",
    "prepare_run",
    "run_path",
]


#: Ray Train's checkpoint-list snapshot in the run folder (ray.train.v2 constants).
_RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"


class TrainingError(RuntimeError):
    """The Ray Train run failed (after its retries); the message names the cause."""


@dataclass
class TrainResult:
    """Everything a finished :func:`fit` produced.

    ``metrics``: the last epoch's validation metrics; ``history``: one dict per
    epoch (also those before a resume); ``best_checkpoint`` / ``latest_checkpoint``:
    checkpoint directories (paths or URIs); ``test_metrics``: the best checkpoint
    on the test split (``test_`` keys) under ``test_protocol`` (``image-level`` or
    ``identity-disjoint``); ``export_dir``: ``model.pt``, ``model.pt2``,
    ``metadata.json``; ``plots``: name -> PNG path.
    """

    config: TrainConfig
    run_path: str
    output_dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    best_checkpoint: str | None
    best_metrics: dict[str, Any]
    latest_checkpoint: str | None
    test_metrics: dict[str, float] = field(default_factory=dict)
    test_protocol: str = ""
    export_dir: Path | None = None
    plots: dict[str, Path] = field(default_factory=dict)
    wall_time_s: float = 0.0

    @property
    def epochs_completed(self) -> int:
        return int(self.history[-1]["epoch"]) if self.history else 0


# -------------------------------------------------------------------- paths


def _is_uri(path: str) -> bool:
    return "://" in path


def run_path(cfg: TrainConfig) -> str:
    """``<storage>/<name>``: where Ray Train keeps the run's checkpoints."""
    storage = cfg.run.storage
    if not _is_uri(storage):
        storage = os.path.abspath(os.path.expanduser(storage))
    return storage.rstrip("/") + "/" + cfg.run.name


def output_dir(cfg: TrainConfig) -> Path:
    """Local folder for the export, plots and evaluation (``run.output`` or default)."""
    if cfg.run.output:
        return Path(cfg.run.output).expanduser().resolve()
    if _is_uri(cfg.run.storage):
        return Path("runs").resolve() / cfg.run.name
    return Path(run_path(cfg))


# ----------------------------------------------------------------- progress


def _progress_callback(q):
    from ray.train import UserCallback

    class _Progress(UserCallback):
        """Runs on the Train controller: forwards rank 0's metrics to the driver."""

        def __init__(self, q):
            self.q = q

        def after_report(self, run_context, metrics, checkpoint):
            if metrics:
                m = {k: v for k, v in metrics[0].items() if k != "history"}
                self.q.put_nowait(m)

        def after_exception(self, run_context, worker_exceptions):
            rank, exc = next(iter(worker_exceptions.items()))
            text = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
            self.q.put_nowait({"_failure": f"worker {rank}: {text[-1] if text else exc!r}"})

    return _Progress(q)


class _Printer:
    def __init__(self, q, epochs: int, fields: tuple[tuple[str, str], ...], out=sys.stdout):
        self.q, self.epochs, self.fields, self.out = q, epochs, fields, out
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        from ray.util.queue import Empty

        while True:
            try:
                m = self.q.get(block=True, timeout=0.5)
            except Empty:
                if self.stop.is_set():
                    return
                continue
            except Exception:  # the queue actor went away: stop printing
                return
            if "_failure" in m:
                line = f"worker failure ({m['_failure']}); Ray Train restarts from the latest checkpoint if retries remain"
            else:
                line = format_progress(m, self.epochs, self.fields)
            print(line, file=self.out, flush=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)


# ---------------------------------------------------------------------- ray


def _ensure_ray(cfg: TrainConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet = cfg.run.verbose < 2
    kwargs: dict[str, Any] = dict(
        include_dashboard=False,
        logging_level=logging.WARNING if quiet else logging.INFO,
        log_to_driver=not quiet,
    )
    # Workers import facecore from where this process found it (a checkout on PYTHONPATH
    # or site-packages): the folder above the facecore package.
    root = str(Path(__file__).resolve().parents[2])
    pp = os.pathsep.join([root] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": pp}}
    address = cfg.run.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(**kwargs)


def _history(metrics: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not metrics or "history" not in metrics:
        return []
    h = metrics["history"]
    return json.loads(h) if isinstance(h, str) else list(h)


def _checkpoint_path(ckpt) -> str | None:
    return None if ckpt is None else str(ckpt.path)


def prepare_run(cfg: TrainConfig, out=None) -> TrainConfig:
    """What the driver does once before the workers start; returns the config the workers
    get (``data.cache_dir`` made absolute for ``data.cache: disk``).

    * ``model.pretrained``: the file must exist and fit the backbone (read with
      ``weights_only=True``; the one-line report of what loads is printed to ``out``);
      otherwise a :class:`ConfigError` naming the key. The head is checked by the
      workers, which load the weights into the whole model.
    * ``data.cache: disk``: the decoded-image cache is built (or found) under
      :func:`facecore.train.datasets.cache_dir_of`, so the workers only map it.
    """
    import dataclasses

    from facecore.models.backbones import build_backbone
    from facecore.models.pretrained import load_pretrained

    m = cfg.model
    if m.pretrained:
        path = Path(m.pretrained).expanduser()
        if not path.is_file():
            raise ConfigError(f"model.pretrained: file not found: {m.pretrained}")
        try:
            report = load_pretrained(build_backbone(m.backbone, width=m.width), path, verbose=False)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"model.pretrained={m.pretrained!r}: {exc}") from None
        if out is not None:
            print(f"facecore: model.pretrained (backbone {m.backbone}): {report.summary()}",
                  file=out, flush=True)
    if cfg.data.cache == "disk" and cfg.data.name != "synthetic":
        where = cache_dir_of(cfg)
        t0 = time.perf_counter()
        cache = open_image_cache(dataclasses.replace(
            cfg, data=dataclasses.replace(cfg.data, cache_dir=str(where))
        ), open_data(cfg.data), get_task(cfg.task).preprocess(cfg, preprocess_for(cfg.data)))
        if out is not None and cache is not None:
            how = "built" if cache.built else "found"
            print(f"facecore: decoded-image cache {how}: {len(cache)} images, "
                  f"{cache.nbytes / 2**20:.1f} MiB in {cache.path} ({time.perf_counter() - t0:.1f} s)",
                  file=out, flush=True)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, cache_dir=str(where)))
    return cfg


def fit(
    cfg: TrainConfig,
    *,
    finalize_run: bool = True,
    out=None,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Train ``cfg`` with Ray Train; then (``finalize_run``) evaluate the best checkpoint on
    the test split, export it and plot. Raises :class:`~facecore.train.config.ConfigError`
    for a bad config / missing data root, :class:`TrainingError` when the run fails.

    ``callbacks``: extra :class:`ray.train.UserCallback` objects for the Train controller
    (``run.workers >= 1``), e.g. the sweep's forwarding of every epoch's metrics to Ray Tune
    (:mod:`facecore.train.tune.trials`)."""
    t0 = time.perf_counter()
    out = sys.stdout if out is None else out
    validate(cfg)
    check_data_root(cfg)
    task = get_task(cfg.task)
    # e.g. stage 1 of a privacy network: its auxiliaries, trained by nested fit calls
    cfg = task.before_fit(cfg, fit=fit, run_dir=run_path(cfg), out=out if cfg.run.verbose else None)
    score, mode = cfg.score()
    path = run_path(cfg)
    outdir = output_dir(cfg)
    outdir.mkdir(parents=True, exist_ok=True)
    verbose = cfg.run.verbose
    if verbose:
        lr = config_lr(cfg)
        origin = "" if cfg.optim.lr is not None else f" (default for {cfg.model.backbone})"
        print(
            f"facecore: training {cfg.task} ({task.describe(cfg)}) on {cfg.data.name} "
            f"({task.protocol_of(cfg)} splits), {cfg.run.workers} Ray Train worker(s), "
            f"{cfg.optim.name} lr {lr:.3g}{origin} {cfg.optim.scheduler}, run {path}",
            file=out,
            flush=True,
        )
    work_cfg = prepare_run(cfg, out if verbose else None)
    loop_config: dict[str, Any] = {"train_config": config_to_dict(work_cfg)}

    if cfg.run.workers == 0:
        result_metrics, best, latest = _fit_local(cfg, loop_config, path, score, mode, out)
    else:
        result_metrics, best, latest = _fit_ray(cfg, loop_config, path, score, mode, out, callbacks)

    history = _history(result_metrics)
    metrics = {k: v for k, v in (result_metrics or {}).items() if k != "history"}
    best_path, best_metrics = best
    res = TrainResult(
        config=cfg,
        run_path=path,
        output_dir=outdir,
        metrics=metrics,
        history=history,
        best_checkpoint=best_path,
        best_metrics={k: v for k, v in (best_metrics or {}).items() if k != "history"},
        latest_checkpoint=latest,
    )
    save_config(cfg, outdir / "config.yaml")
    (outdir / "history.json").write_text(json.dumps(history, indent=1))
    if finalize_run and best_path is not None:
        fin = finalize(best_path, outdir, export=cfg.run.export, plot=cfg.run.plot, history=history)
        res.test_metrics, res.export_dir, res.plots = fin["test_metrics"], fin["export_dir"], fin["plots"]
        res.test_protocol = fin["test_protocol"]
    res.wall_time_s = time.perf_counter() - t0
    return res


def _fit_local(cfg, loop_config, path, score, mode, out):
    """``workers = 0``: Ray Train local mode in this process; the loop persists checkpoints."""
    from ray.train import RunConfig as RayRunConfig
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    if _is_uri(path):
        raise ConfigError("run.workers=0 (local mode) needs a local run.storage, not a URI")
    Path(path).mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    loop_config = dict(loop_config, run_dir=path, print_progress=bool(cfg.run.verbose))
    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    train_logger = logging.getLogger("ray.train")
    level = train_logger.level
    if cfg.run.verbose < 2:  # local mode logs its start and every report at INFO
        train_logger.setLevel(logging.WARNING)
    try:
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config=loop_config,
            scaling_config=ScalingConfig(num_workers=0),
            run_config=RayRunConfig(name=cfg.run.name, storage_path=str(Path(path).parent)),
        )
        trainer.fit()
    except Exception as exc:  # noqa: BLE001 - reported as one clear error
        _raise_config_error(exc)
        raise TrainingError(f"training failed: {type(exc).__name__}: {exc}") from exc
    finally:
        train_logger.setLevel(level)
    prune_checkpoints(path, cfg.run.num_to_keep, score, mode)  # Ray Train prunes worker runs
    return _run_summary(path, score, mode)


def _run_summary(path: str, score: str, mode: str):
    """``(last metrics with history, (best dir, best metrics), latest dir)`` from the
    complete checkpoints of a local run folder (the folder is the truth: it also holds
    checkpoints written after an earlier driver died, which Ray Train's list lacks)."""
    dirs = complete_checkpoints(path)
    if not dirs:
        return None, (None, None), None
    all_metrics = [(str(d), json.loads((d / METRICS_FILE).read_text())) for d in dirs]
    best = min(all_metrics, key=lambda pm: score_rank(pm[1], score, mode))
    last = load_checkpoint(all_metrics[-1][0])
    last_metrics = dict(last["metrics"], history=last["history"])
    return last_metrics, best, all_metrics[-1][0]


def _check_ray_snapshot(path: str) -> None:
    """Ray Train restores its checkpoint list from a JSON snapshot in the run folder and
    refuses to start when the file is unreadable (a process killed while writing it) or
    names checkpoints that are gone. facecore resumes from the folder itself, so such a
    snapshot is moved aside (with a warning) instead of blocking the run."""
    snap = Path(path) / _RAY_SNAPSHOT
    if not snap.is_file():
        return
    problem = None
    try:
        state = json.loads(snap.read_text())
        names = set(_find_values(state, "checkpoint_dir_name"))
        missing = sorted(n for n in names if n and not (Path(path) / n).is_dir())
        if missing:
            problem = f"it lists missing checkpoints {missing}"
    except (OSError, ValueError) as e:
        problem = f"{type(e).__name__}: {e}"
    if problem is not None:
        aside = snap.with_name(f"{snap.name}.invalid-{int(time.time())}")
        os.replace(snap, aside)
        warnings.warn(
            f"Ray Train's checkpoint list {snap} could not be used ({problem}); moved to "
            f"{aside.name}, resuming from the checkpoints in the run folder", stacklevel=3,
        )


def _find_values(obj: Any, key: str):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key and isinstance(v, str):
                yield v
            else:
                yield from _find_values(v, key)
    elif isinstance(obj, list):
        for v in obj:
            yield from _find_values(v, key)


def _fit_ray(cfg, loop_config, path, score, mode, out, callbacks=None):
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, ScalingConfig
    from ray.train import RunConfig as RayRunConfig
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Queue

    local = not _is_uri(path)
    if local:  # workers write and resume from the run folder (facecore.train.checkpoints)
        Path(path).mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        _check_ray_snapshot(path)
        loop_config = dict(loop_config, run_dir=path)
    _ensure_ray(cfg)
    q = Queue(actor_options={"num_cpus": 0}) if cfg.run.verbose else None
    run_config = RayRunConfig(
        name=cfg.run.name,
        storage_path=path.rsplit("/", 1)[0],
        checkpoint_config=CheckpointConfig(
            num_to_keep=cfg.run.num_to_keep,
            checkpoint_score_attribute=score,
            checkpoint_score_order=mode,
        ),
        failure_config=FailureConfig(max_failures=cfg.run.max_failures),
        callbacks=([_progress_callback(q)] if q is not None else []) + list(callbacks or []) or None,
        logging_config=LoggingConfig(log_level="WARNING" if cfg.run.verbose < 2 else "INFO"),
    )
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=cfg.run.workers,
            use_gpu=cfg.run.use_gpu,
            resources_per_worker={"CPU": cfg.run.cpus_per_worker}
            | ({"GPU": 1} if cfg.run.use_gpu else {}),
        ),
        run_config=run_config,
    )
    try:
        if q is not None:
            with _Printer(q, cfg.optim.epochs, get_task(cfg.task).progress, out):
                result = _fit_interruptibly(trainer)
        else:
            result = _fit_interruptibly(trainer)
    except Exception as exc:  # noqa: BLE001 - Ray wraps the worker's error
        _raise_config_error(exc)
        raise TrainingError(f"training failed: {_root_cause(exc)}") from exc
    finally:
        if q is not None:
            try:
                q.shutdown()
            except Exception:  # noqa: BLE001
                pass
    if local:
        return _run_summary(path, score, mode)
    best_list = list(result.best_checkpoints or [])
    if best_list:
        ck, m = min(best_list, key=lambda cm: score_rank(cm[1], score, mode))
        best = (_checkpoint_path(ck), m)
    else:
        best = (None, None)
    metrics = result.metrics
    if (not metrics or "history" not in metrics) and best_list:
        metrics = best_list[-1][1]
    return metrics, best, _checkpoint_path(result.checkpoint)


def _fit_interruptibly(trainer):
    """``trainer.fit()`` in a helper thread, so that Ctrl-C reaches the caller's (main)
    thread as ``KeyboardInterrupt`` (the CLI prints ``facecore: interrupted``, exit 130).

    On the main thread Ray Train installs its own SIGINT handler, which aborts the run and
    returns as if it had finished, or calls ``sys.exit`` when the Ctrl-C also stopped
    Ray's processes (the whole process group gets it), so the interrupt was lost and the
    command exited 1 without a word. Checkpoints are written atomically, so stopping at
    any point is safe; the driver's exit ends the run's actors."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = trainer.fit()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="facecore-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if "error" in box:
        raise box["error"]
    return box["result"]


def _innermost(exc: BaseException) -> BaseException:
    seen = exc
    for attr in ("worker_failures", "_worker_failures"):
        failures = getattr(exc, attr, None)
        if isinstance(failures, dict) and failures:
            seen = next(iter(failures.values()))
            break
    while getattr(seen, "__cause__", None) is not None:
        seen = seen.__cause__
    return seen


def _raise_config_error(exc: BaseException) -> None:
    """A configuration problem found on a worker (e.g. a split without genuine pairs) is a
    usage error: re-raised as the one-line :class:`ConfigError` it is."""
    inner = _innermost(exc)
    if isinstance(inner, ConfigError):
        lines = [ln for ln in str(inner).strip().splitlines() if ln.strip()]
        raise ConfigError(lines[-1].strip() if lines else type(inner).__name__) from None


def _root_cause(exc: BaseException) -> str:
    """The innermost worker error of a Ray Train failure, in one line."""
    seen = _innermost(exc)
    text = str(seen).strip().splitlines()
    last = [line for line in text if line.strip()][-1:] or [type(seen).__name__]
    return f"{type(seen).__name__}: {last[0].strip()}"


# ------------------------------------------------------------------ finalize


def _local_dir(path: str):
    """Context manager giving a local directory for a checkpoint path or URI."""
    from contextlib import nullcontext

    if not _is_uri(path):
        return nullcontext(path)
    from ray.train import Checkpoint

    return Checkpoint(path).as_directory()


def model_from_training_checkpoint(path: str | Path) -> tuple[torch.nn.Module, TrainConfig, dict]:
    """``(model in eval mode, its TrainConfig, the raw checkpoint dict)`` from a checkpoint
    directory written by the training loop (path or URI)."""
    with _local_dir(str(path)) as d:
        state = load_checkpoint(d)
    model = model_from_checkpoint(state["model"])
    model.eval()
    return model, config_from_dict(state["train_config"]), state


def plot_run(
    cfg: TrainConfig, history: list[dict[str, Any]], test: dict[str, torch.Tensor], outdir
) -> dict[str, Path]:
    """The learning curves and the task's plots into ``outdir``; ``{}`` (with a warning)
    without matplotlib."""
    outdir = Path(outdir)
    out: dict[str, Path] = {}
    try:
        if history:
            out["learning_curves"] = P.plot_learning_curves(
                history, outdir / "learning_curves.png", keys=get_task(cfg.task).curve_metrics)
        if test:
            out.update(get_task(cfg.task).plots(cfg, test, outdir))
    except P.MissingMatplotlib as exc:
        warnings.warn(f"{exc}; no plots written", stacklevel=2)
    return out


def finalize(
    checkpoint: str | Path,
    outdir: str | Path,
    *,
    export: bool = True,
    plot: bool = True,
    history: list[dict[str, Any]] | None = None,
    data_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a training checkpoint on its test split; export and plot it.

    Writes ``evaluation.json`` (test metrics, ``test_protocol``, ``split_by``, checkpoint,
    epoch), ``export/`` and the PNG plots into ``outdir``; returns ``{"test_metrics",
    "test_protocol", "export_dir", "plots"}``. ``data_overrides`` changes the data section
    (e.g. another root).
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    model, cfg, state = model_from_training_checkpoint(checkpoint)
    if data_overrides:
        d = config_to_dict(cfg)
        d["data"].update(data_overrides)
        cfg = config_from_dict(d)
    task = get_task(cfg.task)
    splits = build_splits(cfg, cache=False)  # only the test split is decoded
    cfg = splits.config  # bound to the dataset (e.g. the age offset of its labels)
    test = predict_dataset(cfg, model, splits.test, batch_size=cfg.data.eval_batch_size)
    test_metrics = evaluate(cfg, test, splits.labels("train"), "test") if test else {}
    (outdir / "evaluation.json").write_text(
        json.dumps(
            {"checkpoint": str(checkpoint), "epoch": state["epoch"], "task": cfg.task,
             "test_protocol": task.protocol_of(cfg), "split_by": splits.split_by,
             "split_sizes": splits.sizes(), **test_metrics},
            indent=1,
        )
    )
    export_dir = None
    if export:
        try:
            export_dir = export_checkpoint(model, state, outdir / "export")
        except ValueError as exc:
            if task.export_required:
                raise
            warnings.warn(f"task {cfg.task!r}: the model was not exported ({exc})", stacklevel=2)
    plots: dict[str, Path] = {}
    if plot:
        plots = plot_run(cfg, history or state.get("history", []), test, outdir)
    return {"test_metrics": test_metrics, "test_protocol": task.protocol_of(cfg),
            "export_dir": export_dir, "plots": plots}


def export_checkpoint(model: torch.nn.Module, state: dict[str, Any], directory: str | Path) -> Path:
    """Export ``model`` with :func:`facecore.serving.export_model` using the settings the
    training checkpoint ``state`` stores (``export``: preprocess, class names, age offset);
    no dataset is needed."""
    settings = dict(state["export"])
    export_model(model, directory, **settings)
    return Path(directory)
