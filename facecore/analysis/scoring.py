"""Task metrics of predictions, each with its confidence interval (:mod:`.stats`).

* classification (gender, group, age group): ``accuracy`` of predicted labels;
* regression (age): ``mae`` of predicted values (in the label's unit: classes or years);
* verification (identity): ``tar_at_far`` (true accept rate at a false accept rate, from
  :func:`facecore.metrics.tar_at_far`) and ``eer`` (:func:`facecore.metrics.equal_error_rate`)
  of cosine similarities over the pairs of a set of embeddings; intervals by the identity
  (subsets) bootstrap of :func:`facecore.analysis.stats.identity_pair_bootstrap` when the
  pairs' identities are given (they share images and people), else the pair bootstrap.
"""

from __future__ import annotations

import numpy as np
import torch

from facecore.analysis.stats import (
    Estimate,
    identity_pair_bootstrap,
    mean_estimate,
    pair_bootstrap,
    proportion,
)

__all__ = [
    "TASKS",
    "accuracy_estimate",
    "mae_estimate",
    "metric_name",
    "pair_scores",
    "rate_at_threshold",
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
    embeddings: np.ndarray,
    identity: np.ndarray,
    *,
    max_pairs: int = 200_000,
    seed: int = 0,
    return_index: bool = False,
) -> tuple[np.ndarray, ...]:
    """Cosine similarities and same-identity flags of the pairs ``i < j`` (all of them, or
    ``max_pairs`` drawn at random; every genuine pair is kept); with ``return_index`` also
    the pairs' positions ``i`` and ``j``."""
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
    return (s, same, i, j) if return_index else (s, same)


def _tar(far: float):
    from facecore.metrics import tar_at_far

    def stat(s: np.ndarray, y: np.ndarray) -> float:
        return float(tar_at_far(torch.as_tensor(s), torch.as_tensor(y), far).tar)

    return stat


def _eer(s: np.ndarray, y: np.ndarray) -> float:
    from facecore.metrics import equal_error_rate

    return float(equal_error_rate(torch.as_tensor(s), torch.as_tensor(y)).eer)


def _boot(statistic, scores, same, pair_identities, kw) -> Estimate:
    if pair_identities is None:
        return pair_bootstrap(statistic, scores, same, **kw)
    return identity_pair_bootstrap(statistic, scores, same, *pair_identities, **kw)


def verification_estimates(
    scores: np.ndarray,
    same: np.ndarray,
    *,
    pair_identities: tuple[np.ndarray, np.ndarray] | None = None,
    far: float = 0.01,
    confidence: float = 0.95,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, Estimate]:
    """``{"tar_at_far": ..., "eer": ...}`` of pair scores (cosine similarities), with
    identity-bootstrap intervals when ``pair_identities`` (the identities of each pair's
    two images) are given, else pair-bootstrap ones; NaN estimates when there are no
    genuine or no impostor pairs."""
    kw = {"confidence": confidence, "n_boot": n_boot, "seed": seed}
    return {
        "tar_at_far": _boot(_tar(far), scores, same, pair_identities, kw),
        "eer": _boot(_eer, scores, same, pair_identities, kw),
    }


def rate_at_threshold(
    scores: np.ndarray,
    same: np.ndarray,
    threshold: float,
    *,
    genuine: bool,
    pair_identities: tuple[np.ndarray, np.ndarray] | None = None,
    confidence: float = 0.95,
    n_boot: int = 200,
    seed: int = 0,
) -> Estimate:
    """At a fixed ``threshold`` (accept: score >= threshold): the false non-match rate of
    the genuine pairs (``genuine=True``) or the false match rate of the impostor pairs, with
    an identity-bootstrap interval when ``pair_identities`` are given (else Wilson over
    pairs, which treats them as independent)."""
    s, y = np.asarray(scores, np.float64), np.asarray(same, bool)

    def stat(sc: np.ndarray, yy: np.ndarray) -> float:
        accept = sc >= threshold
        return float(np.mean(~accept[yy])) if genuine else float(np.mean(accept[~yy]))

    if pair_identities is None:
        accept = s >= threshold
        return proportion(~accept[y] if genuine else accept[~y], confidence=confidence)
    est = identity_pair_bootstrap(stat, s, y, *pair_identities, confidence=confidence,
                                  n_boot=n_boot, seed=seed)
    return Estimate(est.value, est.low, est.high, int(y.sum() if genuine else (~y).sum()),
                    est.method, confidence)
