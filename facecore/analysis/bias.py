"""The cross-group (bias) matrix: train one model per group (and one on all groups),
evaluate each on every group.

Rows are the group a model was trained on (plus ``all``), columns the group it is
evaluated on; a cell is the task's metric (accuracy, MAE, TAR@FAR) with its 95% interval.
A model that learned a group-specific cue scores clearly higher on its own group (the
diagonal) than on the others.

Protocol (:func:`cross_group_matrix`): the items are split into ``folds`` by identity when
people repeat (a person is never in a model's training set and in its test set),
stratified by group (and target). In each fold, for every row the trainer is fitted on the
training items of that group and predicts **all** held-out items; each cell pools the
held-out predictions of its column's group over the folds. With ``equal_train_size``
(default) every row's training set in a fold is subsampled to the size of the smallest
group's, so rows differ by *who* they saw, not by how many. Groups with fewer than
``min_group_size`` items are left out (and listed in ``excluded``).

Verification cells pool, over folds, the pairs of held-out items of the column group
(every fold's pairs scored by that fold's model), so identities in test pairs were never
trained on.

Trainers (the ``trainer`` argument): anything with ``task`` (``"classification"``,
``"regression"`` or ``"verification"``), ``target`` (the labels ``[N]`` scored against:
classes, values, identities) and ``fit_predict(train_idx, test_idx, *, fold,
train_group) -> predictions`` (labels ``[n]``, values ``[n]`` or embeddings ``[n, D]`` for
the test items). Two optional hooks let a trainer own the protocol:

* ``splits() -> [(train_idx, test_idx), ...]``: its own held-out split(s) instead of the
  cross-validation folds (a training config's train / test split: one "fold");
* ``subsample(idx, n, *, fold, train_group) -> idx``: its own draw of the equal-size
  training subsets (e.g. the one a training config's ``data.max_train_samples`` makes).

This module has the fast probe trainers on frozen embeddings (:class:`ProbeTrainer`,
:class:`RegressionProbeTrainer`, :class:`MetricProbeTrainer`);
:class:`facecore.analysis.runs.FitTrainer` runs a full Ray Train run
(:func:`facecore.train.fit`) per row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from facecore.analysis.embeddings import Embeddings
from facecore.analysis.probes import _fit_predict, cv_folds
from facecore.analysis.scoring import (
    TASKS,
    accuracy_estimate,
    mae_estimate,
    metric_name,
    verification_estimates,
)
from facecore.analysis.stats import Estimate

__all__ = [
    "BiasMatrix",
    "GroupTrainer",
    "MetricProbeTrainer",
    "ProbeTrainer",
    "RegressionProbeTrainer",
    "bias_matrix",
    "cross_group_matrix",
    "default_task",
]


class GroupTrainer(Protocol):
    """What :func:`cross_group_matrix` trains and evaluates (see the module doc)."""

    task: str
    target: np.ndarray

    def fit_predict(
        self, train_idx: np.ndarray, test_idx: np.ndarray, *, fold: int, train_group: str
    ) -> np.ndarray: ...

    # optional: splits() -> list[(train_idx, test_idx)];
    #           subsample(idx, n, *, fold, train_group) -> idx (see the module doc)


class ProbeTrainer:
    """Classification probe (``logreg`` / ``mlp``, :func:`facecore.analysis.make_probe`) on
    frozen features."""

    task = "classification"

    def __init__(self, features: np.ndarray, target: np.ndarray, *, model: str = "logreg",
                 seed: int = 0, C: float = 1.0) -> None:
        self.X, self.target, self.model, self.seed, self.C = features, np.asarray(target), model, seed, C

    def fit_predict(self, train_idx, test_idx, *, fold: int, train_group: str) -> np.ndarray:
        return _fit_predict(self.model, self.X, self.target, train_idx, test_idx, self.seed + fold, self.C)

    def describe(self) -> str:
        return f"{self.model} probe on frozen features"


class RegressionProbeTrainer(ProbeTrainer):
    """Ridge regression probe (``RidgeCV``) on frozen features (ages: MAE in the target's
    unit)."""

    task = "regression"

    def __init__(self, features, target, *, seed: int = 0, C: float = 1.0) -> None:
        super().__init__(features, np.asarray(target, np.float64), model="ridge", seed=seed, C=C)

    def describe(self) -> str:
        return "ridge probe on frozen features"


class MetricProbeTrainer:
    """Verification on frozen features: a linear metric (LDA projection learned on the
    identities of the training items, then L2 normalisation) whose cosine similarities
    score the held-out pairs; with fewer than 3 training identities, the standardised
    features."""

    task = "verification"

    def __init__(self, features: np.ndarray, identity: np.ndarray, *, dim: int = 64) -> None:
        self.X, self.target, self.dim = features, np.asarray(identity), dim

    def fit_predict(self, train_idx, test_idx, *, fold: int, train_group: str) -> np.ndarray:
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        ids = self.target[train_idx]
        k = len(np.unique(ids))
        if k < 3:
            return StandardScaler().fit(self.X[train_idx]).transform(self.X[test_idx])
        lda = LinearDiscriminantAnalysis(
            n_components=min(self.dim, k - 1, self.X.shape[1]), solver="eigen", shrinkage="auto"
        )
        import warnings

        with warnings.catch_warnings():  # identities with one image: "only one sample"
            warnings.simplefilter("ignore", UserWarning)
            m = make_pipeline(StandardScaler(), lda).fit(self.X[train_idx], ids)
        return m.transform(self.X[test_idx])

    def describe(self) -> str:
        return "LDA metric probe on frozen features"


@dataclass
class BiasMatrix:
    """Rows: training group (+ ``all``); columns: evaluation group; ``cells[r][c]``: the
    metric with its interval. ``extra`` holds further matrices: ``eer`` for verification;
    ``baseline`` (one row) for the others: the constant predictor fitted on each fold's
    training items (majority class / median), scored on each column's held-out items."""

    target: str
    group: str
    task: str
    metric: str
    rows: list[str]
    cols: list[str]
    cells: list[list[Estimate]]
    train_sizes: list[int]
    extra: dict[str, list[list[Estimate]]] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def higher_is_better(self) -> bool:
        return self.task != "regression"

    def values(self) -> np.ndarray:
        return np.array([[c.value for c in row] for row in self.cells], dtype=np.float64)

    def own_vs_other(self) -> list[dict[str, float | str]]:
        """Per group row: own-group value, mean over the other groups, and
        ``gap = own - other`` (``other - own`` for errors, so a positive gap always means
        "better on its own group")."""
        out = []
        v = self.values()
        for r, name in enumerate(self.rows):
            if name not in self.cols:
                continue
            c = self.cols.index(name)
            others = [v[r, j] for j in range(len(self.cols)) if j != c]
            other = float(np.nanmean(others)) if others else float("nan")
            gap = v[r, c] - other if self.higher_is_better else other - v[r, c]
            out.append({"group": name, "own": float(v[r, c]), "other": other, "gap": float(gap)})
        return out

    def max_gap(self) -> float:
        gaps = [g["gap"] for g in self.own_vs_other()]
        return float(np.nanmax(gaps)) if gaps else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "group": self.group,
            "task": self.task,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "rows_trained_on": self.rows,
            "cols_evaluated_on": self.cols,
            "cells": [[c.to_dict() for c in row] for row in self.cells],
            "extra": {k: [[c.to_dict() for c in row] for row in m] for k, m in self.extra.items()},
            "train_sizes_per_fold": self.train_sizes,
            "own_vs_other": self.own_vs_other(),
            "excluded_groups": self.excluded,
            "meta": self.meta,
        }

    def to_markdown(self) -> str:
        head = f"{self.metric} of a {self.target} model trained on one {self.group} (rows) and evaluated on each (columns); 95% CI ({self.cells[0][0].method})"
        lines = [head, "", "| trained on \\ evaluated on | " + " | ".join(self.cols) + " |",
                 "|---|" + "---|" * len(self.cols)]
        for name, row in zip(self.rows, self.cells):
            lines.append(f"| **{name}** | " + " | ".join(c.fmt() for c in row) + " |")
        if "baseline" in self.extra:
            what = "majority class" if self.task == "classification" else "training median"
            lines.append(f"| *({what})* | " + " | ".join(c.fmt() for c in self.extra["baseline"][0]) + " |")
        lines += ["", "| group | own | others (mean) | gap |", "|---|---|---|---|"]
        for g in self.own_vs_other():
            lines.append(f"| {g['group']} | {g['own']:.3f} | {g['other']:.3f} | {g['gap']:+.3f} |")
        if self.excluded:
            lines += ["", "excluded (too few items): " + ", ".join(f"{k} ({v})" for k, v in self.excluded.items())]
        return "\n".join(lines)

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        from facecore.analysis.plots import heatmap

        return heatmap(self, Path(path), title)


