r"""Image transforms without torchvision (Pillow / numpy / torch), and preprocessing presets.

Every transform accepts a ``PIL.Image``, a numpy array (``HxW`` or ``HxWxC``; ``uint8`` in
0..255 or float in [0, 1]) or a torch tensor (``[C, H, W]`` or ``[N, C, H, W]``; float in
[0, 1] or ``uint8``) and returns the same kind it was given, except :class:`ToTensor`
(always a float32 tensor) and :class:`Normalize` (tensor in, tensor out).

Conventions (they match torchvision's, so pipelines port over unchanged):

* ``size`` as an int in :class:`Resize` means *shorter side* (aspect ratio kept,
  longer side ``int(size * long / short)``); a pair ``(h, w)`` means exactly that size.
  Resizing is bilinear: Pillow's ``BILINEAR`` filter for PIL / uint8 arrays (antialiased
  when downscaling), ``torch.nn.functional.interpolate(..., antialias=True)`` for tensors.
* :class:`CenterCrop` puts the crop at ``top = round((H - h) / 2)``,
  ``left = round((W - w) / 2)`` (Python ``round`` on ``.5``, as torchvision does).
* :class:`Grayscale` uses ITU-R 601-2 luma ``L = 0.299 R + 0.587 G + 0.114 B`` (Pillow's).
* :class:`ColorJitter` applies brightness (``x * b``), contrast (blend with the mean grey
  level), saturation (blend with the greyscale image), then hue (rotation of the HSV hue),
  each factor drawn uniformly from its range, in that fixed order; results are clamped to
  [0, 1].
* Randomness comes from ``torch``'s global generator (seeded per DataLoader worker by
  PyTorch) or from an explicit ``generator=``.

:class:`PreprocessConfig` bundles what a model needs to see at inference time
(``input_size``, ``resize``, ``mean``, ``std``, ``grayscale``); it is the one form of that
spec everywhere (training, export metadata, the predictor), serialises with
``to_dict()`` / ``from_dict()`` and builds ``train_transform()`` / ``eval_transform()``.
Presets:

* :data:`CORAL_PREPROCESS`: the CORAL paper's pipeline, checked against its code
  (Raschka-research-group/coral-cnn, ``model-code/*.py``): ``Resize((128, 128))`` (a square
  resize, not shorter side), ``RandomCrop(120)`` for training / ``CenterCrop(120)`` for
  evaluation, ``ToTensor()`` and **no** normalisation (so ``mean = (0, 0, 0)``,
  ``std = (1, 1, 1)``; the code does not use ImageNet statistics).
* :data:`SYNTHETIC_PREPROCESS`: the synthetic faces' default, 64 px in, no resize / crop,
  normalised with mean 0.5 / std 0.25 per channel.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from facecore.data.images import to_8bit

__all__ = [
    "CORAL_PREPROCESS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LUMA",
    "RESIZE_MODES",
    "SYNTHETIC_PREPROCESS",
    "CenterCrop",
    "CenterCropFraction",
    "ColorJitter",
    "Compose",
    "Grayscale",
    "Normalize",
    "PreprocessConfig",
    "RandomCrop",
    "RandomHorizontalFlip",
    "Resize",
    "ToTensor",
    "as_preprocess",
    "eval_pipeline",
    "to_tensor",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: ITU-R 601-2 luma weights of R, G, B (Pillow's ``convert("L")``); the one definition,
#: also used by the exported :class:`facecore.serving.ServingModule`.
LUMA = (0.299, 0.587, 0.114)


# ----------------------------------------------------------------------------- helpers


def _size_pair(size: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        if size <= 0:
            raise ValueError(f"{name} must be a positive int or (h, w), got {size}")
        return int(size), int(size)
    if isinstance(size, Sequence) and len(size) == 2 and all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in size
    ):
        return int(size[0]), int(size[1])
    raise ValueError(f"{name} must be a positive int or a pair (h, w) of positive ints, got {size!r}")


def _check_image(img: Any) -> None:
    if isinstance(img, Image.Image | np.ndarray | torch.Tensor):
        return
    raise TypeError(
        f"expected a PIL.Image, numpy array or torch.Tensor image, got {type(img).__name__}"
    )


def _hw(img: Any) -> tuple[int, int]:
    if isinstance(img, Image.Image):
        return img.height, img.width
    if isinstance(img, np.ndarray):
        return int(img.shape[0]), int(img.shape[1])
    return int(img.shape[-2]), int(img.shape[-1])


def to_tensor(img: Any) -> torch.Tensor:
    """Convert an image to a float32 tensor ``[C, H, W]`` in [0, 1].

    PIL images are converted as-is (``L`` gives one channel, ``RGB`` three; other modes
    are converted to 8-bit ``RGB`` first by :func:`facecore.data.images.to_8bit`); ``uint8`` data is divided by 255; float data is kept
    (assumed already in [0, 1]); tensors pass through (``uint8`` tensors divided by 255).
    """
    _check_image(img)
    if isinstance(img, torch.Tensor):
        if img.dtype == torch.uint8:
            return img.float().div_(255.0)
        if not img.is_floating_point():
            raise TypeError(f"tensor images must be uint8 or floating point, got {img.dtype}")
        return img.float()
    if isinstance(img, Image.Image):
        if img.mode not in ("L", "RGB"):
            img = to_8bit(img, "RGB")  # facecore's one decoder (16-bit scaled, odd modes refused)
        arr = np.asarray(img)
    else:
        arr = img
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"numpy images must be HxW or HxWxC, got shape {arr.shape}")
    t = torch.from_numpy(np.array(arr.transpose(2, 0, 1), copy=True))
    if t.dtype == torch.uint8:
        return t.float().div_(255.0)
    if not t.is_floating_point():
        raise TypeError(f"numpy images must be uint8 or floating point, got {arr.dtype}")
    return t.float()


def _from_tensor_like(t: torch.Tensor, like: Any) -> Any:
    """Return float tensor ``t`` ([C, H, W] in [0, 1]) as the same kind of image as ``like``."""
    if isinstance(like, torch.Tensor):
        if like.dtype == torch.uint8:
            return (t * 255.0).round_().clamp_(0, 255).to(torch.uint8)
        return t.to(like.dtype)
    if isinstance(like, np.ndarray):
        arr = t.numpy().transpose(1, 2, 0)
        if like.ndim == 2:
            arr = arr[:, :, 0]
        if like.dtype == np.uint8:
            return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
        return arr.astype(like.dtype, copy=False)
    arr = np.clip(np.rint(t.numpy().transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)
    if arr.shape[2] == 1:
        return Image.fromarray(arr[:, :, 0])
    return Image.fromarray(arr)


def _crop(img: Any, top: int, left: int, h: int, w: int) -> Any:
    if isinstance(img, Image.Image):
        return img.crop((left, top, left + w, top + h))
    if isinstance(img, np.ndarray):
        return img[top : top + h, left : left + w]
    return img[..., top : top + h, left : left + w]


def _check_crop(img: Any, h: int, w: int, name: str) -> tuple[int, int]:
    H, W = _hw(img)
    if h > H or w > W:
        raise ValueError(f"{name} size ({h}, {w}) is larger than the image ({H}, {W})")
    return H, W


# ----------------------------------------------------------------------------- transforms


class Compose:
    """Apply transforms in order: ``Compose([Resize(128), CenterCrop(120), ToTensor()])``."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, img: Any) -> Any:
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


