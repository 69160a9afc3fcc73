"""Fine-tuning from local weights: torchvision-layout ResNet state dicts (written here from
torchvision's key names and shapes, independently of facecore's modules), facecore
checkpoints, the load report, frozen stages, and the bottleneck ResNet-50/101 backbones
(parameter counts equal torchvision's); everything still scripts and exports."""

from __future__ import annotations

import warnings

import pytest
import torch

from facecore.models import AgeEstimator, GenderClassifier, build_backbone, model_checkpoint
from facecore.models.backbones import BACKBONES
from facecore.models.pretrained import FrozenBatchNorm2d, freeze_stages, load_pretrained
from facecore.train.optim import make_optimizer, parameter_groups

# torchvision (models/resnet.py): resnet50 / resnet101 have 25,557,032 / 44,549,160
# parameters, of which the 1000-way fc is 2048 * 1000 + 1000 = 2,049,000.
TORCHVISION_PARAMS_WITHOUT_FC = {
    "resnet18": 11_689_512 - 513_000,
    "resnet34": 21_797_672 - 513_000,
    "resnet50": 25_557_032 - 2_049_000,
    "resnet101": 44_549_160 - 2_049_000,
}
LAYOUT = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}


def torchvision_shapes(name: str, width: int = 64) -> dict[str, tuple[int, ...]]:
    """torchvision's ResNet state-dict keys and shapes, from its documented layout
    (``conv1``/``bn1`` stem; per block ``conv1..conv2`` (basic) or ``conv1..conv3``
    (bottleneck, stride on the 3x3), ``downsample.0/1`` on the first block of a stage
    when the shape changes; ``fc``)."""
    block, layers = LAYOUT[name]
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix, c):
        for k in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{k}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (width, 3, 7, 7)
    bn("bn1", width)
    inp = width
    for i, n in enumerate(layers):
        planes = width * 2**i
        out = planes * (4 if block == "bottleneck" else 1)
        for b in range(n):
            p = f"layer{i + 1}.{b}"
            if block == "basic":
                shapes[f"{p}.conv1.weight"] = (planes, inp, 3, 3)
                bn(f"{p}.bn1", planes)
                shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
            else:
                shapes[f"{p}.conv1.weight"] = (planes, inp, 1, 1)
                bn(f"{p}.bn1", planes)
                shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
                shapes[f"{p}.conv3.weight"] = (out, planes, 1, 1)
                bn(f"{p}.bn3", out)
            if b == 0 and (i > 0 or inp != out):
                shapes[f"{p}.downsample.0.weight"] = (out, inp, 1, 1)
                bn(f"{p}.downsample.1", out)
            inp = out
    shapes["fc.weight"] = (1000, inp)
    shapes["fc.bias"] = (1000,)
    return shapes


