"""Edge-preserving smoothing of the guide, scaled to its own noise, before the edge weights are computed.

A noisy guide (a dim indoor capture, a high-ISO phone image) gives every pixel pair a random colour
difference, and the graph cuts where the depth is smooth: the colour graph then copies the noise
pattern into the depth. A bilateral filter whose range σ is a multiple of the guide's estimated noise
averages that noise away while keeping every colour edge that stands clearly above it (a step of
several σ̂ keeps its full contrast). On a clean guide σ̂ is small, so only variations of the order
of the sensor noise are touched.

Shapes and units: guides are (H, W, C) float arrays in [0, 1] (C = 1 or 3); σ̂ is in the same units.
"""

from __future__ import annotations

import numpy as np

from optisr.errors import ConfigError

__all__ = [
    "GUIDE_FILTER_K",
    "GUIDE_FILTER_SPACE",
    "NOISE_CROP",
    "estimate_guide_noise",
    "filter_guide",
]

GUIDE_FILTER_K = 4.0
"""Range σ of the bilateral filter in units of the guide's estimated noise σ̂ (see README, *Noisy guides*)."""

GUIDE_FILTER_SPACE = 2.0
"""Spatial σ of the bilateral filter, in HR pixels (window 2·⌈2σ⌉ + 1)."""

NOISE_CROP = 512
"""σ̂ is estimated on a central crop of at most this many pixels per side: 0.05 s instead of 0.2–0.35 s
on a 1024² guide (2 threads); 3·512² windows are plenty for a MAD."""


def estimate_guide_noise(guide: np.ndarray) -> float:
    """The guide's noise σ̂ in [0, 1] units: the mean over channels of :func:`~optisr.guided.fidelity.estimate_noise_sigma`.

    Args:
        guide: (H, W) or (H, W, C) float array in [0, 1] (integer arrays are scaled by their dtype's maximum).
    Returns:
        σ̂ >= 0 (0.0 for a guide too small to tell noise from signal). Estimated on a central crop of
        at most :data:`NOISE_CROP`² pixels.
    """
    from optisr.guided.fidelity import estimate_noise_sigma

    g = np.asarray(guide)
    if np.issubdtype(g.dtype, np.integer):
        g = g.astype(np.float32) / float(np.iinfo(g.dtype).max)
    if g.ndim == 2:
        g = g[:, :, None]
    if g.ndim != 3:
        raise ConfigError(f"guide must be (H, W) or (H, W, C), got shape {g.shape}")
    H, W = g.shape[:2]
    r0, c0 = max(0, (H - NOISE_CROP) // 2), max(0, (W - NOISE_CROP) // 2)
    crop = g[r0 : r0 + NOISE_CROP, c0 : c0 + NOISE_CROP]
    return float(np.mean([estimate_noise_sigma(crop[:, :, c]) for c in range(crop.shape[2])]))


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
