"""OTSR-style synthetic degradation of an HR image: blur, MATLAB bicubic ↓scale, real noise, JPEG.

One draw (all randomness from the ``Generator`` passed in, in this order):

1. with probability ``blur_prob`` a random Gaussian kernel (:class:`GaussianKernelConfig`) blurs
   the HR (OpenCV ``filter2D``, reflected border);
2. MATLAB-compatible bicubic ↓``scale`` (:func:`~optisr.degrade.bicubic.imresize`), rounded to
   8 bit: the **clean LR**;
3. with probability ``noise_prob`` a zero-mean real-noise crop from a :class:`NoisePool`
   (RealSR/OTSR injection) times ``noise_strength`` drawn uniformly from its range;
4. with probability ``jpeg.prob`` a JPEG round trip at a quality drawn from ``jpeg.quality_range``:
   the **degraded LR**.

Steps 3-4 are also available alone (:func:`noise_and_jpeg`), so a training loop can redraw them
on a cached clean LR. :func:`fixed_draw_lr` makes a fixed, reproducible LR test set (one draw per
image, seeded by ``(seed, index)``): the degraded LR of ``optisr bench blind --lr otsr`` and of
``benchmarks/otsr_compact.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from optisr.degrade._image import as_rgb_float
from optisr.degrade.bicubic import imresize
from optisr.degrade.jpeg import JpegConfig, random_jpeg
from optisr.degrade.kernels import GaussianKernelConfig, random_gaussian_kernel
from optisr.degrade.noise import NoisePool
from optisr.errors import ConfigError, ShapeError

__all__ = ["BlurNoiseJpegConfig", "blur_noise_jpeg", "fixed_draw_lr", "noise_and_jpeg"]


@dataclass(frozen=True, kw_only=True)
class BlurNoiseJpegConfig:
    """Probabilities and ranges of the degradation (defaults: the ``otsr-compact-x4`` recipe)."""

    scale: int = 4
    blur_prob: float = 0.7
    kernel: GaussianKernelConfig = field(
        default_factory=lambda: GaussianKernelConfig(size=15, sigma_range=(0.3, 1.6), isotropic_prob=0.5)
    )  # HR-pixel standard deviations
    noise_prob: float = 0.8
    noise_strength: tuple[float, float] = (0.5, 1.5)  # multiplier of the mined noise, drawn uniformly
    jpeg: JpegConfig = field(default_factory=lambda: JpegConfig(quality_range=(30, 95), prob=0.8))

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ConfigError(f"scale must be >= 1; got {self.scale}")
        for name in ("blur_prob", "noise_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1]; got {v}")
        lo, hi = self.noise_strength
        if not 0.0 <= lo <= hi:
            raise ConfigError(f"noise_strength must satisfy 0 <= low <= high; got {self.noise_strength}")


def _u8_float(x: np.ndarray) -> np.ndarray:
    """Round to 8-bit levels, as a written PNG would be (float32 in [0, 1])."""
    return (np.round(np.clip(x, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def noise_and_jpeg(
    lr: np.ndarray, cfg: BlurNoiseJpegConfig, noise: NoisePool | None, rng: np.random.Generator
) -> np.ndarray:
    """Steps 3-4: real-noise injection and JPEG on an LR image.

    Args:
        lr: ``(h, w, 3)`` float32 in [0, 1] (the clean LR).
        cfg: probabilities and ranges.
        noise: the real-noise pool (None: no noise step; the draws are made all the same, so the
            random stream does not depend on it).
        rng: the only source of randomness.
    Returns:
        ``(h, w, 3)`` float32 in [0, 1], on 8-bit levels.
    """
    u_noise, strength = rng.random(), rng.uniform(*cfg.noise_strength)
    if noise is not None and u_noise < cfg.noise_prob:
        n = noise.sample(lr.shape[:2], rng, channels=lr.shape[2])
        lr = np.clip(lr + float(strength) * n, 0.0, 1.0)
    lr = _u8_float(lr)
    return random_jpeg(lr, cfg.jpeg, rng)


def blur_noise_jpeg(
    hr: np.ndarray, cfg: BlurNoiseJpegConfig, noise: NoisePool | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One degradation draw of an HR image.

    Args:
        hr: ``(H, W, 3)`` float32 in [0, 1] (or uint8), H and W multiples of ``cfg.scale``.
        cfg: the recipe.
        noise: real-noise pool for step 3 (None: no noise).
        rng: the only source of randomness.
    Returns:
        ``(clean_lr, lr)``: two ``(H/scale, W/scale, 3)`` float32 arrays in [0, 1] on 8-bit
        levels -- after steps 1-2 and after steps 1-4.
    Raises:
        ShapeError: H or W not a multiple of the scale.
    """
    x = as_rgb_float(hr)
    s = cfg.scale
    if x.shape[0] % s or x.shape[1] % s:
        raise ShapeError(f"HR {x.shape[1]}×{x.shape[0]} is not a multiple of the scale {s}")
    u_blur = rng.random()
    kernel = random_gaussian_kernel(cfg.kernel, rng)
    if u_blur < cfg.blur_prob:
        x = cv2.filter2D(np.ascontiguousarray(x), -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT)
        x = x[:, :, None] if x.ndim == 2 else x
    clean = _u8_float(imresize(x, 1.0 / s))
    return clean, noise_and_jpeg(clean, cfg, noise, rng)


def fixed_draw_lr(
    hrs: Sequence[np.ndarray], cfg: BlurNoiseJpegConfig, noise: NoisePool | None, *, seed: int = 0
) -> list[np.ndarray]:
    """The degraded LR of every HR image, one fixed draw each: a reproducible degraded test set.

    Image ``i`` gets the draw of :func:`blur_noise_jpeg` with ``np.random.default_rng([seed, i])``,
    so an image's LR depends only on its HR, its index, ``seed``, ``cfg`` and the pool -- not on
    how many images follow it.

    Args:
        hrs: HR images, uint8 (or float in [0, 1]) ``(H, W, 3)`` RGB (grey repeated, alpha dropped),
            H and W multiples of ``cfg.scale``.
        cfg: the recipe. noise: the real-noise pool (None: no noise step).
        seed: base seed.
    Returns:
        ``(H/scale, W/scale, 3)`` uint8 RGB LR images, in the order of ``hrs``.
    Raises:
        ShapeError: an HR side not a multiple of the scale.
    """
    out = []
    for i, hr in enumerate(hrs):
        _, lr = blur_noise_jpeg(hr, cfg, noise, np.random.default_rng([seed, i]))
        out.append(np.round(lr * 255.0).astype(np.uint8))
    return out
