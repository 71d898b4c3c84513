"""NIQE (Mittal, Soundararajan & Bovik, IEEE SPL 2013) exactly as MATLAB computes it.

This follows the authors' MATLAB release (``computequality.m``) with its pristine model
(``modelparameters.mat``: ``mu_prisparam`` 1×36, ``cov_prisparam`` 36×36), the same model MATLAB's
Image Processing Toolbox ``niqe`` uses by default, so scores can be set beside published NIQE tables.
MATLAB R2021a's ``niqe`` gives 5.7296 on Set14 ``baboon.png`` (luma, no crop); this gives the same to
1e-4 (see ``tests/test_niqe.py``).

Steps (``I`` is the image on the 0-255 scale, float64 throughout, as MATLAB's doubles):

1. luma: RGB → Y of MATLAB's ``rgb2ycbcr`` (BT.601 studio range,
   ``Y = 16 + 65.481·R + 128.553·G + 24.966·B`` for R, G, B in [0, 1]; the SR convention), or with
   ``convert_to="gray"`` MATLAB's ``rgb2gray`` (what ``computequality.m`` itself does to colour
   input); rounded to integers as MATLAB does for uint8 images (and BasicSR for every input); grey
   input is rounded the same way;
2. cut to whole 96×96 blocks (top-left part kept);
3. for scale 1 and 2: MSCN coefficients ``(I − μ) / (σ + 1)`` with ``μ``, ``σ`` from MATLAB's
   ``fspecial('gaussian', 7, 7/6)`` window and ``imfilter(…, 'replicate')``; per block (96×96, then
   48×48 at scale 2) 18 features: an AGGD fit of the coefficients (α, mean of the two β) and of the
   products with the 4 circularly shifted neighbours (α, mean, β_left, β_right each); α is picked on
   the grid ``0.2:0.001:10``; then ``I ← imresize(I, 0.5)`` (bicubic with antialiasing);
4. the 36-dimensional block features are summarised by ``nanmean`` and ``nancov`` (rows with a NaN
   dropped); the score is
   ``sqrt((μ_p − μ_d) · pinv((Σ_p + Σ_d)/2) · (μ_p − μ_d)ᵀ)``.

At test time the original does **not** select blocks by sharpness (only the model fitting did).

The parameters ship as ``optisr/metrics/data/niqe_pris_params.npz``, copied from the PyPI package
basicsr 1.4.2 (``basicsr/metrics/niqe_pris_params.npz``, Apache-2.0; the numbers themselves are the
UT Austin LIVE release's, free to use and redistribute with its notice) — see the README beside it.
"""

from __future__ import annotations

import functools
import math
import warnings
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
from torch import Tensor

from optisr.degrade.bicubic import resize_weights
from optisr.errors import ConfigError, InputFileError, ShapeError

__all__ = ["NIQE_BLOCK", "imresize_half", "niqe", "niqe_features", "niqe_params", "niqe_params_path"]

NIQE_BLOCK = 96  # block side at full resolution (the authors' and MATLAB's default)
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])  # BT.601 luma per unit of R, G, B in [0, 1]
# MATLAB rgb2gray: the first row of inv([1 0.956 0.621; 1 -0.272 -0.647; 1 -1.106 1.703]), per unit of 0-255 R, G, B
_GRAY_WEIGHTS = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
_GAMMA_GRID = 0.2 + 0.001 * np.arange(9801)  # MATLAB's 0.2:0.001:10


@functools.lru_cache(maxsize=1)
def _gamma_ratio() -> np.ndarray:
    """``Γ(2/α)² / (Γ(1/α)·Γ(3/α))`` on the α grid, shape ``(9801,)``."""
    from scipy.special import gamma

    return gamma(2.0 / _GAMMA_GRID) ** 2 / (gamma(1.0 / _GAMMA_GRID) * gamma(3.0 / _GAMMA_GRID))


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    """MATLAB's ``fspecial('gaussian', 7, 7/6)`` as its separable 1-D factor, shape ``(7,)``, sums to 1."""
    r = np.arange(-3, 4, dtype=np.float64)
    g = np.exp(-(r**2) / (2.0 * (7.0 / 6.0) ** 2))
    return g / g.sum()


def niqe_params_path() -> Path:
    """The packaged pristine-model file (``optisr/metrics/data/niqe_pris_params.npz``)."""
    return Path(str(resources.files("optisr.metrics") / "data" / "niqe_pris_params.npz"))


@functools.lru_cache(maxsize=1)
def niqe_params() -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's NIQE pristine model: ``(mu (36,), cov (36, 36))``, float64 (read-only copies cached)."""
    path = niqe_params_path()
    try:
        with np.load(path) as data:
            mu = np.asarray(data["mu_pris_param"], np.float64).ravel()
            cov = np.asarray(data["cov_pris_param"], np.float64)
    except (OSError, KeyError, ValueError) as exc:
        raise InputFileError(f"{path}: cannot read the NIQE pristine model ({exc}); reinstall optisr") from exc
    if mu.shape != (36,) or cov.shape != (36, 36):
        raise InputFileError(f"{path}: NIQE model has shapes {mu.shape}, {cov.shape}; expected (36,), (36, 36)")
    mu.flags.writeable = False
    cov.flags.writeable = False
    return mu, cov


