"""Backbones: shapes over 64..224 px, sizes (parameter counts of the torchvision
ResNets), torchvision key layout, scripting, speed of the small CNN, errors."""

from __future__ import annotations

import time

import pytest
import torch

from facecore.models import BACKBONES, ResNet, SmallCNN, build_backbone

# torchvision resnet18 / resnet34 have 11,689,512 / 21,797,672 parameters, of
# which the 1000-way fc layer is 512 * 1000 + 1000 = 513,000.
TORCHVISION_PARAMS_WITHOUT_FC = {"resnet18": 11_689_512 - 513_000, "resnet34": 21_797_672 - 513_000}


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", ["resnet18", "resnet34"])
def test_resnet_matches_torchvision_size_and_layout(name):
    m = build_backbone(name)
    assert m.out_features == 512
    assert _n_params(m) == TORCHVISION_PARAMS_WITHOUT_FC[name]
    keys = set(m.state_dict())
    for key in (
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.conv1.weight",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.running_var",
        "layer4.1.bn2.weight",
    ):
        assert key in keys
    assert not any(k.startswith("fc.") for k in keys)
    assert m.config == {
        "name": name,
        "width": 64,
        "in_channels": 3,
        "layers": [2, 2, 2, 2] if name == "resnet18" else [3, 4, 6, 3],
    }


@pytest.mark.parametrize("size", [64, 96, 120, 224])
@pytest.mark.parametrize("name", BACKBONES)
def test_every_input_size_from_64_to_224(name, size):
    m = build_backbone(name, width=4).eval()
    out = m(torch.rand(2, 3, size, size))
    assert out.shape == (2, m.out_features)
    assert torch.isfinite(out).all()


def test_width_depth_and_grayscale_options():
    m = build_backbone("resnet18", width=8, in_channels=1)
    assert m.out_features == 64 and m.conv1.in_channels == 1
    assert m(torch.rand(3, 1, 64, 64)).shape == (3, 64)
    s = build_backbone("small_cnn", width=8, depth=3)
    assert s.out_features == 32 and s.config["depth"] == 3
    r = build_backbone("resnet", layers=(1, 2, 1, 1), width=4)
    assert r.config["name"] == "resnet" and r.config["layers"] == [1, 2, 1, 1]
    assert len(r.layer2) == 2
    # a named depth is recognised
    assert build_backbone("resnet", layers=(3, 4, 6, 3), width=4).config["name"] == "resnet34"
    assert isinstance(build_backbone("resnet10", width=4), ResNet)
    assert isinstance(build_backbone("small_cnn"), SmallCNN)


@pytest.mark.parametrize("name", ["resnet18", "small_cnn"])
def test_config_rebuilds_the_same_architecture(name):
    m = build_backbone(name, width=4)
    again = build_backbone(**{**m.config})
    assert [(k, v.shape) for k, v in again.state_dict().items()] == [
        (k, v.shape) for k, v in m.state_dict().items()
    ]


@pytest.mark.parametrize("name", BACKBONES)
def test_scripts_and_matches_eager(name):
    torch.manual_seed(0)
    m = build_backbone(name, width=4).eval()
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(torch.jit.script(m)(x), m(x))


def test_small_cnn_is_fast_on_one_core():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = build_backbone("small_cnn")
        x = torch.rand(32, 3, 64, 64)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            m(x).sum().backward()
            times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    # well under 100 ms for forward + backward of a 32 x 64 px batch (about 20 ms here)
    assert sorted(times)[2] < 0.1


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="backbone name must be one of"):
        build_backbone("vgg16")
    with pytest.raises(ValueError, match="width must be a positive int, got 0"):
        build_backbone("resnet18", width=0)
    with pytest.raises(ValueError, match="depth applies to 'small_cnn' only"):
        build_backbone("resnet18", depth=3)
    with pytest.raises(ValueError, match="layers applies to ResNet backbones only"):
        build_backbone("small_cnn", layers=(1, 1, 1, 1))
    with pytest.raises(ValueError, match="layers must be 4 positive block counts"):
        ResNet((2, 2, 2))
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        SmallCNN(in_channels=0)