class Resize:
    """Bilinear resize; ``size`` int = shorter side (aspect kept), ``(h, w)`` = exact size."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = size
        _size_pair(size, "size")

    def target_size(self, h: int, w: int) -> tuple[int, int]:
        if isinstance(self.size, numbers.Integral):
            s = int(self.size)
            if h <= w:
                return s, int(s * w / h)
            return int(s * h / w), s
        return int(self.size[0]), int(self.size[1])

    def __call__(self, img: Any) -> Any:
        _check_image(img)
        H, W = _hw(img)
        h, w = self.target_size(H, W)
        if (h, w) == (H, W):
            return img
        if isinstance(img, Image.Image):
            return img.resize((w, h), Image.BILINEAR)
        if isinstance(img, np.ndarray) and img.dtype == np.uint8:
            pil = Image.fromarray(img)
            return np.asarray(pil.resize((w, h), Image.BILINEAR))
        t = to_tensor(img) if not isinstance(img, torch.Tensor) else img
        squeeze = t.dim() == 3
        x = t.unsqueeze(0) if squeeze else t
        src_dtype = x.dtype
        x = x.float() if src_dtype == torch.uint8 else x
        y = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        y = y.squeeze(0) if squeeze else y
        if isinstance(img, np.ndarray):
            return _from_tensor_like(y, img)
        if src_dtype == torch.uint8:
            return y.round_().clamp_(0, 255).to(torch.uint8)
        return y

    def __repr__(self) -> str:
        return f"Resize(size={self.size!r})"


class CenterCrop:
    """Crop the centre ``size`` (int or ``(h, w)``); ``top = round((H - h) / 2)``."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.h, self.w = _size_pair(size, "size")

    def __call__(self, img: Any) -> Any:
        _check_image(img)
        H, W = _check_crop(img, self.h, self.w, "CenterCrop")
        top = int(round((H - self.h) / 2.0))
        left = int(round((W - self.w) / 2.0))
        return _crop(img, top, left, self.h, self.w)

    def __repr__(self) -> str:
        return f"CenterCrop(size=({self.h}, {self.w}))"


