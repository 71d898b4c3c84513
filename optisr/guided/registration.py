"""A translation between the source and the guide: estimated from edges, applied to the guide.

A depth sensor and a camera sit side by side; a calibration error of a few pixels moves every
depth edge off the colour edge where the graph cuts, and an exact solve then builds a step where
the guide has its edge and a halo where the source has it. Allowed RGB-D-D test405 pairs have
such offsets (2–4 HR px on some images; README, *Registration*).

The estimate here is the integer shift ``t`` (HR px, within :func:`search_radius`) that best lines
up the guide's gradient magnitude with that of the source upsampled onto the guide's grid
(a cross-correlation of zero-mean edge maps on a central crop). The guide's colour edges include
texture that is no depth edge, so the peak can be spurious; :func:`optisr.guided.api.guided_upsample`
therefore keeps a shift only when exact solves with the moved guide predict held-out source
pixels at least :data:`ACCEPT_RATIO` times better than with the guide as given (a cross-validation
on a central window, :data:`CV_CROP_HR`). The guide is moved onto the source, not the reverse: the
output keeps the source's geometry and its exact consistency ``D x = s``.

Numpy only; the numerical core knows nothing of files.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from optisr.guided.guides import guide_to_unit

SEARCH_RADIUS = 4
"""The smallest search radius in HR px (see :func:`search_radius`)."""

EDGE_CROP_HR = 512
"""Edge maps are correlated on a central crop of at most this many HR px per side."""

CV_CROP_HR = 384
"""The cross-validation that accepts a shift solves a central window of at most this many HR px per side."""

ACCEPT_RATIO = 1.2
"""A shift is kept when the held-out squared error with the guide as given is at least this many
times that with the moved guide. Chosen on allowed data (``benchmarks/registration.py``): 1.1
and 1.3 gave the same means on clean RGB-D-D test405, and every false shift on procedural scenes
(perfectly registered) scored below 1."""


def search_radius(hr_size: tuple[int, int]) -> int:
    """Shifts up to this many HR px are searched: :data:`SEARCH_RADIUS`, or 1 % of the longer side."""
    return max(SEARCH_RADIUS, math.ceil(max(hr_size) / 100))


def shift_image(image: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    """``image`` (H, W, ...) with its content moved by ``shift = (dy, dx)`` px (down, right).

    ``out[y, x] = image[y − dy, x − dx]``; rows and columns that come from outside repeat the
    nearest edge. A new array of the same dtype.
    """
    dy, dx = (int(v) for v in shift)
    H, W = image.shape[:2]
    rows = np.clip(np.arange(H) - dy, 0, H - 1)
    cols = np.clip(np.arange(W) - dx, 0, W - 1)
    return image[rows][:, cols]


def source_on_guide_grid(source: np.ndarray, hr_size: tuple[int, int], scale: int | None) -> np.ndarray:
    """The source (h, w), NaN = invalid, bicubically upsampled onto the guide's (H, W) grid, float64.

    ``scale``: an integer factor whose blocks start at the top-left corner (the ``ceil`` grid
    policy: the LR grid may overhang the HR image at the bottom and right); None: the source covers
    the guide's field of view at the sizes' ratio. Invalid pixels take the mean of the valid ones
    first (edges are what matters here, not values).
    """
    src = np.asarray(source, np.float64)
    ok = np.isfinite(src)
    fill = float(src[ok].mean()) if ok.any() else 0.0
    t = torch.from_numpy(np.where(ok, src, fill))[None, None]
    H, W = hr_size
    if scale is None:
        up = F.interpolate(t, size=(H, W), mode="bicubic", align_corners=False)
    else:
        h, w = src.shape
        up = F.interpolate(t, size=(h * scale, w * scale), mode="bicubic", align_corners=False)[..., :H, :W]
    return up[0, 0].numpy()


def _edges(image: np.ndarray) -> np.ndarray:
    """Gradient magnitude (H, W) of a (H, W) or (H, W, C) float image (channels averaged first)."""
    g = image.mean(axis=-1) if image.ndim == 3 else image
    gy, gx = np.gradient(g.astype(np.float64))
    return np.hypot(gy, gx)


def edge_shift(
    source_hr: np.ndarray, guide: np.ndarray, radius: int, crop: int = EDGE_CROP_HR
) -> tuple[tuple[int, int], float]:
    """The shift ``t`` (|dy|, |dx| ≤ ``radius``) that lines the guide's edges up with the source's.

    Args:
        source_hr: (H, W) float, the source on the guide's grid (:func:`source_on_guide_grid`).
        guide: (H, W) or (H, W, C), any dtype :func:`~optisr.guided.guides.guide_to_unit` reads.
        radius: the largest shift tried, HR px.
        crop: the correlation uses a central crop of at most this many px per side.
    Returns:
        ``(t, gain)``: ``shift_image(guide, t)`` has its edges where the source has them;
        ``gain`` is the correlation at ``t`` over that at (0, 0) (≥ 1 when the correlation at zero is
        positive; 1.0 for ``t = (0, 0)``).

    The correlation of zero-mean gradient magnitudes is computed for every shift at once with an
    FFT; the source's edge map is zero within ``radius`` of the crop's border, so no shift wraps
    around.
    """
    H, W = source_hr.shape
    r = int(radius)
    side = [min(n, crop) for n in (H, W)]
    if min(side) <= 2 * r + 2:
        return (0, 0), 1.0
    y0, x0 = (H - side[0]) // 2, (W - side[1]) // 2
    win = (slice(y0, y0 + side[0]), slice(x0, x0 + side[1]))
    d = _edges(source_hr[win])
    g = _edges(guide_to_unit(guide)[win])
    d -= d.mean()
    g -= g.mean()
    inner = np.zeros_like(d)
    inner[r:-r, r:-r] = d[r:-r, r:-r]
    # corr[t] = Σ_p d(p) g(p − t): shift_image(g, t) evaluated where d is
    corr = np.fft.irfft2(np.fft.rfft2(inner) * np.conj(np.fft.rfft2(g)), s=d.shape)
    best, score = (0, 0), float(corr[0, 0])
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            c = float(corr[dy % d.shape[0], dx % d.shape[1]])
            if c > score + 1e-12 * abs(score):
                best, score = (dy, dx), c
    zero = float(corr[0, 0])
    gain = score / zero if best != (0, 0) and zero > 0 else 1.0
    return best, gain
