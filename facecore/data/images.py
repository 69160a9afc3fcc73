"""The one image decoder of facecore: image files (and PIL images) to 8-bit ``RGB`` / ``L``.

The dataset readers (:func:`facecore.data.load_image`, :func:`facecore.data.verify_image`),
the training transforms (:func:`facecore.data.transforms.to_tensor`) and the predictor
(:mod:`facecore.serving.inputs`) all decode through :func:`read_image` / :func:`to_8bit`, so
a file gives the same pixels in training and in serving, and a file facecore cannot read
gives the same error everywhere.

Modes (Pillow's names):

* 8-bit: ``1``, ``L``, ``LA``, ``P``, ``PA``, ``RGB``, ``RGBA``, ``RGBX``, ``CMYK``,
  ``YCbCr``: converted by Pillow (alpha is dropped, not composited).
* 16-bit grayscale: ``I;16`` / ``I;16L`` / ``I;16B`` / ``I;16N`` (16-bit PNG and TIFF) and
  ``I`` read from a PNG or PGM/PPM file (Pillow stretches a PGM's ``maxval`` to 0..65535):
  scaled to 8 bits by ``round(v * 255 / 65535)``, so a 16-bit file reads like its 8-bit
  version (16-bit RGB / RGBA PNGs already arrive as 8-bit ``RGB`` / ``RGBA`` from Pillow).
* Anything else (32-bit integer ``I`` images of unknown range, float ``F``, ``HSV``,
  ``LAB``, ...) is refused with :class:`ImageModeError`: one line naming the file, the mode
  and what to convert it to.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "EIGHT_BIT_MODES",
    "SIXTEEN_BIT_MODES",
    "SUPPORTED_MODES",
    "ImageDecodeError",
    "ImageModeError",
    "check_mode",
    "open_image",
    "read_image",
    "to_8bit",
]

EIGHT_BIT_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
SUPPORTED_MODES = EIGHT_BIT_MODES + SIXTEEN_BIT_MODES
#: File formats whose ``I`` mode holds 16-bit samples (0..65535).
_SIXTEEN_BIT_I_FORMATS = ("PNG", "PPM")
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError,
                  Image.DecompressionBombError)


class ImageDecodeError(ValueError):
    """A file is not a readable image (corrupt, truncated, not an image)."""


class ImageModeError(ValueError):
    """An image's pixel mode is one facecore does not read (see the module doc)."""


def _name(source: Any) -> str:
    if isinstance(source, bytes):
        return "'<bytes>'"
    if isinstance(source, str | os.PathLike):
        return repr(os.fspath(source))
    return "a PIL image"


def check_mode(img: Image.Image, source: str = "a PIL image", context: str = "") -> None:
    """Raise :class:`ImageModeError` unless :func:`to_8bit` reads ``img``'s mode.
    ``source`` names the file (quoted) in the message, ``context`` prefixes it (e.g.
    ``"image 3: "``)."""
    if img.mode in SUPPORTED_MODES:
        return
    if img.mode == "I" and img.format in _SIXTEEN_BIT_I_FORMATS:
        return
    kind = {"I": "32-bit integer", "F": "32-bit float"}.get(img.mode, "unsupported")
    raise ImageModeError(
        f"{context}unsupported PIL image mode {img.mode!r} ({kind}) in {source}: facecore "
        f"reads 8-bit modes {list(EIGHT_BIT_MODES)} and 16-bit grayscale; convert it to "
        "8-bit 'RGB' or 'L' first"
    )


def _sixteen_to_8bit(img: Image.Image) -> Image.Image:
    a = np.clip(np.asarray(img).astype(np.int64), 0, 65535)
    return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8), "L")


def to_8bit(
    img: Image.Image, mode: str = "RGB", source: str = "a PIL image", context: str = ""
) -> Image.Image:
    """``img`` in 8-bit ``mode`` (``"RGB"`` or ``"L"``), scaled as the module doc says;
    :class:`ImageModeError` (naming ``source``) for a mode facecore does not read."""
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    check_mode(img, source, context)
    if img.mode in SIXTEEN_BIT_MODES or img.mode == "I":
        img = _sixteen_to_8bit(img)
    elif img.mode in ("LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")  # drop alpha the same way for every alpha mode
    return img if img.mode == mode else img.convert(mode)


def open_image(source: str | os.PathLike | bytes, context: str = "") -> Image.Image:
    """Open and fully decode an image file (a path, or the file's bytes), in its own mode.

    Raises ``FileNotFoundError`` (no such file) or :class:`ImageDecodeError` (corrupt,
    truncated or not an image), one line naming the file (prefixed by ``context``).
    """
    name = _name(source)
    if not isinstance(source, bytes) and not os.path.isfile(source):
        raise FileNotFoundError(f"{context}no such image file: {name}")
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            img.load()
            out = img.copy()
            out.format = img.format  # copy() forgets the file format (16-bit 'I' needs it)
            return out
    except _DECODE_ERRORS as e:
        raise ImageDecodeError(
            f"{context}cannot decode image file {name} (corrupt, truncated or not an image): {e}"
        ) from e


def read_image(
    source: str | os.PathLike | bytes, mode: str = "RGB", context: str = ""
) -> Image.Image:
    """:func:`open_image` then :func:`to_8bit`: the 8-bit ``RGB`` / ``L`` image of a file."""
    return to_8bit(open_image(source, context), mode, _name(source), context)
