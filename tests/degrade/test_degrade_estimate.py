"""Degradation estimate: JPEG quality from DQT tables, 8×8 blockiness, noise σ, sharpness."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from optisr.degrade.estimate import (
    BLOCKY,
    Degradation,
    blockiness,
    estimate_degradation,
    ijg_luminance_table,
    jpeg_quality_from_tables,
    noise_sigma,
    read_jpeg_quality,
    sharpness,
)


def _textured(size: int = 128, seed: int = 0) -> np.ndarray:
    """(size, size, 3) uint8: smooth shapes plus mid-frequency texture, never clipped."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.normal(0, 1, (size, size, 3)), (0, 0), 6)
    detail = cv2.GaussianBlur(rng.normal(0, 1, (size, size, 3)), (0, 0), 1.2)
    img = 128 + 60 * base / base.std() + 15 * detail / detail.std()
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _smooth(size: int = 128) -> np.ndarray:
    """(size, size) float64 in 60..190: a ramp plus a slow sinusoid (locally almost linear)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    return 90 + 60 * xx + 20 * np.sin(2 * np.pi * yy)


@pytest.mark.parametrize("quality", [30, 50, 75, 95])
def test_jpeg_quality_from_real_files(tmp_path, quality):
    path = tmp_path / f"q{quality}.jpg"
    Image.fromarray(_textured()).save(path, quality=quality)
    assert abs(read_jpeg_quality(path) - quality) <= 5


def test_jpeg_quality_none_for_png(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(_textured()).save(path)
    assert read_jpeg_quality(path) is None


def test_ijg_table_at_50_is_the_standard_table():
    assert ijg_luminance_table(50)[0, 0] == 16 and ijg_luminance_table(100).max() == 1
    assert jpeg_quality_from_tables({0: ijg_luminance_table(42).ravel().tolist()}) == 42


def test_blockiness_higher_after_jpeg_q30_then_png(tmp_path):
    orig = _textured(160, seed=1)
    Image.fromarray(orig).save(tmp_path / "a.jpg", quality=30)
    Image.open(tmp_path / "a.jpg").save(tmp_path / "a.png")
    once_jpeg = np.asarray(Image.open(tmp_path / "a.png"))
    assert blockiness(orig) < BLOCKY <= blockiness(once_jpeg)
    d = estimate_degradation(once_jpeg)
    assert d.blocky and d.jpeg_quality is None and d.source == "pixels"
    assert "JPEG-like blocks" in d.describe()


def test_blockiness_finds_a_shifted_grid():
    orig = _textured(160, seed=2)
    ok, buf = cv2.imencode(".jpg", orig, [cv2.IMWRITE_JPEG_QUALITY, 30])
    shifted = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)[3:, 5:]
    assert blockiness(shifted) >= BLOCKY


@pytest.mark.parametrize("sigma", [5.0, 10.0, 20.0])
def test_noise_sigma_on_synthetic_noise(sigma):
    rng = np.random.default_rng(int(sigma))
    noisy = np.round(_smooth(192) + rng.normal(0, sigma, (192, 192)))
    assert noise_sigma(np.clip(noisy, 0, 255).astype(np.uint8)) == pytest.approx(sigma, rel=0.15)


def test_noise_sigma_near_zero_on_clean():
    clean = np.round(_smooth(192)).astype(np.uint8)
    assert noise_sigma(clean) < 0.5
    # colour and float inputs read the same luma
    rgb = np.repeat(clean[:, :, None], 3, axis=2)
    assert noise_sigma(rgb.astype(np.float32) / 255) == pytest.approx(noise_sigma(clean), abs=0.05)


def test_noise_sigma_ignores_edges():
    # a clean image with strong edges on half of it: the flat half decides
    img = np.round(_smooth(128)).astype(np.uint8)
    img[:, 64:] = np.where((np.arange(64) // 4) % 2 == 0, 30, 220)[None, :]
    assert noise_sigma(img) < 1.0


def test_sharpness_drops_with_blur():
    img = _textured(128)
    blurred = cv2.GaussianBlur(img, (0, 0), 2.0)
    assert 0.0 <= sharpness(blurred) < sharpness(img) <= 1.0


def test_describe_from_tables():
    d = Degradation(jpeg_quality=35.0, blockiness=1.3, noise_sigma=3.14, sharpness=0.5, source="jpeg-tables")
    assert d.describe() == "JPEG q≈35, blockiness 1.30, noise σ≈3.1, sharpness 0.50"
