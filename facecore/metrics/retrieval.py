r"""Retrieval and clustering quality of an embedding space, with the names and definitions
of pytorch-metric-learning's ``AccuracyCalculator`` (PML 2.x).

Every query is compared with a reference set (by default the queries themselves, each
query then excluded from its own neighbours); its labels say which references are
relevant (same label). With ``R`` = the number of relevant references of a query:

* ``precision_at_1``: the fraction of queries whose nearest reference has their label.
* ``r_precision``: of the first ``R`` neighbours, the fraction with the query's label
  (Musgrave, Belongie & Lim, "A Metric Learning Reality Check", ECCV 2020).
* ``mean_average_precision_at_r`` (MAP@R): the mean over queries of
  :math:`\frac1R \sum_{i=1}^{R} P(i)\,\mathrm{rel}(i)` with :math:`P(i)` the precision
  of the first ``i`` neighbours and :math:`\mathrm{rel}(i) = 1` if neighbour ``i`` has the
  query's label (the same paper).
* ``NMI`` / ``AMI``: normalised / adjusted mutual information (arithmetic mean of the two
  entropies, as scikit-learn's defaults) between the labels and a k-means clustering of
  the queries into as many clusters as there are labels.

PML's conventions, kept here so the values are equal:

* Neighbours: Euclidean distance on the embeddings as given (``distance="euclidean"``,
  what PML's default Faiss ``IndexFlatL2`` ranks by; computed like PML's
  ``CustomKNN(LpDistance(normalize_embeddings=False))``: ``torch.cdist`` in float32), or
  cosine similarity (``"cosine"``, like ``CustomKNN(CosineSimilarity())``). The ``k``
  nearest come from ``torch.topk``; **ties** between equal distances are ordered as
  ``torch.topk`` orders them (PML does the same; the order among exact ties is not
  specified by torch). When the reference set includes the queries, ``k + 1`` neighbours
  are found and the query itself is removed (if it is not among them, the last one is).
* ``k``: ``None`` (all references), ``"max_bin_count"`` (the largest label count, minus
  one when the queries are the references) or an int. With an int smaller than a query's
  ``R``, ``r_precision`` divides by ``min(R, k)`` and MAP@R still by ``R``, as in PML.
* Queries whose label has no other reference ("lone" queries) are left out of the kNN
  metrics; NMI / AMI use every query.
* ``avg_of_avgs``: average per label first, then over labels.

k-means (:func:`kmeans`) is Lloyd's algorithm with k-means++ seeding and restarts, in
torch; PML uses Faiss's k-means, so NMI / AMI agree with PML when both are given the same
cluster assignment (``cluster_labels``, or PML's ``kmeans_func``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from facecore.metrics import _validation as V

__all__ = [
    "RETRIEVAL_METRICS",
    "adjusted_mutual_info",
    "kmeans",
    "knn",
    "mean_average_precision_at_r",
    "normalized_mutual_info",
    "precision_at_1",
    "r_precision",
    "retrieval_metrics",
    "retrieval_per_query",
]

#: The metric names (PML's ``AccuracyCalculator`` keys) :func:`retrieval_metrics` returns.
RETRIEVAL_METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r", "NMI", "AMI")
_KNN_METRICS = RETRIEVAL_METRICS[:3]
_DISTANCES = ("euclidean", "cosine")
_FULL_MATRIX = 1 << 26  # entries computed in one call (as PML); larger problems go by rows


def _embeddings(x: object, name: str) -> torch.Tensor:
    t = V.as_tensor(x, name)
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D [N, D], got shape {list(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} must not be empty")
    t = t.to(torch.float32)
    V.no_nan(t, name)
    return t


def _label_vector(x: object, name: str, n: int) -> torch.Tensor:
    t = V.as_tensor(x, name)
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D [N], got shape {list(t.shape)}")
    if t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} entries for {n} embeddings")
    if t.is_floating_point():
        V.no_nan(t, name)
    return t


def knn(
    query: object,
    k: int,
    reference: object | None = None,
    *,
    distance: str = "euclidean",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest references of each query: ``(distances [Q, k], indices [Q, k])``,
    nearest first (similarities, largest first, for ``"cosine"``). With ``reference=None``
    the queries are the references and each query's own index is removed as PML does."""
    V.choice(distance, "distance", _DISTANCES)
    q = _embeddings(query, "query")
    includes = reference is None
    r = q if includes else _embeddings(reference, "reference")
    if r.shape[1] != q.shape[1]:
        raise ValueError(f"query has {q.shape[1]} dimensions and reference {r.shape[1]}")
    k = V.positive_int(k, "k")
    n_ref = r.shape[0] - int(includes)
    if k > n_ref:
        raise ValueError(f"k={k} exceeds the {n_ref} available references")
    kk = k + int(includes)
    rows = max(1, _FULL_MATRIX // max(1, r.shape[0]))
    ds, ix = [], []
    for s in range(0, q.shape[0], rows):
        qs = q[s : s + rows]
        if distance == "euclidean":
            mat = torch.cdist(qs, r, p=2)
            d, i = torch.topk(mat, kk, largest=False, dim=1)
        else:
            qn = torch.nn.functional.normalize(qs, p=2, dim=1)
            rn = torch.nn.functional.normalize(r, p=2, dim=1)
            d, i = torch.topk(torch.matmul(qn, rn.t()), kk, largest=True, dim=1)
        ds.append(d)
        ix.append(i)
    d, i = torch.cat(ds), torch.cat(ix)
    if includes:  # drop self (or, if self is not among the k + 1, the last neighbour)
        self_hit = i == torch.arange(len(i)).unsqueeze(1)
        self_hit[~self_hit.any(1), -1] = True
        i = i[~self_hit].view(len(i), -1)
        d = d[~self_hit].view(len(d), -1)
    return d, i


def _resolve_k(k: int | str | None, max_count: int, n_ref: int, includes: bool) -> int:
    if k is None:
        return n_ref - int(includes)
    if k == "max_bin_count":
        return max(1, max_count - int(includes))
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, None or 'max_bin_count', got {k!r}")
    return k


class _Neighbours:
    """What the kNN metrics share: neighbour labels, relevance counts, lone queries."""

    def __init__(self, embeddings, labels, reference, reference_labels, k, distance):
        q = _embeddings(embeddings, "embeddings")
        ql = _label_vector(labels, "labels", q.shape[0]).to(torch.float32)
        self.includes = reference is None
        if self.includes:
            if reference_labels is not None:
                raise ValueError("reference_labels given without reference")
            r, rl = q, ql
        else:
            r = _embeddings(reference, "reference")
            if reference_labels is None:
                raise ValueError("reference needs reference_labels")
            rl = _label_vector(reference_labels, "reference_labels", r.shape[0]).to(torch.float32)
        uniq = torch.unique(ql)
        counts = (uniq.unsqueeze(1) == rl.unsqueeze(0)).sum(1)
        num_k = _resolve_k(k, int(counts.max()), r.shape[0], self.includes)
        _, idx = knn(q, num_k, None if self.includes else r, distance=distance)
        relevant = counts - int(self.includes)  # R per label
        pos = torch.searchsorted(uniq, ql)
        self.R = relevant[pos]  # per query
        self.keep = self.R > 0  # not lone
        self.labels = ql[self.keep]
        self.knn_labels = rl[idx][self.keep]
        self.R = self.R[self.keep]
        self.k = num_k

    def mean(self, per_query: torch.Tensor, avg_of_avgs: bool) -> float:
        if per_query.numel() == 0:
            return float("nan")
        if not avg_of_avgs:
            return float(per_query.double().mean())
        uniq, inv = torch.unique(self.labels, return_inverse=True)
        sums = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, per_query.double())
        cnt = torch.zeros(len(uniq), dtype=torch.float64).index_add_(
            0, inv, torch.ones_like(per_query, dtype=torch.float64)
        )
        return float((sums / cnt).mean())

    def same(self) -> torch.Tensor:
        return self.knn_labels == self.labels.unsqueeze(1)

    def relevance_mask(self) -> torch.Tensor:
        cols = torch.arange(self.k).unsqueeze(0)
        return cols < self.R.unsqueeze(1)


