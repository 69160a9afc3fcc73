"""Training-time model set-up (issue 10): the ordinal head initialised from the training
labels once before a run trains from scratch (never on resume; ``ordinal.init_from_labels:
false`` keeps coral-pytorch's), ``model.pretrained`` (a torchvision-layout state dict the
test writes, a facecore checkpoint; the report of what loaded; a file of which nothing fits
is an error) and ``model.freeze`` (re-applied after the model is rebuilt on resume), and
the default learning rate of a pretrained run (the backbone's / 10)."""

from __future__ import annotations

import pytest
import torch
from train_cases import MemorySession

import facecore.train.loops as L
from facecore.models import AgeEstimator
from facecore.models.backbones import build_backbone
from facecore.models.ordinal import label_prior
from facecore.train import ConfigError, load_config
from facecore.train.datasets import build_splits
from facecore.train.loops import prepare_model, run_training
from facecore.train.optim import DEFAULT_LR, config_lr
from facecore.train.runner import prepare_run
from facecore.train.tasks import get_task

TINY = ["data.num_samples=96", "data.image_size=32", "data.batch_size=16", "run.workers=0"]


def _prior_tail(labels, k):
    p = label_prior(labels, k)
    return torch.logit(torch.flip(torch.cumsum(torch.flip(p, [0]), 0), [0])[1:])


