r"""Point estimates with confidence intervals, and how each interval was made.

* :func:`proportion`: a rate (accuracy) of ``k`` successes in ``n`` items. Items that are
  independent (no ``clusters``): the **Wilson score interval**
  :math:`\frac{\hat p + z^2/2n \pm z\sqrt{\hat p(1-\hat p)/n + z^2/4n^2}}{1 + z^2/n}`.
  Items grouped in clusters that are not independent (several images of one person):
  a **percentile bootstrap over clusters** (whole identities resampled with replacement),
  since a Wilson interval over images would be too narrow.
* :func:`mean_estimate`: a mean (mean absolute error): **Student-t** interval over items,
  or the cluster bootstrap when ``clusters`` is given.
* :func:`pair_bootstrap`: a verification statistic (TAR@FAR, EER) of genuine / impostor
  pair scores: percentile bootstrap with genuine and impostor pairs resampled separately
  (pairs that share an image are treated as independent, so the interval is optimistic).

Every :class:`Estimate` records its ``method`` so reports say which interval they show.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

__all__ = [
    "Estimate",
    "mean_estimate",
    "pair_bootstrap",
    "proportion",
    "wilson_interval",
]


@dataclass(frozen=True)
class Estimate:
    """``value`` with the interval ``[low, high]`` at ``confidence``, from ``n`` items
    (or pairs), made by ``method``."""

    value: float
    low: float
    high: float
    n: int
    method: str
    confidence: float = 0.95

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.fmt()} ({self.method}, n={self.n})"

    def fmt(self, digits: int = 3) -> str:
        if math.isnan(self.value):
            return "n/a"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (``(nan, nan)`` for ``n = 0``)."""
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    z = _z(confidence)
    p = successes / n
    den = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    lo = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the ends
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def _cluster_bootstrap(
    values: np.ndarray, clusters: np.ndarray, n_boot: int, seed: int, confidence: float
) -> tuple[float, float]:
    """Percentile interval of ``mean(values)`` resampling whole clusters."""
    _, inv = np.unique(clusters, return_inverse=True)
    g = inv.max() + 1
    sums = np.bincount(inv, weights=values.astype(np.float64), minlength=g)
    cnts = np.bincount(inv, minlength=g).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(g, np.full(g, 1.0 / g), size=n_boot).astype(np.float64)
    stats = (draws @ sums) / np.maximum(draws @ cnts, 1e-300)
    a = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stats, [a, 1.0 - a])
    return float(lo), float(hi)


def _repeated(clusters: np.ndarray | None) -> bool:
    return clusters is not None and len(np.unique(clusters)) < len(clusters)


def proportion(
    correct: np.ndarray,
    *,
    clusters: np.ndarray | None = None,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> Estimate:
    """Rate of ``correct`` (bools) with a Wilson interval, or a cluster bootstrap when
    ``clusters`` (e.g. identities) repeat (see the module doc)."""
    c = np.asarray(correct, dtype=bool).reshape(-1)
    n = int(c.size)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, "none", confidence)
    value = float(c.mean())
    if _repeated(clusters):
        lo, hi = _cluster_bootstrap(c, np.asarray(clusters), n_boot, seed, confidence)
        return Estimate(value, lo, hi, n, f"identity bootstrap ({n_boot})", confidence)
    lo, hi = wilson_interval(int(c.sum()), n, confidence)
    return Estimate(value, lo, hi, n, "wilson", confidence)


def mean_estimate(
    values: np.ndarray,
    *,
    clusters: np.ndarray | None = None,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> Estimate:
    """Mean of ``values`` with a Student-t interval, or a cluster bootstrap when
    ``clusters`` repeat."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    n = int(v.size)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, "none", confidence)
    m = float(v.mean())
    if _repeated(clusters):
        lo, hi = _cluster_bootstrap(v, np.asarray(clusters), n_boot, seed, confidence)
        return Estimate(m, lo, hi, n, f"identity bootstrap ({n_boot})", confidence)
    if n < 2:
        return Estimate(m, float("nan"), float("nan"), n, "student-t", confidence)
    from scipy.stats import t as student_t

    half = float(student_t.ppf(0.5 + confidence / 2.0, n - 1)) * float(v.std(ddof=1)) / math.sqrt(n)
    return Estimate(m, m - half, m + half, n, "student-t", confidence)


def pair_bootstrap(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    scores: np.ndarray,
    same: np.ndarray,
    *,
    confidence: float = 0.95,
    n_boot: int = 200,
    seed: int = 0,
) -> Estimate:
    """``statistic(scores, same)`` with a percentile interval from resampling genuine and
    impostor pairs separately (see the module doc)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(same, dtype=bool).reshape(-1)
    n = int(s.size)
    pos, neg = np.nonzero(y)[0], np.nonzero(~y)[0]
    if len(pos) == 0 or len(neg) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), n, "none", confidence)
    value = float(statistic(s, y))
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        stats.append(statistic(s[idx], y[idx]))
    a = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(np.asarray(stats), [a, 1.0 - a])
    return Estimate(value, float(lo), float(hi), n, f"pair bootstrap ({n_boot})", confidence)
