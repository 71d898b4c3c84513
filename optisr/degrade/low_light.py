"""Dim, low-contrast, noisy captures of an RGB image (guide augmentation for guided depth SR).

A clean RGB image is re-exposed as a poor indoor camera would record it. In linear light
(decoded with gamma 2.2): optional optical blur, exposure gain (dark: ×0.05–0.5), a per-channel
colour cast, contrast reduction toward the image mean (flare / haze), Poisson-Gaussian sensor
noise (shot noise with a random photon count at full scale, plus read noise); then re-encoded
with a random display gamma, quantised to 8 bits and optionally JPEG-compressed.

Images are numpy float32 ``(H, W, 3)`` RGB in [0, 1]; randomness comes only from the numpy
``Generator`` passed in, so a result is a pure function of the image and the generator's state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from optisr.config import check_range
from optisr.degrade.jpeg import jpeg_compress
from optisr.errors import ConfigError, ShapeError

__all__ = ["DIM_INDOOR", "GuideDegradeConfig", "degrade_guide"]

_DECODE_GAMMA = 2.2  # sRGB-like encoding assumed for the clean image


@dataclass
class GuideDegradeConfig:
    """Random dim / noisy re-exposure of the guide (the ``datasets.train.guide_degrade`` section).

    ``(low, high)`` pairs are drawn per image: log-uniformly for ``gain`` and ``photons``,
    uniformly otherwise.

    Attributes:
        prob: probability that an image is degraded at all (0 = off, the default).
        gain: exposure multiplier in linear light (< 1 darkens).
        cast_std: standard deviation of the log per-channel gain (colour cast / white balance error).
        contrast: factor c of ``c·x + (1 − c)·mean(x)`` in linear light (1 = unchanged).
        photons: photo-electrons collected at full scale (white); shot noise has variance
            ``x / photons`` in [0, 1] linear units, so fewer photons = more noise.
        read_noise: standard deviation of the additive read noise, in [0, 1] linear units.
        gamma: display gamma of the re-encoding (2.2 = the decoding gamma).
        blur_prob, blur_sigma: probability and sigma (px) of a Gaussian blur before the noise.
        jpeg_prob, jpeg_quality: probability and quality range of a JPEG round trip at the end.
    """

    prob: float = 0.0
    gain: tuple[float, float] = (0.05, 0.5)
    cast_std: float = 0.1
    contrast: tuple[float, float] = (0.5, 1.0)
    photons: tuple[float, float] = (30.0, 1000.0)
    read_noise: tuple[float, float] = (0.0005, 0.005)
    gamma: tuple[float, float] = (1.8, 2.6)
    blur_prob: float = 0.2
    blur_sigma: tuple[float, float] = (0.4, 1.2)
    jpeg_prob: float = 0.2
    jpeg_quality: tuple[float, float] = (50.0, 95.0)

    def __post_init__(self) -> None:
        for name in ("prob", "blur_prob", "jpeg_prob"):
            v = float(getattr(self, name))
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"guide_degrade.{name} must be in [0, 1], got {v}")
        if not (math.isfinite(self.cast_std) and 0.0 <= self.cast_std <= 1.0):
            raise ConfigError(f"guide_degrade.cast_std must be in [0, 1], got {self.cast_std}")
        self.gain = check_range("guide_degrade.gain", self.gain, 1e-4, 10.0)
        self.contrast = check_range("guide_degrade.contrast", self.contrast, 0.0, 1.0)
        self.photons = check_range("guide_degrade.photons", self.photons, 1.0, 1e7)
        self.read_noise = check_range("guide_degrade.read_noise", self.read_noise, 0.0, 1.0)
        self.gamma = check_range("guide_degrade.gamma", self.gamma, 0.2, 5.0)
        self.blur_sigma = check_range("guide_degrade.blur_sigma", self.blur_sigma, 0.0, 20.0)
        self.jpeg_quality = check_range("guide_degrade.jpeg_quality", self.jpeg_quality, 1.0, 100.0)


# The fixed "dim" condition of guided validation: a dark (×0.12), washed-out (contrast 0.7), noisy
# (150 photo-electrons at white, read noise 0.002) capture with a mild colour cast, 8-bit, no JPEG.
DIM_INDOOR = GuideDegradeConfig(
    prob=1.0,
    gain=(0.12, 0.12),
    cast_std=0.05,
    contrast=(0.7, 0.7),
    photons=(150.0, 150.0),
    read_noise=(0.002, 0.002),
    gamma=(2.2, 2.2),
    blur_prob=0.0,
    jpeg_prob=0.0,
)


def _log_uniform(rng: np.random.Generator, pair: tuple[float, float]) -> float:
    return float(math.exp(rng.uniform(math.log(pair[0]), math.log(pair[1]))))


def degrade_guide(image: np.ndarray, rng: np.random.Generator, cfg: GuideDegradeConfig) -> np.ndarray:
    """A dim / noisy re-exposure of ``image`` (or ``image`` itself, with probability 1 − ``cfg.prob``).

    Args:
        image: (H, W, 3) float32 RGB in [0, 1] (sRGB-like encoding).
        rng: the generator every random draw comes from (advanced in place; with ``cfg.prob == 0``
            nothing is drawn).
        cfg: the degradation's parameter ranges.
    Returns:
        (H, W, 3) float32 in [0, 1] on the 1/255 grid when degraded; the input array unchanged
        otherwise.
    Raises:
        ShapeError: ``image`` is not (H, W, 3).
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ShapeError(f"degrade_guide needs an (H, W, 3) image, got shape {image.shape}")
    if cfg.prob <= 0 or rng.random() >= cfg.prob:
        return image
    x: np.ndarray = np.clip(image.astype(np.float64), 0.0, 1.0) ** _DECODE_GAMMA  # linear light
    if rng.random() < cfg.blur_prob:
        sigma = rng.uniform(*cfg.blur_sigma)
        if sigma > 0:
            x = cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    x = x * _log_uniform(rng, cfg.gain) * np.exp(rng.normal(0.0, cfg.cast_std, 3))
    c = rng.uniform(*cfg.contrast)
    x = c * x + (1.0 - c) * x.mean(axis=(0, 1))
    x = np.clip(x, 0.0, 1.0)
    photons = _log_uniform(rng, cfg.photons)
    x = rng.poisson(x * photons) / photons + rng.uniform(*cfg.read_noise) * rng.standard_normal(x.shape)
    x = np.clip(x, 0.0, 1.0) ** (1.0 / rng.uniform(*cfg.gamma))
    out = (np.round(x * 255.0) / 255.0).astype(np.float32)
    if rng.random() < cfg.jpeg_prob:
        out = jpeg_compress(out, int(round(rng.uniform(*cfg.jpeg_quality))))
    return out
