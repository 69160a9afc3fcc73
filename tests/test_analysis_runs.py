"""The bias matrix with full training runs per group (``FitTrainer``: ``facecore.train.fit``
per row with ``data.include``), on synthetic faces in Ray Train's local mode (workers=0,
two epochs): the protocol (each row trains on its group's training items only, equal
sizes, every row scored on the same held-out people), cells equal to what the stored
checkpoints predict, softmax embeddings trained through ``fit``, errors, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from analysis_cases import one_blas_thread  # noqa: F401
from torch.utils.data import Subset

from facecore.analysis.cli import main
from facecore.analysis.runs import FitTrainer, fit_bias_matrix
from facecore.train import load_config
from facecore.train.config import ConfigError
from facecore.train.datasets import build_splits
from facecore.train.evaluation import predict_dataset
from facecore.train.runner import model_from_training_checkpoint

pytestmark = pytest.mark.timeout(300)

SMALL = ["data.num_samples=360", "data.num_identities=120", "data.image_size=24",
         "data.fractions=[0.5, 0.2, 0.3]", "model.width=4", "optim.epochs=2",
         "run.workers=0", "run.verbose=0", "run.export=false", "run.plot=false"]


def _gender(tmp_path, *extra):
    return load_config("gender_synthetic", [*SMALL, "data.batch_size=32", "binary.calibrate=false",
                                            "data.split_by=identity", f"run.storage={tmp_path}",
                                            "run.name=g", *extra])


@pytest.fixture(scope="module")
def gender_matrix(tmp_path_factory):
    torch.set_num_threads(1)
    cfg = _gender(tmp_path_factory.mktemp("runs"))
    return cfg, fit_bias_matrix(cfg, "race", n_boot=50)


def test_rows_are_fit_runs_on_their_group_scored_on_one_test_split(gender_matrix):
    cfg, m = gender_matrix
    assert m.rows == ["light", "medium", "dark", "all"] and m.cols == ["light", "medium", "dark"]
    assert m.meta["folds"] == 1 and m.meta["split"] == "the trainer's own split (by identity)"
    base = build_splits(cfg)
    race = base.dataset.targets("race").numpy()
    ident = base.dataset.targets("identity").numpy()
    test = set(base.indices["test"])
    runs = m.meta["runs"]
    sizes = {r["train_items"] for r in runs.values()}
    assert len(sizes) == 1  # equal training sizes (the smallest group's)
    for row, value in (("light", 0), ("medium", 1), ("dark", 2), ("all", None)):
        run = runs[row]
        assert run["run"].endswith(f"g-race-{row}") and run["checkpoint"].endswith("_0002")
        model, row_cfg, _ = model_from_training_checkpoint(run["checkpoint"])  # the latest
        assert row_cfg.data.include == (None if value is None else {"race": [value]})
        tr = build_splits(row_cfg).indices["train"]
        assert len(tr) == run["train_items"] and set(tr) <= set(base.indices["train"])
        assert not set(ident[tr]) & set(ident[list(test)])  # no test person was trained on
        if value is not None:
            assert set(race[tr]) == {value}
    # a cell is the accuracy of the row's checkpoint on the column group's test items
    model, row_cfg, _ = model_from_training_checkpoint(runs["light"]["checkpoint"])
    items = [i for i in base.indices["test"] if race[i] == 1]
    out = predict_dataset(row_cfg, model, Subset(base.dataset, items))
    acc = float((out["label"] == out["target"]).float().mean())
    cell = m.cells[0][1]
    assert cell.value == pytest.approx(acc) and cell.n == len(items)
    assert cell.method.startswith("identity bootstrap")
    assert "*(majority class)*" in m.to_markdown()


def test_softmax_embeddings_through_fit_give_verification_cells(tmp_path):
    """metric.loss=softmax trains through facecore.train.fit like contrastive / triplet;
    the matrix's cells are TAR@FAR / EER over held-out people with identity-bootstrap
    intervals."""
    cfg = load_config("embedding_triplet_synthetic", [
        *SMALL, "data.num_identities=60", "metric.loss=softmax", "metric.p=4", "metric.k=3",
        "model.embedding_dim=8", f"run.storage={tmp_path}", "run.name=e"])
    m = fit_bias_matrix(cfg, "race", far=0.1, n_boot=30, min_group_size=5, checkpoint="best")
    assert m.task == "verification" and m.metric == "tar@far=0.1"
    v = m.values()
    assert np.all((v >= 0) & (v <= 1))
    assert m.cells[0][0].method.startswith("identity bootstrap")
    run = m.meta["runs"]["all"]
    assert run["checkpoint"] == run["best_checkpoint"]
    _, _, raw = model_from_training_checkpoint(run["checkpoint"])
    assert "softmax.fc.weight" in raw["objective"]  # the identity classifier was trained


def test_errors_name_the_setting(tmp_path):
    with pytest.raises(ConfigError, match="data.max_train_samples is set per row"):
        FitTrainer(_gender(tmp_path, "data.max_train_samples=10"), "race")
    # synthetic people have several images: an image-level split would test on trained people
    cfg = load_config("gender_synthetic", [*SMALL, "binary.calibrate=false", f"run.storage={tmp_path}"])
    with pytest.raises(ConfigError, match="set data.split_by: identity"):
        FitTrainer(cfg, "race")
    with pytest.raises(KeyError, match="no group label 'ethnicity'"):
        FitTrainer(_gender(tmp_path), "ethnicity")
    with pytest.raises(ValueError, match="checkpoint must be 'latest' or 'best'"):
        FitTrainer(_gender(tmp_path), "race", checkpoint="last")
    with pytest.raises(ValueError, match="leave no test split"):
        FitTrainer(_gender(tmp_path, "data.fractions=[0.8, 0.2, 0.0]"), "race").splits()


def test_cli_bias_with_train(tmp_path, capsys):
    argv = ["analyze", "bias", "--train", "gender_synthetic", "--group", "race", "--threads", "1",
            "-o", str(tmp_path / "out")]
    for item in [*SMALL, "data.batch_size=32", "binary.calibrate=false", "data.split_by=identity",
                 f"run.storage={tmp_path}", "run.name=cli", "data.include={race: [0, 1]}"]:
        argv += ["--set", item]
    assert main(argv) == 0
    d = json.loads((tmp_path / "out" / "bias_gender_by_race.json").read_text())
    # the config's data.include names the groups: two groups, two columns
    assert d["rows_trained_on"] == ["light", "medium", "all"] and d["cols_evaluated_on"] == ["light", "medium"]
    assert set(d["meta"]["runs"]) == {"light", "medium", "all"}
    assert (tmp_path / "out" / "bias_gender_by_race.png").stat().st_size > 5000
    capsys.readouterr()
    assert main(["analyze", "bias", "--train", "gender_synthetic", "--pixels", "--group", "race",
                 "-o", str(tmp_path / "x")]) == 2
    assert "--train trains its own models" in capsys.readouterr().err
    assert main(["analyze", "bias", "--train", "gender_synthetic", "--set", "data.include={race: 0}",
                 "--group", "race", "-o", str(tmp_path / "x")]) == 2
    assert "data.include.race must be list[int], got 0" in capsys.readouterr().err


def test_binned_groups_train_on_the_values_of_their_bin(tmp_path):
    cfg = _gender(tmp_path, "optim.epochs=1", "data.include={race: [0, 1, 2]}")
    m = fit_bias_matrix(cfg, "race", bins=[1], bin_names=["light", "darker"], n_boot=20)
    assert m.group == "race_bin" and m.cols == ["light", "darker"]
    runs = m.meta["runs"]
    assert runs["light"]["include"] == {"race": [0]} and runs["darker"]["include"] == {"race": [1, 2]}
    assert runs["all"]["include"] == {"race": [0, 1, 2]}  # the config's own include stays
    assert runs["light"]["train_items"] == runs["darker"]["train_items"] == runs["all"]["train_items"]
