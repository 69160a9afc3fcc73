"""Real-data smoke tests (skipped without ../shared/data): brief training on FairFace
(9 ordinal age groups) and ORL (40 identities) through ``fit`` in Ray Train's
in-process local mode (``run.workers=0``: no cluster start-up), beating the trivial
baseline."""

from __future__ import annotations

import pytest

from facecore.train import fit, load_config
from facecore.train.checkpoints import load_checkpoint

pytestmark = [pytest.mark.data, pytest.mark.slow]


@pytest.mark.timeout(400)
def test_fairface_age_groups_beat_the_median_baseline(fairface_dir, tmp_path):
    cfg = load_config(task="age", overrides=[
        "data.name=fairface", f"data.root={fairface_dir}", "data.image_size=48",
        "data.batch_size=16", "data.fractions=[0.7, 0.15, 0.15]", "optim.lr=0.001",
        "optim.epochs=8", "run.workers=0", f"run.storage={tmp_path}", "run.name=fairface",
        "run.score=val_mae_expected", "run.export=false", "run.plot=false", "run.verbose=0",
    ])
    res = fit(cfg)
    assert res.epochs_completed == 8
    assert len(res.history) == 8 and res.history[0]["val_median_mae"] > 1.5
    best = min(res.history, key=lambda h: h["val_mae_expected"])
    # the expected age group is closer to the truth than always guessing the median group
    assert best["val_mae_expected"] < best["val_median_mae"]
    assert all(h["val_rank_inconsistency"] == 0.0 for h in res.history)
    ck = load_checkpoint(res.best_checkpoint)
    assert ck["model"]["config"]["num_classes"] == 9 and ck["epoch"] == best["epoch"]
    assert "test_mae_expected" in res.test_metrics


@pytest.mark.timeout(300)
def test_orl_embeddings_verify_better_than_chance(orl_dir, tmp_path):
    cfg = load_config("embedding_triplet_synthetic", [
        "data.name=folders", f"data.root={orl_dir}", "data.image_size=48",
        "data.fractions=[0.6, 0.2, 0.2]",  # 80 test images: enough same-identity pairs
        "model.embedding_dim=32", "optim.lr=0.003", "optim.epochs=10",
        "run.workers=0", f"run.storage={tmp_path}", "run.name=orl",
        "run.export=false", "run.plot=false", "run.verbose=0",
    ])
    res = fit(cfg)
    assert res.epochs_completed == 10
    assert res.metrics["val_auc"] > 0.75 and res.metrics["val_eer"] < 0.35
    assert res.test_metrics["test_auc"] > 0.7  # chance: 0.5
