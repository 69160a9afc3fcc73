"""Transforms vs hand-written numpy / Pillow oracles, PreprocessConfig round trips, Normalize export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from facecore.data import (
    CORAL_PREPROCESS,
    SYNTHETIC_PREPROCESS,
    Normalize,
    PreprocessConfig,
    load_image,
)
from facecore.data import transforms as T


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (10, 14, 3), dtype=np.uint8)


def test_to_tensor_matches_numpy(rgb):
    for x in (rgb, Image.fromarray(rgb), torch.from_numpy(rgb).permute(2, 0, 1).contiguous()):
        t = T.ToTensor()(x)
        assert t.dtype == torch.float32 and t.shape == (3, 10, 14)
        np.testing.assert_allclose(t.numpy(), rgb.transpose(2, 0, 1) / 255.0, atol=1e-7)
    g = T.to_tensor(Image.fromarray(rgb[:, :, 0]))
    assert g.shape == (1, 10, 14)


def test_center_crop_offsets(rgb):
    # H=10, W=14 -> crop (4, 5): top = round(3.0) = 3, left = round(4.5) = 4 (banker's)
    out = T.CenterCrop((4, 5))(rgb)
    np.testing.assert_array_equal(out, rgb[3:7, 4:9])
    pil = T.CenterCrop((4, 5))(Image.fromarray(rgb))
    np.testing.assert_array_equal(np.asarray(pil), rgb[3:7, 4:9])
    ten = T.CenterCrop((4, 5))(torch.from_numpy(rgb).permute(2, 0, 1))
    np.testing.assert_array_equal(ten.permute(1, 2, 0).numpy(), rgb[3:7, 4:9])
    with pytest.raises(ValueError, match=r"CenterCrop size \(11, 5\) is larger than the image \(10, 14\)"):
        T.CenterCrop((11, 5))(rgb)


def test_random_crop_is_some_window(rgb):
    g = torch.Generator().manual_seed(3)
    seen = set()
    for _ in range(50):
        out = T.RandomCrop(8, generator=g)(rgb)
        hits = [
            (i, j) for i in range(3) for j in range(7) if np.array_equal(out, rgb[i : i + 8, j : j + 8])
        ]
        assert len(hits) == 1
        seen.add(hits[0])
    assert len(seen) > 5  # positions vary, edges reachable


def test_flip_and_grayscale(rgb):
    np.testing.assert_array_equal(T.RandomHorizontalFlip(1.0)(rgb), rgb[:, ::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(0.0)(rgb), rgb)
    t = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    g = T.Grayscale(3)(t)
    expect = (0.299 * t[0] + 0.587 * t[1] + 0.114 * t[2])
    assert g.shape == (3, 10, 14)
    for c in range(3):
        torch.testing.assert_close(g[c], expect)
    # Pillow's own L conversion agrees to rounding
    pil = np.asarray(T.Grayscale(1)(Image.fromarray(rgb))).astype(float)
    np.testing.assert_allclose(pil, expect.numpy() * 255, atol=1.0)


def test_resize_shorter_side_and_pil_vs_tensor():
    img = np.random.default_rng(1).random((40, 60, 3)).astype(np.float32)
    r = T.Resize(20)
    assert r.target_size(40, 60) == (20, 30) and r.target_size(60, 40) == (30, 20)
    out_t = r(torch.from_numpy(img).permute(2, 0, 1))
    assert out_t.shape == (3, 20, 30)
    # exact 2x downscale, antialiased bilinear = separable triangle filter of support 2:
    # output i averages inputs 2i-1..2i+2 with weights (1, 3, 3, 1) / 8, renormalised at edges
    def tri(n_out: int) -> np.ndarray:
        m = np.zeros((n_out, 2 * n_out))
        for i in range(n_out):
            for j, w in zip(range(2 * i - 1, 2 * i + 3), (1, 3, 3, 1)):
                if 0 <= j < 2 * n_out:
                    m[i, j] = w
        return m / m.sum(1, keepdims=True)

    box = np.einsum("ij,jkc,lk->ilc", tri(20), img.astype(np.float64), tri(30))
    np.testing.assert_allclose(out_t.permute(1, 2, 0).numpy(), box, atol=1e-5)
    u8 = (img * 255).round().astype(np.uint8)
    out_p = np.asarray(r(Image.fromarray(u8))).astype(float) / 255
    np.testing.assert_allclose(out_p, box, atol=2.5 / 255)


def test_color_jitter_factors():
    t = torch.rand(3, 6, 7, generator=torch.Generator().manual_seed(0)) * 0.5
    out = T.ColorJitter.apply(t, 1.5, 1.0, 1.0, 0.0)
    torch.testing.assert_close(out, (t * 1.5).clamp(0, 1))
    grey = 0.299 * t[0] + 0.587 * t[1] + 0.114 * t[2]
    out = T.ColorJitter.apply(t, 1.0, 0.0, 1.0, 0.0)  # contrast 0 -> mean grey everywhere
    torch.testing.assert_close(out, torch.full_like(t, float(grey.mean())))
    out = T.ColorJitter.apply(t, 1.0, 1.0, 0.0, 0.0)  # saturation 0 -> greyscale
    torch.testing.assert_close(out, grey.expand(3, -1, -1))
    # hue shift by 1/3 turns pure red into pure green
    red = torch.zeros(3, 1, 1)
    red[0] = 1.0
    torch.testing.assert_close(T.ColorJitter.apply(red, 1, 1, 1, 1 / 3), torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1), atol=1e-5, rtol=0)
    # identity jitter and hsv round trip
    torch.testing.assert_close(T.ColorJitter.apply(t, 1, 1, 1, 0.0), t)
    torch.testing.assert_close(T._hsv_to_rgb(T._rgb_to_hsv(t)), t, atol=1e-5, rtol=0)
    # PIL / numpy in -> same kind out; a zero-width jitter keeps the pixels
    u8 = (t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    same = T.ColorJitter(brightness=(1, 1), contrast=(1, 1), saturation=(1, 1))
    out_pil = same(Image.fromarray(u8))
    assert isinstance(out_pil, Image.Image) and np.array_equal(np.asarray(out_pil), u8)
    assert np.array_equal(same(u8), u8)
    with pytest.raises(ValueError, match="hue range must lie in"):
        T.ColorJitter(hue=0.7)


def test_normalize_module_script_and_export():
    n = Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.5))
    x = torch.rand(2, 3, 5, 5)
    expect = (x - torch.tensor([0.5, 0.4, 0.3]).view(3, 1, 1)) / torch.tensor([0.2, 0.25, 0.5]).view(3, 1, 1)
    torch.testing.assert_close(n(x), expect)
    torch.testing.assert_close(torch.jit.script(n)(x), expect)
    batch = torch.export.Dim("batch", min=1)
    ep = torch.export.export(n, (x,), dynamic_shapes=({0: batch},))
    torch.testing.assert_close(ep.module()(torch.rand(4, 3, 5, 5)).shape, torch.Size([4, 3, 5, 5]))
    assert set(dict(n.named_buffers())) == {"mean", "std"}
    with pytest.raises(ValueError, match="std must be positive"):
        Normalize((0.5,), (0.0,))


def test_preprocess_config_roundtrip_and_pipelines():
    for cfg in (CORAL_PREPROCESS, SYNTHETIC_PREPROCESS, PreprocessConfig(100, 110, grayscale=True)):
        d = cfg.to_dict()
        assert PreprocessConfig.from_dict(d) == cfg
        import json

        assert PreprocessConfig.from_dict(json.loads(json.dumps(d))) == cfg
    assert CORAL_PREPROCESS.input_size == 120 and CORAL_PREPROCESS.resize == 128
    assert CORAL_PREPROCESS.mean == (0.0, 0.0, 0.0) and CORAL_PREPROCESS.std == (1.0, 1.0, 1.0)
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (150, 200, 3), dtype=np.uint8))
    ev = CORAL_PREPROCESS.eval_transform()(img)
    # oracle: Pillow square resize to 128 then the central 120 (offset 4)
    ref = np.asarray(img.resize((128, 128), Image.BILINEAR))[4:124, 4:124].transpose(2, 0, 1) / 255.0
    np.testing.assert_allclose(ev.numpy(), ref, atol=1e-6)
    assert CORAL_PREPROCESS.train_transform()(img).shape == (3, 120, 120)
    cfg = PreprocessConfig(input_size=32, resize=40, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    out = cfg.eval_transform()(img)
    raw = cfg.eval_transform(normalize=False)(img)
    assert out.shape == (3, 32, 32)
    torch.testing.assert_close(out, (raw - 0.5) / 0.5)
    with pytest.raises(ValueError, match=r"preprocess.resize must be >= input_size \(130\)"):
        PreprocessConfig(130, 128)
    with pytest.raises(ValueError, match="unknown preprocess keys"):
        PreprocessConfig.from_dict({"input_size": 1, "resize": 1, "bogus": 2})
    # one channel (mean / std of one value): the model sees the luma
    gray = PreprocessConfig(32, 40, mean=(0.5,), std=(0.25,))
    assert gray.channels == 1 and PreprocessConfig.from_dict(gray.to_dict()) == gray
    one = gray.eval_transform()(img)
    luma = cfg.eval_transform(normalize=False)(img.convert("L"))
    assert one.shape == (1, 32, 32)
    torch.testing.assert_close(one, (luma - 0.5) / 0.25)
    assert gray.eval_transform(normalize=False)(img).shape == (3, 32, 32)  # exported models'
    assert gray.train_transform()(img).shape == (1, 32, 32)


def test_load_image_inputs(tmp_path, rgb):
    p = tmp_path / "a.png"
    Image.fromarray(rgb).save(p)
    for x in (p, str(p), Image.fromarray(rgb), rgb, rgb.astype(np.float32) / 255.0,
              torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0):
        im = load_image(x)
        assert im.mode == "RGB" and im.size == (14, 10)
        np.testing.assert_array_equal(np.asarray(im), rgb)
    grey = load_image(rgb[:, :, 0])
    assert grey.mode == "RGB" and np.array_equal(np.asarray(grey)[:, :, 2], rgb[:, :, 0])
    with pytest.raises(TypeError, match="load_image expects a path"):
        load_image(3)
    with pytest.raises(ValueError, match="numpy images must be"):
        load_image(np.zeros((4, 4, 2), np.uint8))


def test_center_crop_fraction_by_hand_and_in_the_pipelines():
    from facecore.data.transforms import CenterCropFraction, eval_pipeline

    arr = np.random.default_rng(5).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    # side round(0.6 * 150) = 90, top round(60 / 2) = 30, left round(110 / 2) = 55
    np.testing.assert_array_equal(np.asarray(CenterCropFraction(0.6)(img)), arr[30:120, 55:145])
    np.testing.assert_array_equal(CenterCropFraction(0.6)(arr), arr[30:120, 55:145])
    t = torch.from_numpy(arr).permute(2, 0, 1)
    assert torch.equal(CenterCropFraction(0.6)(t), t[:, 30:120, 55:145])
    cfg = PreprocessConfig(input_size=32, resize=36, crop_fraction=0.6)
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["crop_fraction"] == 0.6
    # oracle: crop, Pillow resize of the 90 px square to 36, central 32 (offset 2)
    ref = np.asarray(Image.fromarray(arr[30:120, 55:145]).resize((36, 36), Image.BILINEAR))
    ref = ref[2:34, 2:34].transpose(2, 0, 1) / 255.0
    np.testing.assert_allclose(cfg.eval_transform()(img).numpy(), ref, atol=1e-6)
    np.testing.assert_allclose(eval_pipeline(cfg)(img).numpy(), ref, atol=1e-6)
    # the predictor's path: the exported metadata dict carries crop_fraction
    np.testing.assert_allclose(eval_pipeline(cfg.to_dict())(img).numpy(), ref, atol=1e-6)
    full = PreprocessConfig(input_size=32, resize=36)
    assert "CenterCropFraction" not in repr(full.fixed_transform())
    with pytest.raises(ValueError, match=r"crop_fraction must be in \(0, 1\]"):
        PreprocessConfig(input_size=32, resize=36, crop_fraction=0)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        CenterCropFraction(1.5)
