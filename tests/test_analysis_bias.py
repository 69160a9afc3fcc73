"""The cross-group (bias) matrix: a planted bias is detected and an unbiased control shows
no gap; the protocol (held-out identities, equal training sizes, pluggable trainers);
regression and verification cells."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_cases import blobs, gradient_embeddings, one_blas_thread  # noqa: F401

from facecore.analysis import BiasMatrix, bias_matrix, cross_group_matrix
from facecore.data import SyntheticFaces, open_dataset
from facecore.data.synthetic import GENDER_CUES

# Skin-tone group 0 ("light") shows gender only through hair; group 1 ("medium") only
# through face shape, brows, lips and stubble; the other cues of each group are drawn from
# a coin independent of gender.
PLANTED = {0: ("hair",), 1: ("face", "brows", "lips", "stubble")}


def _matrix(cues):
    ds = open_dataset("synthetic", num_samples=1800, image_size=32, num_identities=600, seed=1,
                      gender_cues=cues)
    e = gradient_embeddings(ds)
    e = e.subset(e.label("race") < 2)  # the two planted groups
    return bias_matrix(e, "gender", "race", folds=3, seed=0)


@pytest.fixture(scope="module")
def planted():
    return _matrix(PLANTED)


@pytest.fixture(scope="module")
def control():
    return _matrix(None)


def _cell(m: BiasMatrix, row: str, col: str):
    return m.cells[m.rows.index(row)][m.cols.index(col)]


def test_planted_bias_is_detected(planted):
    for own, other in (("light", "medium"), ("medium", "light")):
        o, x = _cell(planted, own, own), _cell(planted, own, other)
        # own-group accuracy clearly above the other group's, intervals disjoint
        assert o.value - x.value > 0.15, (own, o, x)
        assert o.low > x.high, (own, o, x)
        assert x.value < 0.6  # the other group's cue is uninformative: near chance
    gaps = {g["group"]: g["gap"] for g in planted.own_vs_other()}
    assert gaps["light"] > 0.3 and gaps["medium"] > 0.15


def test_unbiased_control_shows_no_gap(control, planted):
    for own, other in (("light", "medium"), ("medium", "light")):
        o, x = _cell(control, own, own), _cell(control, own, other)
        assert abs(o.value - x.value) < 0.08, (own, o, x)
        assert x.value > 0.8  # transfers
    assert control.max_gap() < 0.08 < planted.max_gap() - 0.2


def test_matrix_report_and_heatmap(planted, tmp_path):
    d = planted.to_dict()
    assert d["rows_trained_on"] == ["light", "medium", "all"]
    assert d["cols_evaluated_on"] == ["light", "medium"]
    assert d["cells"][0][0]["method"].startswith("identity bootstrap")
    assert d["meta"]["split"] == "by identity" and d["meta"]["equal_train_size"]
    md = planted.to_markdown()
    assert "| **light** |" in md and "gap" in md and "*(majority class)*" in md
    assert all(abs(c.value - 0.5) < 0.1 for c in planted.extra["baseline"][0])
    png = planted.plot(tmp_path / "bias.png")
    assert png.stat().st_size > 10_000


class RecordingTrainer:
    """A trainer that predicts the majority class of what it was given, and records calls."""

    task = "classification"

    def __init__(self, target, identity, group):
        self.target, self.identity, self.group, self.calls = target, identity, group, []

    def fit_predict(self, train_idx, test_idx, *, fold, train_group):
        self.calls.append((fold, train_group, train_idx, test_idx))
        vals, cnt = np.unique(self.target[train_idx], return_counts=True)
        return np.full(len(test_idx), vals[np.argmax(cnt)])


def test_protocol_with_a_pluggable_trainer():
    e = blobs(n_per=40, identities_per_class=12, seed=3)
    g = e.label("group")
    t = RecordingTrainer(e.label("cls"), e.label("identity"), g)
    m = cross_group_matrix(t, g, group_names=["g0", "g1"], identity=e.label("identity"), folds=3,
                           min_group_size=5)
    assert len(t.calls) == 3 * 3  # folds x (2 groups + all)
    for fold in range(3):
        calls = [c for c in t.calls if c[0] == fold]
        sizes = {len(c[2]) for c in calls}
        assert len(sizes) == 1  # equal training sizes per fold
        for _, row, tr, te in calls:
            assert not set(e.label("identity")[tr]) & set(e.label("identity")[te])
            if row != "all":
                assert set(g[tr]) == {["g0", "g1"].index(row)}
            assert len(set(te)) == len(te)
    # every item is predicted once per row; the majority-class trainer is at chance
    assert sum(len(c[3]) for c in t.calls if c[1] == "all") == len(e)
    assert m.values().max() < 0.6 and m.meta["trainer"] == "RecordingTrainer"


def test_small_groups_are_excluded_and_two_are_needed():
    e = blobs(n_per=20)
    group = e.label("group").copy()
    group[:3] = 2
    m = bias_matrix(e.with_label("group", group, ["g0", "g1", "tiny"]), "cls", "group", folds=3,
                    min_group_size=5)
    assert m.excluded == {"tiny": 3} and m.cols == ["g0", "g1"]
    with pytest.raises(ValueError, match="need at least 2 groups"):
        bias_matrix(e, "cls", "group", min_group_size=1000)


def test_regression_cells_are_mae():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 3))
    group = np.repeat([0, 1], 120)
    age = 30 + 5 * x[:, 0] + np.where(group == 1, 5 * x[:, 1], 0) + rng.normal(0, 0.5, 240)
    from facecore.analysis import Embeddings

    e = Embeddings(x, {"age_years": age, "group": group}, {"group": ["a", "b"]})
    m = bias_matrix(e, "age_years", "group", folds=3)
    assert m.task == "regression" and m.metric == "mae" and not m.higher_is_better
    v = m.values()
    # the model trained on group a never saw x1 matter: worse (higher MAE) on group b
    assert v[0, 1] > v[0, 0] + 2 and v[1, 1] < v[0, 1]
    assert m.cells[0][0].method == "student-t"
    # the training-median baseline row is worse than the models on their own group
    base = [c.value for c in m.extra["baseline"][0]]
    assert base[0] > v[0, 0] and base[1] > v[1, 1]
    assert "*(training median)*" in m.to_markdown()
    assert {g["group"]: g["gap"] for g in m.own_vs_other()}["a"] > 2


def test_verification_cells_tar_and_eer():
    ds = SyntheticFaces(600, image_size=32, num_identities=120, seed=2)
    e = gradient_embeddings(ds)
    m = bias_matrix(e, "identity", "race", folds=3, far=0.05, n_boot=40)
    assert m.task == "verification" and m.metric == "tar@far=0.05"
    v = m.values()
    assert np.all((v >= 0) & (v <= 1)) and np.all(v > 0.05)
    eer = np.array([[c.value for c in row] for row in m.extra["eer"]])
    assert np.all((eer > 0) & (eer < 0.5))
    assert m.cells[0][0].method.startswith("identity bootstrap")  # pairs share people


def test_gender_cues_option():
    a = SyntheticFaces(16, image_size=24, seed=5).batch()[0]
    same = SyntheticFaces(16, image_size=24, seed=5, gender_cues={}).batch()[0]
    assert (a == same).all()  # no group restricted: unchanged images
    planted = SyntheticFaces(16, image_size=24, seed=5, gender_cues=PLANTED)
    assert (planted.targets("gender") == SyntheticFaces(16, image_size=24, seed=5).targets("gender")).all()
    with pytest.raises(ValueError, match="unknown cues"):
        SyntheticFaces(4, gender_cues={0: ("beard",)})
    with pytest.raises(ValueError, match="skin-tone groups"):
        SyntheticFaces(4, gender_cues={3: ("hair",)})
    assert set(GENDER_CUES) == {"hair", "face", "brows", "lips", "stubble"}


class OwnSplitTrainer(RecordingTrainer):
    """A trainer with its own held-out split and its own equal-size draw (as FitTrainer)."""

    def __init__(self, target, identity, group, train, test):
        super().__init__(target, identity, group)
        self.train, self.test, self.draws = train, test, []

    def splits(self):
        return [(self.train, self.test)]

    def subsample(self, idx, n, *, fold, train_group):
        self.draws.append((train_group, n))
        return np.sort(idx)[:n]  # deterministic: the first n


def test_trainer_owned_split_and_subsample():
    e = blobs(n_per=40, identities_per_class=12, seed=3)
    g, ident = e.label("group"), e.label("identity")
    people = np.unique(ident)
    test_people = people[::4]
    test = np.nonzero(np.isin(ident, test_people))[0]
    train = np.nonzero(~np.isin(ident, test_people))[0][:-5]  # 5 items in no split
    t = OwnSplitTrainer(e.label("cls"), ident, g, train, test)
    m = cross_group_matrix(t, g, group_names=["g0", "g1"], identity=ident, min_group_size=5)
    assert m.meta["folds"] == 1 and m.meta["split"] == "the trainer's own split (by identity)"
    assert len(t.calls) == 3
    n_min = min(int(np.sum(g[train] == k)) for k in (0, 1))
    for _, row, tr, te in t.calls:
        assert sorted(te) == sorted(test)  # every row scored on the same held-out items
        assert len(tr) == n_min and set(tr) <= set(train)
        if row != "all":
            assert set(g[tr]) == {["g0", "g1"].index(row)}
    # the trainer drew the subsets; the matrix used them as given
    assert {row for row, _ in t.draws} <= {"g0", "g1", "all"} and all(n == n_min for _, n in t.draws)
    assert m.meta["train_sizes_per_row"] == {r: [n_min] for r in ("g0", "g1", "all")}
    assert sum(c.n for c in m.cells[0]) == len(test)
    leaky = OwnSplitTrainer(e.label("cls"), ident, g, train, np.concatenate([test, train[:3]]))
    with pytest.raises(ValueError, match="people in both train and test"):
        cross_group_matrix(leaky, g, group_names=["g0", "g1"], identity=ident, min_group_size=5)
