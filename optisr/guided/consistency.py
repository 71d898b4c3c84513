"""LR consistency of an upsampled raster: ``max |D x − s|`` over valid LR pixels, strip by strip.

For outputs of any size: the check never builds an HR-sized float64 temporary. ``area``/``sum``
reduce strips of whole LR rows (their blocks never cross a strip); ``bicubic``/``gaussian``
reduce the columns of HR-row strips, then the rows (:meth:`DownsampleOperator.apply_strips`).
Each strip holds about :data:`STRIP_PIXELS` HR pixels.
"""

from __future__ import annotations

import numpy as np

from optisr.errors import ShapeError
from optisr.ops.operators import DownsampleOperator, lr_size, make_operator

__all__ = ["STRIP_PIXELS", "lr_consistency_error", "lr_row_strips"]

STRIP_PIXELS = 1 << 20
"""HR pixels per strip of the strip-wise checks and roundings (~80 MB of float64 temporaries)."""


def lr_row_strips(h: int, w: int, scale: int, strip_pixels: int | None = None) -> range:
    """Starts of strips of LR rows holding about ``strip_pixels`` HR pixels each (one strip if small).

    Args:
        h, w: LR grid size; scale: integer scale f (an LR row covers f·f·w HR pixels).
        strip_pixels: HR pixels per strip (default :data:`STRIP_PIXELS`).
    Returns:
        ``range(0, h, step)``; ``step`` (>= 1) is the number of LR rows per strip.
    """
    n = STRIP_PIXELS if strip_pixels is None else int(strip_pixels)
    return range(0, h, max(1, n // max(1, scale * scale * w)))


def lr_consistency_error(
    out: np.ndarray,
    source: np.ndarray,
    valid: np.ndarray,
    scale: int,
    *,
    operator: str | DownsampleOperator = "area",
    sigma: float | None = None,
    strip_pixels: int | None = None,
) -> float:
    """``max |D out − s|`` over valid LR pixels, computed in float64 strip by strip.

    Args:
        out: (H, W) upsampled raster, any real dtype (integer rasters included); not copied whole.
        source: (h, w) LR values s, ``(h, w) = ceil((H, W) / scale)``; same unit as ``out``.
        valid: (h, w) bool, True where ``s`` constrains ``out``; must hold at least one True.
        scale: integer scale f.
        operator: ``area``, ``sum``, ``bicubic`` or ``gaussian`` (the D of the solve), or the
            operator itself (e.g. a :func:`~optisr.ops.operators.resampling_operator` at a
            non-integer ratio; then ``scale`` is its nominal scale).
        sigma: Gaussian PSF width in HR pixels (``gaussian`` only).
        strip_pixels: HR pixels per strip (default :data:`STRIP_PIXELS`).
    Returns:
        The largest absolute LR error, in the source's unit (0.0 = exactly consistent).
    """
    H, W = out.shape
    h, w = source.shape
    need = operator.lr_size if isinstance(operator, DownsampleOperator) else lr_size((H, W), scale)
    if need != (h, w) or valid.shape != (h, w):
        raise ShapeError(
            f"an {H}×{W} output at ×{scale} needs an {need} source and mask, got {source.shape} and {valid.shape}"
        )
    if not valid.any():
        raise ShapeError("the LR mask has no valid pixel: no consistency to measure")
    import torch

    starts = lr_row_strips(h, w, scale, strip_pixels)
    op = make_operator(operator, (H, W), scale, sigma=sigma)
    lr = op.apply_strips(out, rows=starts.step * scale, dtype=torch.float64).numpy()
    return float(np.abs(lr - source)[valid].max())