@pytest.mark.parametrize("mono", [False, True])
def test_the_head_starts_from_the_training_labels(mono):
    cfg = load_config("age_coral_synthetic", [*TINY, "model.width=4",
                                              f"ordinal.monotone_biases={str(mono).lower()}"])
    assert cfg.ordinal.init_from_labels  # on by default
    splits = build_splits(cfg)
    task = get_task("age")
    model = task.build_model(cfg, splits.num_classes)
    prepare_model(cfg, model, splits, fresh=True)
    want = _prior_tail(splits.labels("train"), splits.num_classes)
    torch.testing.assert_close(model.head.biases().detach().double(), want, rtol=1e-5, atol=1e-5)
    # off: coral-pytorch's (K-1-k)/(K-1); a resumed run: left as built (the checkpoint loads)
    off = load_config("age_coral_synthetic", [*TINY, "model.width=4", "ordinal.init_from_labels=false",
                                              f"ordinal.monotone_biases={str(mono).lower()}"])
    for c, fresh in ((off, True), (cfg, False)):
        m = task.build_model(c, splits.num_classes)
        prepare_model(c, m, splits, fresh=fresh)
        k = splits.num_classes
        coral = torch.arange(k - 1, 0, -1, dtype=torch.float64) / (k - 1)
        torch.testing.assert_close(m.head.biases().detach().double(), coral, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("head", ["ce", "niu", "corn"])
def test_every_head_is_initialised_in_training(head):
    cfg = load_config("age_coral_synthetic", [*TINY, "model.width=4", f"ordinal.head={head}",
                                              "ordinal.monotone_biases=false"])
    splits = build_splits(cfg)
    model = get_task("age").build_model(cfg, splits.num_classes)
    ref = AgeEstimator("small_cnn", head, splits.num_classes, width=4)
    ref.init_head_from_labels(splits.labels("train"))
    prepare_model(cfg, model, splits, fresh=True)
    torch.testing.assert_close(model.head.fc.bias, ref.head.fc.bias)


def test_resume_never_reinitialises_the_head(monkeypatch):
    cfg = load_config("age_coral_synthetic", [*TINY, "model.width=4", "optim.epochs=1"])
    first = MemorySession()
    run_training(cfg, first)

    def boom(*a, **k):
        raise AssertionError("initialize called on resume")

    monkeypatch.setattr(type(get_task("age")), "initialize", boom)
    more = load_config("age_coral_synthetic", [*TINY, "model.width=4", "optim.epochs=2"])
    rest = MemorySession(first.states[-1])
    run_training(more, rest)
    assert [r["epoch"] for r in rest.reports] == [2]


# ------------------------------------------------------------------ fine-tuning


def _torchvision_file(tmp_path, seed=0):
    """A torchvision-layout ResNet-10 (width 8) state dict with an ImageNet-style fc."""
    torch.manual_seed(seed)
    state = build_backbone("resnet10", width=8).state_dict()
    state = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
    state["fc.weight"] = torch.randn(1000, 64)
    state["fc.bias"] = torch.zeros(1000)
    path = tmp_path / "resnet10_imagenet.pth"
    torch.save(state, path)
    return path, state


FT = [*TINY, "model.backbone=resnet10", "model.width=8", "ordinal.head=coral"]


@pytest.mark.timeout(300)
def test_pretrained_and_frozen_stages_through_training(tmp_path, capsys, monkeypatch):
    path, state = _torchvision_file(tmp_path)
    cfg = load_config("age_coral_synthetic", [*FT, f"model.pretrained={path}",
                                              "model.freeze=[stem, layer1]", "optim.epochs=1"])
    # the default lr of a fine-tuned run is the backbone's / 10 (batch 16: x sqrt(16/64))
    assert config_lr(cfg) == pytest.approx(DEFAULT_LR["resnet10"] / 10 * 0.5)
    prepare_run(cfg, out=None)  # the driver's check passes
    first = MemorySession()
    run_training(cfg, first)
    printed = capsys.readouterr().out
    assert f"model.pretrained: loaded {len(state) - 2} tensors from {path} (torchvision)" in printed
    assert "ignored 2 (fc.weight, fc.bias); 3 head tensors keep their initialisation" in printed
    sd = first.states[-1]["model"]["state_dict"]
    for k in ("conv1.weight", "bn1.weight", "bn1.running_mean", "layer1.0.conv1.weight",
              "layer1.0.bn2.running_var"):  # frozen: the file's values, statistics included
        assert torch.equal(sd["backbone." + k], state[k]), k
    assert not torch.equal(sd["backbone.layer2.0.conv1.weight"], state["layer2.0.conv1.weight"])
    # the head was initialised from the labels (not in the file), then trained
    assert "head.fc.weight" in sd
    # resume: the model is rebuilt, frozen again, the file is not loaded again
    monkeypatch.setattr(L, "load_pretrained", lambda *a, **k: pytest.fail("reloaded on resume"))
    more = load_config("age_coral_synthetic", [*FT, f"model.pretrained={path}",
                                               "model.freeze=[stem, layer1]", "optim.epochs=2"])
    rest = MemorySession(first.states[-1])
    run_training(more, rest)
    sd2 = rest.states[-1]["model"]["state_dict"]
    assert torch.equal(sd2["backbone.conv1.weight"], state["conv1.weight"])
    assert torch.equal(sd2["backbone.layer1.0.bn1.running_mean"], state["layer1.0.bn1.running_mean"])
    assert not torch.equal(sd2["backbone.layer3.0.conv1.weight"], sd["backbone.layer3.0.conv1.weight"])


def test_a_facecore_checkpoint_fine_tunes_with_its_head(tmp_path, capsys):
    from facecore.models import model_checkpoint

    cfg = load_config("age_coral_synthetic", [*TINY, "model.width=4"])
    splits = build_splits(cfg)
    src = get_task("age").build_model(cfg, splits.num_classes)
    with torch.no_grad():
        src.head.bias0.fill_(3.0)
    path = tmp_path / "age.pt"
    torch.save(model_checkpoint(src), path)
    ft = load_config("age_coral_synthetic", [*TINY, "model.width=4", f"model.pretrained={path}"])
    model = get_task("age").build_model(ft, splits.num_classes)
    report = prepare_model(ft, model, splits, fresh=True)
    assert report.kind == "facecore" and report.ok
    # the head came from the file, so it is not re-initialised from the labels
    assert float(model.head.bias0) == 3.0
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_pretrained_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"model.pretrained: file not found: .*nope.pth"):
        prepare_run(load_config("age_coral_synthetic", [*FT, f"model.pretrained={tmp_path}/nope.pth"]))
    junk = tmp_path / "junk.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, junk)
    cfg = load_config("age_coral_synthetic", [*FT, f"model.pretrained={junk}"])
    with pytest.raises(ConfigError, match=r"model.pretrained='.*junk.pth': no tensor of the pretrained weights"):
        prepare_run(cfg)
    splits = build_splits(cfg)  # the worker's check says the same
    with pytest.raises(ConfigError, match=r"model.pretrained='.*junk.pth': no tensor"):
        prepare_model(cfg, get_task("age").build_model(cfg, splits.num_classes), splits, fresh=True)
    notafile = tmp_path / "x.pth"
    notafile.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match=r"model.pretrained='.*x.pth': pretrained weights .* could not be read"):
        prepare_run(load_config("age_coral_synthetic", [*FT, f"model.pretrained={notafile}"]))
