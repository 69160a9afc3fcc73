"""Full training runs per group for the bias matrix: :class:`FitTrainer` plugs
:func:`facecore.train.fit` (Ray Train) into :func:`facecore.analysis.cross_group_matrix`.

A training config names the task, the data and the groups: the rows of the matrix are
runs of that config with ``data.include: {<group>: [<value>]}`` (one per value of the
group attribute present in the config's splits, or in its own ``data.include`` for that
attribute) plus one run on all of them; every row's best checkpoint then predicts the
config's **test split**, scored per group in the columns. Each row predicts with its
**latest** checkpoint by default (the same training budget for every row; a row's own
validation split is its group's share and can be a handful of people, too few to pick
an epoch on), or its best one by the config's score (``checkpoint="best"``). Because ``data.include`` acts
after the split, every run sees the same train / valid / test partition: a row trains on
its group's training items (validated on its group's validation items) and no row ever
trained on a test item; with ``data.split_by: identity`` (or a matching task) no person
of the test split was seen by any row. With equal training sizes (the default) each row
is capped to the smallest group's training items by ``data.max_train_samples``; the
matrix and the runs draw that cap with the same function
(:func:`facecore.data.splits.limit_indices`), and :meth:`FitTrainer.fit_predict` checks
that the run trains on exactly the items the matrix assigned to it.

Runs are named ``<run.name>-<group>-<row>`` in ``run.storage``; starting the same analysis
again with the same storage reuses finished runs (Ray Train resumes from their last
checkpoint; delete the folders, or change ``run.name``, to retrain).

::

    from facecore.analysis import cross_group_matrix
    from facecore.analysis.runs import FitTrainer
    from facecore.train import load_config

    cfg = load_config("gender_synthetic", ["optim.epochs=3", "run.workers=0"])
    trainer = FitTrainer(cfg, "race")
    m = cross_group_matrix(trainer, trainer.groups, group_names=trainer.group_names,
                           identity=trainer.identity)
"""

from __future__ import annotations

import re
import sys
from typing import Any

import numpy as np

__all__ = ["TASK_KINDS", "FitTrainer", "fit_bias_matrix"]

#: The matrix's kind of cell for each training task: accuracy of the predicted label,
#: MAE of the predicted rank (age classes), TAR@FAR / EER of the embeddings.
TASK_KINDS: dict[str, tuple[str, str]] = {
    "gender": ("classification", "label"),
    "age": ("regression", "label"),
    "embedding": ("verification", "embedding"),
}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("._") or "group"


