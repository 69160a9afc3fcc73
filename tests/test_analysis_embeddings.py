"""Embedding extraction from every kind of facecore model source, the raw-pixel baseline,
save / load, derived (binned) labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from analysis_cases import one_blas_thread  # noqa: F401

import facecore
from facecore.analysis import (
    Embeddings,
    dataset_labels,
    extract_embeddings,
    load_analysis_model,
    pixel_embeddings,
)
from facecore.data import SYNTHETIC_PREPROCESS, PreprocessConfig, SyntheticFaces, open_dataset
from facecore.models import FaceEmbedder, GenderClassifier, model_checkpoint

PRE = PreprocessConfig(input_size=32, resize=32, mean=(0.5,) * 3, std=(0.25,) * 3)


@pytest.fixture(scope="module")
def faces():
    return SyntheticFaces(40, image_size=32, num_identities=10, seed=3)


@pytest.fixture(scope="module")
def embedder():
    torch.manual_seed(0)
    return FaceEmbedder("small_cnn", 16, width=4).eval()


def _manual(model, faces, fn):
    x, _ = faces.batch()
    with torch.no_grad():
        return fn(model, (x - 0.5) / 0.25).numpy()


def test_embedder_output_and_backbone_features_with_all_labels(faces, embedder):
    e = extract_embeddings(embedder, faces, preprocess=PRE, batch_size=7)
    np.testing.assert_allclose(e.features, _manual(embedder, faces, lambda m, x: m(x)), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(e.features, axis=1), 1.0, atol=1e-5)
    assert set(e.labels) == {"age", "age_years", "gender", "race", "identity"}
    np.testing.assert_array_equal(e.labels["identity"], faces.targets("identity").numpy())
    assert e.names("race") == ["light", "medium", "dark"] and e.names("gender") == ["male", "female"]
    assert e.meta["layer"] == "embedding" and e.meta["preprocess"]["input_size"] == 32
    f = extract_embeddings(embedder, faces, preprocess=PRE, layer="features")
    np.testing.assert_allclose(f.features, _manual(embedder, faces, lambda m, x: m.backbone(x)),
                               atol=1e-5)
    assert f.dim == embedder.backbone.out_features


def test_classifier_defaults_to_penultimate_features(faces):
    torch.manual_seed(1)
    g = GenderClassifier("small_cnn", width=4).eval()
    e = extract_embeddings(g, faces, preprocess=PRE)
    assert e.meta["layer"] == "features" and e.dim == g.backbone.out_features
    with pytest.raises(ValueError, match="layer='embedding' needs a FaceEmbedder"):
        extract_embeddings(g, faces, preprocess=PRE, layer="embedding")


@pytest.mark.parametrize("fmt", ["dir", "model.pt", "model.pt2"])
def test_exported_model_gives_the_predictors_embeddings(tmp_path, faces, embedder, fmt):
    facecore.export_model(embedder, tmp_path / "exp", preprocess=PRE)
    path = tmp_path / "exp" if fmt == "dir" else tmp_path / "exp" / fmt
    e = extract_embeddings(path, faces)
    assert e.meta["source_kind"] == "export"
    x, _ = faces.batch()
    served = facecore.load(path).run(x)["embedding"].numpy()  # the exported program itself
    np.testing.assert_allclose(e.features, served, atol=1e-5)


def test_checkpoints(tmp_path, faces, embedder):
    from facecore.train import config_to_dict, load_config
    from facecore.train.checkpoints import new_checkpoint
    from facecore.train.datasets import preprocess_for

    torch.save(model_checkpoint(embedder), tmp_path / "m.pt")
    with pytest.raises(ValueError, match="pass preprocess="):
        load_analysis_model(tmp_path / "m.pt")
    a = extract_embeddings(tmp_path / "m.pt", faces, preprocess=PRE)
    np.testing.assert_allclose(a.features, extract_embeddings(embedder, faces, preprocess=PRE).features)
    # a training checkpoint: the preprocessing it recorded for export (synthetic, image_size 32)
    cfg = load_config("embedding_triplet_synthetic", ["data.image_size=32"])
    d = tmp_path / "checkpoint_epoch_0001"
    d.mkdir()
    torch.save(new_checkpoint(model=model_checkpoint(embedder), train_config=config_to_dict(cfg),
                              epoch=1, export={"preprocess": preprocess_for(cfg.data).to_dict()}),
               d / "checkpoint.pt")
    t = load_analysis_model(d)
    assert t.kind == "training_checkpoint"
    assert (t.preprocess.input_size, t.preprocess.mean) == (32, SYNTHETIC_PREPROCESS.mean)
    np.testing.assert_allclose(extract_embeddings(d, faces).features, a.features, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="model not found"):
        load_analysis_model(tmp_path / "nope")


def test_pixel_baseline(faces):
    p = pixel_embeddings(faces, size=16)
    assert p.features.shape == (len(faces), 3 * 16 * 16)
    x, _ = faces.batch()
    from facecore.data.transforms import Resize

    np.testing.assert_allclose(p.features[0], Resize(16)(x[0]).flatten().numpy(), atol=1e-6)
    g = pixel_embeddings(faces, size=8, grayscale=True)
    assert g.dim == 64 and g.meta["grayscale"]


def test_save_load_roundtrip_and_sidecar(tmp_path, faces, embedder):
    e = extract_embeddings(embedder, faces, preprocess=PRE).binned("age_years", [30, 50])
    npz, side = e.save(tmp_path / "out" / "emb")
    assert npz.name == "emb.npz" and side.name == "emb.json"
    for p in (tmp_path / "out" / "emb", npz, side):
        r = Embeddings.load(p)
        np.testing.assert_array_equal(r.features, e.features)
        assert r.labels.keys() == e.labels.keys()
        for k in e.labels:
            np.testing.assert_array_equal(r.labels[k], e.labels[k])
        assert r.label_names == e.label_names and r.meta["layer"] == "embedding"
    assert e.names("age_years_bin") == ["<30", "30-50", ">=50"]
    side.write_text(side.read_text().replace('"format_version": 1', '"format_version": 9'))
    with pytest.raises(ValueError, match="format_version 9"):
        Embeddings.load(side)


def test_binned_uses_value_names_and_subset():
    e = Embeddings(np.zeros((9, 2)), {"age": np.arange(9)},
                   {"age": ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"]})
    b = e.binned("age", [3, 6], "band")
    assert b.names("band") == ["0-2..10-19", "20-29..40-49", "50-59..70+"]
    np.testing.assert_array_equal(b.label("band"), [0, 0, 0, 1, 1, 1, 2, 2, 2])
    s = b.subset(b.label("band") == 1)
    assert len(s) == 3 and s.names("band") == b.names("band")
    with pytest.raises(KeyError, match="no label 'race'"):
        e.label("race")


def test_dataset_labels_follow_subsets():
    ds = SyntheticFaces(30, image_size=16, num_identities=6)
    sub = torch.utils.data.Subset(torch.utils.data.Subset(ds, list(range(5, 25))), [0, 3, 7])
    labels, _ = dataset_labels(sub)
    np.testing.assert_array_equal(labels["identity"], ds.targets("identity").numpy()[[5, 8, 12]])


def test_open_dataset_errors():
    with pytest.raises(ValueError, match="unknown dataset"):
        open_dataset("celeb")
    with pytest.raises(ValueError, match="needs a root folder"):
        open_dataset("london")
    assert len(open_dataset("synthetic", num_samples=12, image_size=16)) == 12


@pytest.mark.data
def test_real_readers_give_their_attributes(london_dir, fairface_dir):
    lon = open_dataset("london", str(london_dir))
    labels, names = dataset_labels(lon)
    assert {"identity", "gender", "race", "expression"} <= set(labels)
    assert names["race"][:2] == ["white", "black"] and names["expression"] == ["neutral", "smiling"]
    ff = open_dataset("fairface", str(fairface_dir))
    labels, names = dataset_labels(ff)
    assert names["age"][0] == "0-2" and np.bincount(labels["age"]).tolist() == [60] * 9
