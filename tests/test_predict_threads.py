"""One predictor called from a thread pool returns exactly what the same calls return one
after another (issue 15, item 3): 4 and 8 threads x face detection on / off x TorchScript /
torch.export / eager, compared bit for bit (frozen result dataclasses, exact floats).

Detection on needs OpenCV and real faces (FairFace-540 photos pasted into larger scenes at
several sizes and places, plus scenes without a face); detection off runs everywhere.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image
from serving_cases import make_model

from facecore.data.transforms import PreprocessConfig
from facecore.serving import Predictor, export_model, load

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CONFIG = PreprocessConfig(input_size=32, resize=36, mean=(0.5,) * 3, std=(0.25,) * 3)
REPEATS = 3


@pytest.fixture(scope="module")
def predictors(tmp_path_factory):
    model = make_model("coral", seed=4)
    d = tmp_path_factory.mktemp("export")
    export_model(model, d, preprocess=CONFIG, age_offset=10)
    return {
        "torchscript": load(d, format="torchscript"),
        "export": load(d, format="export"),
        "eager": Predictor.from_model(model, preprocess=CONFIG, age_offset=10),
    }


def _backdrop(seed: int, h: int = 300, w: int = 400) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    base = np.stack([90 + xx // 12, 100 + yy // 10, 120 + 0 * xx], axis=2)
    noise = rng.integers(0, 20, (h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def _scenes(fairface_dir) -> list[Image.Image]:
    scenes = []
    if fairface_dir is not None:
        for i in range(1, 9):
            face = Image.open(fairface_dir / f"fairface_{i:04d}.jpg").convert("RGB")
            scene = _backdrop(i)
            size = 150 + 15 * i
            scene.paste(face.resize((size, size), Image.BILINEAR), (10 * i, 5 * i))
            scenes.append(scene)
    scenes += [_backdrop(100 + i) for i in range(4)]  # no face: the whole image is used
    return scenes


def _sequential_and_threaded(predictor, images, detect: bool, threads: int):
    sequential = [predictor.predict(img, detect=detect) for img in images]
    calls = [img for _ in range(REPEATS) for img in images]
    with ThreadPoolExecutor(threads) as pool:
        threaded = list(pool.map(lambda img: predictor.predict(img, detect=detect), calls))
    return sequential * REPEATS, threaded


@pytest.fixture(scope="module")
def real_scenes(request):
    try:
        d = request.getfixturevalue("fairface_dir")
    except pytest.skip.Exception:
        d = None
    return _scenes(d), d is not None


@pytest.mark.parametrize("threads", [4, 8])
@pytest.mark.parametrize("kind", ["torchscript", "export", "eager"])
def test_threads_without_detection_equal_sequential(predictors, real_scenes, kind, threads):
    images, _ = real_scenes
    want, got = _sequential_and_threaded(predictors[kind], images, False, threads)
    assert got == want


@pytest.mark.data
@pytest.mark.parametrize("threads", [4, 8])
@pytest.mark.parametrize("kind", ["torchscript", "export", "eager"])
def test_threads_with_detection_equal_sequential(predictors, real_scenes, kind, threads):
    pytest.importorskip("cv2", reason="face detection needs the detect extra (OpenCV)")
    images, real = real_scenes
    if not real:
        pytest.skip("needs the FairFace sample (faces to detect)")
    want, got = _sequential_and_threaded(predictors[kind], images, True, threads)
    assert sum(p[0].face_detected for p in want) >= 6  # the pasted faces are found
    assert not any(p[0].face_detected for p in want[8:12])  # and nothing in empty scenes
    assert got == want


@pytest.mark.data
@pytest.mark.parametrize("threads", [4, 8])
def test_detect_faces_from_threads_equals_sequential(real_scenes, threads):
    pytest.importorskip("cv2", reason="face detection needs the detect extra (OpenCV)")
    from facecore.serving.detect import detect_faces

    images, real = real_scenes
    if not real:
        pytest.skip("needs the FairFace sample (faces to detect)")
    want = [detect_faces(img) for img in images] * REPEATS
    with ThreadPoolExecutor(threads) as pool:
        got = list(pool.map(detect_faces, images * REPEATS))
    assert got == want