def torchvision_state(name: str, width: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in torchvision_shapes(name, width).items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            out[k] = torch.rand(shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(shape, generator=g) * 0.1
    return out


def _n_params(shapes):
    n = 0
    for k, s in shapes.items():
        if k.startswith("fc.") or k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        n += int(torch.Size(s).numel())
    return n


@pytest.mark.parametrize("name", list(LAYOUT))
def test_backbones_have_torchvisions_keys_shapes_and_parameter_counts(name):
    spec = torchvision_shapes(name)
    assert _n_params(spec) == TORCHVISION_PARAMS_WITHOUT_FC[name]  # the spec is torchvision's
    m = build_backbone(name)
    assert sum(p.numel() for p in m.parameters()) == TORCHVISION_PARAMS_WITHOUT_FC[name]
    ours = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert ours == {k: v for k, v in spec.items() if not k.startswith("fc.")}
    assert m.out_features == (2048 if LAYOUT[name][0] == "bottleneck" else 512)
    assert name in BACKBONES


def test_bottleneck_config_rebuilds_and_basic_configs_are_unchanged():
    m = build_backbone("resnet50", width=8)
    assert m.config == {"name": "resnet50", "width": 8, "in_channels": 3, "layers": [3, 4, 6, 3],
                        "block": "bottleneck"}
    again = build_backbone(**m.config)
    assert [(k, v.shape) for k, v in again.state_dict().items()] == [
        (k, v.shape) for k, v in m.state_dict().items()
    ]
    assert "block" not in build_backbone("resnet34", width=8).config
    custom = build_backbone("resnet", layers=(1, 1, 2, 1), block="bottleneck", width=4)
    assert custom.config["name"] == "resnet" and custom.out_features == 4 * 8 * 4
    with pytest.raises(ValueError, match="block must be one of"):
        build_backbone("resnet", layers=(1, 1, 1, 1), block="wide")


def test_a_torchvision_resnet50_state_dict_loads_into_an_age_model(tmp_path):
    state = torchvision_state("resnet50")
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(state, path)
    model = AgeEstimator("resnet50", "coral", 9)
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    report = load_pretrained(model, path)
    assert report.ok and report.kind == "torchvision"
    assert sorted(report.ignored) == ["fc.bias", "fc.weight"]
    assert set(report.not_in_source) == {"head.fc.weight", "head.bias"}
    assert len(report.loaded) == len(state) - 2
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, state[k]), k
    for k, v in model.head.state_dict().items():
        assert torch.equal(v, head_before[k])
    assert f"loaded {len(state) - 2} tensors" in report.summary()


def test_prefixes_bare_backbones_and_training_checkpoints():
    state = {"module." + k: v for k, v in torchvision_state("resnet18", width=8).items()}
    bb = build_backbone("resnet18", width=8)
    report = load_pretrained(bb, state)
    assert report.ok and not report.not_in_source
    assert torch.equal(bb.layer3[1].conv2.weight, state["module.layer3.1.conv2.weight"])


def test_shape_mismatches_are_reported_and_strict_changes_nothing():
    state = torchvision_state("resnet18", width=8)
    grey = GenderClassifier("resnet18", width=8, in_channels=1)
    before = {k: v.clone() for k, v in grey.state_dict().items()}
    with pytest.raises(ValueError, match=r"strict=True.*1 shape mismatches, not loaded \(backbone.conv1.weight \(8, 3, 7, 7\) vs \(8, 1, 7, 7\)\)"):
        load_pretrained(grey, state, strict=True)
    for k, v in grey.state_dict().items():
        assert torch.equal(v, before[k])
    with pytest.warns(UserWarning, match="1 shape mismatches"):
        report = load_pretrained(grey, state)
    assert not report.ok and [m[0] for m in report.mismatched] == ["backbone.conv1.weight"]
    assert torch.equal(grey.backbone.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    assert torch.equal(grey.backbone.conv1.weight, before["backbone.conv1.weight"])
    # another architecture: what fits loads, the rest is reported
    with pytest.warns(UserWarning, match=r"\d+ missing \(layer1.2.conv1.weight"):
        other = load_pretrained(build_backbone("resnet34", width=8), state)
    assert other.missing and not other.unexpected and not other.mismatched
    with pytest.warns(UserWarning, match="unexpected"):
        fewer = load_pretrained(build_backbone("resnet10", width=8), state)
    assert "layer1.1.conv1.weight" in fewer.unexpected and not fewer.missing
    with pytest.raises(ValueError, match="no tensor of the pretrained weights .* fits the model"):
        load_pretrained(build_backbone("resnet18", width=8), {"foo.weight": torch.zeros(3)})


def test_facecore_checkpoints_load_whole_models_or_their_backbones(tmp_path):
    torch.manual_seed(0)
    src = AgeEstimator("resnet10", "corn", 6, width=8)
    ckpt = model_checkpoint(src)
    torch.save({"model": ckpt, "epoch": 3}, tmp_path / "checkpoint.pt")  # a training checkpoint
    torch.manual_seed(1)
    same = AgeEstimator("resnet10", "corn", 6, width=8)
    report = load_pretrained(same, tmp_path / "checkpoint.pt")
    assert report.ok and report.kind == "facecore" and not report.not_in_source
    for k, v in same.state_dict().items():
        assert torch.equal(v, ckpt["state_dict"][k])
    # a new number of classes: the backbone loads, the head is reported
    with pytest.warns(UserWarning, match="shape mismatches"):
        r = load_pretrained(AgeEstimator("resnet10", "corn", 9, width=8), ckpt)
    assert {m[0] for m in r.mismatched} == {"head.fc.weight", "head.fc.bias"}
    bb = build_backbone("resnet10", width=8)
    r = load_pretrained(bb, ckpt)
    assert r.ok and set(r.ignored) == {"head.fc.weight", "head.fc.bias"}


def test_frozen_stages_do_not_train(tmp_path):
    torch.manual_seed(0)
    model = AgeEstimator("resnet18", "coral", 5, width=8)
    load_pretrained(model, torchvision_state("resnet18", width=8), freeze=("stem", "layer1"))
    bb = model.backbone
    assert isinstance(bb.bn1, FrozenBatchNorm2d) and isinstance(bb.layer1[0].bn2, FrozenBatchNorm2d)
    assert type(bb.layer2[0].bn1) is torch.nn.BatchNorm2d
    assert not bb.conv1.weight.requires_grad and bb.layer2[0].conv1.weight.requires_grad
    frozen = {k: v.clone() for k, v in bb.state_dict().items() if k.startswith(("conv1", "bn1", "layer1"))}
    layer2 = bb.layer2[0].conv1.weight.detach().clone()
    layer2_stats = bb.layer2[0].bn1.running_mean.clone()
    names = [n for g in parameter_groups(model, 0.05) for n in g["names"]]
    assert not any(n.startswith(("backbone.conv1", "backbone.bn1", "backbone.layer1")) for n in names)
    opt = make_optimizer(model, lr=1e-2)
    model.train()
    for _ in range(2):
        x, y = torch.rand(4, 3, 64, 64), torch.tensor([0, 1, 2, 4])
        loss = model.loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for k, v in bb.state_dict().items():
        if k in frozen:
            assert torch.equal(v, frozen[k]), k
    assert not torch.equal(bb.layer2[0].conv1.weight, layer2)
    assert not torch.equal(bb.layer2[0].bn1.running_mean, layer2_stats)
    # same keys as before freezing: a checkpoint rebuilds without FrozenBatchNorm2d
    rebuilt = AgeEstimator("resnet18", "coral", 5, width=8)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    model.eval()
    rebuilt.eval()
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(rebuilt(x), model(x))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_loaded_and_frozen_models_script_and_export(name):
    torch.manual_seed(0)
    model = AgeEstimator(name, "coral", 5, width=8, monotone_biases=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_pretrained(model, torchvision_state(name, width=8), freeze=("stem", "layer1", "layer2"))
    model.eval()
    x = torch.rand(3, 3, 64, 64)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        for k, v in model.serve(x).items():
            torch.testing.assert_close(scripted.serve(x)[k], v)
        batch = torch.export.Dim("batch", min=1, max=32)
        ep = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
        torch.testing.assert_close(ep.module()(x), model(x))
        assert ep.module()(torch.rand(6, 3, 64, 64)).shape == (6, 4)


def test_freeze_errors():
    with pytest.raises(ValueError, match="freeze stages must be in"):
        freeze_stages(build_backbone("resnet18", width=4), ["layer5"])
    with pytest.raises(ValueError, match="freeze applies to ResNet backbones"):
        freeze_stages(AgeEstimator("small_cnn", "coral", 4, width=4), ["stem"])
    assert len(freeze_stages(build_backbone("resnet10", width=4), ["all"])) > 0


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrained weights file .* does not exist"):
        load_pretrained(build_backbone("resnet18", width=4), tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="could not be read with torch.load"):
        load_pretrained(build_backbone("resnet18", width=4), tmp_path / "junk.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="must be a state dict"):
        load_pretrained(build_backbone("resnet18", width=4), tmp_path / "list.pth")