def default_task(target: str, values: np.ndarray | None = None) -> str:
    """``verification`` for ``identity``, ``regression`` for ages (``age``,
    ``age_years``) and real-valued labels, ``classification`` otherwise."""
    if target == "identity":
        return "verification"
    if target in ("age", "age_years") or (values is not None and np.issubdtype(np.asarray(values).dtype, np.floating)):
        return "regression"
    return "classification"


def cross_group_matrix(
    trainer: GroupTrainer,
    groups: np.ndarray,
    *,
    group_names: list[str] | None = None,
    identity: np.ndarray | None = None,
    folds: int = 5,
    seed: int = 0,
    equal_train_size: bool = True,
    include_all: bool = True,
    min_group_size: int = 10,
    far: float = 0.01,
    confidence: float = 0.95,
    n_boot: int = 200,
    target_name: str = "target",
    group_name: str = "group",
) -> BiasMatrix:
    """Train per group, evaluate on every group (see the module doc). ``n_boot``: bootstrap
    resamples of the verification intervals (the identity bootstrap of accuracies / MAEs
    uses ten times as many: it is cheap)."""
    task = trainer.task
    if task not in TASKS:
        raise ValueError(f"trainer.task must be one of {list(TASKS)}, got {task!r}")
    g_all = np.asarray(groups)
    y_all = np.asarray(trainer.target)
    if len(g_all) != len(y_all):
        raise ValueError(f"groups has {len(g_all)} entries for {len(y_all)} targets")
    names = list(group_names) if group_names is not None else [str(v) for v in range(int(g_all.max()) + 1)]
    own_splits = getattr(trainer, "splits", None)
    given = [(np.asarray(tr, np.int64), np.asarray(te, np.int64)) for tr, te in own_splits()] \
        if callable(own_splits) else None
    # the items the matrix may use: all, or those in the trainer's own splits
    pool = np.arange(len(g_all)) if given is None else np.unique(np.concatenate(
        [np.concatenate([tr, te]) for tr, te in given]))
    values, counts = np.unique(g_all[pool], return_counts=True)
    kept = [int(v) for v, c in zip(values, counts) if c >= min_group_size]
    excluded = {names[int(v)]: int(c) for v, c in zip(values, counts) if c < min_group_size}
    if len(kept) < 2:
        raise ValueError(
            f"need at least 2 groups with >= {min_group_size} items, got "
            f"{dict(zip([names[int(v)] for v in values], counts.tolist()))}"
        )
    use = pool[np.isin(g_all[pool], kept)]
    local = np.full(len(g_all), -1, dtype=np.int64)
    local[use] = np.arange(len(use))
    g, y = g_all[use], y_all[use]
    ident = None if identity is None else np.asarray(identity)[use]
    if task == "verification":
        ident = y
    if given is None:
        strat = g * (int(y.max()) + 1) + y if task == "classification" else g
        splits = cv_folds(strat, groups=ident, folds=folds, seed=seed)
    else:  # the trainer's split(s), restricted to the kept groups
        splits = [(local[tr][local[tr] >= 0], local[te][local[te] >= 0]) for tr, te in given]
        for f, (tr, te) in enumerate(splits):
            if ident is not None and set(ident[tr]) & set(ident[te]):
                raise ValueError(f"the trainer's split {f} has people in both train and test")
            if not len(te):
                raise ValueError(f"the trainer's split {f} has no test items in the kept groups")
    own_subsample = getattr(trainer, "subsample", None)
    row_sizes: dict[str, list[int]] = {}
    row_groups: list[int | None] = list(kept) + ([None] if include_all else [])
    rows = [names[k] for k in kept] + (["all"] if include_all else [])
    cols = [names[k] for k in kept]
    rng = np.random.default_rng(seed)
    # predictions[r]: per fold (test indices into `use`, predictions)
    preds: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in row_groups]
    base: list[tuple[np.ndarray, np.ndarray]] = []  # the constant predictor, for context
    sizes = []
    for f, (tr, te) in enumerate(splits):
        if task == "classification":
            vals, cnt = np.unique(y[tr], return_counts=True)
            base.append((te, np.full(len(te), vals[np.argmax(cnt)])))
        elif task == "regression":
            base.append((te, np.full(len(te), float(np.median(y[tr])))))
        n_min = min(int(np.sum(g[tr] == k)) for k in kept)
        if n_min == 0:
            raise ValueError(f"a group has no training items in fold {f}: {dict(zip(cols, [int(np.sum(g[tr] == k)) for k in kept]))}")
        sizes.append(n_min)
        for r, k in enumerate(row_groups):
            idx = tr if k is None else tr[g[tr] == k]
            if equal_train_size and len(idx) > n_min:
                if callable(own_subsample):
                    idx = np.sort(local[np.asarray(own_subsample(use[idx], n_min, fold=f, train_group=rows[r]),
                                                   np.int64)])
                else:
                    idx = np.sort(rng.choice(idx, n_min, replace=False))
            row_sizes.setdefault(rows[r], []).append(int(len(idx)))
            p = trainer.fit_predict(use[idx], use[te], fold=f, train_group=rows[r])
            preds[r].append((te, np.asarray(p)))
    cells, eers = [], []
    for r in range(len(row_groups)):
        row, erow = [], []
        for k in kept:
            if task == "verification":
                scores, same, first, second = [], [], [], []
                from facecore.analysis.scoring import pair_scores

                for te, p in preds[r]:
                    m = g[te] == k
                    if m.sum() >= 2:
                        who = y[te][m]
                        s, t, i, j = pair_scores(p[m], who, seed=seed, return_index=True)
                        scores.append(s)
                        same.append(t)
                        first.append(who[i])
                        second.append(who[j])
                cat = (lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt))  # noqa: E731
                est = verification_estimates(
                    cat(scores, np.float64), cat(same, bool),
                    pair_identities=(cat(first, np.int64), cat(second, np.int64)),
                    far=far, confidence=confidence, seed=seed, n_boot=n_boot,
                )
                row.append(est["tar_at_far"])
                erow.append(est["eer"])
                continue
            te = np.concatenate([t[g[t] == k] for t, _ in preds[r]])
            p = np.concatenate([q[g[t] == k] for t, q in preds[r]])
            clusters = None if ident is None else ident[te]
            fn = accuracy_estimate if task == "classification" else mae_estimate
            row.append(fn(p, y[te], clusters=clusters, confidence=confidence, seed=seed,
                          n_boot=10 * n_boot))
        cells.append(row)
        eers.append(erow)
    extra: dict[str, list[list[Estimate]]] = {}
    if task == "verification":
        extra["eer"] = eers
    else:
        fn = accuracy_estimate if task == "classification" else mae_estimate
        brow = []
        for k in kept:
            te = np.concatenate([t[g[t] == k] for t, _ in base])
            p = np.concatenate([q[g[t] == k] for t, q in base])
            brow.append(fn(p, y[te], clusters=None if ident is None else ident[te],
                           confidence=confidence, seed=seed, n_boot=10 * n_boot))
        extra["baseline"] = [brow]
    describe = getattr(trainer, "describe", None)
    return BiasMatrix(
        target=target_name,
        group=group_name,
        task=task,
        metric=metric_name(task, far),
        rows=rows,
        cols=cols,
        cells=cells,
        train_sizes=sizes,
        extra=extra,
        excluded=excluded,
        meta={
            "folds": len(splits),
            "seed": seed,
            "equal_train_size": equal_train_size,
            "min_group_size": min_group_size,
            "split": ("the trainer's own split" + (" (by identity)" if ident is not None else "")
                      if given is not None else
                      "by identity" if ident is not None and len(np.unique(ident)) < len(ident) else "by item"),
            "train_sizes_per_row": row_sizes,
            "trainer": describe() if callable(describe) else type(trainer).__name__,
            "far": far if task == "verification" else None,
            "confidence": confidence,
        },
    )


def bias_matrix(
    emb: Embeddings,
    target: str,
    group: str,
    *,
    task: str | None = None,
    model: str = "logreg",
    **options: Any,
) -> BiasMatrix:
    """:func:`cross_group_matrix` with a probe trainer on ``emb`` (the fast path):
    ``target`` predicted by a ``model`` probe (classification), a ridge probe (ages) or an
    LDA metric (``identity``: verification); rows / columns are the values of ``group``."""
    y = emb.label(target)
    task = task or default_task(target, y)
    if task == "classification":
        trainer: Any = ProbeTrainer(emb.features, y, model=model, seed=options.get("seed", 0))
    elif task == "regression":
        trainer = RegressionProbeTrainer(emb.features, y, seed=options.get("seed", 0))
    elif task == "verification":
        trainer = MetricProbeTrainer(emb.features, y)
    else:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    identity = emb.labels.get("identity")
    m = cross_group_matrix(
        trainer, emb.label(group), group_names=emb.names(group), identity=identity,
        target_name=target, group_name=group, **options,
    )
    m.meta["features"] = {k: emb.meta.get(k) for k in ("source", "layer", "task")}
    return m