class FitTrainer:
    """A :class:`~facecore.analysis.bias.GroupTrainer` whose rows are full training runs
    of ``config`` (see the module doc). ``group``: the label whose values are the rows and
    columns; with ``bins`` (edges, as ``facecore analyze --bin``) its values are cut into
    bins (named ``bin_names``) and a row trains on the values of its bin
    (``data.include: {group: [values in the bin]}``). ``checkpoint``: ``latest`` (default)
    or ``best`` (see the module doc). ``out``: where the runs print their progress
    (default: stdout).

    Attributes for :func:`~facecore.analysis.cross_group_matrix`: ``task``, ``target``
    (the task's labels of every dataset item), ``groups``, ``group_names``, ``identity``
    (``None`` when the dataset has no identities); ``runs``: per row, the run folder, the
    best checkpoint and its validation metrics, the training size and the wall time.
    """

    def __init__(
        self,
        config: Any,
        group: str,
        *,
        bins: list[float] | None = None,
        bin_names: list[str] | None = None,
        checkpoint: str = "latest",
        out: Any = None,
    ) -> None:
        from facecore.analysis.data import dataset_labels
        from facecore.train.config import ConfigError, check_data_root, validate
        from facecore.train.datasets import build_splits

        if checkpoint not in ("latest", "best"):
            raise ValueError(f"checkpoint must be 'latest' or 'best', got {checkpoint!r}")
        self.checkpoint = checkpoint
        if config.task not in TASK_KINDS:
            raise ValueError(
                f"a bias matrix of full training runs needs a task of {' | '.join(TASK_KINDS)}, "
                f"got {config.task!r}"
            )
        validate(config)
        check_data_root(config)
        if config.data.max_train_samples is not None:
            raise ConfigError(
                "data.max_train_samples is set per row by the bias matrix (equal training "
                "sizes); leave it null in the config"
            )
        self.config = config
        self.group = group
        self.task, self._output_key = TASK_KINDS[config.task]
        self.out = sys.stdout if out is None else out
        self.base = build_splits(config)
        labels, names = dataset_labels(self.base.dataset)
        if group not in labels or group == "identity":
            raise KeyError(
                f"no group label {group!r} in data.name={config.data.name!r}; labels: "
                f"{', '.join(k for k in labels if k != 'identity')}"
            )
        self.values = labels[group]  # the label data.include filters on
        self.group_names = names.get(group) or [str(v) for v in range(int(self.values.max()) + 1)]
        self.groups = self.values
        if bins is not None:
            from facecore.analysis.data import bin_values

            self.groups, auto = bin_values(self.values, bins, names.get(group))
            self.group_names = list(bin_names) if bin_names else auto
        self.target = self.base.targets.numpy()
        ident = labels.get("identity")
        self.identity = ident
        if ident is not None and self.base.split_by != "identity":
            tr = set(ident[self.base.indices["train"]])
            if tr & set(ident[self.base.indices["test"]]):
                raise ConfigError(
                    f"data.name={config.data.name!r} has people with several images in both "
                    "the train and the test split: set data.split_by: identity so the matrix "
                    "tests on people no row trained on"
                )
        self.runs: dict[str, dict[str, Any]] = {}
        self._limits: dict[tuple[int, str], int] = {}

    # -- the protocol --------------------------------------------------------------------
    def splits(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The config's split: (train items, test items) as dataset positions."""
        train, test = self.base.indices["train"], self.base.indices["test"]
        if not test:
            raise ValueError(
                f"data.fractions={self.config.data.fractions} leave no test split: the bias "
                "matrix scores every row on the test split"
            )
        return [(np.asarray(train, np.int64), np.asarray(test, np.int64))]

    def subsample(self, idx: np.ndarray, n: int, *, fold: int, train_group: str) -> np.ndarray:
        """The ``n``-item training subset ``data.max_train_samples=n`` gives the row."""
        from facecore.data.splits import limit_indices

        self._limits[(fold, train_group)] = int(n)
        groups = self.identity if self.base.split_by == "identity" else None
        return np.asarray(limit_indices(idx, n, self.config.data.seed, groups=groups), np.int64)

    def row_config(self, train_group: str, values: list[int], limit: int | None) -> Any:
        """The training config of one row: the base config with ``data.include`` narrowed to
        ``values`` of the group (none for ``all``), ``data.max_train_samples=limit`` and the
        run named ``<run.name>-<group>-<row>``."""
        from facecore.train.config import config_from_dict, config_to_dict

        d = config_to_dict(self.config)
        include = dict(d["data"].get("include") or {})
        if train_group != "all":
            include[self.group] = [int(v) for v in values]
        d["data"]["include"] = include or None
        d["data"]["max_train_samples"] = limit
        d["run"]["name"] = f"{self.config.run.name}-{_slug(self.group)}-{_slug(train_group)}"
        d["run"]["output"] = None
        return config_from_dict(d)

    def fit_predict(self, train_idx, test_idx, *, fold: int, train_group: str) -> np.ndarray:
        import time

        from torch.utils.data import Subset

        from facecore.train.datasets import build_splits
        from facecore.train.evaluation import predict_dataset
        from facecore.train.runner import TrainingError, fit, model_from_training_checkpoint

        train_idx = np.asarray(train_idx, np.int64)
        # the label values of the row's group (of its bin), in every split: data.include
        # keeps them in the valid split too
        row_bins = np.unique(self.groups[train_idx])
        values = sorted({int(v) for v in self.values[np.isin(self.groups, row_bins)]})
        cfg = self.row_config(train_group, values, self._limits.get((fold, train_group)))
        splits = build_splits(cfg)
        if splits.indices["train"] != sorted(train_idx.tolist()):  # pragma: no cover - a bug
            raise RuntimeError(
                f"row {train_group!r}: the run's training split ({len(splits.indices['train'])} "
                f"items) is not the {len(train_idx)} items the matrix assigned"
            )
        t0 = time.perf_counter()
        res = fit(cfg, finalize_run=False, out=self.out)
        chosen = res.latest_checkpoint if self.checkpoint == "latest" else res.best_checkpoint
        if chosen is None:
            raise TrainingError(f"row {train_group!r}: the run {res.run_path} left no checkpoint")
        model, _, state = model_from_training_checkpoint(chosen)
        pred = predict_dataset(cfg, model, Subset(splits.dataset, [int(i) for i in test_idx]),
                               batch_size=cfg.data.eval_batch_size)
        score, _ = cfg.score()
        self.runs[train_group] = {
            "run": res.run_path,
            "checkpoint": chosen,
            "epoch": int(state["epoch"]),
            f"{score} (of that epoch)": state["metrics"].get(score),
            "best_checkpoint": res.best_checkpoint,
            "train_items": len(train_idx),
            "include": cfg.data.include,
            "max_train_samples": cfg.data.max_train_samples,
            "wall_s": round(time.perf_counter() - t0, 1),
        }
        return pred[self._output_key].numpy()

    def describe(self) -> str:
        c = self.config
        return (f"facecore.train.fit per row ({c.task}, {c.model.backbone}, {c.optim.epochs} "
                f"epochs, {c.run.workers} Ray Train worker(s), {self.checkpoint} checkpoint); "
                "test split of the config")


def fit_bias_matrix(
    config: Any,
    group: str,
    *,
    bins: list[float] | None = None,
    bin_names: list[str] | None = None,
    checkpoint: str = "latest",
    out: Any = None,
    **options: Any,
):
    """:func:`~facecore.analysis.cross_group_matrix` with a :class:`FitTrainer`: one training
    run per value of ``group`` plus one on all, each scored on every group of the config's
    test split (``bins`` / ``bin_names``: rows and columns are bins of ``group``, as
    :class:`FitTrainer`). ``options`` go to ``cross_group_matrix`` (``equal_train_size``,
    ``min_group_size``, ``far``, ``n_boot``, ...)."""
    from facecore.analysis.bias import cross_group_matrix

    trainer = FitTrainer(config, group, bins=bins, bin_names=bin_names, checkpoint=checkpoint,
                         out=out)
    options.setdefault("seed", config.data.seed)
    m = cross_group_matrix(
        trainer, trainer.groups, group_names=trainer.group_names, identity=trainer.identity,
        target_name=get_label_key(config), group_name=group if bins is None else f"{group}_bin",
        **options,
    )
    m.meta["runs"] = trainer.runs
    m.meta["train_config"] = {"task": config.task, "data": config.data.name,
                              "split_by": trainer.base.split_by,
                              "split_sizes": trainer.base.sizes()}
    return m


def get_label_key(config: Any) -> str:
    """The label the config's task predicts and the matrix scores (``gender``, ``age``,
    ``identity``)."""
    from facecore.train.tasks import get_task

    return get_task(config.task).label_key
