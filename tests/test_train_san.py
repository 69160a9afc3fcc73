"""Task ``san`` (facecore.train.tasks.san): config validation, stage-1 configs on the SAN's
own identity-disjoint split, the objective's schedule through the generic loop, frozen
auxiliaries (bit-identical, referenced by SHA-256, never checkpointed; a changed file is a
one-line error on resume), a fixed seed reproduces, and a tiny ``fit`` + ``facecore eval``
end to end with its privacy report."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch
from train_cases import MemorySession

from facecore.models import FaceEmbedder, GenderClassifier, model_checkpoint
from facecore.privacy.auxiliaries import AUXILIARIES, clear_cache
from facecore.train import load_config
from facecore.train.checkpoints import (
    CHECKPOINT_FILE,
    load_checkpoint,
    new_checkpoint,
    persist_checkpoint,
)
from facecore.train.config import config_to_dict
from facecore.train.datasets import build_splits, preprocess_for
from facecore.train.loops import run_training
from facecore.train.sections import ConfigError
from facecore.train.tasks import get_task
from facecore.train.tasks.san import _stage1_config

S = 32
SMALL = [
    "data.num_samples=160", "data.num_identities=40", f"data.image_size={S}",
    "data.batch_size=16", "data.fractions=[0.6,0.2,0.2]", "san.decoder_channels=[16,8]",
    "san.max_impostors=2000", "san.pretrain_epochs=1", "optim.epochs=3", "run.workers=0",
    "run.verbose=0",
]


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _aux_checkpoint(folder: Path, key: str, seed: int) -> str:
    """An (untrained) grayscale auxiliary as a facecore training checkpoint folder."""
    torch.manual_seed(seed)
    task = AUXILIARIES[key]
    if task == "gender":
        model = GenderClassifier("small_cnn", width=4)
    else:
        model = FaceEmbedder("small_cnn", 16, width=4)
    cfg = load_config(None, [f"data.image_size={S}", "data.grayscale=true"], task=task)
    pre = preprocess_for(cfg.data)
    metrics = {"epoch": 1, "val_accuracy": 0.5} if task == "gender" else {"epoch": 1, "val_auc": 0.5}
    state = new_checkpoint(epoch=1, model=model_checkpoint(model), objective={}, optimizer={},
                           scheduler={}, train_config=config_to_dict(cfg), metrics=metrics,
                           history=[metrics], split_sizes=[1, 1, 1], export={"preprocess": pre.to_dict()})
    return str(persist_checkpoint(folder / key, metrics, state))


@pytest.fixture()
def aux(tmp_path):
    return {k: _aux_checkpoint(tmp_path / "aux", k, i) for i, k in enumerate(AUXILIARIES)}


def _cfg(tmp_path, aux, extra=()):
    sets = [f"san.{k}={v}" for k, v in aux.items()]
    cfg = load_config("san_synthetic", [*SMALL, *sets, "san.ae_baseline=false",
                                        f"run.storage={tmp_path / 'runs'}", *extra])
    return get_task("san").before_fit(cfg)


@pytest.mark.parametrize("override, message", [
    ("san.decoder_channels=[64]", "san.decoder_channels must be 2 positive ints"),
    ("san.pool_levels=3", r"san.pool_levels must be in \[0, 2\]"),
    (("san.pool_levels=1", "data.image_size=65"), "must be a multiple of 2 \\*\\* san.pool_levels"),
    ("san.lambda_gender=-1", "san.lambda_gender must be >= 0"),
    ("san.pretrain_epochs=8", "leaves no epoch with the gender loss"),
    ("san.reconstruction=l2", "san.reconstruction must be one of l1 | mse | bce"),
    ("san.prototype_reference=other", "san.prototype_reference must be one of"),
    ("san.sha256={matcher: abc}", "san.sha256.matcher must be 64 hex digits"),
    ("san.sha256={foo: abc}", "san.sha256.foo: unknown model"),
    ("data.split_by=dataset", "data.split_by must be one of"),
    ("stage1.matcher=[optim.epochs]", "stage1.matcher: each entry must be KEY=VALUE"),
    ("san.lambda_rec=0", "san.lambda_rec and san.lambda_match are both 0"),
    ("san.unknown=1", "unknown config key 'san.unknown'"),
])
def test_config_validation_errors(override, message):
    extra = ["san.lambda_match=0"] if override == "san.lambda_rec=0" else []
    with pytest.raises(ConfigError, match=message) as info:
        load_config("san_synthetic", [*([override] if isinstance(override, str) else override), *extra])
    assert "\n" not in str(info.value)


def test_stage1_runs_see_the_sans_training_people_only(tmp_path):
    cfg = load_config("san_synthetic", SMALL)
    san = build_splits(cfg, cache=False)
    for key in AUXILIARIES:
        sub = _stage1_config(cfg, key, tmp_path)
        assert sub.task == AUXILIARIES[key] and sub.data.grayscale and sub.run.name == key
        assert not sub.run.export and sub.run.storage == str(tmp_path)
        splits = build_splits(sub, cache=False)
        assert splits.preprocess.grayscale
        for name in ("train", "valid", "test"):  # the same identity-disjoint partition
            assert splits.indices[name] == san.indices[name]
    sub = _stage1_config(cfg, "gender_classifier", tmp_path)
    assert sub.model.width == 16 and sub.data.max_train_samples == 7200  # the config's overrides
    with pytest.raises(ConfigError, match="stage1.matcher: unknown config key 'metric.nope'"):
        _stage1_config(load_config("san_synthetic", [*SMALL, "stage1.matcher=[metric.nope=1]"]),
                       "matcher", tmp_path)


def test_before_fit_hashes_and_checks_the_auxiliaries(tmp_path, aux):
    cfg = _cfg(tmp_path, aux)
    for key, path in aux.items():
        assert cfg.san.sha256[key] == _sha(Path(path) / CHECKPOINT_FILE)
    bad = dict(cfg.san.sha256, matcher="0" * 64)
    with pytest.raises(ConfigError, match=r"san.matcher=.*SHA-256 .* differs from san.sha256.matcher"):
        get_task("san").before_fit(dataclasses.replace(cfg, san=dataclasses.replace(cfg.san, sha256=bad)))
    wrong = dict(aux, matcher=aux["gender_classifier"])
    with pytest.raises(ConfigError, match="is a 'gender' checkpoint, expected 'embedding'"):
        _cfg(tmp_path, wrong)
    with pytest.raises(ConfigError, match="san.matcher: training checkpoint not found"):
        _cfg(tmp_path, dict(aux, matcher=str(tmp_path / "missing")))


def test_schedule_frozen_auxiliaries_checkpoint_and_resume(tmp_path, aux):
    cfg = _cfg(tmp_path, aux, ["san.pretrain_epochs=1", "san.match_warmup_epochs=1", "san.lambda_match=64"])
    files = {k: _sha(Path(p) / CHECKPOINT_FILE) for k, p in aux.items()}
    clear_cache()
    task = get_task("san")
    clf = task.build_objective(cfg, task.build_model(cfg, 2), None).gender_classifier
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    session = MemorySession()
    run_training(cfg, session)
    hist = session.reports
    # epoch 1: J_D only; epoch 2: + J_G; epoch 3: + J_M (pretrain 1, warm-up 1)
    lr, lg = cfg.san.lambda_rec, cfg.san.lambda_gender
    assert (lr, lg) == (2.0, 1.0)  # san_synthetic's weights
    assert hist[0]["train_loss"] == pytest.approx(lr * hist[0]["train_rec"], rel=1e-6)
    assert hist[0]["train_match"] == 0 and hist[1]["train_match"] == 0 and hist[2]["train_match"] > 0
    assert hist[1]["train_loss"] == pytest.approx(lr * hist[1]["train_rec"] + lg * hist[1]["train_gender"],
                                                  rel=1e-5)
    for key in ("val_privacy", "val_utility", "val_gender_acc_op", "val_match_auc_sm", "val_l1_sm"):
        assert key in hist[-1]
    assert hist[-1]["val_privacy"] == pytest.approx(hist[-1]["val_gender_acc_sm"] - hist[-1]["val_gender_acc_op"])
    # the auxiliaries are bit-identical (files and the frozen modules) and not checkpointed
    assert {k: _sha(Path(p) / CHECKPOINT_FILE) for k, p in aux.items()} == files
    after = clf.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    state = session.states[-1]
    assert set(state["objective"]) == {"sha256_gender_classifier", "sha256_matcher"}
    assert bytes(state["objective"]["sha256_matcher"].tolist()).hex() == files["matcher"]
    assert all(k.startswith(("encoder.", "decoder.", "combiner.", "prototype_"))
               for k in state["model"]["state_dict"])
    assert state["train_config"]["san"]["sha256"] == files
    # resuming with a changed auxiliary file is a one-line error
    _aux_checkpoint(tmp_path / "other", "matcher", 99)
    changed = Path(aux["matcher"]) / CHECKPOINT_FILE
    changed.write_bytes((tmp_path / "other" / "matcher" / "checkpoint_epoch_0001" / CHECKPOINT_FILE).read_bytes())
    more = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, epochs=4))
    with pytest.raises(ConfigError, match=r"san.matcher=.*differs from san.sha256.matcher"):
        run_training(more, MemorySession(state))
    rehashed = get_task("san").before_fit(dataclasses.replace(
        more, san=dataclasses.replace(more.san, sha256=None)))
    with pytest.raises(ConfigError, match="differs from the one this run's checkpoints were trained with") as info:
        run_training(rehashed, MemorySession(state))
    assert "\n" not in str(info.value)


def test_fixed_seed_reproduces_the_run(tmp_path, aux):
    cfg = _cfg(tmp_path, aux, ["optim.epochs=2"])
    weights, l1 = [], []
    for _ in range(2):
        s = MemorySession()
        run_training(cfg, s)
        weights.append(s.states[-1]["model"]["state_dict"])
        l1.append(s.reports[-1]["val_l1_sm"])
    assert l1[0] == l1[1]  # the same weights give the same validation figure
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    other = MemorySession()
    run_training(dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, seed=5)), other)
    assert not torch.equal(other.states[-1]["model"]["state_dict"]["combiner.weight"],
                           weights[0]["combiner.weight"])


def test_validation_runs_on_max_val_images_faces_of_whole_people(tmp_path, aux, monkeypatch):
    """Each epoch's validation runs the SAN and the evaluators on the faces the metrics
    keep (``san.max_val_images``, whole people), the same figures as on the whole split,
    and training is unchanged."""
    import facecore.train.loops as loops
    from facecore.privacy.runs import summary_metrics, variants_of

    cfg_all = _cfg(tmp_path, aux, ["optim.epochs=2"])
    cfg = dataclasses.replace(cfg_all, san=dataclasses.replace(cfg_all.san, max_val_images=10))
    seen = []
    real = loops.predict_dataset

    def spy(c, model, dataset, **kw):
        out = real(c, model, dataset, **kw)
        seen.append(out["identity"].clone())
        return out

    monkeypatch.setattr(loops, "predict_dataset", spy)
    s = MemorySession()
    run_training(cfg, s)
    splits = build_splits(cfg, cache=False)
    valid_ids = splits.dataset.targets("identity")[torch.as_tensor(splits.indices["valid"])]
    assert len(valid_ids) > 10 and len(seen) == 2  # one validation per epoch
    for ident in seen:
        people = torch.unique(ident)
        assert 2 <= len(people) and len(ident) <= 10
        assert all(int((ident == p).sum()) == int((valid_ids == p).sum()) for p in people)
    assert torch.equal(seen[0], seen[1])
    # the figures of the whole split's outputs limited by the metrics' own selection
    model = get_task("san").build_model(cfg, splits.num_classes)
    model.load_state_dict(s.states[-1]["model"]["state_dict"])
    full = real(cfg, model.eval(), splits.valid, batch_size=64, device=torch.device("cpu"))
    expected = summary_metrics(cfg, variants_of(full, limit=10, seed=cfg.data.seed))
    assert s.reports[-1]["val_l1_sm"] == pytest.approx(expected["l1_sm"], rel=1e-5)
    assert s.reports[-1]["val_gender_acc_op"] == pytest.approx(expected["gender_acc_op"])
    monkeypatch.setattr(loops, "predict_dataset", real)
    whole = MemorySession()
    run_training(cfg_all, whole)  # every validation face: the same weights
    assert all(torch.equal(v, whole.states[-1]["model"]["state_dict"][k])
               for k, v in s.states[-1]["model"]["state_dict"].items())


def test_fit_with_stage1_and_eval_report(tmp_path):
    """One command: stage 1 trains the four models and the AE-only baseline, the SAN
    trains, the test split gets the privacy report; ``facecore eval RUN --plot`` again."""
    from facecore.cli import main
    from facecore.train import fit

    tiny = [f"stage1.{k}=[optim.epochs=1, model.width=4, data.augment=false]" for k in
            ("gender_classifier", "unseen_gender_classifier")]
    tiny += [f"stage1.{k}=[optim.epochs=1, model.width=4, model.embedding_dim=16, metric.p=4, "
             f"metric.k=2]" for k in ("matcher", "unseen_matcher")]
    cfg = load_config("san_synthetic", [*SMALL, "optim.epochs=2", *tiny,
                                        f"run.storage={tmp_path}", "run.name=san"])
    res = fit(cfg)
    run = tmp_path / "san"
    for key in AUXILIARIES:
        assert (run / "stage1" / key / "checkpoint_epoch_0001" / CHECKPOINT_FILE).is_file()
    assert (run / "stage1" / "ae_only" / "checkpoint_epoch_0002").is_dir()
    assert res.epochs_completed == 2 and "test_privacy" in res.test_metrics
    report = json.loads((run / "privacy" / "report.json").read_text())
    assert {"original", "sm", "nt", "op", "ae_only", "blur_2", "pixelate_4"} <= set(report["figures"])
    assert report["evaluators"] == {"aux_gender": "auxiliary", "aux_matcher": "auxiliary",
                                    "unseen_gender": "unseen", "unseen_matcher": "unseen"}
    assert any("autoencoder-only" in c["check"] for c in report["checks"])
    for png in ("grid.png", "roc_unseen_matcher_cross_photo.png", "p_female_unseen_gender.png"):
        assert (run / "privacy" / png).stat().st_size > 1000
    state = load_checkpoint(res.best_checkpoint)
    assert state["train_config"]["san"]["sha256"].keys() == set(AUXILIARIES)
    # the command again finds every stage-1 run and the finished SAN (nothing retrained)
    before = sorted(p.name for p in run.iterdir())
    (run / "privacy" / "report.json").unlink()
    assert main(["eval", str(run), "--plot"]) == 0
    assert (run / "privacy" / "report.json").is_file()
    assert sorted(p.name for p in run.iterdir()) == before


def test_london_splits_by_person_and_pairs_smiling_with_neutral(london_dir, tmp_path, aux):
    """Real faces: the packaged san_london config splits by person, the evaluation
    outputs carry the expressions, and cross-photo genuine pairs are a person's smiling
    original against the perturbed neutral photo."""
    from facecore.privacy.runs import _pairs, variants_of
    from facecore.train.evaluation import predict_dataset

    cfg = load_config("san_london", [f"data.root={london_dir}", f"data.image_size={S}",
                                     *[f"san.{k}={v}" for k, v in aux.items()]])
    splits = build_splits(cfg, cache=False)
    people = {n: set(splits.dataset.targets("identity")[splits.indices[n]].tolist())
              for n in ("train", "valid", "test")}
    assert not people["train"] & people["test"] and not people["valid"] & people["test"]
    x, _ = splits.test[0]
    assert x.shape == (3, S, S) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert torch.equal(x[0], x[1])  # grayscale, not normalised
    model = get_task("san").build_model(cfg, 2)
    out = predict_dataset(cfg, model, splits.test, batch_size=64)
    v = variants_of(out)
    gallery, probe = _pairs(v)
    assert sorted(gallery + probe) == list(range(len(v["gender"])))
    assert all(int(v["expression"][i]) == 1 for i in gallery)
    for i in gallery:  # every smiling photo has its person's neutral photo among the probes
        assert any(int(v["identity"][j]) == int(v["identity"][i]) for j in probe)
    assert torch.equal(v["sm"][v["gender"] == 1], out["sm1"][out["target"] == 1])


def test_split_by_sample_is_refused_where_people_have_several_photos(tmp_path):
    cfg = load_config("san_synthetic", [*SMALL, "data.split_by=sample"])
    with pytest.raises(ConfigError, match="data.split_by=sample: data.name='synthetic' has several "
                                          "photos per person"):
        build_splits(cfg, cache=False)


@pytest.mark.timeout(600)
def test_fairface_one_photo_per_person_same_photo_report(fairface_dir, tmp_path, aux):
    """FairFace-540 (no identity labels, one photo per person): the packaged san_fairface
    config splits by image, its stage-1 gender classifiers see the SAN's training faces
    only, the London matchers read the London set; the per-epoch metrics and the report
    use the same-photo protocol (no cross-photo figures, which would need genuine pairs)."""
    from facecore.privacy.runs import match_protocol, summary_metrics, variants_of, write_run_report
    from facecore.train.evaluation import predict_dataset

    cfg = load_config("san_fairface", [f"data.root={fairface_dir}", f"data.image_size={S}",
                                       "san.third_party=false", "san.max_impostors=500", "san.ae_baseline=false",
                                       *[f"san.{k}={v}" for k, v in aux.items()]])
    cfg = get_task("san").before_fit(cfg)
    splits = build_splits(cfg, cache=False)
    assert [len(splits.indices[n]) for n in ("train", "valid", "test")] == [324, 54, 162]
    sub = _stage1_config(cfg, "unseen_gender_classifier", tmp_path)
    assert build_splits(sub, cache=False).indices == splits.indices
    matcher = _stage1_config(cfg, "matcher", tmp_path)
    assert matcher.data.name == "london" and matcher.data.split_by == "identity"
    assert matcher.data.root == f"{fairface_dir}/../london_faces" and matcher.data.crop_fraction == 1.0
    model = get_task("san").build_model(cfg, 2)
    out = predict_dataset(cfg, model, splits.test, batch_size=64)
    assert "identity" not in out and "expression" not in out
    v = variants_of(out)
    assert match_protocol(v) == "same_photo"
    m = summary_metrics(cfg, v)  # raised before: no genuine cross-photo pair
    # genuine pairs of the original are the same image (score 1, the maximum)
    assert 0.0 <= m["match_auc_sm"] <= 1.0 and 0.5 < m["match_auc_original"] <= 1.0
    write_run_report(cfg, out, tmp_path / "privacy")
    report = json.loads((tmp_path / "privacy" / "report.json").read_text())
    assert report["meta"]["match_protocol"] == "same_photo"
    assert report["meta"]["cross_photo"].startswith("none: one photo per person")
    for row in report["figures"].values():
        assert set(row["match"]["unseen_matcher"]) == {"same_photo"}
        assert row["match"]["unseen_matcher"]["same_photo"]["genuine"] == 162
    assert any("same_photo" in c["check"] for c in report["checks"])
    assert all(r["protocol"] == "same_photo" for r in report["equal_utility"])
    assert not list((tmp_path / "privacy").glob("*cross_photo*"))
