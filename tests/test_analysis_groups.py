"""Per-group reports of trained models (gender, age, embedding) against metrics computed by
hand on the served outputs; learned-space comparison; the softmax embedding loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from analysis_cases import one_blas_thread  # noqa: F401

import facecore
from facecore.analysis import (
    compare_spaces,
    group_report,
    model_outputs,
    train_embedder,
)
from facecore.analysis.spaces import biased_identities
from facecore.data import PreprocessConfig, SyntheticFaces
from facecore.losses import SoftmaxLoss
from facecore.metrics import equal_error_rate, mae, tar_at_far
from facecore.models import AgeEstimator, FaceEmbedder, GenderClassifier

PRE = PreprocessConfig(input_size=32, resize=32, mean=(0.5,) * 3, std=(0.25,) * 3)


@pytest.fixture(scope="module")
def faces():
    return SyntheticFaces(90, image_size=32, num_identities=30, seed=4)


def _served(model, faces):
    x, t = faces.batch()
    with torch.no_grad():
        return model.eval().serve((x - 0.5) / 0.25), t


def test_gender_report_matches_hand_computation(faces, tmp_path):
    torch.manual_seed(0)
    model = GenderClassifier("small_cnn", width=4)
    facecore.export_model(model, tmp_path / "g", preprocess=PRE)
    out = model_outputs(tmp_path / "g", faces)  # through the export, rebuilt
    served, t = _served(model, faces)
    rep = group_report(out, "race")
    assert rep.primary == "accuracy" and rep.higher_is_better
    for row in rep.rows:
        m = np.ones(len(faces), bool) if row["group"] == "all" else (
            t["race"].numpy() == ["light", "medium", "dark"].index(row["group"]))
        want = float((served["label"].numpy()[m] == t["gender"].numpy()[m]).mean())
        assert row["metrics"]["accuracy"].value == pytest.approx(want)
        assert row["n"] == int(m.sum())
    bw = rep.best_worst()
    vals = [r["metrics"]["accuracy"].value for r in rep.rows if r["group"] != "all"]
    assert bw["gap"] == pytest.approx(max(vals) - min(vals))
    assert isinstance(bw["intervals_disjoint"], bool)
    md = rep.to_markdown()
    assert "| **all** |" in md and "gap" in md
    assert rep.to_dict()["rows"][0]["accuracy"]["method"].startswith("identity bootstrap")


def test_age_report_in_classes_and_years(faces):
    torch.manual_seed(1)
    model = AgeEstimator("small_cnn", head="coral", num_classes=8, width=4)
    out = model_outputs(model, faces, preprocess=PRE)
    served, t = _served(model, faces)
    rep = group_report(out, "gender")
    assert rep.meta["age_unit"] == "classes" and not rep.higher_is_better
    allrow = rep.rows[-1]["metrics"]
    assert allrow["mae"].value == pytest.approx(mae(served["label"], t["age"]))
    assert allrow["mae_expected"].value == pytest.approx(mae(served["expected"], t["age"]), rel=1e-5)
    # with an age offset the report compares years
    out.info["age_offset"] = 16.0
    rep_y = group_report(out, "gender")
    assert rep_y.meta["age_unit"] == "years"
    want = np.abs(served["label"].numpy() + 16.0 - t["age_years"].numpy()).mean()
    assert rep_y.rows[-1]["metrics"]["mae"].value == pytest.approx(want)


def test_embedding_report_is_verification_within_groups(faces):
    torch.manual_seed(2)
    model = FaceEmbedder("small_cnn", 8, width=4)
    out = model_outputs(model, faces, preprocess=PRE)
    rep = group_report(out, "race", far=0.1, n_boot=30)
    served, t = _served(model, faces)
    e = torch.nn.functional.normalize(served["embedding"].double(), dim=1)
    race, ident = t["race"].numpy(), t["identity"].numpy()
    for row in rep.rows[:-1]:
        idx = np.nonzero(race == ["light", "medium", "dark"].index(row["group"]))[0]
        i, j = np.triu_indices(len(idx), 1)
        s = (e[idx[i]] * e[idx[j]]).sum(1)
        same = torch.as_tensor(ident[idx[i]] == ident[idx[j]])
        assert row["metrics"]["tar_at_far"].value == pytest.approx(tar_at_far(s, same, 0.1).tar)
        assert row["metrics"]["eer"].value == pytest.approx(equal_error_rate(s, same).eer)
        assert row["metrics"]["genuine_pairs"] == int(same.sum())


def test_report_errors(faces):
    out = model_outputs(GenderClassifier("small_cnn", width=4), faces, preprocess=PRE)
    with pytest.raises(KeyError, match="no label 'ethnicity'"):
        group_report(out, "ethnicity")
    with pytest.raises(ValueError, match="nn.Module needs preprocess"):
        model_outputs(GenderClassifier("small_cnn", width=4), faces)


def test_softmax_loss_is_cross_entropy_of_a_linear_layer_and_scripts():
    torch.manual_seed(0)
    loss = SoftmaxLoss(6, 4)
    e, y = torch.randn(10, 6), torch.randint(0, 4, (10,))
    want = torch.nn.functional.cross_entropy(e @ loss.fc.weight.t() + loss.fc.bias, y)
    torch.testing.assert_close(loss(e, y), want)
    torch.testing.assert_close(torch.jit.script(loss)(e, y), want)
    with pytest.raises(ValueError, match="embeddings must be"):
        loss(torch.randn(3, 5), y[:3])
    with pytest.raises(ValueError, match="num_classes"):
        SoftmaxLoss(4, 0)


@pytest.mark.parametrize("loss", ["softmax", "contrastive", "triplet"])
def test_train_embedder_learns_identities(loss):
    from facecore.metrics import retrieval_metrics

    ds = SyntheticFaces(160, image_size=24, num_identities=20, seed=1)
    pre = PreprocessConfig(input_size=24, resize=24, mean=(0.5,) * 3, std=(0.25,) * 3)
    x, t = ds.batch()
    xn = (x - 0.5) / 0.25
    torch.manual_seed(0)
    untrained = FaceEmbedder("small_cnn", 16, width=4).eval()
    trained = train_embedder(ds, loss, preprocess=pre, steps=80, p=8, k=4, embedding_dim=16,
                             width=4, augment=False)
    with torch.no_grad():
        before = retrieval_metrics(untrained(xn), t["identity"], include=("mean_average_precision_at_r",))
        after = retrieval_metrics(trained(xn), t["identity"], include=("mean_average_precision_at_r",))
    key = "mean_average_precision_at_r"
    assert after[key] > 3 * before[key], (before, after)  # ~0.016 -> 0.08-0.12 when written


def test_balanced_identities_spread_evenly():
    from facecore.analysis.spaces import balanced_identities

    ident = np.arange(60)
    group = np.repeat([0, 1, 2], [40, 5, 15])
    chosen = balanced_identities(ident, group, ident, 14)
    assert np.bincount(group[chosen]).tolist() == [5, 4, 5] or np.bincount(group[chosen]).tolist() == [5, 5, 4]
    assert len(np.unique(chosen)) == 14


def test_biased_identities_keep_the_fraction():
    ident = np.arange(100)
    group = np.repeat([0, 1, 2], [40, 30, 30])
    chosen = biased_identities(ident, group, ident[::2], bias_group=0, bias_fraction=0.8)
    assert len(chosen) == 25  # only 20 of group 0 are candidates: 20 + 5 keeps 80%
    assert np.mean(group[chosen] == 0) == pytest.approx(0.8)


def test_compare_spaces_small(tmp_path):
    ds = SyntheticFaces(360, image_size=24, num_identities=60, seed=3)
    pre = PreprocessConfig(input_size=24, resize=24, mean=(0.5,) * 3, std=(0.25,) * 3)
    res = compare_spaces(ds, preprocess=pre, losses=("softmax", "triplet"), steps=5, p=8, k=3,
                         embedding_dim=8, width=4, out_dir=tmp_path, perplexity=5)
    settings = {r["setting"] for r in res.rows}
    assert settings == {"balanced", "biased (light 80%)"}
    assert {r["group"] for r in res.rows} == {"all", "light", "medium", "dark"}
    assert all(set(r["metrics"]) == {"precision_at_1", "r_precision", "mean_average_precision_at_r",
                                    "NMI", "AMI"} for r in res.rows)
    assert len(res.figures) == 2 and all((tmp_path / f).stat().st_size > 5000 for f in res.figures)
    meta = res.meta["settings"]["biased (light 80%)"]["identities_per_group"]
    assert meta["light"] > meta["medium"] + meta["dark"]
    bal = res.meta["settings"]["balanced"]
    assert bal["train_identities"] == res.meta["settings"]["biased (light 80%)"]["train_identities"]
    assert max(bal["identities_per_group"].values()) - min(bal["identities_per_group"].values()) <= 1
    assert "| balanced | softmax | all |" in res.to_markdown()
    for r in res.rows:  # identity-bootstrap intervals of the per-query metrics, none for NMI / AMI
        assert set(r["intervals"]) == {"precision_at_1", "r_precision", "mean_average_precision_at_r"}
        for name, iv in r["intervals"].items():
            assert iv["value"] == pytest.approx(r["metrics"][name])
            assert iv["method"].startswith("identity bootstrap") and iv["low"] <= iv["value"] <= iv["high"]


def test_space_objectives_are_the_training_tasks():
    """One loss construction: the comparison's objectives are the embedding task's
    EmbeddingObjective from MetricOptions (what `facecore train --set metric.loss=...` builds)."""
    from facecore.analysis import SPACE_LOSSES, space_metric_options
    from facecore.losses import ContrastiveLoss, TripletMarginLoss
    from facecore.train.tasks.embedding import METRIC_LOSSES, EmbeddingObjective

    assert set(SPACE_LOSSES) <= set(METRIC_LOSSES)
    model = FaceEmbedder("small_cnn", 8, width=4)
    soft = EmbeddingObjective(model, space_metric_options("softmax"), 5)
    assert isinstance(soft.softmax, SoftmaxLoss) and soft.softmax.num_classes == 5
    con = EmbeddingObjective(model, space_metric_options("contrastive"), 5)
    assert isinstance(con.pair_loss, ContrastiveLoss) and con.pair_loss.neg_margin == 1.0
    tri = EmbeddingObjective(model, space_metric_options("triplet", triplet_margin=0.3), 5)
    assert isinstance(tri.pair_loss, TripletMarginLoss) and tri.pair_loss.margin == 0.3
    with pytest.raises(ValueError, match="loss must be one of"):
        space_metric_options("arcface")
