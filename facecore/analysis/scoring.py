"""Task metrics of predictions, each with its confidence interval (:mod:`.stats`).

* classification (gender, group, age group): ``accuracy`` of predicted labels;
* regression (age): ``mae`` of predicted values (in the label's unit: classes or years);
* verification (identity): ``tar_at_far`` (true accept rate at a false accept rate, from
  :func:`facecore.metrics.tar_at_far`) and ``eer`` (:func:`facecore.metrics.equal_error_rate`)
  of cosine similarities over the pairs of a set of embeddings.
"""

from __future__ import annotations

import numpy as np
import torch

from facecore.analysis.stats import Estimate, mean_estimate, pair_bootstrap, proportion

__all__ = [
    "TASKS",
    "accuracy_estimate",
    "mae_estimate",
    "metric_name",
    "pair_scores",
    "verification_estimates",
]

#: What a group analysis can score.
TASKS = ("classification", "regression", "verification")


def metric_name(task: str, far: float = 0.01) -> str:
    return {"classification": "accuracy", "regression": "mae"}.get(task, f"tar@far={far:g}")


def accuracy_estimate(pred, target, *, clusters=None, confidence=0.95, seed=0,
                      n_boot=2000) -> Estimate:
    return proportion(np.asarray(pred) == np.asarray(target), clusters=clusters,
                      confidence=confidence, seed=seed, n_boot=n_boot)


def mae_estimate(pred, target, *, clusters=None, confidence=0.95, seed=0,
                 n_boot=2000) -> Estimate:
    err = np.abs(np.asarray(pred, np.float64) - np.asarray(target, np.float64))
    return mean_estimate(err, clusters=clusters, confidence=confidence, seed=seed, n_boot=n_boot)


def pair_scores(
    embeddings: np.ndarray, identity: np.ndarray, *, max_pairs: int = 200_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities and same-identity flags of the pairs ``i < j`` (all of them, or
    ``max_pairs`` drawn at random; every genuine pair is kept)."""
    e = torch.nn.functional.normalize(torch.as_tensor(np.asarray(embeddings), dtype=torch.float64), dim=1)
    ident = np.asarray(identity)
    n = len(ident)
    i, j = np.triu_indices(n, k=1)
    same = ident[i] == ident[j]
    if len(i) > max_pairs:
        rng = np.random.default_rng(seed)
        neg = np.nonzero(~same)[0]
        keep_neg = rng.choice(neg, size=max(0, max_pairs - int(same.sum())), replace=False)
        keep = np.sort(np.concatenate([np.nonzero(same)[0], keep_neg]))
        i, j, same = i[keep], j[keep], same[keep]
    s = (e[torch.as_tensor(i)] * e[torch.as_tensor(j)]).sum(1).numpy()
    return s, same


def _tar(far: float):
    from facecore.metrics import tar_at_far

    def stat(s: np.ndarray, y: np.ndarray) -> float:
        return float(tar_at_far(torch.as_tensor(s), torch.as_tensor(y), far).tar)

    return stat


def _eer(s: np.ndarray, y: np.ndarray) -> float:
    from facecore.metrics import equal_error_rate

    return float(equal_error_rate(torch.as_tensor(s), torch.as_tensor(y)).eer)


def verification_estimates(
    scores: np.ndarray,
    same: np.ndarray,
    *,
    far: float = 0.01,
    confidence: float = 0.95,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, Estimate]:
    """``{"tar_at_far": ..., "eer": ...}`` of pair scores (cosine similarities), with pair
    bootstrap intervals; NaN estimates when there are no genuine or no impostor pairs."""
    kw = {"confidence": confidence, "n_boot": n_boot, "seed": seed}
    return {
        "tar_at_far": pair_bootstrap(_tar(far), scores, same, **kw),
        "eer": pair_bootstrap(_eer, scores, same, **kw),
    }