def _knn_per_query(nb: _Neighbours, which: Sequence[str]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    same = nb.same()
    if "precision_at_1" in which:
        out["precision_at_1"] = same[:, 0].double()
    if "r_precision" in which or "mean_average_precision_at_r" in which:
        mask = nb.relevance_mask()
        hits = same & mask
        if "r_precision" in which:
            out["r_precision"] = hits.sum(1).double() / mask.sum(1).double()
        if "mean_average_precision_at_r" in which:
            ranks = torch.arange(1, nb.k + 1, dtype=torch.float64).unsqueeze(0)
            prec = torch.cumsum(hits, 1).double() * hits / ranks
            out["mean_average_precision_at_r"] = prec.sum(1) / nb.R.double()
    return out


def _knn_values(nb: _Neighbours, which: Sequence[str], avg_of_avgs: bool) -> dict[str, float]:
    return {m: nb.mean(v, avg_of_avgs) for m, v in _knn_per_query(nb, which).items()}


def precision_at_1(
    embeddings: object,
    labels: object,
    *,
    reference: object | None = None,
    reference_labels: object | None = None,
    k: int | str | None = None,
    distance: str = "euclidean",
    avg_of_avgs: bool = False,
) -> float:
    """Precision@1 (PML's ``precision_at_1``); see the module doc for the conventions
    (``k`` only matters for exact ties: ``torch.topk`` may order them differently for
    another ``k``; the default searches all references, as PML's default)."""
    nb = _Neighbours(embeddings, labels, reference, reference_labels, k, distance)
    return _knn_values(nb, ["precision_at_1"], avg_of_avgs)["precision_at_1"]


def r_precision(
    embeddings: object,
    labels: object,
    *,
    reference: object | None = None,
    reference_labels: object | None = None,
    k: int | str | None = None,
    distance: str = "euclidean",
    avg_of_avgs: bool = False,
) -> float:
    """R-precision (PML's ``r_precision``); see the module doc for ``k`` and ties."""
    nb = _Neighbours(embeddings, labels, reference, reference_labels, k, distance)
    return _knn_values(nb, ["r_precision"], avg_of_avgs)["r_precision"]


def mean_average_precision_at_r(
    embeddings: object,
    labels: object,
    *,
    reference: object | None = None,
    reference_labels: object | None = None,
    k: int | str | None = None,
    distance: str = "euclidean",
    avg_of_avgs: bool = False,
) -> float:
    """MAP@R (PML's ``mean_average_precision_at_r``); see the module doc."""
    nb = _Neighbours(embeddings, labels, reference, reference_labels, k, distance)
    return _knn_values(nb, ["mean_average_precision_at_r"], avg_of_avgs)[
        "mean_average_precision_at_r"
    ]


# ------------------------------------------------------------------ clustering


def kmeans(
    x: object,
    n_clusters: int,
    *,
    seed: int = 0,
    n_init: int = 4,
    max_iter: int = 100,
    tol: float = 1e-6,
) -> torch.Tensor:
    """Cluster the rows of ``x`` ``[N, D]`` into ``n_clusters`` (int64 labels ``[N]``):
    Lloyd's algorithm from k-means++ seeds (Arthur & Vassilvitskii 2007), ``n_init``
    restarts, the run with the lowest inertia kept; deterministic for a ``seed``."""
    X = _embeddings(x, "x").double()
    n = X.shape[0]
    c = V.positive_int(n_clusters, "n_clusters")
    if c > n:
        raise ValueError(f"n_clusters={c} exceeds the {n} points")
    g = torch.Generator().manual_seed(int(seed))
    sq = (X * X).sum(1)
    best, best_inertia = None, math.inf
    for _ in range(V.positive_int(n_init, "n_init")):
        centres = X[torch.randint(n, (1,), generator=g)]
        d2 = (sq - 2 * X @ centres[0] + (centres[0] ** 2).sum()).clamp_min(0)
        for _ in range(1, c):
            total = float(d2.sum())
            if total <= 0:  # fewer distinct points than clusters: any point will do
                nxt = torch.randint(n, (1,), generator=g)
            else:
                nxt = torch.multinomial(d2 / total, 1, generator=g)
            centres = torch.cat([centres, X[nxt]])
            d2 = torch.minimum(d2, ((X - X[nxt]) ** 2).sum(1))
        prev = math.inf
        for _ in range(max_iter):
            dist = sq.unsqueeze(1) - 2 * X @ centres.t() + (centres * centres).sum(1)
            lab = dist.argmin(1)
            inertia = float(dist.gather(1, lab.unsqueeze(1)).clamp_min(0).sum())
            sums = torch.zeros_like(centres).index_add_(0, lab, X)
            cnt = torch.bincount(lab, minlength=c).double().unsqueeze(1)
            centres = torch.where(cnt > 0, sums / cnt.clamp_min(1), centres)
            if prev - inertia <= tol * max(1.0, abs(prev)):
                break
            prev = inertia
        if inertia < best_inertia:
            best, best_inertia = lab.clone(), inertia
    assert best is not None
    return best


def _contingency(a: object, b: object) -> tuple[np.ndarray, int]:
    ta = V.as_tensor(a, "labels_true").reshape(-1).cpu().numpy()
    tb = V.as_tensor(b, "labels_pred").reshape(-1).cpu().numpy()
    if ta.shape != tb.shape:
        raise ValueError(f"labels_true and labels_pred differ in length: {ta.size} vs {tb.size}")
    _, ia = np.unique(ta, return_inverse=True)
    _, ib = np.unique(tb, return_inverse=True)
    m = np.zeros((ia.max(initial=-1) + 1, ib.max(initial=-1) + 1), dtype=np.int64)
    np.add.at(m, (ia, ib), 1)
    return m, ta.size


def _entropy(counts: np.ndarray) -> float:
    counts = counts[counts > 0].astype(np.float64)
    if counts.size <= 1:
        return 0.0
    s = counts.sum()
    return float(-np.sum((counts / s) * (np.log(counts) - math.log(s))))


def _mutual_info(m: np.ndarray) -> float:
    pi, pj = m.sum(1), m.sum(0)
    if pi.size == 1 or pj.size == 1:
        return 0.0
    nzx, nzy = np.nonzero(m)
    nz = m[nzx, nzy].astype(np.float64)
    total = float(m.sum())
    p = nz / total
    log_outer = -np.log(pi[nzx].astype(np.float64) * pj[nzy]) + math.log(pi.sum()) + math.log(pj.sum())
    mi = p * (np.log(nz) - math.log(total)) + p * log_outer
    mi = np.where(np.abs(mi) < np.finfo(np.float64).eps, 0.0, mi)
    return float(max(mi.sum(), 0.0))


def _expected_mutual_info(m: np.ndarray, n: int) -> float:
    """E[MI] under the permutation model (Vinh, Epps & Bailey 2010), as scikit-learn."""
    a, b = m.sum(1).astype(np.int64), m.sum(0).astype(np.int64)
    if a.size == 1 or b.size == 1:
        return 0.0
    lg = lambda v: torch.lgamma(torch.as_tensor(v, dtype=torch.float64)).numpy()  # noqa: E731
    log_n = math.log(n)
    gln_n1 = math.lgamma(n + 1)
    emi = 0.0
    for ai in a.tolist():
        start = np.maximum(1, ai - n + b)
        end = np.minimum(ai, b) + 1
        lens = np.maximum(end - start, 0)
        if lens.sum() == 0:
            continue
        col = np.repeat(np.arange(b.size), lens)
        nij = (np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)) + start[col]
        bj = b[col]
        term1 = nij / n
        term2 = log_n + np.log(nij) - math.log(ai) - np.log(bj)
        gln = (
            math.lgamma(ai + 1) + lg(bj + 1) + math.lgamma(n - ai + 1) + lg(n - bj + 1)
            - (lg(nij + 1) + gln_n1) - lg(ai - nij + 1) - lg(bj - nij + 1)
            - lg(n - ai - bj + nij + 1)
        )
        emi += float(np.sum(term1 * term2 * np.exp(gln)))
    return emi


