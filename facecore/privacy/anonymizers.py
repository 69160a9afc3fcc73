r"""Trivial anonymizers: the baselines a SAN must beat at equal matcher utility.

* :func:`gaussian_blur`: separable Gaussian filter of standard deviation ``sigma`` pixels,
  kernel radius ``ceil(3 sigma)``, weights normalised to sum 1, reflect padding (the
  border handling of OpenCV's default ``BORDER_REFLECT_101`` and of
  ``torchvision.transforms.functional.gaussian_blur``).
* :func:`pixelate`: the mean of each ``block x block`` cell (cells at the right / bottom edge
  are smaller when the size is not a multiple), repeated over the cell.

Both take ``[N, C, H, W]`` (or ``[C, H, W]``) float tensors and keep shape and dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["ANONYMIZERS", "anonymize", "gaussian_blur", "gaussian_kernel1d", "pixelate"]


def _batched(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError("images must be a floating-point tensor")
    if x.dim() == 3:
        return x.unsqueeze(0), True
    if x.dim() != 4:
        raise ValueError(f"images must be [N, C, H, W] or [C, H, W], got shape {list(x.shape)}")
    return x, False


def gaussian_kernel1d(sigma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``sigma`` pixels on ``-r..r``, ``r = ceil(3 sigma)``."""
    if not isinstance(sigma, int | float) or isinstance(sigma, bool) or not sigma > 0:
        raise ValueError(f"sigma must be a positive number of pixels, got {sigma!r}")
    r = max(1, math.ceil(3.0 * float(sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / float(sigma)) ** 2)
    return (k / k.sum()).to(dtype)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``sigma`` pixels (see the module docstring)."""
    xb, squeeze = _batched(x)
    k = gaussian_kernel1d(sigma, xb.dtype).to(xb.device)
    r = (k.numel() - 1) // 2
    n, c, h, w = xb.shape
    if r >= h or r >= w:  # reflect padding needs pad < size: blur in steps
        out = xb
        var = float(sigma) ** 2
        step = (min(h, w) - 1) / 3.0
        while var > 1e-12:
            s = min(math.sqrt(var), step)
            out = gaussian_blur(out, s)
            var -= s * s
        return out[0] if squeeze else out
    y = xb.reshape(n * c, 1, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    y = y.reshape(n, c, h, w)
    return y[0] if squeeze else y


def pixelate(x: torch.Tensor, block: int) -> torch.Tensor:
    """Mosaic of ``block x block`` cell means (see the module docstring)."""
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"block must be a positive int (pixels), got {block!r}")
    xb, squeeze = _batched(x)
    h, w = xb.shape[-2:]
    ph, pw = (-h) % block, (-w) % block
    # mean over the valid pixels of each cell: pool the zero-padded image and the mask
    ones = torch.ones(1, 1, h, w, dtype=xb.dtype, device=xb.device)
    num = F.avg_pool2d(F.pad(xb, (0, pw, 0, ph)), block)
    den = F.avg_pool2d(F.pad(ones, (0, pw, 0, ph)), block)
    y = (num / den).repeat_interleave(block, -2).repeat_interleave(block, -1)[..., :h, :w]
    return y[0] if squeeze else y.contiguous()


#: Anonymizer name -> function(images, strength).
ANONYMIZERS = {"blur": gaussian_blur, "pixelate": pixelate}


def anonymize(x: torch.Tensor, kind: str, strength: float) -> torch.Tensor:
    """``ANONYMIZERS[kind](x, strength)`` (sigma in pixels for ``blur``, block size for
    ``pixelate``)."""
    if kind not in ANONYMIZERS:
        raise ValueError(f"kind must be one of {list(ANONYMIZERS)}, got {kind!r}")
    return ANONYMIZERS[kind](x, int(strength) if kind == "pixelate" else float(strength))
