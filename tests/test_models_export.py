"""Every model scripts (saved, loaded in a fresh process with only torch and the
compiled library, outputs equal to eager) and exports with torch.export (dynamic
batch) for forward and for a wrapper calling serve; checkpoints and user weights."""

from __future__ import annotations

import json

import pytest
import torch

import facecore
from facecore.formats import FormatError, ModelVersionError
from facecore.models import (
    AgeEstimator,
    FaceEmbedder,
    GenderClassifier,
    build_model,
    load_weights,
    model_checkpoint,
    model_from_checkpoint,
)

CASES = {
    "age_ce": lambda: AgeEstimator("small_cnn", "ce", 5, width=4),
    "age_niu": lambda: AgeEstimator("small_cnn", "niu", 5, width=4),
    "age_coral": lambda: AgeEstimator("small_cnn", "coral", 5, width=4, monotone_biases=True),
    "age_corn": lambda: AgeEstimator("resnet10", "corn", 5, width=4),
    "gender": lambda: GenderClassifier("small_cnn", width=4),
    "embedding": lambda: FaceEmbedder("resnet18", 16, width=4),
}


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = CASES[name]()
    # non-trivial batch-norm statistics, then inference mode
    model.train()
    with torch.no_grad():
        model(torch.rand(8, 3, 64, 64))
    if isinstance(model, GenderClassifier):
        model.temperature.fill_(1.7)
    return model.eval()


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


class Serve(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.serve(x)


@pytest.mark.slow
def test_script_save_and_load_in_a_fresh_process(tmp_path, fresh_python):
    expected = {}
    x = _images(3, seed=1)
    for name in CASES:
        model = _model(name)
        scripted = torch.jit.script(model)
        scripted.save(str(tmp_path / f"{name}.pt"))
        with torch.no_grad():
            eager = model.serve(x)
            for key, value in scripted.serve(x).items():
                torch.testing.assert_close(value, eager[key])
            torch.testing.assert_close(scripted(x), model(x))
        expected[name] = {k: v.tolist() for k, v in eager.items()}
    torch.save(x, tmp_path / "x.pt")
    out = fresh_python(
        f"""
        import json, torch
        torch.ops.load_library({facecore.library_path()!r})
        x = torch.load("x.pt")
        result = {{}}
        for name in {list(CASES)!r}:
            m = torch.jit.load(name + ".pt")
            with torch.no_grad():
                result[name] = {{k: v.tolist() for k, v in m.serve(x).items()}}
        print(json.dumps(result))
        """
    )
    got = json.loads(out.strip().splitlines()[-1])
    for name, outputs in expected.items():
        assert set(got[name]) == set(outputs)
        for key, value in outputs.items():
            torch.testing.assert_close(
                torch.tensor(got[name][key]), torch.tensor(value), rtol=1e-5, atol=1e-6
            )


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_torch_export_dynamic_batch_forward_and_serve(name):
    model = _model(name)
    batch = torch.export.Dim("batch", min=1, max=1024)
    ep_forward = torch.export.export(model, (_images(2),), dynamic_shapes=({0: batch},))
    ep_serve = torch.export.export(Serve(model), (_images(2),), dynamic_shapes=({0: batch},))
    for n in (1, 5):
        x = _images(n, seed=n)
        with torch.no_grad():
            torch.testing.assert_close(ep_forward.module()(x), model(x))
            got = ep_serve.module()(x)
            want = model.serve(x)
        assert set(got) == set(want)
        for key in want:
            torch.testing.assert_close(got[key], want[key])


def test_exported_program_saves_and_loads(tmp_path):
    model = _model("age_coral")
    batch = torch.export.Dim("batch", min=1, max=1024)
    ep = torch.export.export(Serve(model), (_images(2),), dynamic_shapes=({0: batch},))
    torch.export.save(ep, tmp_path / "m.pt2")
    loaded = torch.export.load(tmp_path / "m.pt2")
    x = _images(4, seed=3)
    for key, value in model.serve(x).items():
        torch.testing.assert_close(loaded.module()(x)[key], value)


@pytest.mark.parametrize("name", list(CASES))
def test_checkpoint_round_trip_with_weights_only(tmp_path, name):
    model = _model(name)
    path = tmp_path / "ckpt.pt"
    torch.save(model_checkpoint(model), path)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "facecore.model" and raw["config"] == json.loads(json.dumps(model.config))
    again = model_from_checkpoint(path)
    assert not again.training and type(again) is type(model)
    x = _images(2, seed=5)
    with torch.no_grad():
        for key, value in model.serve(x).items():
            torch.testing.assert_close(again.serve(x)[key], value)
    assert build_model(model.config).config == model.config


def test_loading_user_weights():
    model = _model("age_corn")
    x = _images(2, seed=7)
    # a bare state_dict saved by DataParallel / DDP, and one from torch.compile
    ddp = {"module." + k: v for k, v in model.state_dict().items()}
    fresh = build_model(model.config).eval()
    load_weights(fresh, ddp)
    torch.testing.assert_close(fresh(x), model(x))
    fresh = build_model(model.config).eval()
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh(x), model(x))
    fresh = build_model(model.config).eval()
    load_weights(fresh, {"_orig_mod." + k: v for k, v in model.state_dict().items()})
    torch.testing.assert_close(fresh(x), model(x))
    # a backbone trained elsewhere (same layout) loads into the age model's backbone
    other = AgeEstimator("resnet10", "coral", 9, width=4)
    other.backbone.load_state_dict(model.backbone.state_dict())
    torch.testing.assert_close(other.eval().backbone(x), model.backbone(x))


def test_checkpoint_errors(tmp_path):
    with pytest.raises(ValueError, match="not a facecore model checkpoint"):
        model_from_checkpoint({"state_dict": {}})
    ckpt = model_checkpoint(_model("gender"))
    ckpt["format_version"] = 99
    with pytest.raises(ModelVersionError, match="format_version 99; .*reads versions up to 1"):
        model_from_checkpoint(ckpt)
    with pytest.raises(FormatError, match="not a facecore model checkpoint .*'facecore.train'"):
        model_from_checkpoint({**ckpt, "format": "facecore.train"})
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        model_from_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"config\['task'\] must be one of"):
        build_model({"task": "pose"})
    with pytest.raises(ValueError, match="user backbone module"):
        build_model({"task": "age", "backbone": None, "num_classes": 4})
    with pytest.raises(ValueError, match="model has no facecore config"):
        model_checkpoint(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="source must be a state_dict"):
        load_weights(_model("gender"), {"a": 1})
    model = _model("gender")
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_weights(model, _model("embedding").state_dict(), strict=False)
