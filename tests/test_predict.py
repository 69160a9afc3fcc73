"""Predictor: image inputs of every kind, the training eval transform, typed results,
batching, errors, and real FairFace / ORL photos."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from serving_cases import make_model

from facecore.data.transforms import PreprocessConfig
from facecore.serving import (
    AgePrediction,
    BinaryPrediction,
    EmbeddingPrediction,
    Predictor,
    export_model,
    load,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CONFIG = PreprocessConfig(input_size=32, resize=36, mean=(0.5, 0.45, 0.4), std=(0.25, 0.2, 0.3))


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    out = {}
    for kind, kwargs in (("coral", {"age_offset": 18}), ("gender", {}), ("embedding", {})):
        model = make_model(kind, seed=1)
        d = tmp_path_factory.mktemp(kind)
        export_model(model, d, preprocess=CONFIG, **kwargs)
        out[kind] = (model, d)
    return out


def _oracle(model, images, config=CONFIG):
    """By hand: the training eval transform (facecore.data), normalise, model.serve."""
    t = config.eval_transform()
    x = torch.stack([t(img) for img in images])
    with torch.no_grad():
        return model.serve(x)


def _rgb(seed: int, h: int = 45, w: int = 40) -> Image.Image:
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(a)


def _age_arrays(preds):
    return {
        "label": torch.tensor([p.label for p in preds]),
        "class_probs": torch.tensor([p.class_probs for p in preds], dtype=torch.float32),
        "cum_probs": torch.tensor([p.cum_probs for p in preds], dtype=torch.float32),
        "expected": torch.tensor([p.expected for p in preds], dtype=torch.float32),
    }


def _assert_age(preds, want, exact=True):
    got = _age_arrays(preds)
    tol = {"rtol": 1e-6, "atol": 1e-6} if exact else {"rtol": 1e-3, "atol": 1e-3}
    for k in want:
        torch.testing.assert_close(got[k], want[k], **tol)


@pytest.mark.parametrize("name", ["model.pt", "model.pt2"])
def test_age_predictions_equal_the_model_on_the_training_eval_transform(exports, name):
    model, d = exports["coral"]
    images = [_rgb(i, 40 + 7 * i, 52 - 3 * i) for i in range(5)]  # portrait and landscape
    preds = load(d / name).predict(images)
    assert all(type(p) is AgePrediction for p in preds)
    _assert_age(preds, _oracle(model, images))
    for p in preds:
        assert p.age == pytest.approx(p.expected + 18.0, abs=1e-12)
        assert p.class_name == str(18 + p.label)
        assert sum(p.class_probs) == pytest.approx(1.0, abs=1e-5)
        assert len(p.class_probs) == 6 and len(p.cum_probs) == 5
        assert p.face_detected is None and p.face_box is None


def test_every_input_kind_gives_the_same_prediction(exports, tmp_path):
    model, d = exports["coral"]
    img = _rgb(7, 50, 44)
    a = np.asarray(img)
    path = tmp_path / "face.png"
    img.save(path)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    predictor = load(d)
    want = _oracle(model, [img])
    for kind in (img, str(path), path, buf.getvalue(), a, img.convert("RGBA"), img.convert("P")):
        got = predictor.predict(kind)
        if not (isinstance(kind, Image.Image) and kind.mode == "P"):  # palette quantises
            _assert_age(got, want)
    # float inputs resize in float32 with torch's antialiased bilinear, as facecore.data does
    f = a.astype(np.float32) / 255
    t = torch.from_numpy(f).permute(2, 0, 1)
    want_float = _oracle(model, [t])
    _assert_age(predictor.predict(f), want_float)
    _assert_age(predictor.predict(f.astype(np.float64)), want_float)
    _assert_age(predictor.predict(t), want_float)
    _assert_age(predictor.predict(t.unsqueeze(0)), want_float)  # NCHW batch
    _assert_age(predictor.predict((t * 255).round().to(torch.uint8)), want)
    # and float vs 8-bit resizing agree closely
    _assert_age(predictor.predict(f), want, exact=False)


def test_gray_inputs_are_replicated_to_rgb(exports):
    model, d = exports["coral"]
    g = np.random.default_rng(3).integers(0, 256, (40, 36), dtype=np.uint8)
    want = _oracle(model, [Image.fromarray(g).convert("RGB")])
    predictor = load(d)
    for kind in (g, g[:, :, None], Image.fromarray(g), torch.from_numpy(g)[None]):
        _assert_age(predictor.predict(kind), want)


def test_batches_and_lists(exports):
    model, d = exports["coral"]
    predictor = load(d / "model.pt2")
    images = [_rgb(i) for i in range(7)]
    one = predictor.predict(images, batch_size=32)
    _assert_age(predictor.predict(images, batch_size=3), _age_arrays(one))
    _assert_age(predictor.predict(np.stack([np.asarray(i) for i in images])), _age_arrays(one))
    assert predictor.predict([]) == []
    assert predictor.predict(np.zeros((0, 32, 32, 3), np.uint8)) == []
    _assert_age(predictor(images[:2]), _age_arrays(one[:2]))


def test_gender_and_embedding_results(exports):
    gmodel, gd = exports["gender"]
    emodel, ed = exports["embedding"]
    images = [_rgb(i) for i in range(4)]
    g = load(gd).predict(images)
    want = _oracle(gmodel, images)
    assert all(type(p) is BinaryPrediction for p in g)
    torch.testing.assert_close(torch.tensor([p.prob for p in g], dtype=torch.float32), want["prob"])
    assert [p.label for p in g] == want["label"].tolist()
    assert [p.class_name for p in g] == [("male", "female")[p.label] for p in g]
    e = load(ed / "model.pt2").predict(images)
    assert all(type(p) is EmbeddingPrediction for p in e)
    emb = np.stack([p.embedding for p in e])
    np.testing.assert_allclose(emb, _oracle(emodel, images)["embedding"].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    assert emb.dtype == np.float32 and emb.shape == (4, 8)
    with pytest.raises(ValueError, match="read-only"):
        e[0].embedding[0] = 1.0


def test_results_are_frozen_and_serialise_to_json(exports):
    [age] = load(exports["coral"][1]).predict(_rgb(1))
    [gender] = load(exports["gender"][1]).predict(_rgb(1))
    [emb] = load(exports["embedding"][1]).predict(_rgb(1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        age.age = 3.0
    d = json.loads(json.dumps(age.to_dict()))
    assert d["label"] == age.label and d["class_probs"] == list(age.class_probs)
    assert set(d) == {"label", "age", "class_name", "class_probs", "cum_probs", "expected",
                      "face_detected", "face_box"}
    assert json.loads(json.dumps(gender.to_dict()))["prob"] == gender.prob
    assert json.loads(json.dumps(emb.to_dict()))["embedding"] == emb.embedding.tolist()


def test_from_model_equals_the_exported_predictor(exports):
    model, d = exports["coral"]
    images = [_rgb(i) for i in range(3)]
    eager = Predictor.from_model(model, preprocess=CONFIG, age_offset=18)
    _assert_age(eager.predict(images), _age_arrays(load(d).predict(images)))
    assert eager.metadata["class_names"] == load(d).metadata["class_names"]


def test_square_resize_and_grayscale_configs(tmp_path):
    model = make_model("corn", seed=2)
    for config in (
        PreprocessConfig(input_size=32, resize=40, resize_mode="square"),
        PreprocessConfig(input_size=32, resize=34, grayscale=True, mean=(0.4,) * 3),
    ):
        export_model(model, tmp_path / config.resize_mode, preprocess=config, formats=["export"])
        images = [_rgb(i, 50, 37) for i in range(3)]
        f = np.asarray(images[0]).astype(np.float32) / 255
        predictor = load(tmp_path / config.resize_mode)
        _assert_age(predictor.predict(images), _oracle(model, images, config))
        _assert_age(predictor.predict(f), _oracle(model, [f], config))


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (3, TypeError, "image 0: expected a PIL image, a file path"),
        ([_rgb(0), {"a": 1}], TypeError, "image 1: expected .* got dict"),
        (Image.new("I", (40, 40)), ValueError, "unsupported PIL image mode 'I' \\(32-bit integer\\)"),
        (Image.new("F", (40, 40)), ValueError, "unsupported PIL image mode 'F'"),
        (_rgb(0, 10, 40), ValueError, "image 0 is 40x10 pixels, smaller than min_size=16"),
        (np.zeros((40, 40, 2), np.uint8), ValueError, r"\[H, W, C\] with C in \(1, 3, 4\)"),
        (np.zeros((40, 40, 3), np.int32), TypeError, "uint8 .* or float .* got dtype int32"),
        (np.full((40, 40, 3), 2.0), ValueError, r"values in \[0, 1\], got \[2, 2\]"),
        (np.full((40, 40, 3), np.nan), ValueError, "NaN or infinity"),
        (torch.rand(2, 40, 40), ValueError, r"\[C, H, W\] with C in \(1, 3\)"),
        (torch.rand(3, 40, 40) * 255, ValueError, r"values in \[0, 1\]"),
        (torch.ones(3, 40, 40, dtype=torch.int64), TypeError, "float in \\[0, 1\\] .* got torch.int64"),
        (b"definitely not an image", ValueError, "cannot decode image file '<bytes>'"),
    ],
)
def test_bad_inputs_give_clear_errors(exports, bad, exc, match):
    with pytest.raises(exc, match=match):
        load(exports["coral"][1]).predict(bad)


def test_file_errors_name_the_file(exports, tmp_path):
    predictor = load(exports["coral"][1])
    with pytest.raises(FileNotFoundError, match="no such image file: '.*missing.jpg'"):
        predictor.predict(tmp_path / "missing.jpg")
    corrupt = tmp_path / "corrupt.jpg"
    _rgb(0, 64, 64).save(corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[:300])
    with pytest.raises(ValueError, match="cannot decode image file '.*corrupt.jpg'"):
        predictor.predict([_rgb(0), corrupt])
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        predictor.predict([_rgb(0)], batch_size=0)


def _fairface(fairface_dir: Path, n: int) -> list[dict]:
    return json.loads((fairface_dir / "ground_truth.json").read_text())[:n]


@pytest.mark.data
def test_real_fairface_photos_and_orl_faces(exports, fairface_dir, orl_dir):
    model, d = exports["coral"]
    files = [fairface_dir / r["filename"] for r in _fairface(fairface_dir, 6)]
    files += sorted(orl_dir.glob("s1/*.pgm"))[:3]  # 92 x 112 grayscale PGMs
    want = _oracle(model, [Image.open(f).convert("RGB") for f in files])
    for name in ("model.pt", "model.pt2"):
        preds = load(d / name).predict(files, batch_size=4)
        assert len(preds) == len(files)
        _assert_age(preds, want)
        assert all(isinstance(p.age, float) and 18.0 <= p.age <= 23.0 for p in preds)


@pytest.mark.data
def test_briefly_trained_gender_model_end_to_end(fairface_dir, tmp_path):
    """Fit a small gender classifier on 48 FairFace photos, export it, and check the exported
    predictor reproduces the trained model and has learned its training photos."""
    from facecore.models import GenderClassifier

    rows = _fairface(fairface_dir, 48)
    config = PreprocessConfig(input_size=40, resize=44, mean=(0.5,) * 3, std=(0.25,) * 3)
    t = config.eval_transform()
    images = [Image.open(fairface_dir / r["filename"]).convert("RGB") for r in rows]
    x = torch.stack([t(img) for img in images])
    y = torch.tensor([int(r["gender"] == "Female") for r in rows])
    torch.manual_seed(0)
    model = GenderClassifier("small_cnn", width=8, backbone_options={"depth": 3})
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        model.loss(model(x), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        model.calibrate(model(x), y)
        want = model.serve(x)
    export_model(model, tmp_path, preprocess=config)
    preds = load(tmp_path).predict([fairface_dir / r["filename"] for r in rows])
    probs = torch.tensor([p.prob for p in preds], dtype=torch.float32)
    torch.testing.assert_close(probs, want["prob"], rtol=1e-5, atol=1e-6)
    accuracy = np.mean([p.label == int(label) for p, label in zip(preds, y)])
    assert accuracy >= 0.85, accuracy
    assert [p.class_name for p in preds[:3]] == [("male", "female")[p.label] for p in preds[:3]]
