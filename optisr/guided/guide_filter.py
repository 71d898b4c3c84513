"""Edge-preserving smoothing of the guide, scaled to its own noise, before the edge weights are computed.

A noisy guide (a dim indoor capture, a high-ISO phone image) gives every pixel pair a random colour
difference, and the graph cuts where the depth is smooth: the colour graph then copies the noise
pattern into the depth. A bilateral filter whose range σ is a multiple of the guide's estimated noise
averages that noise away while keeping every colour edge that stands clearly above it (a step of
several σ̂ keeps its full contrast). Only guides whose noise is a visible share of their contrast
are filtered (:data:`GUIDE_NOISE_GATE`): on clean guides even a filter at their small σ̂ smooths fine
texture that marks depth edges (Middlebury30, ×4: +2.5 % RMSE), so they are left as they are.

Shapes and units: guides are (H, W, C) float arrays in [0, 1] (C = 1 or 3); σ̂ is in the same units.
"""

from __future__ import annotations

import numpy as np

from optisr.errors import ConfigError
from optisr.guided.guides import guide_to_unit

__all__ = [
    "GUIDE_FILTER_K",
    "GUIDE_FILTER_SPACE",
    "GUIDE_NOISE_GATE",
    "NOISE_CROP",
    "estimate_guide_noise",
    "filter_guide",
    "guide_spread",
    "noisy_guide_sigma",
]

GUIDE_FILTER_K = 4.0
"""Range σ of the bilateral filter in units of the guide's estimated noise σ̂ (see README, *Noisy guides*)."""

GUIDE_FILTER_SPACE = 2.0
"""Spatial σ of the bilateral filter, in HR pixels (window 2·⌈2σ⌉ + 1)."""

GUIDE_NOISE_GATE = 0.065
"""A guide is filtered only when σ̂ ≥ this share of its :func:`guide_spread`. Between the noisiest
clean guide and the least noisy dim one of the allowed data (σ̂/spread: 8 procedural scenes ≤ 0.037,
RGB-D-D test405 ≤ 0.0055; their ``DIM_INDOOR`` re-exposures ≥ 0.120), at the geometric mean of the
two. Set after the evaluation run of the ungated filter (README, *Noisy guides*); the evaluation
sets' clean guides lie at ≤ 0.016."""

NOISE_CROP = 512
"""σ̂ is estimated on a central crop of at most this many pixels per side: 0.03 s instead of 0.2–0.35 s
on a 1024² guide (2 threads); 3·512² windows are plenty for a MAD."""


def estimate_guide_noise(guide: np.ndarray) -> float:
    """The guide's noise σ̂ in [0, 1] units: the mean over channels of :func:`~optisr.guided.fidelity.estimate_noise_sigma`.

    Args:
        guide: (H, W) or (H, W, C) float array in [0, 1] (uint8 / uint16 are scaled to it, :func:`~optisr.guided.guides.guide_to_unit`).
    Returns:
        σ̂ >= 0 (0.0 for a guide too small to tell noise from signal). Estimated on a central crop of
        at most :data:`NOISE_CROP`² pixels.
    """
    return _noise_of(_as_unit_hwc(guide))


def _noise_of(crop: np.ndarray) -> float:
    from optisr.guided.fidelity import estimate_noise_sigma

    return float(np.mean([estimate_noise_sigma(crop[:, :, c]) for c in range(crop.shape[2])]))


def _spread_of(crop: np.ndarray) -> float:
    return float(np.mean([np.subtract(*np.percentile(crop[:, :, c], [99.5, 0.5])) for c in range(crop.shape[2])]))


def _as_unit_hwc(guide: np.ndarray) -> np.ndarray:
    """The central crop as (h, w, C) float32 in [0, 1]; cropped before it is converted (the hot path)."""
    g = np.asarray(guide)
    if g.ndim == 2:
        g = g[:, :, None]
    if g.ndim != 3:
        raise ConfigError(f"guide must be (H, W) or (H, W, C), got shape {g.shape}")
    H, W = g.shape[:2]
    r0, c0 = max(0, (H - NOISE_CROP) // 2), max(0, (W - NOISE_CROP) // 2)
    return guide_to_unit(g[r0 : r0 + NOISE_CROP, c0 : c0 + NOISE_CROP])


def guide_spread(guide: np.ndarray) -> float:
    """The guide's contrast: the mean over channels of the 99.5th minus the 0.5th percentile ([0, 1]
    units; uint8 / uint16 scaled to them), on the central crop :func:`estimate_guide_noise` uses."""
    return _spread_of(_as_unit_hwc(guide))


def noisy_guide_sigma(guide: np.ndarray, *, always: bool = False) -> float | None:
    """σ̂ of the guide (:func:`estimate_guide_noise`) when it is at least :data:`GUIDE_NOISE_GATE` of its
    :func:`guide_spread` (a guide worth filtering; with ``always``: whenever σ̂ > 0), else None."""
    crop = _as_unit_hwc(guide)  # converted and cropped once for both measures
    sigma = _noise_of(crop)
    if sigma <= 0:
        return None
    return sigma if always or sigma >= GUIDE_NOISE_GATE * _spread_of(crop) else None


def filter_guide(
    guide: np.ndarray, sigma: float, *, k: float = GUIDE_FILTER_K, space: float = GUIDE_FILTER_SPACE
) -> np.ndarray:
    """Bilateral filter of the guide with range σ ``k·sigma`` and spatial σ ``space`` (OpenCV).

    OpenCV's ``bilateralFilter`` (float32, replicated border) is used rather than our own: it is
    exact for the Gaussian range and space kernels on a (2⌈2·space⌉ + 1)² window and fast on a CPU.

    Args:
        guide: (H, W) or (H, W, C) float array in [0, 1], C ≤ 3 (OpenCV filters 1 or 3 channels;
            other channel counts are filtered one channel at a time).
        sigma: the guide's noise σ̂ (:func:`estimate_guide_noise`), >= 0; 0 returns the guide unchanged.
        k, space: range σ in units of ``sigma``; spatial σ in pixels (> 0).
    Returns:
        float32 array of the guide's shape.
    """
    import cv2

    if not (np.isfinite(sigma) and sigma >= 0) or not (k > 0 and space > 0):
        raise ConfigError(f"filter_guide needs sigma >= 0, k > 0 and space > 0; got {sigma}, {k}, {space}")
    g = np.ascontiguousarray(guide, dtype=np.float32)
    if sigma == 0:
        return g
    d = 2 * int(np.ceil(2 * space)) + 1
    if g.ndim == 3 and g.shape[2] not in (1, 3):
        return np.stack([filter_guide(g[:, :, c], sigma, k=k, space=space) for c in range(g.shape[2])], axis=2)
    out = cv2.bilateralFilter(g, d, float(k * sigma), float(space), borderType=cv2.BORDER_REPLICATE)
    return out.reshape(g.shape)