class CenterCropFraction:
    """Crop the centred square whose side is ``fraction`` of the shorter side
    (``round(fraction * min(H, W))``, at least 1 px), placed as :class:`CenterCrop` does.

    For wide-margin face crops (FairFace's 448 px crops carry the face in the middle
    ~60%) this zooms onto the face before the resize; the CORAL code's MORPH-2 pipeline
    does the same with ``CenterCrop(140)`` on 200 px aligned faces (``fraction=0.7``).
    ``fraction=1`` keeps the central square of the shorter side."""

    def __init__(self, fraction: float) -> None:
        f = float(fraction)
        if not math.isfinite(f) or not 0.0 < f <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        self.fraction = f

    def __call__(self, img: Any) -> Any:
        _check_image(img)
        H, W = _hw(img)
        side = max(1, int(round(self.fraction * min(H, W))))
        return CenterCrop(side)(img)

    def __repr__(self) -> str:
        return f"CenterCropFraction(fraction={self.fraction})"


class RandomCrop:
    """Crop a ``size`` window at a uniformly random position (offsets inclusive of the edges)."""

    def __init__(
        self, size: int | Sequence[int], *, generator: torch.Generator | None = None
    ) -> None:
        self.h, self.w = _size_pair(size, "size")
        self.generator = generator

    def __call__(self, img: Any) -> Any:
        _check_image(img)
        H, W = _check_crop(img, self.h, self.w, "RandomCrop")
        top = int(torch.randint(0, H - self.h + 1, (1,), generator=self.generator))
        left = int(torch.randint(0, W - self.w + 1, (1,), generator=self.generator))
        return _crop(img, top, left, self.h, self.w)

    def __repr__(self) -> str:
        return f"RandomCrop(size=({self.h}, {self.w}))"


def hflip(img: Any) -> Any:
    """Mirror an image left-right."""
    _check_image(img)
    if isinstance(img, Image.Image):
        return img.transpose(Image.FLIP_LEFT_RIGHT)
    if isinstance(img, np.ndarray):
        return np.ascontiguousarray(img[:, ::-1])
    return img.flip(-1)


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``."""

    def __init__(self, p: float = 0.5, *, generator: torch.Generator | None = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = p
        self.generator = generator

    def __call__(self, img: Any) -> Any:
        if float(torch.rand((), generator=self.generator)) < self.p:
            return hflip(img)
        _check_image(img)
        return img

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


def _grey(t: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma of a [3, H, W] tensor, shape [1, H, W]."""
    r, g, b = t[0], t[1], t[2]
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(0)