def normalized_mutual_info(labels_true: object, labels_pred: object) -> float:
    """NMI with the arithmetic mean of the entropies (scikit-learn's
    ``normalized_mutual_info_score`` default, which PML calls)."""
    m, _ = _contingency(labels_true, labels_pred)
    if m.shape[0] == m.shape[1] == 1 or m.size == 0:
        return 1.0
    mi = _mutual_info(m)
    if mi == 0:
        return 0.0
    return float(mi / np.mean([_entropy(m.sum(1)), _entropy(m.sum(0))]))


def adjusted_mutual_info(labels_true: object, labels_pred: object) -> float:
    """AMI with the arithmetic mean of the entropies (scikit-learn's
    ``adjusted_mutual_info_score`` default, which PML calls)."""
    m, n = _contingency(labels_true, labels_pred)
    if m.shape[0] == m.shape[1] == 1 or m.size == 0:
        return 1.0
    if m.shape[0] == 1 or m.shape[1] == 1:
        return 0.0
    mi = _mutual_info(m)
    emi = _expected_mutual_info(m, n)
    normalizer = float(np.mean([_entropy(m.sum(1)), _entropy(m.sum(0))]))
    eps = float(np.finfo(np.float64).eps)
    den = normalizer - emi
    den = min(den, -eps) if den < 0 else max(den, eps)
    num = mi - emi
    num = min(num, -eps) if num < 0 else max(num, eps)
    return float(num / den)


