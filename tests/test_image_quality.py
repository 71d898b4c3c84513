"""PSNR / SSIM against hand-computed values (and scikit-image when installed); NIQE is in test_niqe.py."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from optisr.errors import ShapeError
from optisr.metrics import image_quality as iq
from optisr.metrics.image_quality import psnr, rgb_to_y, ssim

RNG = np.random.default_rng(0)
HAS_SKIMAGE = importlib.util.find_spec("skimage") is not None


def test_psnr_hand_values():
    a = np.zeros((4, 4, 3), np.uint8)
    assert psnr(a, a + 1) == pytest.approx(20 * math.log10(255))  # MSE = 1 → 48.1308 dB
    assert psnr(a, a) == math.inf
    b = a.copy()
    b[0, 0, 0] = 255  # MSE = 255² / 48
    assert psnr(a, b) == pytest.approx(10 * math.log10(48))
    assert psnr(a, b, crop_border=1) == math.inf  # the differing pixel is cropped away
    u16 = np.zeros((3, 3), np.uint16)
    assert psnr(u16, u16 + 257) == pytest.approx(
        20 * math.log10(255)
    )  # 257/65535 = 1/255


def test_psnr_y_channel_uses_bt601():
    white, black = np.ones((1, 3, 2, 2)), np.zeros((1, 3, 2, 2))
    torch.testing.assert_close(
        rgb_to_y(torch.tensor(white)),
        torch.full((1, 1, 2, 2), 235 / 255, dtype=torch.float64),
    )
    torch.testing.assert_close(
        rgb_to_y(torch.tensor(black)),
        torch.full((1, 1, 2, 2), 16 / 255, dtype=torch.float64),
    )
    a = np.zeros((5, 5, 3), np.uint8)
    b = a.copy()
    b[..., 1] = 10  # ΔY = 128.553/255 · 10 on the 0-255 scale
    dy = 128.553 / 255 * 10
    assert psnr(a, b, y_channel=True) == pytest.approx(20 * math.log10(255 / dy))


def test_psnr_tensor_batch_matches_numpy():
    x = RNG.integers(0, 256, (2, 12, 10, 3)).astype(np.uint8)
    y = RNG.integers(0, 256, (2, 12, 10, 3)).astype(np.uint8)
    tx = torch.from_numpy(x).permute(0, 3, 1, 2) / 255.0
    ty = torch.from_numpy(y).permute(0, 3, 1, 2) / 255.0
    out = psnr(tx, ty, crop_border=2, y_channel=True)
    assert out.shape == (2,)
    for i in range(2):
        assert out[i].item() == pytest.approx(
            psnr(x[i], y[i], crop_border=2, y_channel=True), rel=1e-6
        )


def test_ssim_hand_values():
    a = RNG.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    assert ssim(a, a) == pytest.approx(1.0)
    # Constant images: σ = 0, so SSIM = (2·μx·μy + C1) / (μx² + μy² + C1).
    x, y = np.full((12, 12), 100, np.uint8), np.full((12, 12), 140, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert ssim(x, y) == pytest.approx((2 * 100 * 140 + c1) / (100**2 + 140**2 + c1))


def test_ssim_window_is_matlab_gaussian():
    w = iq._gaussian_window()[0, 0]
    assert w.shape == (11, 11) and float(w.sum()) == pytest.approx(1.0)
    assert float(w[5, 5] / w[5, 6]) == pytest.approx(math.exp(1 / (2 * 1.5**2)))


@pytest.mark.skipif(not HAS_SKIMAGE, reason="scikit-image not installed")
def test_ssim_matches_skimage_matlab_mode():
    from skimage.metrics import structural_similarity

    a = RNG.integers(0, 256, (40, 33, 3)).astype(np.uint8)
    b = np.clip(a + RNG.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    ref = structural_similarity(
        a,
        b,
        channel_axis=2,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert ssim(a, b) == pytest.approx(ref, abs=1e-9)


def test_ssim_errors():
    with pytest.raises(ShapeError, match="11×11"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))
    with pytest.raises(ShapeError, match="differ"):
        ssim(np.zeros((12, 12)), np.zeros((12, 13)))