class Grayscale:
    """Luma ``0.299 R + 0.587 G + 0.114 B``, replicated to ``num_output_channels`` (1 or 3)."""

    def __init__(self, num_output_channels: int = 1) -> None:
        if num_output_channels not in (1, 3):
            raise ValueError(f"num_output_channels must be 1 or 3, got {num_output_channels}")
        self.num_output_channels = num_output_channels

    def __call__(self, img: Any) -> Any:
        _check_image(img)
        if isinstance(img, Image.Image):
            g = img.convert("L")
            return g if self.num_output_channels == 1 else g.convert("RGB")
        t = to_tensor(img)
        if t.shape[-3] == 1:
            g = t
        elif t.shape[-3] == 3:
            g = _grey(t) if t.dim() == 3 else torch.stack([_grey(x) for x in t])
        else:
            raise ValueError(f"Grayscale needs 1 or 3 channels, got {t.shape[-3]}")
        if self.num_output_channels == 3:
            g = g.expand(*g.shape[:-3], 3, *g.shape[-2:]).contiguous()
        if isinstance(img, torch.Tensor):
            return _from_tensor_like(g, img)
        if isinstance(img, np.ndarray):
            out = _from_tensor_like(g, np.zeros((1, 1, 1), dtype=img.dtype))
            return out[:, :, 0] if self.num_output_channels == 1 and img.ndim == 2 else out
        return g

    def __repr__(self) -> str:
        return f"Grayscale(num_output_channels={self.num_output_channels})"


def _rgb_to_hsv(t: torch.Tensor) -> torch.Tensor:
    r, g, b = t[0], t[1], t[2]
    maxc, _ = t.max(dim=0)
    minc, _ = t.min(dim=0)
    v = maxc
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    dc = delta.clamp_min(1e-12)
    rc, gc, bc = (maxc - r) / dc, (maxc - g) / dc, (maxc - b) / dc
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, v])


def _hsv_to_rgb(t: torch.Tensor) -> torch.Tensor:
    h, s, v = t[0], t[1], t[2]
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, tt = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    r = torch.stack([v, q, p, p, tt, v]).gather(0, i.unsqueeze(0))[0]
    g = torch.stack([tt, v, v, q, p, p]).gather(0, i.unsqueeze(0))[0]
    b = torch.stack([p, p, tt, v, v, q]).gather(0, i.unsqueeze(0))[0]
    return torch.stack([r, g, b])


def _jitter_range(value: float | Sequence[float], name: str, center: float, bound: float):
    if isinstance(value, numbers.Number):
        if value < 0:
            raise ValueError(f"{name} must be non-negative, got {value}")
        lo, hi = center - float(value), center + float(value)
        if center == 1.0:
            lo = max(lo, 0.0)
    else:
        lo, hi = (float(v) for v in value)
    if not (center - bound <= lo <= hi <= center + bound):
        raise ValueError(f"{name} range must lie in [{center - bound}, {center + bound}], got {value!r}")
    return lo, hi


