"""Optional face detection for uncropped photos: OpenCV's Haar cascade (Viola-Jones).

Needs the ``detect`` extra (``pip install facecore[detect]``, i.e.
``opencv-python-headless<5``); ``cv2`` is imported on first use only, so the rest
of facecore works without it. Models expect face crops like their training data;
:func:`face_crop_box` returns the largest detection grown by ``margin`` (a
fraction of the box size on every side, clipped to the image), which is what
:meth:`facecore.serving.Predictor.predict` crops with ``detect=True``.

Boxes are ``(x, y, w, h)`` in pixels (OpenCV's convention); crop boxes are
``(left, top, right, bottom)`` (Pillow's).

Thread safety: an OpenCV ``CascadeClassifier`` keeps per-call scratch buffers, so one
instance used from several threads at once returns wrong boxes or fails OpenCV assertions.
Each thread therefore gets its own classifier (created on its first detection, kept for the
thread's lifetime), and :func:`detect_faces` from any number of threads gives exactly the
boxes of the same calls made one after another.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["DetectionUnavailable", "detect_faces", "largest_face", "face_crop_box"]

_CASCADE = "haarcascade_frontalface_default.xml"
_lock = threading.Lock()  # serialises the creation of classifiers
_local = threading.local()  # .cascade: this thread's classifier


class DetectionUnavailable(ImportError):
    """OpenCV (the ``detect`` extra) is not installed or its cascade cannot be loaded."""


def _cv2():
    try:
        import cv2
    except ImportError as e:
        raise DetectionUnavailable(
            "face detection needs OpenCV: install the extra with `pip install facecore[detect]` "
            f"(opencv-python-headless<5), or pass face crops with detect=False ({e})"
        ) from e
    return cv2


def _get_cascade() -> Any:
    """This thread's ``CascadeClassifier`` (never shared between threads: see the module doc)."""
    cascade = getattr(_local, "cascade", None)
    if cascade is None:
        with _lock:
            cv2 = _cv2()
            path = cv2.data.haarcascades + _CASCADE
            cascade = cv2.CascadeClassifier(path)
            if cascade.empty():
                raise DetectionUnavailable(f"OpenCV could not load the Haar cascade {path}")
        _local.cascade = cascade
    return cascade


def _gray_uint8(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("L"), dtype=np.uint8)
    a = np.asarray(image)
    if a.ndim == 3:
        a = a[:, :, :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if np.issubdtype(a.dtype, np.floating) and a.max(initial=0.0) <= 1.0:
        a = a * 255.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def detect_faces(
    image: Image.Image | np.ndarray,
    *,
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
    min_size: int | None = None,
) -> list[tuple[int, int, int, int]]:
    """Frontal faces in ``image`` (PIL, or numpy RGB / gray, uint8 or float in [0, 1]).
    Safe to call from several threads at once (one classifier per thread).

    Returns ``(x, y, w, h)`` boxes, largest first. Parameters are those of
    ``cv2.CascadeClassifier.detectMultiScale``; ``min_size`` (pixels) defaults to
    ``max(24, shorter side // 8)``: smaller faces are too small to classify, and
    skipping them makes detection faster and avoids small false positives.
    """
    cascade = _get_cascade()
    gray = _gray_uint8(image)
    if min_size is None:
        min_size = max(24, min(gray.shape[:2]) // 8)
    cv2 = _cv2()
    gray = cv2.equalizeHist(gray)
    found = cascade.detectMultiScale(
        gray, scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(min_size, min_size)
    )
    boxes = [tuple(int(v) for v in b) for b in (found if len(found) else [])]
    return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


def largest_face(image: Image.Image | np.ndarray, **kwargs) -> tuple[int, int, int, int] | None:
    """The largest detected face ``(x, y, w, h)``, or ``None``."""
    boxes = detect_faces(image, **kwargs)
    return boxes[0] if boxes else None


def face_crop_box(
    box: tuple[int, int, int, int], image_size: tuple[int, int], margin: float = 0.25
) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)``: ``box`` grown by ``margin * (w, h)`` per side, clipped.

    ``image_size`` is ``(width, height)``.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    x, y, w, h = box
    width, height = image_size
    dx, dy = int(round(margin * w)), int(round(margin * h))
    return (max(0, x - dx), max(0, y - dy), min(width, x + w + dx), min(height, y + h + dy))
