"""Turn what users pass to :meth:`facecore.serving.Predictor.predict` into model input.

Accepted images (one, or a list / tuple of them):

* ``PIL.Image.Image`` in modes ``1``, ``L``, ``LA``, ``P``, ``PA``, ``RGB``, ``RGBA``,
  ``RGBX``, ``CMYK``, ``YCbCr`` or 16-bit grayscale (converted to 8-bit RGB; alpha is
  dropped);
* a file path (``str`` / ``os.PathLike``) or encoded file content (``bytes``);

Files and PIL images go through facecore's one image decoder,
:mod:`facecore.data.images` (the dataset readers' too): 16-bit grayscale PNG / TIFF / PGM
is scaled to 8 bit like in training, and modes facecore does not read (32-bit integer,
float, ...) are refused with the same message as in the readers.
* ``numpy`` arrays ``[H, W]`` or ``[H, W, C]`` (C = 1, 3 or 4, RGB(A) order),
  ``uint8`` in 0..255 or float in ``[0, 1]``; ``[N, H, W, C]`` is a batch;
* ``torch`` tensors ``[C, H, W]`` (C = 1 or 3) or a batch ``[N, C, H, W]``, float in
  ``[0, 1]`` (or ``uint8``).

Decoded images are 8-bit PIL RGB or float32 numpy ``[H, W, 3]`` in ``[0, 1]`` (float
sources stay float, so no precision is lost); the predictor then applies
:func:`facecore.data.transforms.eval_pipeline`, the evaluation transform the model was
trained with (without normalisation: exported models normalise themselves).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from PIL import Image

from facecore.data.images import SUPPORTED_MODES, open_image, to_8bit

__all__ = [
    "IMAGE_TYPES_HELP",
    "SUPPORTED_MODES",
    "as_image_list",
    "load_image",
    "to_rgb",
]

IMAGE_TYPES_HELP = (
    "a PIL image, a file path, bytes of an image file, a numpy array [H, W] / [H, W, C] "
    "(uint8, or float in [0, 1]) or a tensor [C, H, W] (float in [0, 1])"
)

# One decoded image: 8-bit PIL RGB or float32 numpy [H, W, 3] in [0, 1].
Decoded = Image.Image | np.ndarray


def as_image_list(images: Any) -> list[Any]:
    """Split ``images`` into a list of single images (a 4-D array / tensor is a batch)."""
    if isinstance(images, (list, tuple)):
        return list(images)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return list(images.unbind(0))
    return [images]


def _where(index: int | None) -> str:
    return "image" if index is None else f"image {index}"


def load_image(path: str | os.PathLike | bytes, index: int | None = None) -> Image.Image:
    """Open and fully decode an image file (or file content) in its own mode; errors name
    the file (:func:`facecore.data.images.open_image`)."""
    return open_image(path, f"{_where(index)}: ")


def _pil_to_rgb(img: Image.Image, index: int | None, source: str = "a PIL image") -> Image.Image:
    return to_8bit(img, "RGB", source, f"{_where(index)}: ")


def _array_to_rgb(a: np.ndarray, index: int | None) -> Decoded:
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"{_where(index)}: numpy images must have shape [H, W] or [H, W, C] with C in "
            f"(1, 3, 4), got {list(a.shape)}"
        )
    if a.shape[2] == 4:
        a = a[:, :, :3]
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.dtype == np.uint8:
        return Image.fromarray(np.ascontiguousarray(a))
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(
            f"{_where(index)}: numpy images must be uint8 (0..255) or float (0..1), got dtype "
            f"{a.dtype}"
        )
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{_where(index)}: float image contains NaN or infinity")
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{_where(index)}: float images must have values in [0, 1], got [{lo:g}, {hi:g}] "
            "(divide 8-bit data by 255, or pass it as uint8)"
        )
    return np.ascontiguousarray(a)


def _tensor_to_rgb(t: torch.Tensor, index: int | None) -> Decoded:
    if t.dim() != 3 or t.size(0) not in (1, 3):
        raise ValueError(
            f"{_where(index)}: tensor images must have shape [C, H, W] with C in (1, 3) "
            f"(or [N, C, H, W] for a batch), got {list(t.shape)}"
        )
    if t.dtype == torch.uint8:
        return _array_to_rgb(t.detach().cpu().permute(1, 2, 0).numpy(), index)
    if not t.is_floating_point():
        raise TypeError(
            f"{_where(index)}: tensor images must be float in [0, 1] (or uint8), got {t.dtype}"
        )
    return _array_to_rgb(t.detach().cpu().float().permute(1, 2, 0).numpy(), index)


def to_rgb(image: Any, index: int | None = None) -> Decoded:
    """Decode one image to 8-bit PIL RGB or a float32 ``[H, W, 3]`` array in [0, 1]."""
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image, index)
    if isinstance(image, (str, os.PathLike, bytes)):
        name = "'<bytes>'" if isinstance(image, bytes) else repr(os.fspath(image))
        return _pil_to_rgb(load_image(image, index), index, name)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, index)
    if isinstance(image, torch.Tensor):
        return _tensor_to_rgb(image, index)
    raise TypeError(f"{_where(index)}: expected {IMAGE_TYPES_HELP}; got {type(image).__name__}")


def image_size(image: Decoded) -> tuple[int, int]:
    """``(width, height)``."""
    if isinstance(image, Image.Image):
        return image.size
    return int(image.shape[1]), int(image.shape[0])


def crop(image: Decoded, box: tuple[int, int, int, int]) -> Decoded:
    """Crop ``box = (left, top, right, bottom)`` (inside the image)."""
    if isinstance(image, Image.Image):
        return image.crop(box)
    left, top, right, bottom = box
    return image[top:bottom, left:right]