def imresize_half(img: np.ndarray) -> np.ndarray:
    """MATLAB ``imresize(img, 0.5)`` on a double image: bicubic (a = −0.5) with antialiasing.

    Rows are resized first, then columns (MATLAB's order on equal scales); the 1-D weights are
    :func:`optisr.degrade.bicubic.resize_weights` (8 taps, symmetric borders), applied in float64.

    Args:
        img: ``(H, W)`` float array, any range.
    Returns:
        ``(ceil(H/2), ceil(W/2))`` float64, not clipped.
    """
    out = np.asarray(img, dtype=np.float64)
    if out.ndim != 2:
        raise ShapeError(f"imresize_half expects an (H, W) image; got shape {out.shape}")
    for axis in (0, 1):
        n_in = out.shape[axis]
        index, weight = resize_weights(n_in, math.ceil(n_in * 0.5), 0.5, antialias=True)
        moved = np.moveaxis(out, axis, 0)  # (n_in, rest)
        res = np.einsum("ok,ok...->o...", weight, moved[index])  # (n_out, rest)
        out = np.moveaxis(res, 0, axis)
    return np.ascontiguousarray(out)


def _mscn(img: np.ndarray) -> np.ndarray:
    """``(I − μ)/(σ + 1)`` with the 7×7 Gaussian window, replicate borders (MATLAB ``imfilter``)."""
    from scipy.ndimage import correlate1d

    w = _window()

    def smooth(x: np.ndarray) -> np.ndarray:
        return correlate1d(correlate1d(x, w, axis=0, mode="nearest"), w, axis=1, mode="nearest")

    mu = smooth(img)
    sigma = np.sqrt(np.abs(smooth(img * img) - mu * mu))
    return (img - mu) / (sigma + 1.0)


