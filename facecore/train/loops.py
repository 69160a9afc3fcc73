"""The training loop each Ray Train worker runs (one function for every task).

:func:`train_loop_per_worker` is what :class:`ray.train.torch.TorchTrainer` runs
on each worker; :func:`run_training` is the loop itself, written against a
small :class:`Session` so the same code also runs inside a Ray Tune trial
(:mod:`facecore.train.tune`).

Per epoch, on every worker: ``set_epoch`` on the sampler, one pass over this
worker's shard of the training split (DDP all-reduces the gradients), the
scheduler step, then the validation split evaluated in shards
(``val[rank::world_size]``, gathered with ``all_gather_object``, so the metrics
are exact and identical on every rank). Rank 0 then writes the checkpoint
directory ``checkpoint_epoch_EEEE`` holding ``checkpoint.pt``
(:func:`load_checkpoint` reads it; ``torch.load(weights_only=True)`` works):

* ``model``: ``facecore.models.model_checkpoint(model)`` (config + weights),
* ``optimizer`` / ``scheduler`` state, ``epoch`` (1-based, completed),
* ``train_config`` (the whole config as a dict), ``metrics`` (this epoch),
  ``history`` (every epoch so far, including those before a resume),

and ``metrics.json`` (the same metrics, readable without torch); every rank
calls ``ray.train.report`` with the metrics. A worker started with a checkpoint
(``ray.train.get_checkpoint()``: a restart after a failure, or a new run with
the same storage and name) restores everything and continues at the next
epoch.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from facecore.train.config import (
    AgeConfig,
    EmbeddingConfig,
    GenderConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
)
from facecore.train.datasets import Splits, build_splits

__all__ = [
    "CHECKPOINT_FILE",
    "Session",
    "RayTrainSession",
    "build_model",
    "checkpoint_dir_name",
    "evaluate",
    "load_checkpoint",
    "run_training",
    "train_loop_per_worker",
]

CHECKPOINT_FILE = "checkpoint.pt"


class InjectedFailure(RuntimeError):
    """Raised by ``run.fail_after_epoch`` (testing fault tolerance)."""


def checkpoint_dir_name(epoch: int) -> str:
    """Deterministic checkpoint directory name of a (1-based) epoch."""
    return f"checkpoint_epoch_{epoch:04d}"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read ``checkpoint.pt`` from a checkpoint directory (or the file itself)."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_FILE
    if not p.is_file():
        raise FileNotFoundError(f"no facecore checkpoint at {path} (expected {CHECKPOINT_FILE})")
    return torch.load(p, map_location="cpu", weights_only=True)


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
    checkpoints via ``ray.train.report``. ``persist_dir``: for Ray Train's
    in-process local mode (``workers = 0``), which does not persist checkpoints,
    rank 0 writes them there itself."""

    def __init__(
        self,
        persist_dir: str | None = None,
        resume_from: str | None = None,
        progress_epochs: int | None = None,
    ):
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        self.persist_dir = persist_dir
        self.resume_from = resume_from
        self.progress_epochs = progress_epochs

    def prepare_model(self, module: nn.Module) -> nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(module)

    def prepare_loader(self, loader: DataLoader, *, shard: bool = True) -> DataLoader:
        import ray.train.torch

        return ray.train.torch.prepare_data_loader(loader, add_dist_sampler=shard)

    def restore(self) -> dict[str, Any] | None:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as d:
                return load_checkpoint(d)
        if self.resume_from:
            return load_checkpoint(self.resume_from)
        return None

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        import ray.train

        name = checkpoint_dir_name(int(metrics["epoch"]))
        if self.progress_epochs and self.rank == 0:  # local mode: no driver-side printer
            from facecore.train.progress import format_progress

            print(format_progress(metrics, self.progress_epochs), flush=True)
        if state is None:
            ray.train.report(metrics, checkpoint=None)
            return
        if self.persist_dir is not None:
            d = Path(self.persist_dir) / name
            _write_checkpoint(d, metrics, state)
            ray.train.report(
                metrics, checkpoint=ray.train.Checkpoint.from_directory(str(d))
            )
            return
        with tempfile.TemporaryDirectory() as tmp:
            _write_checkpoint(Path(tmp), metrics, state)
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


