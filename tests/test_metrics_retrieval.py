"""Retrieval metrics against pytorch-metric-learning's AccuracyCalculator and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facecore.metrics import retrieval as R

pml_acc = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
pml_inf = pytest.importorskip("pytorch_metric_learning.utils.inference")
pml_dist = pytest.importorskip("pytorch_metric_learning.distances")
skm = pytest.importorskip("sklearn.metrics")

KNN = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


def _pml(emb, labels, *, ref=None, ref_labels=None, k=None, distance="euclidean",
         avg_of_avgs=False, include=KNN, clusters=None):
    dist = (pml_dist.LpDistance(normalize_embeddings=False) if distance == "euclidean"
            else pml_dist.CosineSimilarity())
    kmeans_func = None
    if clusters is not None:
        def kmeans_func(x, n):  # noqa: ARG001 - the assignment under test
            return torch.as_tensor(clusters)
    calc = pml_acc.AccuracyCalculator(
        include=include, k=k, avg_of_avgs=avg_of_avgs, device=torch.device("cpu"),
        knn_func=pml_inf.CustomKNN(dist), kmeans_func=kmeans_func,
    )
    if ref is None:
        return calc.get_accuracy(emb, labels)
    return calc.get_accuracy(emb, labels, ref, ref_labels, ref_includes_query=False)


def _ours(emb, labels, **kw):
    return R.retrieval_metrics(emb, labels, include=kw.pop("include", KNN), **kw)


def _close(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        if math.isnan(b[key]):
            assert math.isnan(a[key]), key
        else:
            assert a[key] == pytest.approx(b[key], abs=1e-12), (key, a[key], b[key])


def _clustered(n_classes=12, per=(1, 9), dim=8, noise=0.7, seed=0):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(per[0], per[1] + 1, (n_classes,), generator=g)
    centres = torch.randn(n_classes, dim, generator=g)
    labels = torch.repeat_interleave(torch.arange(n_classes), counts)
    emb = centres[labels] + noise * torch.randn(len(labels), dim, generator=g)
    return emb, labels


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [None, "max_bin_count", 3])
@pytest.mark.parametrize("avg_of_avgs", [False, True])
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_knn_metrics_equal_pml(seed, k, avg_of_avgs, distance):
    emb, labels = _clustered(seed=seed)  # includes lone labels (count 1)
    want = _pml(emb, labels, k=k, avg_of_avgs=avg_of_avgs, distance=distance)
    got = _ours(emb, labels, k=k, avg_of_avgs=avg_of_avgs, distance=distance)
    _close(got, want)


def test_single_metric_functions_equal_pml():
    emb, labels = _clustered(seed=7)
    want = _pml(emb, labels)
    assert R.precision_at_1(emb, labels) == pytest.approx(want["precision_at_1"], abs=1e-12)
    assert R.r_precision(emb, labels) == pytest.approx(want["r_precision"], abs=1e-12)
    assert R.mean_average_precision_at_r(emb, labels) == pytest.approx(
        want["mean_average_precision_at_r"], abs=1e-12
    )


def test_separate_reference_set_equals_pml():
    emb, labels = _clustered(n_classes=6, per=(2, 6), seed=3)
    ref, ref_labels = _clustered(n_classes=8, per=(1, 5), seed=4)  # labels 6, 7 never queried
    q_labels = labels.clone()
    q_labels[:2] = 11  # no reference with that label: lone queries, left out
    want = _pml(emb, q_labels, ref=ref, ref_labels=ref_labels)
    got = _ours(emb, q_labels, reference=ref, reference_labels=ref_labels)
    _close(got, want)


def test_ties_and_duplicates_equal_pml():
    # integer grid points: many exactly equal distances, duplicate embeddings with
    # different labels (the tie order decides precision@1)
    g = torch.Generator().manual_seed(1)
    emb = torch.randint(0, 3, (60, 2), generator=g).float()
    labels = torch.randint(0, 5, (60,), generator=g)
    for k in (None, "max_bin_count", 4):
        _close(_ours(emb, labels, k=k), _pml(emb, labels, k=k))


def test_hand_computed_example():
    # 1-D points: labels a a b a b at 0, 1, 2.5, 10, 11 (no ties)
    emb = torch.tensor([[0.0], [1.0], [2.5], [10.0], [11.0]])
    labels = torch.tensor([0, 0, 1, 0, 1])
    m = _ours(emb, labels)
    # query 0: neighbours 1(a) 2(b) 3(a) 4(b); R = 2 -> r-prec 1/2, AP@R = (1/1)/2
    # query 1: 0(a) 2(b) 3(a) ...; same: 1/2, 1/2
    # query 2 (b, R=1): nearest 1(a) -> 0, 0
    # query 3 (a, R=2): 4(b) 2(b) 1(a) -> 0, 0
    # query 4 (b, R=1): 3(a) -> 0, 0
    assert m["precision_at_1"] == pytest.approx(2 / 5)
    assert m["r_precision"] == pytest.approx((0.5 + 0.5) / 5)
    assert m["mean_average_precision_at_r"] == pytest.approx((0.5 + 0.5) / 5)


def test_small_k_divides_r_precision_by_min_r_k():
    emb, labels = _clustered(n_classes=3, per=(8, 8), seed=2)
    got = _ours(emb, labels, k=2)
    _close(got, _pml(emb, labels, k=2))
    # with k < R the R-precision is over the first k neighbours only
    assert got["r_precision"] >= got["mean_average_precision_at_r"]


def test_nmi_ami_equal_pml_and_sklearn_for_the_same_clusters():
    emb, labels = _clustered(n_classes=7, per=(3, 10), seed=5)
    clusters = R.kmeans(emb, 7, seed=0)
    want = _pml(emb, labels, include=("NMI", "AMI"), clusters=clusters)
    got = R.retrieval_metrics(emb, labels, include=("NMI", "AMI"), cluster_labels=clusters)
    _close(got, want)
    assert got["NMI"] == pytest.approx(skm.normalized_mutual_info_score(labels, clusters), abs=1e-12)
    assert got["AMI"] == pytest.approx(skm.adjusted_mutual_info_score(labels, clusters), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_nmi_ami_equal_sklearn_random_labellings(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 80))
    a = rng.integers(0, int(rng.integers(1, 9)), n)
    b = rng.integers(0, int(rng.integers(1, 9)), n)
    assert R.normalized_mutual_info(a, b) == pytest.approx(
        skm.normalized_mutual_info_score(a, b), abs=1e-10
    )
    assert R.adjusted_mutual_info(a, b) == pytest.approx(
        skm.adjusted_mutual_info_score(a, b), abs=1e-10
    )


def test_nmi_ami_limit_cases_match_sklearn():
    for a, b in [([0, 0, 0], [1, 1, 1]), ([0, 1, 2], [0, 0, 0]), ([0, 1, 2], [2, 1, 0])]:
        assert R.normalized_mutual_info(a, b) == pytest.approx(
            skm.normalized_mutual_info_score(a, b)
        )
        assert R.adjusted_mutual_info(a, b) == pytest.approx(skm.adjusted_mutual_info_score(a, b))


def test_kmeans_recovers_separated_clusters_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    labels = torch.arange(4).repeat_interleave(25)
    x = centres[labels] + 0.3 * torch.randn(100, 2, generator=g)
    c1 = R.kmeans(x, 4, seed=3)
    assert torch.equal(c1, R.kmeans(x, 4, seed=3))
    assert R.adjusted_mutual_info(labels, c1) == pytest.approx(1.0)
    m = R.retrieval_metrics(x, labels)  # k-means inside
    assert m["NMI"] == pytest.approx(1.0) and m["precision_at_1"] == 1.0


def test_errors_name_the_argument():
    emb, labels = _clustered(seed=0)
    with pytest.raises(ValueError, match="labels has"):
        R.retrieval_metrics(emb, labels[:-1])
    with pytest.raises(ValueError, match="include has unknown"):
        R.retrieval_metrics(emb, labels, include=("recall",))
    with pytest.raises(ValueError, match="distance"):
        R.precision_at_1(emb, labels, distance="manhattan")
    with pytest.raises(ValueError, match="k must be"):
        R.r_precision(emb, labels, k=0)
    with pytest.raises(ValueError, match="embeddings must be 2-D"):
        R.precision_at_1(emb[0], labels[:1])
    with pytest.raises(ValueError, match="reference needs reference_labels"):
        R.precision_at_1(emb, labels, reference=emb)


def test_per_query_values_average_to_the_metrics():
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(12), rng.integers(1, 6, 12))  # some lone queries
    emb = rng.normal(size=(len(labels), 5)) + labels[:, None] * 0.3
    per, who = R.retrieval_per_query(emb, labels)
    want = R.retrieval_metrics(emb, labels, include=KNN)
    for name in KNN:
        assert float(per[name].mean()) == pytest.approx(want[name])
        assert len(per[name]) == len(who)
    counts = np.bincount(labels)
    assert sorted(who.tolist()) == sorted(v for v in labels.tolist() if counts[v] > 1)
    with pytest.raises(ValueError, match="without per-query values"):
        R.retrieval_per_query(emb, labels, include=("NMI",))
