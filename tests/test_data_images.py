"""One image decoder for readers, transforms and the predictor (issue 15, item 8): 16-bit
grayscale files read like their 8-bit versions everywhere (they were washed out by the
readers), and modes facecore does not read are refused with the same message everywhere."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from serving_cases import make_model

from facecore.data import IdentityFolders, load_image, verify_image
from facecore.data.images import ImageModeError, read_image, to_8bit
from facecore.data.transforms import PreprocessConfig, to_tensor
from facecore.serving import Predictor

CONFIG = PreprocessConfig(input_size=32, resize=36, mean=(0.5,) * 3, std=(0.25,) * 3)


def _gray8(seed=0, h=40, w=48):
    # a dark face-sized image (mean ~0.1, like the example)
    return np.random.default_rng(seed).integers(0, 56, (h, w), dtype=np.uint8)


def _pgm16(path, values, maxval):
    h, w = values.shape
    path.write_bytes(f"P5\n{w} {h}\n{maxval}\n".encode() + values.astype(">u2").tobytes())


@pytest.fixture
def files(tmp_path):
    """The same picture as 8-bit PNG, 16-bit PNG, 16-bit TIFF, 16-bit PGM (maxval 65535 and
    1023), in one folder per format (IdentityFolders: 2 'people' x 1 image)."""
    a8 = [_gray8(0), _gray8(1)]
    out = {}
    for fmt in ("png8", "png16", "tif16", "pgm16", "pgm10"):
        root = tmp_path / fmt
        for person, a in enumerate(a8):
            d = root / f"s{person + 1}"
            d.mkdir(parents=True)
            a16 = a.astype(np.uint16) * 257
            if fmt == "png8":
                Image.fromarray(a).save(d / "1.png")
            elif fmt == "png16":
                Image.fromarray(a16).save(d / "1.png")
            elif fmt == "tif16":
                Image.fromarray(a16).save(d / "1.tif")
            elif fmt == "pgm16":
                _pgm16(d / "1.pgm", a16, 65535)
            else:  # 10-bit samples: Pillow stretches maxval 1023 to 0..65535
                _pgm16(d / "1.pgm", np.round(a.astype(np.float64) * 1023 / 255), 1023)
        out[fmt] = root
    return out, a8


@pytest.mark.parametrize("fmt", ["png16", "tif16", "pgm16", "pgm10"])
def test_sixteen_bit_files_read_like_their_8bit_version(files, fmt):
    roots, a8 = files
    want = IdentityFolders(roots["png8"])
    got = IdentityFolders(roots[fmt])
    assert got.num_skipped == 0
    for i in range(2):
        x, _ = got[i]
        ref, _ = want[i]
        assert x.shape == (3, 40, 48)
        torch.testing.assert_close(x, ref, rtol=0, atol=0)
        assert abs(float(x.mean()) - a8[i].mean() / 255) < 1e-6  # not washed out (~0.1)
    path = next(roots[fmt].glob("s1/*"))
    np.testing.assert_array_equal(np.asarray(load_image(path, "L")), a8[0])
    np.testing.assert_array_equal(np.asarray(read_image(path, "L")), a8[0])


@pytest.mark.parametrize("fmt", ["png16", "tif16", "pgm16"])
def test_predictor_reads_sixteen_bit_files_like_the_readers(files, fmt):
    roots, _ = files
    predictor = Predictor.from_model(make_model("coral", seed=3), preprocess=CONFIG)
    p16 = sorted(roots[fmt].glob("s*/*"))
    p8 = sorted(roots["png8"].glob("s*/*.png"))
    assert predictor.predict(p16) == predictor.predict(p8)
    # in-memory 16-bit PIL images too, and the training transform
    img16 = Image.open(p16[0])
    assert predictor.predict(img16) == predictor.predict(Image.open(p8[0]))
    torch.testing.assert_close(to_tensor(img16), to_tensor(Image.open(p8[0]).convert("RGB")))


def _refused_files(tmp_path):
    a = _gray8(2).astype(np.float32) / 255
    d = tmp_path / "odd" / "s1"
    d.mkdir(parents=True)
    Image.fromarray(a).save(d / "float.tif")                                  # mode F
    Image.fromarray((a * 1e6).astype(np.int32)).save(d / "int32.tif")          # mode I
    Image.fromarray(_gray8(3)).save(d / "fine.png")
    return d


def test_unreadable_modes_are_refused_with_the_same_message(tmp_path):
    d = _refused_files(tmp_path)
    predictor = Predictor.from_model(make_model("coral", seed=3), preprocess=CONFIG)
    for name, mode, kind in (("float.tif", "F", "32-bit float"), ("int32.tif", "I", "32-bit integer")):
        path = d / name
        message = f"unsupported PIL image mode '{mode}' ({kind}) in {str(path)!r}"
        with pytest.raises(ImageModeError) as e_pred:
            predictor.predict(path)
        with pytest.raises(ImageModeError) as e_load:
            load_image(path)
        assert message in str(e_pred.value) and str(e_pred.value) == "image 0: " + str(e_load.value)
        assert "convert it to 8-bit 'RGB' or 'L' first" in str(e_load.value)
        assert verify_image(path) == f"ImageModeError: {e_load.value}"
    # the readers skip and count them, with the message in their one warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = IdentityFolders(d.parent)
    assert len(ds) == 1 and sorted(ds.skipped["unsupported_image_mode"]) == [
        "s1/float.tif", "s1/int32.tif"]
    [w] = [str(w.message) for w in caught]
    assert "2 unsupported image mode" in w and "unsupported PIL image mode 'F'" in w
    # verify=False: found at load time, the next readable item is used, the message warned
    with pytest.warns(UserWarning, match="unsupported PIL image mode"):
        lazy = IdentityFolders(d.parent, verify=False)
        x, _ = lazy[[p.name for p in lazy.paths].index("float.tif")]
    assert x.shape == (3, 40, 48)


def test_to_8bit_modes():
    assert to_8bit(Image.new("I;16", (3, 2), 65535)).getextrema() == ((255, 255),) * 3
    assert to_8bit(Image.new("I;16B", (3, 2), 257), "L").getextrema() == (1, 1)
    assert to_8bit(Image.new("LA", (3, 2), (100, 7))).getpixel((0, 0)) == (100, 100, 100)
    with pytest.raises(ImageModeError, match="'HSV' \\(unsupported\\) in a PIL image"):
        to_8bit(Image.new("HSV", (3, 2)))
    with pytest.raises(ImageModeError, match="'I' \\(32-bit integer\\)"):
        to_8bit(Image.new("I", (3, 2)))  # in memory: no 16-bit file format to trust