def _write_checkpoint(d: Path, metrics: dict[str, Any], state: dict[str, Any]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    torch.save(state, d / CHECKPOINT_FILE)
    (d / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))


# -------------------------------------------------------------------- model


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The model the config asks for (``facecore.models``), before DDP wrapping."""
    from facecore import models as M

    bb: dict[str, Any] = {"backbone": cfg.model.backbone, "width": cfg.model.width}
    if isinstance(cfg, AgeConfig):
        return M.AgeEstimator(
            head=cfg.ordinal.head,
            num_classes=num_classes,
            monotone_biases=cfg.ordinal.head == "coral" and cfg.ordinal.monotone_biases,
            **bb,
        )
    if isinstance(cfg, GenderConfig):
        if cfg.binary.attribute == "gender":
            return M.GenderClassifier(**bb)
        return M.BinaryAttributeClassifier(
            attribute=cfg.binary.attribute, class_names=tuple(cfg.binary.class_names), **bb
        )
    if isinstance(cfg, EmbeddingConfig):
        return M.FaceEmbedder(embedding_dim=cfg.model.embedding_dim, **bb)
    raise ValueError(f"unknown task {cfg.task!r}")  # pragma: no cover


def _objective(cfg: TrainConfig, model: nn.Module, splits: Splits) -> nn.Module:
    from facecore.train import objectives as O

    if isinstance(cfg, AgeConfig):
        w = None
        if cfg.ordinal.importance_weights and cfg.ordinal.head != "ce":
            from facecore.models import importance_weights_from_labels

            w = importance_weights_from_labels(splits.labels("train"), splits.num_classes)
            w = torch.as_tensor(w, dtype=torch.float32)
        return O.OrdinalObjective(model, w)
    if isinstance(cfg, GenderConfig):
        return O.BinaryObjective(model)
    assert isinstance(cfg, EmbeddingConfig)
    return O.EmbeddingObjective(model, cfg.metric, splits.num_classes)


def _optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return cls(params, lr=o.lr, weight_decay=o.weight_decay)


def _scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer):
    o = cfg.optim
    if o.scheduler == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda e: 0.5 * (1.0 + math.cos(math.pi * min(e, o.epochs) / o.epochs))
        )
    if o.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=o.step_size, gamma=o.gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)


# ---------------------------------------------------------------- evaluation


@contextmanager
def _eval_mode(model: nn.Module):
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was)


def _outputs(cfg: TrainConfig, model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    if isinstance(cfg, AgeConfig):
        p = model.predict(images)
        return {
            "label": p.labels,
            "cum_probs": p.cum_probs,
            "expected": p.expected,
            "logits": model(images),
        }
    if isinstance(cfg, GenderConfig):
        out = model.serve(images)
        return {"prob": out["prob"], "label": out["label"], "logits": model(images)}
    return {"embedding": model(images)}


def predict_dataset(
    cfg: TrainConfig,
    model: nn.Module,
    dataset,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """Run ``model`` (eval mode) over ``dataset``; concatenated outputs on CPU plus
    ``target`` (the task's label)."""
    key = {"age": "age", "gender": "gender", "embedding": "identity"}[cfg.task]
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    parts: dict[str, list[torch.Tensor]] = {}
    with _eval_mode(model):
        for images, target in loader:
            out = _outputs(cfg, model, images.to(device))
            out["target"] = torch.as_tensor(target[key])
            for k, v in out.items():
                parts.setdefault(k, []).append(v.detach().cpu())
    if not parts:
        return {}
    return {k: torch.cat(v) for k, v in parts.items()}


def _pairs(n: int, limit: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    i, j = torch.triu_indices(n, n, offset=1)
    if i.numel() > limit:
        keep = torch.randperm(i.numel(), generator=torch.Generator().manual_seed(seed))[:limit]
        i, j = i[keep], j[keep]
    return i, j


def evaluate(
    cfg: TrainConfig,
    out: dict[str, torch.Tensor],
    train_labels: torch.Tensor,
    prefix: str = "val_",
) -> dict[str, float]:
    """Metrics of one split from :func:`predict_dataset`'s outputs.

    * age: ``mae`` / ``rmse`` of the predicted label (years: ``age_scale`` x
      classes), ``mae_expected`` (expected rank), ``median_mae`` (always
      predicting the training median), ``rank_inconsistency`` (mean count of
      increases of ``P(y > k)`` over ``k``) and ``rank_inconsistent_fraction``.
    * gender: ``accuracy``, ``auc`` and ``ece`` of the (calibrated) probability.
    * embedding: cosine-similarity verification over image pairs of the split
      (all pairs, or ``metric.max_val_pairs`` drawn at random): ``auc``,
      ``eer``; ``eer_threshold``.
    """
    from facecore import metrics as fm

    t = out["target"]
    m: dict[str, float] = {}
    if isinstance(cfg, AgeConfig):
        s = cfg.ordinal.age_scale
        m["mae"] = fm.mae(out["label"], t, scale=s)
        m["rmse"] = fm.rmse(out["label"], t, scale=s)
        m["mae_expected"] = fm.mae(out["expected"], t, scale=s)
        m["median_mae"] = fm.median_baseline_mae(train_labels, t, scale=s)
        ri = fm.rank_inconsistency(out["cum_probs"])
        m["rank_inconsistency"] = ri.mean
        m["rank_inconsistent_fraction"] = ri.fraction
    elif isinstance(cfg, GenderConfig):
        y = t.long()
        m["accuracy"] = fm.accuracy(out["prob"], y)
        m["auc"] = fm.roc_auc(out["prob"], y) if 0 < int(y.sum()) < len(y) else float("nan")
        m["ece"] = fm.expected_calibration_error(out["prob"], y)
    else:
        e = nn.functional.normalize(out["embedding"].double(), dim=1)
        i, j = _pairs(len(t), cfg.metric.max_val_pairs, cfg.data.seed)
        scores = (e[i] * e[j]).sum(1)
        same = (t[i] == t[j]).long()
        if 0 < int(same.sum()) < len(same):
            m["auc"] = fm.verification_auc(scores, same)
            eer = fm.equal_error_rate(scores, same)
            m["eer"] = eer.eer
            m["eer_threshold"] = eer.threshold
        else:
            m["auc"], m["eer"], m["eer_threshold"] = float("nan"), float("nan"), float("nan")
    return {prefix + k: float(v) for k, v in m.items()}


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


# ---------------------------------------------------------------------- loop


def _train_loader(cfg: TrainConfig, splits: Splits, session: Session) -> tuple[DataLoader, Any]:
    per_worker = max(1, cfg.data.batch_size // session.world_size)
    if isinstance(cfg, EmbeddingConfig):
        from facecore.data import PKSampler

        sampler = PKSampler(
            splits.labels("train"), cfg.metric.p, cfg.metric.k, seed=cfg.data.seed,
            rank=session.rank, world_size=session.world_size,
        )
        loader = DataLoader(
            splits.train, batch_sampler=sampler, num_workers=cfg.data.loader_workers
        )
        return session.prepare_loader(loader, shard=False), sampler
    loader = DataLoader(
        splits.train,
        batch_size=per_worker,
        shuffle=True,
        drop_last=len(splits.train) >= per_worker * session.world_size * 2,
        num_workers=cfg.data.loader_workers,
        generator=torch.Generator().manual_seed(cfg.data.seed),
    )
    loader = session.prepare_loader(loader, shard=True)
    return loader, getattr(loader, "sampler", None)


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if hasattr(module, "module") else module


def run_training(cfg: TrainConfig, session: Session) -> dict[str, Any]:
    """Train ``cfg`` in ``session``; returns the last epoch's metrics (``{}`` when a
    restored run had already completed ``optim.epochs``)."""
    torch.manual_seed(cfg.run.seed)
    splits = build_splits(cfg.data, cfg.task)
    model = build_model(cfg, splits.num_classes)
    objective = _objective(cfg, model, splits)
    train_labels = splits.labels("train")

    state = session.restore()
    if state is not None:
        objective.model.load_state_dict(state["model"]["state_dict"])
        extra = state.get("objective_extra") or {}
        if extra:
            objective.load_state_dict(extra, strict=False)
    wrapped = session.prepare_model(objective)
    opt = _optimizer(cfg, wrapped.parameters())
    sched = _scheduler(cfg, opt)
    history: list[dict[str, Any]] = []
    start = 1
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history = list(state.get("history", []))
        start = int(state["epoch"]) + 1

    loader, sampler = _train_loader(cfg, splits, session)
    fail_at = cfg.run.fail_after_epoch
    last: dict[str, Any] = {}
    for epoch in range(start, cfg.optim.epochs + 1):
        t0 = time.perf_counter()
        if sampler is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        wrapped.train()
        total, count = 0.0, 0
        for images, target in loader:
            labels = torch.as_tensor(target[splits.key]).to(session.device)
            loss, _ = wrapped(images.to(session.device), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip:
                nn.utils.clip_grad_norm_(wrapped.parameters(), cfg.optim.grad_clip)
            opt.step()
            total += float(loss.detach()) * len(labels)
            count += len(labels)
        lr = opt.param_groups[0]["lr"]
        sched.step()
        train_loss = session.all_reduce_mean(total / max(count, 1))

        inner = _unwrap(wrapped).model
        val = _sharded_outputs(cfg, inner, splits.val, session)
        if isinstance(cfg, GenderConfig) and cfg.binary.calibrate:
            inner.calibrate(val["logits"].to(session.device), val["target"].to(session.device))
            val = _sharded_outputs(cfg, inner, splits.val, session)
        metrics: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "lr": lr}
        metrics.update(evaluate(cfg, val, train_labels))
        metrics["epoch_time_s"] = time.perf_counter() - t0
        history.append(dict(metrics))
        metrics["history"] = json.dumps(history)

        ckpt = None
        if session.rank == 0:
            from facecore.models import model_checkpoint

            obj = _unwrap(wrapped)
            ckpt = {
                "format": 1,
                "epoch": epoch,
                "model": model_checkpoint(inner),
                "objective_extra": {
                    k: v.detach().cpu()
                    for k, v in obj.state_dict().items()
                    if not k.startswith("model.")
                },
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "train_config": config_to_dict(cfg),
                "metrics": {k: v for k, v in metrics.items() if k != "history"},
                "history": history,
                "split_sizes": [len(splits.train), len(splits.val), len(splits.test)],
            }
        session.report(metrics, ckpt)
        last = metrics
        if fail_at is not None and epoch == fail_at and start <= fail_at and session.rank == 0:
            raise InjectedFailure(f"run.fail_after_epoch={fail_at}: simulated worker crash")
    return last


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Entry point of every Ray Train worker (``TorchTrainer(train_loop_per_worker)``).

    ``loop_config``: ``{"train_config": dict, "persist_dir": str | None,
    "resume_from": str | None}`` (built by :func:`facecore.train.runner.fit`).
    """
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = config_from_dict(loop_config["train_config"])
    session = RayTrainSession(
        persist_dir=loop_config.get("persist_dir"),
        resume_from=loop_config.get("resume_from"),
        progress_epochs=cfg.optim.epochs if loop_config.get("print_progress") else None,
    )
    run_training(cfg, session)
