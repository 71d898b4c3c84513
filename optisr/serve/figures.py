"""The pictures ``optisr serve`` shows: colour-mapped rasters, error maps, 8-bit previews.

Every function writes one 8-bit RGB PNG (through :func:`optisr.io.images.write_image`, so
atomically) and returns what the page needs to say about it. The colour mapping itself is
:func:`optisr.viz.panels.colorize` (turbo for values, inferno for errors).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from optisr.io.images import from_float, to_float, write_image
from optisr.ops.operators import DownsampleOperator, make_operator
from optisr.viz.panels import colorize

__all__ = ["lr_residual", "save_colour_map", "save_preview", "value_range"]


def value_range(values: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """(lo, hi): the 0.5 and 99.5 percentiles of the valid finite values ((0, 1) if none)."""
    v = np.asarray(values, dtype=np.float64)[valid]
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = float(np.percentile(v, 0.5)), float(np.percentile(v, 99.5))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def save_colour_map(
    path: Path, x: np.ndarray, lo: float, hi: float, *, mask: np.ndarray | None = None, errors: bool = False
) -> Path:
    """Write an (H, W) map as a colour PNG: turbo over [lo, hi] (inferno for ``errors``); masked/NaN black."""
    cmap = cv2.COLORMAP_INFERNO if errors else cv2.COLORMAP_TURBO
    return write_image(path, colorize(x, lo, hi, cmap=cmap, mask=mask))


def save_preview(path: Path, image: np.ndarray) -> Path:
    """Write an image of any supported dtype/channels as an 8-bit PNG a browser shows (alpha kept)."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = from_float(to_float(img), np.uint8)
    if img.ndim == 3 and img.shape[2] == 2:  # grey + alpha -> RGBA
        img = np.concatenate([np.repeat(img[:, :, :1], 3, axis=2), img[:, :, 1:]], axis=2)
    return write_image(path, img)


def lr_residual(
    out: np.ndarray,
    source: np.ndarray,
    scale: int,
    *,
    operator: str | DownsampleOperator = "area",
    sigma: float | None = None,
) -> np.ndarray:
    """``D out − s``: the (h, w) float64 LR residual of an (H, W) result, in the source's unit.

    ``(h, w) = ceil((H, W) / scale)`` must be ``source.shape`` (ShapeError otherwise, from the
    operator); ``operator`` may be the operator itself (e.g. a resampling operator at a
    non-integer ratio, with its nominal ``scale``). Its largest absolute value over valid pixels is what ``optisr guided`` reports
    as ``max|Dx-s|``.
    """
    import torch

    H, W = out.shape
    op = make_operator(operator, (H, W), scale, sigma=sigma)
    lr = op.apply_strips(out, dtype=torch.float64).numpy()
    return lr - np.asarray(source, dtype=np.float64)
