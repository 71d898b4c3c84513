"""Light restoration before a generator that was not trained for the input's degradation.

RealSR DF2K learnt camera noise and blur, not JPEG blocks or heavy grain: fed such an input, it
turns the blocks and grain into dense hallucinated texture. When no model for that degradation
is installed (:mod:`optisr.blind.choice`), ``optisr upscale`` first applies one of:

* ``"deblock"``: an edge-preserving bilateral filter (5×5, σ_space = 2 px, σ_colour
  :data:`DEBLOCK_SIGMA_COLOR` in 0–255 units) blended in with weight 1 on the two pixels either
  side of each 8×8 grid line (the grid's phase is found by
  :func:`optisr.degrade.estimate.block_grid`) and :data:`DEBLOCK_INNER_WEIGHT` inside the
  blocks (mosquito noise), so block steps are smoothed while real edges (steps ≫ σ_colour) stay.
* ``"denoise"``: OpenCV's non-local means (``fastNlMeansDenoisingColored``, 7×7 patches, 21×21
  search) with filter strength ``h = clip(DENOISE_H_PER_SIGMA·σ̂, 3, 20)`` from the estimated
  noise σ̂ (0–255 units).

Both work on 8-bit copies; for uint16 / float inputs only the change the filter made is added
to the original, so untouched pixels keep their precision. Alpha is passed through.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import cv2
import numpy as np

from optisr.degrade.estimate import block_grid, noise_sigma
from optisr.errors import ConfigError, ShapeError
from optisr.io.images import white_level

__all__ = [
    "DEBLOCK_INNER_WEIGHT",
    "DEBLOCK_SIGMA_COLOR",
    "DENOISE_H_PER_SIGMA",
    "PREFILTERS",
    "Prefilter",
    "apply_prefilter",
    "deblock",
    "denoise",
]

Prefilter: TypeAlias = Literal["none", "deblock", "denoise"]
PREFILTERS: tuple[str, ...] = ("none", "deblock", "denoise")
DEBLOCK_SIGMA_COLOR = 25.0
DEBLOCK_INNER_WEIGHT = 0.4
DENOISE_H_PER_SIGMA = 1.2


def _split(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, float]:
    """``(H, W[, C])`` → (colour ``(H, W, 1|3)`` as given, alpha or None, full-scale value)."""
    arr = np.asarray(image)
    full = white_level(arr.dtype)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ShapeError(f"image must be (H, W) or (H, W, 1|2|3|4); got shape {np.asarray(image).shape}")
    if arr.shape[2] in (2, 4):
        return arr[:, :, :-1], arr[:, :, -1:], full
    return arr, None, full


def _restore(
    image: np.ndarray, colour: np.ndarray, alpha: np.ndarray | None, full: float, u8: np.ndarray, out8: np.ndarray
) -> np.ndarray:
    """Put the 8-bit filter result back into the input's dtype, channels and alpha."""
    if image.dtype == np.uint8:
        new = out8
    else:
        delta = (out8.astype(np.float64) - u8.astype(np.float64)) * (full / 255.0)
        new = colour.astype(np.float64) + delta
        new = np.clip(new, 0, full)
        new = np.round(new).astype(image.dtype) if image.dtype == np.uint16 else new.astype(image.dtype)
    if alpha is not None:
        new = np.concatenate([new, alpha], axis=2)
    return new[:, :, 0] if image.ndim == 2 else new


def _to_u8(colour: np.ndarray, full: float) -> np.ndarray:
    return np.round(np.clip(colour.astype(np.float64) * (255.0 / full), 0, 255)).astype(np.uint8)


def deblock(image: np.ndarray, *, sigma_color: float = DEBLOCK_SIGMA_COLOR) -> np.ndarray:
    """Smooth JPEG block steps (see the module docstring). Same shape and dtype as ``image``."""
    colour, alpha, full = _split(image)
    u8 = _to_u8(colour, full)
    _, row_phase, col_phase = block_grid(u8)
    smooth = cv2.bilateralFilter(u8, 5, float(sigma_color), 2.0)
    if smooth.ndim == 2:
        smooth = smooth[:, :, None]
    h, w = u8.shape[:2]

    def near_line(n: int, phase: int) -> np.ndarray:
        # pixels 8k+phase-1 .. 8k+phase+2: two each side of the line between 8k+phase and 8k+phase+1
        offset = (np.arange(n) - phase) % 8
        return (offset <= 1) | (offset == 7) | (offset == 2)

    mask = near_line(h, row_phase)[:, None] | near_line(w, col_phase)[None, :]
    weight = np.where(mask, 1.0, DEBLOCK_INNER_WEIGHT)[:, :, None]
    out8 = np.round(weight * smooth + (1.0 - weight) * u8).astype(np.uint8)
    return _restore(np.asarray(image), colour, alpha, full, u8, out8)


def denoise(image: np.ndarray, *, sigma: float | None = None) -> np.ndarray:
    """Non-local means with ``h`` from the noise σ (estimated when None). Same shape and dtype."""
    colour, alpha, full = _split(image)
    u8 = _to_u8(colour, full)
    s = noise_sigma(u8) if sigma is None else float(sigma)
    h = float(np.clip(DENOISE_H_PER_SIGMA * s, 3.0, 20.0))
    if u8.shape[2] == 3:
        out8 = cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(u8), None, h, h, 7, 21)
    else:
        out8 = cv2.fastNlMeansDenoising(np.ascontiguousarray(u8[:, :, 0]), None, h, 7, 21)[:, :, None]
    return _restore(np.asarray(image), colour, alpha, full, u8, out8)


def apply_prefilter(image: np.ndarray, kind: str, *, noise: float | None = None) -> np.ndarray:
    """``"none"`` (the image itself), ``"deblock"`` or ``"denoise"`` (with ``noise`` σ, 0–255, if known).

    Raises:
        ConfigError: unknown ``kind``.
    """
    if kind == "none":
        return image
    if kind == "deblock":
        return deblock(image)
    if kind == "denoise":
        return denoise(image, sigma=noise)
    raise ConfigError(f"prefilter must be one of {', '.join(PREFILTERS)}; got {kind!r}")