def _aggd_fit(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AGGD moment fit of each row of ``v`` (``(N, n)`` samples) → ``alpha, beta_l, beta_r``, each ``(N,)``.

    Empty sides give NaN betas and α = 0.2 (the grid's first entry: MATLAB's ``min`` over an all-NaN
    vector returns index 1, as ``np.argmin`` returns 0).
    """
    from scipy.special import gamma

    sq = v * v
    neg, pos = v < 0, v > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        left_std = np.sqrt((sq * neg).sum(1) / neg.sum(1))
        right_std = np.sqrt((sq * pos).sum(1) / pos.sum(1))
        gam_hat = left_std / right_std
        r_hat = np.abs(v).mean(1) ** 2 / sq.mean(1)
        r_norm = r_hat * (gam_hat**3 + 1.0) * (gam_hat + 1.0) / (gam_hat**2 + 1.0) ** 2
        pos_best = np.argmin((_gamma_ratio()[None, :] - r_norm[:, None]) ** 2, axis=1)
    alpha = _GAMMA_GRID[pos_best]
    ratio = np.sqrt(gamma(1.0 / alpha) / gamma(3.0 / alpha))
    return alpha, left_std * ratio, right_std * ratio


def _block_features(mscn: np.ndarray, block: int) -> np.ndarray:
    """18 NSS features of every ``block``×``block`` tile of ``mscn`` (whole tiles only) → ``(N, 18)``."""
    from scipy.special import gamma

    nh, nw = mscn.shape[0] // block, mscn.shape[1] // block
    tiles = mscn[: nh * block, : nw * block].reshape(nh, block, nw, block).transpose(0, 2, 1, 3)
    tiles = tiles.reshape(nh * nw, block, block)
    flat = tiles.reshape(nh * nw, -1)
    alpha, bl, br = _aggd_fit(flat)
    feats = [alpha, (bl + br) / 2.0]
    # computequality.m: circshift by [0 1], [1 0], [1 1], [-1 1] within each block
    for dr, dc in ((0, 1), (1, 0), (1, 1), (-1, 1)):
        prod = (tiles * np.roll(tiles, (dr, dc), axis=(1, 2))).reshape(nh * nw, -1)
        alpha, bl, br = _aggd_fit(prod)
        mean = (br - bl) * gamma(2.0 / alpha) / gamma(1.0 / alpha)
        feats += [alpha, mean, bl, br]
    return np.stack(feats, axis=1)


def _luma_255(image: np.ndarray | Tensor, data_range: float | None, convert_to: str) -> np.ndarray:
    """Image → rounded luma ``(H, W)`` float64 on the 0-255 scale (see the module docstring)."""
    if isinstance(image, Tensor):
        t = image.detach().cpu()
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise ShapeError(f"niqe scores one image; got a batch of {t.shape[0]}")
            t = t[0]
        if t.ndim != 3:
            raise ShapeError(f"tensor images must be (1, C, H, W) or (C, H, W); got {tuple(image.shape)}")
        arr = t.double().numpy().transpose(1, 2, 0)
        white = data_range or 1.0
    else:
        arr = np.asarray(image)
        if arr.ndim not in (2, 3):
            raise ShapeError(f"niqe expects an (H, W) or (H, W, C) array; got shape {arr.shape}")
        if data_range is None:
            data_range = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(arr.dtype, 1.0)
        white = data_range
        arr = arr.astype(np.float64)
    if arr.ndim == 3 and arr.shape[2] not in (1, 3):
        raise ShapeError(f"niqe needs a grey or RGB image; got {arr.shape[2]} channels")
    v = arr * (255.0 / white)  # 0-255 scale
    # Values within 1e-4 of an integer are 8-bit levels carried in floats (x/255, float32 tensors):
    # snap them so such inputs score exactly as the uint8 image does.
    near = np.round(v)
    v = np.where(np.abs(v - near) < 1e-4, near, v)
    if v.ndim == 2:
        lum = v
    elif v.shape[2] == 1:
        lum = v[..., 0]
    elif convert_to == "gray":
        lum = v @ _GRAY_WEIGHTS
    else:
        lum = 16.0 + (v @ _Y_WEIGHTS) / 255.0
    return np.floor(lum + 0.5)  # MATLAB's round (half away from zero) on this non-negative range


def niqe_features(luma: np.ndarray) -> np.ndarray:
    """The per-block NIQE features of a luma image, as ``computequality.m`` builds them.

    Args:
        luma: ``(H, W)`` float on the 0-255 scale, already cut to whole 96×96 blocks.
    Returns:
        ``(N, 36)`` float64: N = number of blocks; columns 0-17 at full resolution, 18-35 at half.
    """
    img = np.asarray(luma, dtype=np.float64)
    full = _block_features(_mscn(img), NIQE_BLOCK)
    half = _block_features(_mscn(imresize_half(img)), NIQE_BLOCK // 2)
    return np.hstack([full, half])


def niqe(
    image: np.ndarray | Tensor,
    *,
    crop_border: int = 0,
    data_range: float | None = None,
    convert_to: Literal["y", "gray"] = "y",
) -> float:
    """Natural Image Quality Evaluator, MATLAB-faithful (``niqe`` / ``computequality.m``). Lower = more natural.

    See the module docstring for every step. Values match MATLAB R2021a's ``niqe`` (5.7296 on Set14
    ``baboon.png``) and can be compared with published NIQE tables that used MATLAB or BasicSR.

    Args:
        image: numpy ``(H, W)`` / ``(H, W, 1)`` / ``(H, W, 3)`` RGB (uint8, uint16 or float; float is
            [0, 1] unless ``data_range`` says otherwise), or a tensor ``(1, C, H, W)`` / ``(C, H, W)``
            in [0, 1].
        crop_border: pixels removed on each side before scoring (BasicSR's ``crop_border``).
        data_range: value of white (default 255 / 65535 / 1 by dtype; 1 for tensors).
        convert_to: how RGB becomes one channel: ``"y"`` (BT.601 luma of ``rgb2ycbcr``, the SR
            convention of BasicSR and the PIRM code) or ``"gray"`` (MATLAB ``rgb2gray``, what
            ``computequality.m`` does to a colour image). Both are rounded to integers.
    Returns:
        NIQE score (float; NaN when fewer than two blocks have finite features, as MATLAB).
    Raises:
        ShapeError: not one grey/RGB image, or fewer than two whole 96×96 blocks after cropping.
        ConfigError: negative ``crop_border`` or an unknown ``convert_to``.
    """
    if crop_border < 0:
        raise ConfigError(f"crop_border must be >= 0; got {crop_border}")
    if convert_to not in ("y", "gray"):
        raise ConfigError(f"convert_to must be 'y' or 'gray'; got {convert_to!r}")
    lum = _luma_255(image, data_range, convert_to)
    if crop_border:
        lum = lum[crop_border:-crop_border, crop_border:-crop_border]
    h, w = lum.shape
    nh, nw = h // NIQE_BLOCK, w // NIQE_BLOCK
    if nh * nw < 2:
        raise ShapeError(
            f"niqe needs at least two whole {NIQE_BLOCK}×{NIQE_BLOCK} blocks (e.g. 96×192) after cropping; got {h}×{w}"
        )
    feats = niqe_features(lum[: nh * NIQE_BLOCK, : nw * NIQE_BLOCK])
    mu_p, cov_p = niqe_params()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column gives NaN, as MATLAB's nanmean
        mu_d = np.nanmean(feats, axis=0)  # MATLAB nanmean: per column
    complete = feats[~np.isnan(feats).any(axis=1)]  # MATLAB nancov: complete rows only
    if complete.shape[0] < 2:
        return math.nan
    cov_d = np.cov(complete, rowvar=False)
    diff = mu_p - mu_d
    if not np.all(np.isfinite(diff)):
        return math.nan
    dist2 = diff @ np.linalg.pinv((cov_p + cov_d) / 2.0) @ diff
    return float(math.sqrt(max(float(dist2), 0.0)))
