"""Optional face detection (OpenCV Haar cascade) in the predictor."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from serving_cases import make_model

import facecore.serving.detect as detect
from facecore.data.transforms import PreprocessConfig
from facecore.serving import Predictor

CONFIG = PreprocessConfig(input_size=32, resize=36, mean=(0.5,) * 3, std=(0.25,) * 3)


@pytest.fixture(scope="module")
def predictor():
    return Predictor.from_model(make_model("coral", seed=4), preprocess=CONFIG, age_offset=10)


@pytest.fixture
def no_opencv(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 -> ImportError
    monkeypatch.setattr(detect, "_local", threading.local())  # no cached classifier


def test_missing_opencv_names_the_extra(no_opencv, predictor):
    img = Image.new("RGB", (64, 64))
    with pytest.raises(detect.DetectionUnavailable, match=r"pip install facecore\[detect\]"):
        detect.detect_faces(img)
    with pytest.raises(ImportError, match=r"opencv-python-headless<5"):
        predictor.predict(img, detect=True)
    assert len(predictor.predict(img)) == 1  # detection off: no OpenCV needed


def test_face_crop_box_grows_and_clips():
    assert detect.face_crop_box((40, 50, 100, 80), (400, 300), margin=0.25) == (15, 30, 165, 150)
    assert detect.face_crop_box((10, 5, 100, 80), (120, 90), margin=0.5) == (0, 0, 120, 90)
    assert detect.face_crop_box((10, 5, 30, 30), (120, 90), margin=0.0) == (10, 5, 40, 35)
    with pytest.raises(ValueError, match="margin must be >= 0"):
        detect.face_crop_box((0, 0, 5, 5), (10, 10), margin=-0.1)


def _iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / (aw * ah + bw * bh - inter)


@pytest.mark.data
def test_detect_and_crop_a_real_face_in_a_larger_photo(fairface_dir, predictor):
    pytest.importorskip("cv2", reason="face detection needs the detect extra (OpenCV)")
    face = Image.open(fairface_dir / "fairface_0001.jpg").convert("RGB")  # 448 x 448 crop
    [box] = detect.detect_faces(face)
    x, y, w, h = box
    assert w > 100 and x < 224 < x + w and y < 224 < y + h  # a face near the centre
    # an "uncropped photo": the face pasted, scaled by 2/3, into a larger scene
    s = 300 / 448
    yy, xx = np.mgrid[0:480, 0:640]
    backdrop = np.stack([100 + xx // 16, 110 + yy // 12, 130 + 0 * xx], axis=2).astype(np.uint8)
    scene = Image.fromarray(backdrop)
    scene.paste(face.resize((300, 300), Image.BILINEAR), (300, 120))
    found = detect.largest_face(scene)
    expected = (300 + round(x * s), 120 + round(y * s), round(w * s), round(h * s))
    assert found is not None and _iou(found, expected) > 0.6, (found, expected)

    [p] = predictor.predict(scene, detect=True)
    assert p.face_detected is True
    crop = detect.face_crop_box(found, scene.size, predictor.face_margin)
    assert p.face_box == crop
    [by_hand] = predictor.predict(scene.crop(crop))
    assert p.age == pytest.approx(by_hand.age, abs=1e-6)
    assert p.class_probs == pytest.approx(by_hand.class_probs, abs=1e-6)
    # a float array of the same scene finds the same face
    [pf] = predictor.predict(np.asarray(scene).astype(np.float32) / 255, detect=True)
    assert pf.face_detected is True and pf.face_box == crop


def test_no_face_falls_back_to_the_whole_image(predictor):
    pytest.importorskip("cv2", reason="face detection needs the detect extra (OpenCV)")
    blank = Image.new("RGB", (80, 60), (128, 128, 128))
    [p] = predictor.predict(blank, detect=True)
    [whole] = predictor.predict(blank)
    assert p.face_detected is False and p.face_box is None
    assert p.age == whole.age and whole.face_detected is None
    assert p.to_dict()["face_detected"] is False
    assert predictor.predict([], detect=True) == []
    torch.testing.assert_close(
        torch.tensor(p.class_probs), torch.tensor(whole.class_probs), rtol=0, atol=0
    )
