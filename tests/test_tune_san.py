"""The SAN loss-weight sweep end to end (facecore.train.tune.san) on tiny synthetic faces:
shared models trained once before the trials and referenced by path, per-epoch privacy and
relative utility, the final evaluation with the unseen test evaluators, the Pareto file
(every listed point non-dominated, every dominated configuration excluded) and chosen.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from ray_fixtures import ray_session  # noqa: F401

from facecore.train import load_config
from facecore.train.checkpoints import load_checkpoint
from facecore.train.tune.pareto import dominates

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SMALL = [
    "data.num_samples=160", "data.num_identities=40", "data.image_size=32", "data.batch_size=16",
    "data.fractions=[0.6,0.2,0.2]", "san.decoder_channels=[16,8]", "san.max_impostors=2000",
    "optim.epochs=2", "san.pretrain_epochs=0", "run.workers=0", "run.verbose=0",
]
TINY_STAGE1 = [
    f"stage1.{k}=[optim.epochs=1, model.width=4, data.augment=false, run.seed={s}]"
    for k, s in (("gender_classifier", 1), ("unseen_gender_classifier", 11))
] + [
    f"stage1.{k}=[optim.epochs=1, model.width=4, model.embedding_dim=16, metric.p=4, metric.k=2, run.seed={s}]"
    for k, s in (("matcher", 2), ("unseen_matcher", 12))
]


@pytest.mark.timeout(600)
def test_two_trial_san_sweep_writes_the_pareto_front(ray_session, tmp_path):  # noqa: F811
    from facecore.train.tune.san import sweep_san_weights

    base = load_config("san_synthetic", [*SMALL, *TINY_STAGE1])
    res = sweep_san_weights(
        base, space=["san.lambda_rec=grid:0.1,10", "san.pretrain_epochs=grid:0",
                     "san.match_warmup_epochs=grid:0"],
        num_samples=1, storage=tmp_path, name="san", asha=None,
    )
    assert not res.interrupted and len(res.trials) == 2
    shared = res.path / "shared"
    models = json.loads((shared / "models.json").read_text())
    # the trials train against the shared files, by path and hash; the test evaluators are
    # other files than the validation evaluators and the auxiliaries
    paths = {*models["auxiliaries"].values(), *models["validation"].values(), *models["test"].values()}
    assert len(paths) == 6 and all(str(shared) in p for p in paths)
    for t in res.trials:
        assert t["status"] == "finished" and t["epochs"] == 2
        san = load_checkpoint(t["checkpoint"])["train_config"]["san"]
        assert san["lambda_gender"] == 1.0
        assert {k: san[k] for k in models["auxiliaries"]} == models["auxiliaries"]
        assert {k: san[k] for k in models["validation"]} == models["validation"]
        assert not (res.path / "trials" / t["trial_id"] / "stage1").exists()
        hist = json.loads((res.path / "trials" / t["trial_id"] / "history.json").read_text())
        ref = models["ae_only_valid"]["val_utility"]
        for h in hist:  # per-epoch privacy, relative utility, and the documented score
            assert h["val_utility_rel"] == pytest.approx(h["val_utility"] / ref)
            assert h["sweep_score"] == pytest.approx(h["val_privacy"] + h["val_utility_rel"])
        # the final evaluation used the unseen test evaluators
        final = json.loads((res.path / "trials" / t["trial_id"] / "final_eval.json").read_text())
        assert final["metrics"]["test_utility_rel"] == pytest.approx(
            final["metrics"]["test_utility"] / models["ae_only_test"]["test_utility"])
        assert math.isfinite(t["test_privacy"]) and t["test_utility_rel"] > 0
    doc = json.loads((res.path / "pareto.json").read_text())
    objectives = [tuple(o) for o in doc["objectives"]]
    assert objectives == [("test_privacy_mean", "max"), ("test_utility_rel_mean", "max")]
    assert doc["reference"]["test_utility_rel_mean"] == 1.0 and doc["reference_label"] == "autoencoder only"
    rows, front = doc["rows"], doc["front"]
    assert len(rows) == 2 and 1 <= len(front) <= 2
    for f in front:
        assert f["on_front"] and not any(dominates(r, f, objectives) for r in rows)
    for r in rows:
        if not r["on_front"]:
            assert any(dominates(f, r, objectives) for f in front)
    assert (res.path / "pareto.csv").read_text().count("\n") == 3
    assert (res.path / "pareto.png").stat().st_size > 1000
    chosen = json.loads((res.path / "chosen.json").read_text())
    assert chosen["trial_id"] in {t["trial_id"] for t in res.trials}
    assert any(all(f.get(k) == v for k, v in chosen["params"].items()) for f in front)
    # the chosen trial is exported as a SAN program (facecore.serving exports the task)
    assert chosen.get("export_error") is None, chosen.get("export_error")
    meta = json.loads((Path(chosen["export"]) / "metadata.json").read_text())
    assert meta["task"] == "san" and (Path(chosen["export"]) / "model.pt2").exists()
