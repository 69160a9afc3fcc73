"""Probes: how much of an attribute a frozen embedding carries.

A probe is a small scikit-learn classifier trained on the embeddings to predict an
attribute (gender, group, age group): ``logreg`` (``StandardScaler`` + L2 logistic
regression) or ``mlp`` (``StandardScaler`` + one hidden layer of 128 ReLU units, Adam, L2
``alpha=1e-3``). It is scored by k-fold cross-validation:

* folds keep every person in one fold when identities repeat (``StratifiedGroupKFold`` by
  ``identity``, stratified by the target), else ``StratifiedKFold``; shuffled with ``seed``;
* the accuracy is over the pooled held-out predictions (every item predicted once), with a
  95% interval: Wilson when items are independent, an identity bootstrap when a person has
  several images (:mod:`facecore.analysis.stats`); the per-fold accuracies are kept too;
* ``majority`` is the accuracy of predicting each training fold's most frequent class (the
  chance level to beat); run the same probe on :func:`~facecore.analysis.pixel_embeddings`
  for the raw-pixel baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facecore.analysis.embeddings import Embeddings
from facecore.analysis.stats import Estimate, proportion

__all__ = ["PROBES", "ProbeResult", "cv_folds", "make_probe", "probe", "probe_table"]

#: Probe models :func:`make_probe` builds.
PROBES = ("logreg", "mlp", "ridge")


def make_probe(kind: str = "logreg", *, seed: int = 0, C: float = 1.0, hidden: int = 128):
    """An unfitted scikit-learn pipeline: scaler + ``logreg`` / ``mlp`` classifier, or
    ``ridge`` regression (for ages; its penalty chosen among 13 values from 1e-2 to 1e4 by
    efficient leave-one-out, ``RidgeCV``, since ages from thousands of pixels overfit
    badly at a fixed one)."""
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logreg":
        est: Any = LogisticRegression(C=C, max_iter=3000)
    elif kind == "mlp":
        est = MLPClassifier(
            hidden_layer_sizes=(hidden,), alpha=1e-3, max_iter=400, random_state=seed
        )
    elif kind == "ridge":
        est = RidgeCV(alphas=np.logspace(-2, 4, 13))
    else:
        raise ValueError(f"probe model must be one of {list(PROBES)}, got {kind!r}")
    return make_pipeline(StandardScaler(), est)


def cv_folds(
    stratify: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    folds: int = 5,
    seed: int = 0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` (train, test) index pairs: by ``groups`` (no group in two folds) when they
    repeat, stratified by ``stratify``, shuffled with ``seed``."""
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(stratify)
    n = len(y)
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds must be an int >= 2, got {folds!r}")
    x = np.zeros((n, 1))
    with warnings.catch_warnings():  # "least populated class has fewer members than folds"
        warnings.simplefilter("ignore", UserWarning)
        if groups is not None and len(np.unique(groups)) < n:
            ng = len(np.unique(groups))
            if ng < folds:
                raise ValueError(f"{ng} identities cannot fill {folds} folds; lower folds")
            split = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(x, y, groups)
        else:
            if n < folds:
                raise ValueError(f"{n} items cannot fill {folds} folds; lower folds")
            split = StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y)
        return [(tr, te) for tr, te in split]


def _fit_predict(kind: str, X, y, tr, te, seed: int, C: float) -> np.ndarray:
    classes = np.unique(y[tr])
    if len(classes) == 1 and kind != "ridge":  # one class in training: it is the answer
        return np.full(len(te), classes[0])
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    clf = make_probe(kind, seed=seed, C=C)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X[tr], y[tr])
    return clf.predict(X[te])


@dataclass
class ProbeResult:
    """Cross-validated probe of ``target`` from ``features`` (see the module doc)."""

    target: str
    model: str
    accuracy: Estimate
    majority: Estimate
    balanced_accuracy: float
    fold_accuracies: list[float]
    class_names: list[str]
    confusion: list[list[int]]
    cv: str
    features: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "model": self.model,
            "accuracy": self.accuracy.to_dict(),
            "majority_baseline": self.majority.to_dict(),
            "balanced_accuracy": self.balanced_accuracy,
            "fold_accuracies": self.fold_accuracies,
            "class_names": self.class_names,
            "confusion": self.confusion,
            "cv": self.cv,
            "features": self.features,
        }


def _grouping(emb: Embeddings, group_by: str | None) -> np.ndarray | None:
    if group_by is None:
        return None
    if group_by == "auto":
        if "identity" not in emb.labels:
            return None
        g = emb.label("identity")
        return g if len(np.unique(g)) < len(g) else None
    return emb.label(group_by)


def probe(
    emb: Embeddings,
    target: str,
    *,
    model: str = "logreg",
    folds: int = 5,
    group_by: str | None = "auto",
    seed: int = 0,
    confidence: float = 0.95,
    C: float = 1.0,
) -> ProbeResult:
    """Cross-validated accuracy of a ``model`` probe predicting label ``target`` from
    ``emb`` (``group_by="auto"``: by ``identity`` when people repeat)."""
    if model not in ("logreg", "mlp"):
        raise ValueError(f"probe model must be 'logreg' or 'mlp', got {model!r}")
    y = emb.label(target)
    groups = _grouping(emb, group_by)
    splits = cv_folds(y, groups=groups, folds=folds, seed=seed)
    pred = np.empty_like(y)
    majority = np.empty_like(y)
    fold_acc = []
    for tr, te in splits:
        pred[te] = _fit_predict(model, emb.features, y, tr, te, seed, C)
        vals, cnt = np.unique(y[tr], return_counts=True)
        majority[te] = vals[np.argmax(cnt)]
        fold_acc.append(float((pred[te] == y[te]).mean()))
    names = emb.names(target)
    k = max(len(names), int(y.max()) + 1)
    conf = np.zeros((k, k), dtype=np.int64)
    np.add.at(conf, (y, pred), 1)
    present = conf.sum(1) > 0
    balanced = float(np.mean(np.diag(conf)[present] / conf.sum(1)[present]))
    how = (
        f"StratifiedGroupKFold({folds}) by {group_by if group_by != 'auto' else 'identity'}"
        if groups is not None
        else f"StratifiedKFold({folds})"
    )
    kw = {"clusters": groups, "confidence": confidence, "seed": seed}
    return ProbeResult(
        target=target,
        model=model,
        accuracy=proportion(pred == y, **kw),
        majority=proportion(majority == y, **kw),
        balanced_accuracy=balanced,
        fold_accuracies=fold_acc,
        class_names=names[:k],
        confusion=conf.tolist(),
        cv=f"{how}, shuffled, seed {seed}",
        features={"source": emb.meta.get("source"), "layer": emb.meta.get("layer"), "dim": emb.dim,
                  "count": len(emb)},
    )


def probe_table(results: dict[str, list[ProbeResult]]) -> str:
    """Markdown table: one row per (features, target, model)."""
    lines = [
        "| features | target | probe | accuracy [95% CI] | majority | balanced acc. | CI method |",
        "|---|---|---|---|---|---|---|",
    ]
    for feat, rows in results.items():
        for r in rows:
            lines.append(
                f"| {feat} | {r.target} | {r.model} | {r.accuracy.fmt()} | {r.majority.value:.3f} "
                f"| {r.balanced_accuracy:.3f} | {r.accuracy.method} |"
            )
    return "\n".join(lines)
