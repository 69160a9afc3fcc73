"""The SAN research driver end to end on a tiny synthetic run (report, plots, checks), and
that a fixed seed reproduces a SAN training bit for bit."""

from __future__ import annotations

import json

import pytest
import torch

from facecore.privacy.experiment import (
    SANTrainConfig,
    build_objective,
    main,
    train_san,
    weights_sha256,
)


def _aux(size: int):
    from facecore.models import FaceEmbedder, GenderClassifier, GrayscaleAdapter

    torch.manual_seed(0)
    return (GrayscaleAdapter(GenderClassifier("small_cnn", width=4, in_channels=1)).eval(),
            GrayscaleAdapter(FaceEmbedder("small_cnn", 8, width=4, in_channels=1)).eval())


def test_fixed_seed_reproduces_the_san_training():
    size = 16
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(24, 1, size, size, generator=gen)
    g = torch.randint(0, 2, (24,), generator=gen)
    protos = {"male": torch.rand(3, size, size, generator=gen), "female": torch.rand(3, size, size, generator=gen)}
    protos["neutral"] = (protos["male"] + protos["female"]) / 2
    cfg = SANTrainConfig(decoder_channels=(6, 4), epochs=2, batch_size=8, prototype_gain=5.0,
                         prototype_reference="same", pretrain_epochs=1, seed=3)
    hashes = []
    for _ in range(2):
        clf, emb = _aux(size)
        obj = build_objective(cfg, protos, size, clf, emb)
        hist = train_san(obj, x, g, cfg, log=lambda *a: None)
        hashes.append(weights_sha256(obj.model))
    assert hashes[0] == hashes[1]
    assert hist[0]["match"] == 0.0 and hist[1]["match"] > 0.0  # J_M on from epoch 1
    obj2 = build_objective(SANTrainConfig(**{**cfg.to_dict(), "seed": 4, "decoder_channels": (6, 4),
                                             "encoder_channels": (8, 12)}), protos, size, *_aux(size))
    train_san(obj2, x, g, cfg, log=lambda *a: None)
    assert weights_sha256(obj2.model) != hashes[0]


@pytest.mark.slow
def test_synthetic_experiment_end_to_end(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    summary = main([
        "synthetic", "--out", str(out), "--data", "num_samples=480", "--data", "image_size=32",
        "--gender-train", "epochs=1", "--matcher-train", "epochs=1",
        "--san", "epochs=2", "--san", "max_images=96", "--san", "decoder_channels=[8,4]",
        "--parts", "test",
    ])
    rep = json.loads((out / "test" / "report.json").read_text())
    fig = rep["figures"]
    assert {"original", "sm", "nt", "op", "ae_only", "blur_2", "pixelate_4"} <= set(fig)
    assert fig["original"]["l1"] == 0.0 and fig["sm"]["l1"] > 0.0
    assert rep["evaluators"]["aux_gender"] == "auxiliary" and rep["evaluators"]["unseen_matcher"] == "unseen"
    assert [c["check"].split()[0] for c in rep["checks"]][:2] == ["unseen_gender", "unseen_gender"]
    for name in ("grid.png", "report.md", "p_female_unseen_gender.png", "roc_unseen_matcher_cross_photo.png"):
        assert (out / "test" / name).is_file()
    assert summary["history"]["san_weights_sha256"] != summary["history"]["ae_only_weights_sha256"]
    assert (out / "san.pt").is_file() and (out / "command.txt").read_text().startswith("python -m")
    # the auxiliaries are referenced by path + SHA-256, not copied into the SAN checkpoint
    ckpt = torch.load(out / "san.pt", weights_only=True)
    assert all(not k.startswith(("gender_classifier", "matcher")) for k in ckpt["state_dict"])
    aux = ckpt["objective"]["auxiliaries"]["aux_gender"]
    from facecore.losses.san import file_sha256

    assert file_sha256(aux["path"]) == aux["sha256"]