class ColorJitter:
    """Random brightness / contrast / saturation / hue (see the module docstring).

    Each argument is ``x`` (factor drawn from ``[max(0, 1 - x), 1 + x]``; for hue a shift
    from ``[-x, x]`` with ``x <= 0.5``) or an explicit ``(lo, hi)``.
    """

    def __init__(
        self,
        brightness: float | Sequence[float] = 0.0,
        contrast: float | Sequence[float] = 0.0,
        saturation: float | Sequence[float] = 0.0,
        hue: float | Sequence[float] = 0.0,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        self.brightness = _jitter_range(brightness, "brightness", 1.0, math.inf)
        self.contrast = _jitter_range(contrast, "contrast", 1.0, math.inf)
        self.saturation = _jitter_range(saturation, "saturation", 1.0, math.inf)
        self.hue = _jitter_range(hue, "hue", 0.0, 0.5)
        self.generator = generator

    def _draw(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=self.generator))

    @staticmethod
    def apply(
        t: torch.Tensor, brightness: float, contrast: float, saturation: float, hue: float
    ) -> torch.Tensor:
        """Deterministic jitter of a float [3, H, W] tensor in [0, 1] with the given factors."""
        t = (t * brightness).clamp(0, 1)
        t = (contrast * t + (1 - contrast) * _grey(t).mean()).clamp(0, 1)
        t = (saturation * t + (1 - saturation) * _grey(t)).clamp(0, 1)
        if hue != 0.0:
            hsv = _rgb_to_hsv(t)
            hsv[0] = (hsv[0] + hue) % 1.0
            t = _hsv_to_rgb(hsv).clamp(0, 1)
        return t

    def __call__(self, img: Any) -> Any:
        _check_image(img)
        t = to_tensor(img)
        if t.dim() != 3 or t.shape[0] != 3:
            raise ValueError(f"ColorJitter needs one RGB image [3, H, W], got {tuple(t.shape)}")
        out = self.apply(
            t,
            self._draw(*self.brightness),
            self._draw(*self.contrast),
            self._draw(*self.saturation),
            self._draw(*self.hue),
        )
        return _from_tensor_like(out, img)

    def __repr__(self) -> str:
        return (
            f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation}, hue={self.hue})"
        )


class ToTensor:
    """Convert to a float32 tensor ``[C, H, W]`` in [0, 1] (see :func:`to_tensor`)."""

    def __call__(self, img: Any) -> torch.Tensor:
        return to_tensor(img)

    def __repr__(self) -> str:
        return "ToTensor()"