# ------------------------------------------------------------------- together


def retrieval_per_query(
    embeddings: object,
    labels: object,
    *,
    reference: object | None = None,
    reference_labels: object | None = None,
    include: Sequence[str] = _KNN_METRICS,
    k: int | str | None = None,
    distance: str = "euclidean",
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The kNN metrics of :func:`retrieval_metrics` per query (``precision_at_1``,
    ``r_precision``, ``mean_average_precision_at_r``; float64 ``[Q]``) and the queries'
    labels ``[Q]``, lone queries left out: their mean is :func:`retrieval_metrics`' value
    (``avg_of_avgs=False``). For intervals, e.g. resampling the queries by identity."""
    bad = [m for m in include if m not in _KNN_METRICS]
    if bad:
        raise ValueError(f"include has metrics without per-query values {bad}; known: {list(_KNN_METRICS)}")
    nb = _Neighbours(embeddings, labels, reference, reference_labels, k, distance)
    return _knn_per_query(nb, include), nb.labels.to(torch.int64)


def retrieval_metrics(
    embeddings: object,
    labels: object,
    *,
    reference: object | None = None,
    reference_labels: object | None = None,
    include: Sequence[str] = RETRIEVAL_METRICS,
    k: int | str | None = None,
    distance: str = "euclidean",
    avg_of_avgs: bool = False,
    cluster_labels: object | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """The metrics in ``include`` (names of :data:`RETRIEVAL_METRICS`, PML's keys) in one
    pass: one kNN search for the retrieval metrics, one k-means (or the given
    ``cluster_labels``) for NMI / AMI. Equals PML's
    ``AccuracyCalculator(include, k=k, avg_of_avgs=...).get_accuracy(embeddings, labels)``
    (with ``CustomKNN(LpDistance(normalize_embeddings=False))`` and the same clusters)."""
    bad = [m for m in include if m not in RETRIEVAL_METRICS]
    if bad:
        raise ValueError(f"include has unknown metrics {bad}; known: {list(RETRIEVAL_METRICS)}")
    out: dict[str, float] = {}
    which = [m for m in include if m in _KNN_METRICS]
    if which:
        nb = _Neighbours(embeddings, labels, reference, reference_labels, k, distance)
        out.update(_knn_values(nb, which, avg_of_avgs))
    if "NMI" in include or "AMI" in include:
        q = _embeddings(embeddings, "embeddings")
        ql = _label_vector(labels, "labels", q.shape[0])
        if cluster_labels is None:
            cl = kmeans(q, len(torch.unique(ql)), seed=seed)
        else:
            cl = _label_vector(cluster_labels, "cluster_labels", q.shape[0])
        if "NMI" in include:
            out["NMI"] = normalized_mutual_info(ql, cl)
        if "AMI" in include:
            out["AMI"] = adjusted_mutual_info(ql, cl)
    return {m: out[m] for m in include}
