"""Probes on embeddings (against scikit-learn run by hand on the same folds), identity-
grouped folds, confidence intervals, projections."""

from __future__ import annotations

import math

import numpy as np
import pytest
from analysis_cases import blobs, one_blas_thread  # noqa: F401

from facecore.analysis import Embeddings, probe, project, projection_figures, wilson_interval
from facecore.analysis.probes import cv_folds, make_probe
from facecore.analysis.stats import (
    identity_pair_bootstrap,
    mean_estimate,
    pair_bootstrap,
    proportion,
)


def test_probe_equals_sklearn_on_the_same_folds():
    e = blobs(sep=1.0, seed=1)
    r = probe(e, "cls", folds=4, seed=2)
    folds = cv_folds(e.label("cls"), groups=e.label("identity"), folds=4, seed=2)
    pred = np.empty(len(e), dtype=np.int64)
    for tr, te in folds:
        pred[te] = make_probe("logreg").fit(e.features[tr], e.label("cls")[tr]).predict(e.features[te])
    assert r.accuracy.value == pytest.approx(float((pred == e.label("cls")).mean()))
    assert r.fold_accuracies == pytest.approx(
        [float((pred[te] == e.label("cls")[te]).mean()) for _, te in folds])
    assert np.trace(np.array(r.confusion)) == int((pred == e.label("cls")).sum())
    assert r.accuracy.method.startswith("identity bootstrap") and "StratifiedGroupKFold" in r.cv
    assert r.accuracy.low <= r.accuracy.value <= r.accuracy.high


def test_identity_grouped_folds_never_share_a_person():
    e = blobs()
    ident = e.label("identity")
    for tr, te in cv_folds(e.label("cls"), groups=ident, folds=5, seed=0):
        assert not set(ident[tr]) & set(ident[te])
    # without repeats: plain stratified folds, Wilson interval
    e2 = e.with_label("identity", np.arange(len(e)))
    r = probe(e2, "cls", folds=3)
    assert r.accuracy.method == "wilson" and r.cv.startswith("StratifiedKFold(3)")


def test_probe_finds_signal_and_not_noise():
    e = blobs(n_per=100, sep=3.0, identities_per_class=40)
    sig = probe(e, "cls", model="mlp", folds=3)
    noise = probe(e, "group", folds=3)  # group is independent of the features
    assert sig.accuracy.low > 0.9 and sig.majority.value < 0.5
    assert abs(noise.accuracy.value - 0.5) < 0.1  # chance level


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(8, 10)
    assert (lo, hi) == pytest.approx((0.49016, 0.94330), abs=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_intervals_t_and_cluster_bootstrap():
    rng = np.random.default_rng(0)
    v = rng.normal(2.0, 1.0, 400)
    t = mean_estimate(v)
    from scipy import stats

    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    assert (t.low, t.high) == pytest.approx((lo, hi)) and t.method == "student-t"
    # perfectly correlated pairs (two images per person): the cluster interval is wider than
    # a Wilson interval that pretends 2n independent items
    correct = np.repeat(rng.random(100) < 0.7, 2)
    clusters = np.repeat(np.arange(100), 2)
    c = proportion(correct, clusters=clusters)
    w = proportion(correct)
    assert c.value == w.value and (c.high - c.low) > 1.2 * (w.high - w.low)


def test_a_single_cluster_has_no_interval():
    e = proportion(np.array([1, 0, 1, 1], bool), clusters=np.zeros(4, np.int64))
    assert e.value == 0.75 and math.isnan(e.low) and math.isnan(e.high)
    assert e.fmt() == "0.750 [n/a]"


def _people_pairs(people=30, per=4, effect=1.0, seed=0):
    """All pairs of ``per`` images of each of ``people`` persons, with a per-person score
    offset (some people are easy to match, some hard): pairs sharing a person correlate."""
    rng = np.random.default_rng(seed)
    ident = np.repeat(np.arange(people), per)
    offset = rng.normal(0, effect, people)
    i, j = np.triu_indices(len(ident), 1)
    same = ident[i] == ident[j]
    s = np.where(same, 2.0, 0.0) + offset[ident[i]] + offset[ident[j]] + rng.normal(0, 0.5, len(i))
    return s, same, ident[i], ident[j]


def test_identity_pair_bootstrap_resamples_people_not_pairs():
    s, same, a, b = _people_pairs()

    def genuine_mean(sc, yy):
        return float(sc[yy].mean())

    ident = identity_pair_bootstrap(genuine_mean, s, same, a, b, n_boot=400)
    pairs = pair_bootstrap(genuine_mean, s, same, n_boot=400)
    assert ident.value == pairs.value == pytest.approx(s[same].mean())
    assert ident.method == "identity bootstrap (400, 30 people)"
    # 180 genuine pairs come from 30 people: the honest interval is much wider
    assert (ident.high - ident.low) > 1.5 * (pairs.high - pairs.low)
    assert ident.low < ident.value < ident.high
    # with independent people (one genuine pair each, no shared offsets) both agree roughly
    s2, same2, a2, b2 = _people_pairs(people=200, per=2, effect=0.0, seed=1)
    i2 = identity_pair_bootstrap(genuine_mean, s2, same2, a2, b2, n_boot=400)
    p2 = pair_bootstrap(genuine_mean, s2, same2, n_boot=400)
    assert 0.7 < (i2.high - i2.low) / (p2.high - p2.low) < 1.4
    one = identity_pair_bootstrap(genuine_mean, s[:3], np.array([True, True, False]),
                                  np.zeros(3), np.array([0, 0, 1]), n_boot=50)
    assert not math.isnan(one.value)
    with pytest.raises(ValueError, match="one identity per pair"):
        identity_pair_bootstrap(genuine_mean, s, same, a[:-1], b)


def test_pca_and_tsne_projection_record_settings(tmp_path):
    from sklearn.decomposition import PCA

    e = blobs(n_per=20)
    p = project(e.features, method="pca", dim=3)
    x = e.features.astype(np.float64)
    ref = PCA(3, random_state=0).fit(x)
    np.testing.assert_allclose(np.abs(p.coords), np.abs(ref.transform(x)), atol=1e-8)
    t = project(e.features, method="tsne", perplexity=50, seed=4)
    assert t.coords.shape == (60, 2) and t.info["seed"] == 4
    assert t.info["perplexity"] < 20 and t.info["requested_perplexity"] == 50  # clipped: N = 60
    figs = projection_figures(e, ["cls", "group"], tmp_path, methods=("tsne", "pca"), dims=(2, 3),
                              perplexity=10)
    assert len(figs) == 8 and all((tmp_path / f["file"]).stat().st_size > 5000 for f in figs)
    assert {f["attribute"] for f in figs} == {"cls", "group"}
    with pytest.raises(KeyError, match="no label 'race'"):
        projection_figures(e, ["race"], tmp_path)
    with pytest.raises(ValueError, match="dim must be 2 or 3"):
        project(e.features, dim=4)


def test_probe_rejects_unknown_model_and_target():
    e = blobs()
    with pytest.raises(ValueError, match="probe model"):
        probe(e, "cls", model="svm")
    with pytest.raises(KeyError, match="no label 'age'"):
        probe(e, "age")
    tiny = Embeddings(np.zeros((4, 2)), {"y": np.array([0, 1, 0, 1]), "identity": np.array([0, 0, 1, 1])})
    with pytest.raises(ValueError, match="2 identities cannot fill 5 folds"):
        probe(tiny, "y")
