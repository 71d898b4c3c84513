"""Image-quality metrics for SR: PSNR and SSIM (BasicSR / MATLAB conventions); NIQE is in :mod:`optisr.metrics.niqe`.

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
from typing import overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from optisr.errors import ConfigError, ShapeError

__all__ = ["psnr", "rgb_to_y", "ssim", "ssim_index"]

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


def ssim_index(a: Tensor, b: Tensor) -> Tensor:
    """Mean SSIM of each single-channel image pair on the 0-255 scale, differentiable.

    The statistics of :func:`ssim` (11×11 Gaussian window, σ = 1.5, valid region only,
    ``C1 = (0.01·255)²``, ``C2 = (0.03·255)²``) without its input handling, so a training loss
    (:class:`optisr.blind.losses.SSIMLoss`) and the metric share one formula.

    Args:
        a, b: ``(N, 1, H, W)`` float tensors on the 0-255 scale, ``H, W ≥ 11``; gradients flow.
    Returns:
        ``(N,)`` in the dtype of ``a``.
    """
    win = _gaussian_window().to(device=a.device, dtype=a.dtype)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = F.conv2d(a, win), F.conv2d(b, win)
    var_a = F.conv2d(a * a, win) - mu_a**2
    var_b = F.conv2d(b * b, win) - mu_b**2
    cov = F.conv2d(a * b, win) - mu_a * mu_b
    smap = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return smap.mean(dim=(1, 2, 3))


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
    out = ssim_index(a, b).view(bsz, c).mean(1)
    return out if is_t else float(out[0])
