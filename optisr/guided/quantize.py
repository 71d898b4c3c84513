"""Rounding an upsampled raster to integers, keeping exact LR consistency where it can.

An ``exact`` graph solve satisfies ``D x = s`` in floating point; an integer output (a 16-bit
depth PNG) must be rounded. With the ``area``/``sum`` operators and an integer source, plain
rounding moves a block mean by up to 0.5 unit; :func:`round_consistent` floors each block and
gives its missing units to the pixels with the largest fractional parts (largest-remainder
rounding), so ``D round(x) = s`` still holds exactly on every valid block whose target sum is
reachable within ``[lo, hi]``. Both roundings work on strips of about
:data:`optisr.guided.consistency.STRIP_PIXELS` HR pixels, so a large raster never gets a
whole-image float64/int64 temporary.
"""

from __future__ import annotations

import numpy as np

from optisr.errors import ConfigError, ShapeError
from optisr.guided import consistency
from optisr.ops.operators import lr_size

__all__ = ["round_clip", "round_consistent", "round_to_integers"]


def _round_block_sums(
    x: np.ndarray, source: np.ndarray, valid: np.ndarray, scale: int, kind: str, lo: float, hi: float
) -> np.ndarray:
    """Largest-remainder rounding of one strip of whole LR rows (float64 (H', W) in, float64 out)."""
    H, W = x.shape
    h, w = source.shape
    x = np.clip(x, lo, hi)
    base = np.zeros((h * scale, w * scale))
    frac = np.full((h * scale, w * scale), -1.0)  # padding never receives a unit
    base[:H, :W] = np.floor(x)
    frac[:H, :W] = x - base[:H, :W]
    inside = np.zeros((h * scale, w * scale))
    inside[:H, :W] = 1.0

    def blocks(a: np.ndarray) -> np.ndarray:
        return a.reshape(h, scale, w, scale).transpose(0, 2, 1, 3).reshape(h, w, scale * scale)

    count = blocks(inside).sum(-1)
    target = np.rint(np.where(valid, source, 0.0) * (count if kind == "area" else 1.0))
    deficit = np.where(valid, np.clip(target - blocks(base).sum(-1), 0, count), 0)
    rank = np.argsort(np.argsort(-blocks(frac), axis=-1, kind="stable"), axis=-1)  # 0 = largest fraction
    add = (rank < deficit[..., None]).astype(np.float64)
    add = add.reshape(h, w, scale, scale).transpose(0, 2, 1, 3).reshape(h * scale, w * scale)
    return np.minimum(base + add, hi)[:H, :W]


def round_consistent(
    x: np.ndarray,
    source: np.ndarray,
    valid: np.ndarray,
    scale: int,
    *,
    operator: str,
    lo: float,
    hi: float,
    dtype: np.dtype | type,
    strip_pixels: int | None = None,
) -> np.ndarray:
    """Round ``x`` to integers so that every valid block keeps the exact sum the source asks for.

    Args:
        x: (H, W) float solution (float32 or float64), in the source's unit.
        source: (h, w) LR values, ``(h, w) = ceil((H, W) / scale)``; ignored where not ``valid``.
        valid: (h, w) bool, True where the source constrains ``x``.
        scale: integer scale f.
        operator: ``area`` (block means: target sum = rint(s · pixels in block)) or ``sum``
            (target sum = rint(s)).
        lo, hi: the integer range of the output (values are clipped into it first).
        dtype: output integer dtype (e.g. ``np.uint16``); values are stored exactly.
        strip_pixels: HR pixels per strip of whole LR rows (default
            :data:`optisr.guided.consistency.STRIP_PIXELS`).
    Returns:
        (H, W) array of ``dtype`` with integers in ``[lo, hi]``.
    """
    if operator not in ("area", "sum"):
        raise ConfigError(f"consistent rounding needs the area or sum operator (block sums), not {operator!r}")
    H = x.shape[0]
    h, w = source.shape
    if lr_size(x.shape, scale) != (h, w) or valid.shape != (h, w):
        raise ShapeError(f"an {x.shape} raster at ×{scale} needs an {lr_size(x.shape, scale)} source and mask")
    out = np.empty(x.shape, dtype=dtype)
    starts = consistency.lr_row_strips(h, w, scale, strip_pixels)
    for i0 in starts:
        i1 = min(h, i0 + starts.step)
        r0, r1 = i0 * scale, min(H, i1 * scale)
        strip = np.asarray(x[r0:r1], dtype=np.float64)
        out[r0:r1] = _round_block_sums(strip, source[i0:i1], valid[i0:i1], scale, operator, lo, hi)
    return out


def round_clip(
    x: np.ndarray, lo: float, hi: float, dtype: np.dtype | type, *, strip_pixels: int | None = None
) -> np.ndarray:
    """``clip(rint(x), lo, hi)`` of an (H, W) raster as ``dtype``, strip by strip."""
    n = consistency.STRIP_PIXELS if strip_pixels is None else int(strip_pixels)
    out = np.empty(x.shape, dtype=dtype)
    step = max(1, n // max(1, x.shape[1]))
    for r in range(0, x.shape[0], step):
        out[r : r + step] = np.clip(np.rint(np.asarray(x[r : r + step], dtype=np.float64)), lo, hi)
    return out


def round_to_integers(
    x: np.ndarray,
    source: np.ndarray,
    valid: np.ndarray,
    scale: int,
    *,
    dtype: np.dtype | type,
    lo: float | None = None,
    operator: str = "area",
    exact: bool = True,
    strip_pixels: int | None = None,
) -> np.ndarray:
    """An integer raster of ``dtype`` from a float solution: consistent rounding where it applies.

    With ``exact`` (an exactly consistent solve) and the ``area``/``sum`` operator,
    :func:`round_consistent`; otherwise :func:`round_clip`. ``lo`` defaults to the dtype's
    minimum, ``hi`` is its maximum (pass ``lo=1`` where 0 marks invalid pixels).
    """
    info = np.iinfo(dtype)
    lo = float(info.min) if lo is None else float(lo)
    if exact and operator in ("area", "sum"):
        return round_consistent(
            x,
            source,
            valid,
            scale,
            operator=operator,
            lo=lo,
            hi=float(info.max),
            dtype=dtype,
            strip_pixels=strip_pixels,
        )
    return round_clip(x, lo, float(info.max), dtype, strip_pixels=strip_pixels)
