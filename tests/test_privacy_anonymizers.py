"""Trivial anonymizers: Gaussian blur against OpenCV, pixelation by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facecore.privacy import anonymize, gaussian_blur, pixelate
from facecore.privacy.anonymizers import gaussian_kernel1d


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.5, 4.0])
def test_gaussian_blur_matches_opencv(sigma):
    cv2 = pytest.importorskip("cv2")
    x = torch.rand(2, 3, 40, 33, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    k = 2 * math.ceil(3 * sigma) + 1
    got = gaussian_blur(x, sigma)
    for n in range(2):
        img = x[n].permute(1, 2, 0).numpy()
        want = cv2.GaussianBlur(img, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)
        np.testing.assert_allclose(got[n].permute(1, 2, 0).numpy(), want, rtol=1e-6, atol=1e-9)


def test_gaussian_blur_properties():
    k = gaussian_kernel1d(2.0, torch.float64)
    assert k.numel() == 13 and float(k.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(k, k.flip(0))
    c = torch.full((1, 1, 9, 9), 0.3)
    torch.testing.assert_close(gaussian_blur(c, 1.5), c)
    x = torch.rand(1, 12, 12)
    assert gaussian_blur(x, 1.0).shape == (1, 12, 12)
    # wider than the image: blurred in steps (variances add), still a flat-preserving blur
    big = gaussian_blur(torch.rand(1, 1, 8, 8), 6.0)
    assert big.shape == (1, 1, 8, 8) and float(big.std()) < 0.05
    with pytest.raises(ValueError, match="sigma must be a positive"):
        gaussian_blur(x, 0)
    with pytest.raises(TypeError, match="floating-point"):
        gaussian_blur(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), 1.0)


def test_pixelate_by_hand():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    got = pixelate(x, 2)
    want = torch.tensor([[2.5, 2.5, 4.5, 4.5], [2.5, 2.5, 4.5, 4.5],
                         [10.5, 10.5, 12.5, 12.5], [10.5, 10.5, 12.5, 12.5]]).view(1, 1, 4, 4)
    torch.testing.assert_close(got, want)
    # 5 x 5 with blocks of 2: the last row / column cells are 2 x 1, 1 x 2 and 1 x 1
    y = torch.arange(25.0).view(1, 5, 5)
    p = pixelate(y, 2)[0]
    assert float(p[0, 4]) == pytest.approx((4 + 9) / 2)
    assert float(p[4, 0]) == pytest.approx((20 + 21) / 2)
    assert float(p[4, 4]) == pytest.approx(24.0)
    assert float(p[1, 1]) == pytest.approx((0 + 1 + 5 + 6) / 4)
    torch.testing.assert_close(pixelate(y, 1), y)
    with pytest.raises(ValueError, match="block must be a positive int"):
        pixelate(y, 0)


def test_anonymize_dispatch():
    x = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(anonymize(x, "blur", 1.0), gaussian_blur(x, 1.0))
    torch.testing.assert_close(anonymize(x, "pixelate", 4), pixelate(x, 4))
    with pytest.raises(ValueError, match="kind must be one of"):
        anonymize(x, "mask", 1)
