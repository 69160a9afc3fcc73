r"""Point estimates with confidence intervals, and how each interval was made.

* :func:`proportion`: a rate (accuracy) of ``k`` successes in ``n`` items. Items that are
  independent (no ``clusters``): the **Wilson score interval**
  :math:`\frac{\hat p + z^2/2n \pm z\sqrt{\hat p(1-\hat p)/n + z^2/4n^2}}{1 + z^2/n}`.
  Items grouped in clusters that are not independent (several images of one person):
  a **percentile bootstrap over clusters** (whole identities resampled with replacement),
  since a Wilson interval over images would be too narrow.
* :func:`mean_estimate`: a mean (mean absolute error): **Student-t** interval over items,
  or the cluster bootstrap when ``clusters`` is given.
* :func:`identity_pair_bootstrap`: a statistic of pair scores (TAR@FAR, EER, the false
  match / non-match rates at a fixed threshold) when the pairs share images and people:
  the **subsets bootstrap** (Bolle, Ratha & Pankanti 2004): identities are resampled with
  replacement and every pair keeps the weight its identities' draw counts give it
  (``m_a`` for a genuine pair of person ``a``, ``m_a m_b`` for an impostor pair of ``a`` and
  ``b``), so the interval reflects how few *people* the pairs come from.
* :func:`pair_bootstrap`: the same statistic with genuine and impostor pairs resampled
  separately, as if pairs were independent (too narrow when pairs share images; used only
  where no identities are known).
* Intervals need at least two clusters (people); with one, the interval is ``nan``.

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
    "identity_pair_bootstrap",
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
        if math.isnan(self.low) or math.isnan(self.high):
            return f"{self.value:.{digits}f} [n/a]"
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
    if g < 2:  # one person: the bootstrap cannot see any between-person variation
        return float("nan"), float("nan")
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


def identity_pair_bootstrap(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    scores: np.ndarray,
    same: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    *,
    confidence: float = 0.95,
    n_boot: int = 200,
    seed: int = 0,
) -> Estimate:
    """``statistic(scores, same)`` with a percentile interval from the identity (subsets)
    bootstrap (see the module doc): ``first`` / ``second`` are the identities of each pair's
    two images. Each replicate repeats every pair by its weight and evaluates the same
    ``statistic``, so the point estimate and the replicates follow one convention."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(same, dtype=bool).reshape(-1)
    a, b = np.asarray(first).reshape(-1), np.asarray(second).reshape(-1)
    n = int(s.size)
    if not (len(a) == len(b) == n):
        raise ValueError(f"first / second must give one identity per pair ({n}), got {len(a)} / {len(b)}")
    if not y.any() or y.all():
        return Estimate(float("nan"), float("nan"), float("nan"), n, "none", confidence)
    value = float(statistic(s, y))
    ids, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    ia, ib = inv[:n], inv[n:]
    method = f"identity bootstrap ({n_boot}, {len(ids)} people)"
    if len(ids) < 2:
        return Estimate(value, float("nan"), float("nan"), n, method, confidence)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(ids), np.full(len(ids), 1.0 / len(ids)), size=n_boot)
    stats = []
    for m in draws:
        w = np.where(ia == ib, m[ia], m[ia] * m[ib])
        keep = np.repeat(np.arange(n), w)
        ys = y[keep]
        if not ys.any() or ys.all():
            continue  # a draw without genuine (or impostor) pairs has no statistic
        stats.append(statistic(s[keep], ys))
    if len(stats) < max(2, n_boot // 2):
        return Estimate(value, float("nan"), float("nan"), n, method, confidence)
    a_ = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(np.asarray(stats, dtype=np.float64), [a_, 1.0 - a_])
    return Estimate(value, float(lo), float(hi), n, method, confidence)
