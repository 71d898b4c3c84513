"""Side-by-side comparison panels for depth / raster results.

All maps of one panel share one colour scale so they can be compared by eye; error maps share
their own scale. Output is a uint8 RGB array; writing it is the caller's business.
"""

from __future__ import annotations

import cv2
import numpy as np


def colorize(x: np.ndarray, lo: float, hi: float, *, cmap: int = cv2.COLORMAP_TURBO, mask: np.ndarray | None = None):
    """Map an (H, W) float array to uint8 RGB (H, W, 3) with a fixed range; masked/NaN -> black."""
    t = np.clip((np.asarray(x, dtype=np.float64) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    t = np.nan_to_num(t, nan=0.0)
    rgb = cv2.applyColorMap(np.round(t * 255).astype(np.uint8), cmap)[..., ::-1]
    bad = ~np.isfinite(x) if mask is None else (~mask | ~np.isfinite(x))
    rgb = rgb.copy()
    rgb[bad] = 0
    return rgb


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = np.ascontiguousarray(tile)
    scale = max(0.4, tile.shape[1] / 600)
    thick = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    cv2.rectangle(tile, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), -1)
    cv2.putText(tile, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return tile


def depth_panel(
    guide: np.ndarray,
    maps: dict[str, np.ndarray],
    *,
    reference: np.ndarray | None = None,
    error_of: list[str] | None = None,
    valid: np.ndarray | None = None,
    gap: int = 4,
) -> np.ndarray:
    """Build ``guide | map_1 | … | map_n | |error| maps`` as one uint8 RGB image.

    Args:
        guide: (H, W, 3) float in [0, 1] or uint8.
        maps: label -> (H', W') map; LR maps are nearest-upsampled to H×W for display.
        reference: ground truth (H, W); sets the colour range and enables error maps.
        error_of: labels whose absolute error to ``reference`` is shown (shared error scale).
        valid: bool (H, W) of pixels with ground truth (errors elsewhere are black).
    """
    g = guide if guide.dtype == np.uint8 else np.round(np.clip(guide, 0, 1) * 255).astype(np.uint8)
    H, W = g.shape[:2]
    rng_src = reference if reference is not None else next(iter(maps.values()))
    finite = rng_src[np.isfinite(rng_src) & (valid if valid is not None and reference is not None else True)]
    lo, hi = (float(np.percentile(finite, 0.5)), float(np.percentile(finite, 99.5))) if finite.size else (0.0, 1.0)
    tiles = [_label(g, "guide")]
    for name, m in maps.items():
        if m.shape != (H, W):
            m = cv2.resize(m.astype(np.float32), (W, H), interpolation=cv2.INTER_NEAREST)
        tiles.append(_label(colorize(m, lo, hi), name))
    if reference is not None and error_of:
        errs = {k: np.abs(maps[k] - reference) for k in error_of}
        emax = max(float(np.nanpercentile(e, 99)) for e in errs.values()) or 1.0
        for k, e in errs.items():
            tiles.append(_label(colorize(e, 0.0, emax, cmap=cv2.COLORMAP_INFERNO, mask=valid), f"|error| {k}"))
    sep = np.full((H, gap, 3), 255, np.uint8)
    out = [tiles[0]]
    for t in tiles[1:]:
        out += [sep, t]
    return np.concatenate(out, axis=1)
