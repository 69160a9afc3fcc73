"""The training loop each Ray Train worker runs (one function for every task).

:func:`train_loop_per_worker` is what :class:`ray.train.torch.TorchTrainer` runs
on each worker; :func:`run_training` is the loop itself, written against a
small :class:`Session` so the same code also runs inside a Ray Tune trial
(:mod:`facecore.train.tune`). Everything task-specific comes from the task
(:func:`facecore.train.tasks.get_task`).

The model: the task builds it; a run that starts from scratch then loads
``model.pretrained`` (:func:`facecore.models.load_pretrained`; what loaded is printed by
rank 0) and calls the task's :meth:`~facecore.train.tasks.base.Task.initialize` (e.g. the
ordinal head from the training labels); ``model.freeze`` is applied on every start,
resumes included. The optimiser is :func:`facecore.train.optim.build_optimizer` at the peak
rate :func:`~facecore.train.optim.config_lr` and the schedule
:func:`~facecore.train.optim.build_scheduler`, stepped after every batch.

Per epoch, on every worker: ``objective.set_epoch(epoch)``, ``set_epoch`` on the
sampler, one pass over this worker's shard of the training split (DDP all-reduces the
gradients; only parameters with ``requires_grad`` are optimised; the scheduler steps
after every optimiser step), then the validation split evaluated in shards
(``valid[rank::world_size]``, gathered with ``all_gather_object``, so the metrics are
exact and identical on every rank), then the task's after-epoch hook (e.g. calibration).
The metrics are ``epoch``, ``train_loss`` and ``train_<term>`` (the mean over the epoch of
each term the objective returns), ``lr`` (of the epoch's first step), the task's ``val_*``
metrics, ``epoch_time_s`` (wall) and ``epoch_cpu_s`` (this process's CPU time over the
epoch, every thread: what a CPU budget counts).

Rank 0 then writes the checkpoint directory ``checkpoint_epoch_EEEE``
(:mod:`facecore.train.checkpoints`); every rank calls ``ray.train.report`` with the
metrics. With local storage rank 0 writes the checkpoint into the run folder itself,
atomically (:func:`~facecore.train.checkpoints.persist_checkpoint`), and reports it to
Ray Train without an upload; with a URI (``s3://...``) Ray Train uploads it. A worker
that starts (a restart after a failure, or a new run with the same storage and name)
resumes from the newest complete checkpoint in the local run folder
(:func:`~facecore.train.checkpoints.resume_checkpoint`; with a URI, from
``ray.train.get_checkpoint()``) and restores the weights, the
objective's and the optimiser's state and the history, and continues at the next epoch
with the current config's learning-rate schedule (:mod:`facecore.train.optim`'s resume
rule: rebuilt for ``optim.epochs`` and advanced by the steps of the completed epochs).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from facecore.models.factory import model_checkpoint
from facecore.models.pretrained import freeze_stages, load_pretrained
from facecore.train.checkpoints import (
    checkpoint_dir_name,
    fault_point,
    load_checkpoint,
    new_checkpoint,
    persist_checkpoint,
    resume_checkpoint,
    write_checkpoint,
)
from facecore.train.config import config_from_dict, config_to_dict
from facecore.train.datasets import Splits, build_splits
from facecore.train.evaluation import evaluate, predict_dataset
from facecore.train.optim import (
    build_optimizer,
    build_scheduler,
    config_lr,
    load_optimizer_state,
)
from facecore.train.progress import format_progress
from facecore.train.sections import ConfigError, TrainConfig
from facecore.train.tasks import get_task

__all__ = [
    "InjectedFailure",
    "RayTrainSession",
    "Session",
    "run_training",
    "train_loop_per_worker",
]


class InjectedFailure(RuntimeError):
    """Raised by ``run.fail_after_epoch`` (testing fault tolerance)."""


# ------------------------------------------------------------------ sessions


class Session:
    """What the loop needs from its runtime. This base class is one process, no Ray."""

    rank = 0
    world_size = 1
    device = torch.device("cpu")

    def prepare_model(self, module: nn.Module) -> nn.Module:
        return module.to(self.device)

    def prepare_loader(self, loader: DataLoader, *, shard: bool = True) -> DataLoader:
        return loader

    def restore(self) -> dict[str, Any] | None:
        return None

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        pass

    def all_gather(self, obj: Any) -> list[Any]:
        return [obj]

    def all_reduce_mean(self, value: float) -> float:
        return value


class RayTrainSession(Session):
    """Ray Train worker: DDP via ``prepare_model`` / ``prepare_data_loader``,
    checkpoints via ``ray.train.report``. ``run_dir``: the run folder when the storage is
    local (``None`` for a URI): rank 0 writes the checkpoints there atomically and every
    start resumes from the newest complete one (also in Ray Train's in-process local mode,
    ``workers = 0``, which does not persist checkpoints itself)."""

    def __init__(
        self,
        run_dir: str | None = None,
        progress_epochs: int | None = None,
        progress_fields: tuple[tuple[str, str], ...] = (),
    ):
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        self.run_dir = run_dir
        self.progress_epochs = progress_epochs
        self.progress_fields = progress_fields

    def prepare_model(self, module: nn.Module) -> nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(module)

    def prepare_loader(self, loader: DataLoader, *, shard: bool = True) -> DataLoader:
        import ray.train.torch

        return ray.train.torch.prepare_data_loader(loader, add_dist_sampler=shard)

    def restore(self) -> dict[str, Any] | None:
        import ray.train

        if self.run_dir is not None:  # the folder is the truth, not Ray Train's list
            found = resume_checkpoint(self.run_dir)
            return None if found is None else found[1]
        ckpt = ray.train.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as d:
                return load_checkpoint(d)
        return None

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        import ray.train
        from ray.train import CheckpointUploadMode

        epoch = int(metrics["epoch"])
        name = checkpoint_dir_name(epoch)
        if self.progress_epochs and self.rank == 0:  # local mode: no driver-side printer
            print(format_progress(metrics, self.progress_epochs, self.progress_fields), flush=True)
        if self.run_dir is not None:
            ckpt = None
            if state is not None:
                d = persist_checkpoint(self.run_dir, metrics, state)
                fault_point("report", epoch)
                ckpt = ray.train.Checkpoint.from_directory(str(d))
            ray.train.report(
                metrics, checkpoint=ckpt, checkpoint_dir_name=name,
                checkpoint_upload_mode=CheckpointUploadMode.NO_UPLOAD,
            )
            return
        if state is None:
            ray.train.report(metrics, checkpoint=None, checkpoint_dir_name=name)
            return
        with tempfile.TemporaryDirectory() as tmp:
            write_checkpoint(Path(tmp), metrics, state)
            ray.train.report(
                metrics,
                checkpoint=ray.train.Checkpoint.from_directory(tmp),
                checkpoint_dir_name=name,
            )

    def all_gather(self, obj: Any) -> list[Any]:
        if self.world_size == 1 or not torch.distributed.is_initialized():
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def all_reduce_mean(self, value: float) -> float:
        return float(sum(self.all_gather(value)) / self.world_size)


# ---------------------------------------------------------------- building


def _sharded_outputs(
    cfg: TrainConfig, model: nn.Module, dataset: Subset, session: Session
) -> dict[str, torch.Tensor]:
    """Each rank predicts ``dataset[rank::world]``; gathered in the original order."""
    n = len(dataset)
    mine = list(range(session.rank, n, session.world_size))
    out = predict_dataset(
        cfg, model, Subset(dataset, mine), batch_size=cfg.data.eval_batch_size,
        device=session.device,
    )
    gathered = session.all_gather((mine, out))
    order = torch.as_tensor([i for idx, _ in gathered for i in idx], dtype=torch.long)
    keys = next(o.keys() for _, o in gathered if o)
    full = {k: torch.cat([o[k] for _, o in gathered if o]) for k in keys}
    inv = torch.empty_like(order)
    inv[order] = torch.arange(len(order))
    return {k: v[inv] for k, v in full.items()}


def _train_loader(cfg: TrainConfig, splits: Splits, session: Session) -> tuple[DataLoader, Any]:
    sampler = get_task(cfg.task).batch_sampler(
        cfg, splits.labels("train"), session.rank, session.world_size
    )
    if sampler is not None:  # already per rank
        loader = DataLoader(splits.train, batch_sampler=sampler, num_workers=cfg.data.loader_workers)
        return session.prepare_loader(loader, shard=False), sampler
    per_worker = max(1, cfg.data.batch_size // session.world_size)
    # each rank gets ceil(n / world) items (the distributed sampler pads); the last, short
    # batch is kept (it is part of the measured recipe) unless it would hold a single image,
    # which batch norm cannot train on
    per_rank = -(-len(splits.train) // session.world_size)
    loader = DataLoader(
        splits.train,
        batch_size=per_worker,
        shuffle=True,
        drop_last=per_rank % per_worker == 1 and per_rank > per_worker,
        num_workers=cfg.data.loader_workers,
        generator=torch.Generator().manual_seed(cfg.data.seed),
    )
    loader = session.prepare_loader(loader, shard=True)
    return loader, getattr(loader, "sampler", None)


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if hasattr(module, "module") else module


def _epoch_means(sums: dict[str, float], count: int, session: Session) -> dict[str, float]:
    """Per-image means of this worker, averaged over the workers (one gather)."""
    mine = {k: v / max(count, 1) for k, v in sums.items()}
    gathered = session.all_gather(mine)
    keys = sorted({k for g in gathered for k in g})
    return {k: float(sum(g[k] for g in gathered if k in g) / sum(k in g for g in gathered))
            for k in keys}


def prepare_model(cfg: TrainConfig, model: nn.Module, splits: Splits, *, fresh: bool, log=None) -> Any:
    """``model.pretrained`` (``fresh`` runs only), ``model.freeze`` (always) and the task's
    :meth:`~facecore.train.tasks.base.Task.initialize` (``fresh`` runs only) applied to a
    newly built ``model``; returns the :class:`~facecore.models.pretrained.PretrainedReport`
    or ``None``. ``log``: called with the report's one-line summary. A file of which
    nothing fits is a :class:`ConfigError` naming ``model.pretrained``."""
    report = None
    if fresh and cfg.model.pretrained:
        try:
            report = load_pretrained(model, cfg.model.pretrained, verbose=False)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"model.pretrained={cfg.model.pretrained!r}: {exc}") from None
        if log is not None:
            log(f"model.pretrained: {report.summary()}")
    if cfg.model.freeze:
        freeze_stages(model, cfg.model.freeze)
    if fresh:
        loaded = frozenset(report.loaded) if report is not None else frozenset()
        get_task(cfg.task).initialize(cfg, model, splits, loaded=loaded)
    return report


def run_training(cfg: TrainConfig, session: Session) -> dict[str, Any]:
    """Train ``cfg`` in ``session``; returns the last epoch's metrics (``{}`` when a
    restored run had already completed ``optim.epochs``)."""
    task = get_task(cfg.task)
    torch.manual_seed(cfg.run.seed)
    splits = build_splits(cfg)
    model = task.build_model(cfg, splits.num_classes)
    train_labels = splits.labels("train")
    export = {"preprocess": splits.preprocess.to_dict(), **task.export_settings(cfg, splits.dataset)}

    state = session.restore()
    log = (lambda line: print(f"facecore: {line}", flush=True)) if session.rank == 0 else None
    prepare_model(cfg, model, splits, fresh=state is None, log=log)
    objective = task.build_objective(cfg, model, splits)
    if state is not None:
        objective.model.load_state_dict(state["model"]["state_dict"])
        objective.load_checkpoint_state(state.get("objective") or {})
    wrapped = session.prepare_model(objective)
    params = [p for p in wrapped.parameters() if p.requires_grad]
    opt = build_optimizer(cfg.optim, wrapped, config_lr(cfg))
    history: list[dict[str, Any]] = []
    start = 1
    if state is not None:  # hyper-parameters and schedule from cfg (optim.py's resume rule)
        load_optimizer_state(opt, state["optimizer"])
        history = list(state.get("history", []))
        start = int(state["epoch"]) + 1

    loader, sampler = _train_loader(cfg, splits, session)
    steps_per_epoch = max(1, len(loader))
    total_steps = cfg.optim.epochs * steps_per_epoch
    sched = build_scheduler(
        cfg.optim, opt, steps_per_epoch=steps_per_epoch, completed_epochs=start - 1
    )
    fail_at = cfg.run.fail_after_epoch
    picked = task.validation_subset(cfg, splits)  # None: every validation item each epoch
    valid_set = splits.valid if picked is None else Subset(splits.valid, picked)
    last: dict[str, Any] = {}
    for epoch in range(start, cfg.optim.epochs + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        _unwrap(wrapped).set_epoch(epoch)
        if sampler is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        wrapped.train()
        sums: dict[str, float] = {"loss": 0.0}
        count = 0
        lr = opt.param_groups[0]["lr"]
        for step, (images, target) in enumerate(loader):
            labels = torch.as_tensor(target[splits.key]).to(session.device)
            out = wrapped(images.to(session.device), labels)
            loss, terms = out[0], (out[2] if len(out) > 2 else {})
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip:
                nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            opt.step()
            if sched.last_epoch < total_steps:
                sched.step()
            n = len(labels)
            sums["loss"] += float(loss.detach()) * n
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach()) * n
            count += n
            if step == 0 and session.rank == 0:
                fault_point("train", epoch)  # tests: SIGKILL in the middle of an epoch
        means = _epoch_means(sums, count, session)

        inner = _unwrap(wrapped).model
        valid = _sharded_outputs(cfg, inner, valid_set, session)
        if task.after_epoch(cfg, inner, valid):
            valid = _sharded_outputs(cfg, inner, valid_set, session)
        metrics: dict[str, Any] = {"epoch": epoch, "train_loss": means.pop("loss")}
        metrics.update({f"train_{k}": v for k, v in means.items()})
        metrics["lr"] = lr
        metrics.update(evaluate(cfg, valid, train_labels, "valid"))
        metrics["epoch_time_s"] = time.perf_counter() - t0
        metrics["epoch_cpu_s"] = time.process_time() - c0  # this worker's CPU, all threads
        history.append(dict(metrics))
        metrics["history"] = json.dumps(history)

        ckpt = None
        if session.rank == 0:
            ckpt = new_checkpoint(
                epoch=epoch,
                model=model_checkpoint(inner),
                objective=_unwrap(wrapped).checkpoint_state(),
                optimizer=opt.state_dict(),
                scheduler=sched.state_dict(),
                train_config=config_to_dict(cfg),
                metrics={k: v for k, v in metrics.items() if k != "history"},
                history=history,
                split_sizes=[len(splits.train), len(splits.valid), len(splits.test)],
                export=export,
            )
        session.report(metrics, ckpt)
        last = metrics
        if fail_at is not None and epoch == fail_at and start <= fail_at and session.rank == 0:
            raise InjectedFailure(f"run.fail_after_epoch={fail_at}: simulated worker crash")
    return last


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Entry point of every Ray Train worker (``TorchTrainer(train_loop_per_worker)``).

    ``loop_config``: ``{"train_config": dict, "run_dir": str | None (the local run
    folder; None for a URI storage), "print_progress": bool}`` (built by
    :func:`facecore.train.runner.fit`).
    """
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = config_from_dict(loop_config["train_config"])
    session = RayTrainSession(
        run_dir=loop_config.get("run_dir"),
        progress_epochs=cfg.optim.epochs if loop_config.get("print_progress") else None,
        progress_fields=get_task(cfg.task).progress,
    )
    run_training(cfg, session)