class Normalize(nn.Module):
    r"""Per-channel ``(x - mean) / std`` as a scriptable ``nn.Module`` (mean/std are buffers).

    Works on ``[C, H, W]`` and ``[N, C, H, W]`` float tensors; ``torch.jit.script`` and
    ``torch.export`` friendly, so an exported model can carry its own normalisation.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        m = torch.as_tensor(list(mean), dtype=torch.float32)
        s = torch.as_tensor(list(std), dtype=torch.float32)
        if m.dim() != 1 or m.shape != s.shape or m.numel() == 0:
            raise ValueError(
                f"mean and std must be non-empty sequences of equal length, got {list(mean)} "
                f"and {list(std)}"
            )
        if not bool((s > 0).all()):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.register_buffer("mean", m.view(-1, 1, 1))
        self.register_buffer("std", s.view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3 or x.size(-3) != self.mean.size(0):
            raise ValueError("Normalize expects [C, H, W] or [N, C, H, W] with C = len(mean)")
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def __call__(self, x: Any) -> torch.Tensor:  # accept PIL / numpy too, like the others
        if not isinstance(x, torch.Tensor):
            x = to_tensor(x)
        return super().__call__(x)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


# ----------------------------------------------------------------------------- presets


RESIZE_MODES = ("shorter", "square")


def _positive_int(key: str, value: Any, hint: str) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0:
        return int(value)
    raise ValueError(f"preprocess.{key} must be a positive int ({hint}), got {value!r}")


def _values(key: str, value: Any) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"preprocess.{key} must be a list of 1 or 3 numbers, got {value!r}"
        ) from None
    if len(out) not in (1, 3) or not all(math.isfinite(v) for v in out):
        raise ValueError(f"preprocess.{key} must be a list of 1 or 3 finite numbers, got {value!r}")
    return out


@dataclass(frozen=True)
class PreprocessConfig:
    """What a model expects as input; the one form of the preprocessing spec (training,
    export metadata, the predictor). Validated on construction (:meth:`__post_init__` is
    the only validator; :meth:`from_dict` / :func:`as_preprocess` go through it).

    * ``resize``: first resize, shorter side to ``resize`` (``resize_mode="shorter"``) or the
      whole image to ``resize x resize`` (``resize_mode="square"``, the CORAL code's choice);
      ``None`` means ``input_size``. Must be ``>= input_size``.
    * ``input_size``: then crop ``input_size x input_size``, random for training, centred for
      evaluation (a square pair ``(s, s)`` is accepted and stored as ``s``).
    * ``mean`` / ``std``: per-channel normalisation of the [0, 1] tensor: 3 values (RGB), or 1
      value for a one-channel model, which sees the luma ``0.299 R + 0.587 G + 0.114 B``.
    * ``grayscale``: convert to luma (replicated to 3 channels) before everything else.
    * ``horizontal_flip``: random left-right flip probability used by ``train_transform``.
    * ``crop_fraction``: before the resize, keep the centred square of ``crop_fraction`` x
      the shorter side (:class:`CenterCropFraction`); ``1.0`` (default) = no such crop.

    :meth:`fixed_transform` (grayscale? -> crop fraction? -> resize: the same every epoch,
    what :class:`facecore.data.cache.DecodedImageCache` stores) followed by
    :meth:`random_transform` is :meth:`train_transform` / :meth:`eval_transform`.

    ``to_dict()`` / ``from_dict()`` round-trip exactly (through JSON too); export metadata
    stores ``to_dict()``.
    """

    input_size: int
    resize: int | None = None
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    grayscale: bool = False
    resize_mode: str = "shorter"
    horizontal_flip: float = 0.0
    crop_fraction: float = 1.0

    def __post_init__(self) -> None:
        size = self.input_size
        if isinstance(size, Sequence) and not isinstance(size, str) and len(size) == 2 and size[0] == size[1]:
            size = size[0]
        size = _positive_int("input_size", size, "one side of the square crop")
        resize = size if self.resize is None else _positive_int(
            "resize", self.resize, "the size before the crop"
        )
        if resize < size:
            raise ValueError(
                f"preprocess.resize must be >= input_size ({size}): the image is resized, then "
                f"center-cropped; got resize={resize}"
            )
        mean, std = _values("mean", self.mean), _values("std", self.std)
        if len(mean) != len(std):
            raise ValueError(
                f"preprocess.mean and preprocess.std must have the same length (1 or 3), got "
                f"{list(mean)} and {list(std)}"
            )
        if min(std) <= 0:
            raise ValueError(f"preprocess.std must be positive, got {list(std)}")
        if not isinstance(self.grayscale, bool):
            raise ValueError(f"preprocess.grayscale must be true or false, got {self.grayscale!r}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(
                f"preprocess.resize_mode must be one of {' | '.join(RESIZE_MODES)}, got "
                f"{self.resize_mode!r}"
            )
        flip = self.horizontal_flip
        if isinstance(flip, bool) or not isinstance(flip, numbers.Real) or not 0.0 <= flip <= 1.0:
            raise ValueError(f"preprocess.horizontal_flip must be in [0, 1], got {flip!r}")
        crop = self.crop_fraction
        if (isinstance(crop, bool) or not isinstance(crop, numbers.Real)
                or not math.isfinite(crop) or not 0.0 < crop <= 1.0):
            raise ValueError(f"preprocess.crop_fraction must be in (0, 1], got {crop!r}")
        for name, value in (("input_size", size), ("resize", resize), ("mean", mean),
                            ("std", std), ("horizontal_flip", float(flip)),
                            ("crop_fraction", float(crop))):
            object.__setattr__(self, name, value)

    @property
    def channels(self) -> int:
        """Channels the model sees: 3, or 1 (luma) when ``mean`` / ``std`` have one value."""
        return len(self.mean)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; :meth:`from_dict` inverts it exactly. ``crop_fraction`` is
        written only when it crops (< 1), so metadata without it reads as before."""
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        if d["crop_fraction"] == 1.0:
            del d["crop_fraction"]
        return d

    @classmethod
    def from_dict(cls, d: Any) -> PreprocessConfig:
        """Build from a mapping (e.g. ``metadata["preprocess"]``): unknown keys, a missing
        ``input_size`` and invalid values raise ``ValueError`` (a non-mapping ``TypeError``)."""
        if not isinstance(d, Mapping):
            raise TypeError(
                "preprocess must be a PreprocessConfig or a mapping with input_size, resize, "
                f"mean, std, ...; got {type(d).__name__}"
            )
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown preprocess keys {unknown}; known: {', '.join(known)}")
        if "input_size" not in d:
            raise ValueError(f"preprocess is missing input_size; keys: {', '.join(known)}")
        return cls(**dict(d))

    def _resize(self) -> Resize:
        return Resize(self.resize if self.resize_mode == "shorter" else (self.resize, self.resize))

    def _head(self) -> list[Callable[[Any], Any]]:
        if self.channels == 1:
            head: list[Callable[[Any], Any]] = [Grayscale(1)]
        else:
            head = [Grayscale(3)] if self.grayscale else []
        if self.crop_fraction < 1.0:
            head.append(CenterCropFraction(self.crop_fraction))
        return head

    def normalize_module(self) -> Normalize:
        """The scriptable :class:`Normalize` for this config (exports put it before the model)."""
        return Normalize(self.mean, self.std)

    def fixed_transform(self) -> Compose:
        """The deterministic start of both pipelines: grayscale? -> centre crop fraction? ->
        resize. Its output (a ``PIL.Image``) is what
        :class:`facecore.data.cache.DecodedImageCache` stores."""
        return Compose(self._head() + [self._resize()])

    def random_transform(self, *, train: bool, normalize: bool = True) -> Compose:
        """What follows :meth:`fixed_transform`: random crop -> random flip? (``train``)
        or centre crop (evaluation) -> to tensor -> normalise?. It accepts the cached
        ``uint8`` arrays as well as PIL images, with identical results."""
        if train:
            ts: list[Callable[[Any], Any]] = [RandomCrop(self.input_size)]
            if self.horizontal_flip > 0:
                ts.append(RandomHorizontalFlip(self.horizontal_flip))
        else:
            ts = [CenterCrop(self.input_size)]
        ts.append(ToTensor())
        if normalize:
            ts.append(self.normalize_module())
        return Compose(ts)

    def train_transform(self, *, normalize: bool = True) -> Compose:
        """Grayscale? -> crop fraction? -> resize -> random crop -> random flip? -> to
        tensor -> normalise? (:meth:`fixed_transform` then :meth:`random_transform`)."""
        return Compose(
            self.fixed_transform().transforms
            + self.random_transform(train=True, normalize=normalize).transforms
        )

    def eval_transform(self, *, normalize: bool = True) -> Compose:
        """Grayscale? -> crop fraction? -> resize -> centre crop -> to tensor -> normalise:
        the model's input. ``normalize=False`` gives :func:`eval_pipeline` (RGB
        ``[3, S, S]`` in [0, 1], what an exported model, which normalises itself, expects)."""
        if not normalize:
            return eval_pipeline(self)
        return Compose(
            self.fixed_transform().transforms
            + self.random_transform(train=False, normalize=True).transforms
        )


def as_preprocess(preprocess: Any) -> PreprocessConfig:
    """``preprocess`` as a :class:`PreprocessConfig` (a config, or a mapping through
    :meth:`PreprocessConfig.from_dict`)."""
    if isinstance(preprocess, PreprocessConfig):
        return preprocess
    return PreprocessConfig.from_dict(preprocess)


def eval_pipeline(preprocess: PreprocessConfig) -> Compose:
    """The evaluation transform without normalisation: grayscale (3 channels)? -> centred
    square of ``crop_fraction`` x the shorter side (if < 1) -> resize (``"shorter"``:
    shorter side to ``resize``; ``"square"``: ``resize x resize``) -> centre crop
    ``input_size`` -> float32 tensor ``[3, S, S]`` in [0, 1]. It is what the predictor
    feeds an exported model (which normalises, and takes the luma for one-channel models)."""
    pre = as_preprocess(preprocess)
    head: list[Callable[[Any], Any]] = [Grayscale(3)] if pre.grayscale else []
    if pre.crop_fraction < 1.0:
        head.append(CenterCropFraction(pre.crop_fraction))
    return Compose(head + [pre._resize(), CenterCrop(pre.input_size), ToTensor()])


CORAL_PREPROCESS = PreprocessConfig(
    input_size=120, resize=128, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), resize_mode="square"
)
SYNTHETIC_PREPROCESS = PreprocessConfig(
    input_size=64, resize=64, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)
)
