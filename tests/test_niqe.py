"""MATLAB-faithful NIQE: published MATLAB values, the ×½ MATLAB resize by hand, invariances, errors."""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from optisr.errors import ConfigError, ShapeError
from optisr.metrics.image_quality import rgb_to_y
from optisr.metrics.niqe import imresize_half, niqe, niqe_params, niqe_params_path
from tests.conftest import shared_data_dir

HAS_SKIMAGE = importlib.util.find_spec("skimage") is not None


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A natural-ish uint8 RGB test image: smooth structure plus mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 120 + 50 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + 30 * np.sin((xx + yy) / 23.0)
    rgb = np.stack([base, base * 0.8 + 20, base * 0.6 + 40], axis=-1) + rng.normal(0, 6, (h, w, 3))
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def test_baboon_matches_matlab_r2021a():
    path = shared_data_dir() / "sr_set14" / "HR" / "baboon.png"
    if not path.is_file():
        pytest.skip(f"shared data not found at {path} (set OPTISR_DATA_DIR)")
    # MATLAB R2021a niqe on the Y channel of rgb2ycbcr, no crop: 5.72957338 (quoted in BasicSR's niqe.py)
    assert niqe(_read_rgb(path)) == pytest.approx(5.72957338, abs=1e-3)


# MATLAB computequality.m (authors' release) on TID2013 images, colour input -> rgb2gray:
# pyiqa's ResultsCalibra/results_original.csv (images shipped in the pyiqa 0.1.16 wheel, ResultsCalibra/dist_dir).
TID_MATLAB = {"I03.bmp": 15.7536, "I04.bmp": 3.6549, "I06.bmp": 3.2355, "I08.bmp": 3.1840, "I19.bmp": 8.6352}


def _calibra_dir() -> Path:
    env = os.environ.get("OPTISR_NIQE_CALIBRA_DIR")
    return Path(env) if env else shared_data_dir() / "iqa_pyiqa_calibra" / "dist_dir"


@pytest.mark.parametrize("name", sorted(TID_MATLAB))
def test_tid2013_matches_matlab_computequality(name):
    path = _calibra_dir() / name
    if not path.is_file():
        pytest.skip(f"{path} not found (pyiqa's ResultsCalibra/dist_dir; set OPTISR_NIQE_CALIBRA_DIR)")
    assert niqe(_read_rgb(path), convert_to="gray") == pytest.approx(TID_MATLAB[name], rel=0.01)


def test_imresize_half_by_hand():
    # MATLAB imresize(·, 0.5): antialiased cubic (a = -0.5) taps 0.5·k(0.5·d) at d = ±0.5, ±1.5, ±2.5, ±3.5
    # are (111, 29, -9, -3)/256; folding the symmetric border gives, for 4 samples -> 2:
    m = np.array([[140, 102, 26, -12], [-12, 26, 102, 140]]) / 256.0
    img = np.random.default_rng(1).uniform(0, 255, (4, 4))
    np.testing.assert_allclose(imresize_half(img), m @ img @ m.T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(imresize_half(np.array([[1.0, 2, 3, 4]] * 4))[0], [1.4609375, 3.5390625])
    assert imresize_half(np.zeros((7, 10))).shape == (4, 5)  # ceil, as MATLAB
    assert imresize_half(np.zeros((7, 10), np.float32)).dtype == np.float64


def test_input_kinds_agree():
    rgb = _textured(200, 300)
    ref = niqe(rgb)
    assert math.isfinite(ref) and ref > 0
    assert niqe(rgb.astype(np.float64), data_range=255.0) == ref  # uint8 vs float on 0-255
    assert niqe(rgb / 255.0) == ref  # float in [0, 1]
    assert niqe(rgb.astype(np.uint16) * 257) == pytest.approx(ref, abs=1e-12)  # 16 bit
    t = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255.0)
    assert niqe(t) == pytest.approx(ref, abs=1e-12) and niqe(t[None]) == pytest.approx(ref, abs=1e-12)


def test_grey_input_is_the_rounded_luma():
    rgb = _textured(200, 300, seed=2)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].double() / 255.0
    y8 = np.floor(rgb_to_y(x)[0, 0].numpy() * 255.0 + 0.5).astype(np.uint8)  # Y of rgb2ycbcr on uint8
    assert niqe(y8) == pytest.approx(niqe(rgb), abs=1e-12)
    assert niqe(y8[..., None]) == niqe(y8) == niqe(y8, convert_to="gray")  # grey ignores convert_to
    assert niqe(rgb, convert_to="gray") != niqe(rgb)


def test_crop_border_and_block_cut():
    rgb = _textured(230, 310, seed=3)
    assert niqe(rgb, crop_border=4) == niqe(rgb[4:-4, 4:-4])
    # only whole 96×96 blocks count: pixels beyond them (bottom/right) do not change the score
    noisy = rgb.copy()
    noisy[192:, :] = 0
    noisy[:, 288:] = 255
    assert niqe(noisy) == niqe(rgb)


def test_flat_blocks_give_nan_features_that_are_skipped():
    rgb = _textured(192, 384, seed=4)
    rgb[:, :96] = 90  # one flat block: NaN betas, dropped by nanmean / nancov
    assert math.isfinite(niqe(rgb))
    assert math.isnan(niqe(np.full((192, 192), 128, np.uint8)))  # no complete block: NaN, as MATLAB


@pytest.mark.skipif(not HAS_SKIMAGE, reason="needs scikit-image (its astronaut image)")
def test_niqe_orders_distortions():
    import cv2
    import skimage.data

    img = skimage.data.astronaut()
    clean = niqe(img)
    assert 0 < clean < 20
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 15, img.shape), 0, 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(img, (0, 0), 2)
    assert niqe(noisy) > clean and niqe(blurred) > clean


def test_pristine_model_is_packaged():
    assert niqe_params_path().is_file()
    mu, cov = niqe_params()
    assert mu.shape == (36,) and cov.shape == (36, 36)
    np.testing.assert_allclose(cov, cov.T, rtol=0, atol=1e-12)
    assert np.linalg.eigvalsh(cov).min() > 0
    assert mu[0] == pytest.approx(2.6013, abs=1e-4)  # α of the MSCN AGGD in modelparameters.mat


def test_errors_are_one_line():
    for bad in (np.zeros((95, 500), np.uint8), np.zeros((96, 96), np.uint8), np.zeros((100, 191), np.uint8)):
        with pytest.raises(ShapeError, match="two whole 96×96 blocks") as exc:
            niqe(bad)
        assert "\n" not in str(exc.value)
    with pytest.raises(ShapeError, match="after cropping"):
        niqe(np.zeros((200, 200), np.uint8), crop_border=5)
    with pytest.raises(ShapeError, match="batch"):
        niqe(torch.zeros(2, 3, 200, 200))
    with pytest.raises(ShapeError, match="channels"):
        niqe(np.zeros((200, 200, 2), np.uint8))
    with pytest.raises(ConfigError, match="crop_border"):
        niqe(np.zeros((200, 200), np.uint8), crop_border=-1)
    with pytest.raises(ConfigError, match="convert_to"):
        niqe(np.zeros((200, 200), np.uint8), convert_to="lab")  # type: ignore[arg-type]
