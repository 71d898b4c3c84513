"""Tiled inference with overlap and linear cross-fade blending.

The LR image is cut into ``tile × tile`` cores. Each core is run with ``tile_pad + band`` pixels
of context on every side that is not an image border (``band = tile_pad // 2``). Around each
core boundary the two tiles' outputs are cross-faded with linear ramps over ``2·band`` LR pixels
centred on the boundary, so there is no seam, and every output pixel that gets weight had at
least ``tile_pad`` pixels of context (as in Real-ESRGAN's crop-based tiling, which has seams).
The result equals the untiled output wherever the network's receptive field fits in
``tile_pad``, and degrades smoothly when it does not. Only one tile is on the device at a time: the
output is accumulated on the input's device (CPU for numpy inputs), so device memory is bounded
by the tile size, not the image size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from optisr.errors import ConfigError, ShapeError

__all__ = ["MIN_TILE", "count_tiles", "min_tile_size", "pad_to_multiple", "tile_starts", "tiled_forward"]

# Smallest tile (LR pixels) the command line accepts: below it each tile is mostly context
# (2·(tile_pad + band) pixels around a tiny core), so the work grows like (1 + 2·pad/tile)² and a
# 1-pixel tile runs the network once per input pixel.
MIN_TILE = 32


def min_tile_size(multiple: int = 1) -> int:
    """The smallest useful tile for a network whose input size must be a multiple of ``multiple``."""
    return max(MIN_TILE, int(multiple))


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, int, int]:
    """Pad H and W at the bottom/right up to a multiple of ``multiple`` (reflect, or replicate when tiny).

    Args:
        x: ``(B, C, h, w)``.
    Returns:
        ``(padded, pad_bottom, pad_right)``.
    """
    h, w = x.shape[-2:]
    pb, pr = (-h) % multiple, (-w) % multiple
    if pb == 0 and pr == 0:
        return x, 0, 0
    mode = "reflect" if pb < h and pr < w else "replicate"
    return F.pad(x, (0, pr, 0, pb), mode=mode), pb, pr


def tile_starts(size: int, tile: int) -> list[int]:
    """Start offsets of the tile cores along one axis: ``0, tile, 2·tile, ...`` (< size)."""
    return list(range(0, size, tile))


def count_tiles(h: int, w: int, tile: int, multiple: int = 1) -> int:
    """Number of network calls :func:`tiled_forward` makes for an ``h × w`` input."""
    h, w = math.ceil(h / multiple) * multiple, math.ceil(w / multiple) * multiple
    if tile <= 0 or (h <= tile and w <= tile):
        return 1
    tile = math.ceil(tile / multiple) * multiple
    return len(tile_starts(h, tile)) * len(tile_starts(w, tile))


def _ramp(length: int, lead: int, trail: int, band: int, device: torch.device) -> Tensor:
    """1-D blend weights of one padded tile of ``length`` output pixels.

    ``lead`` / ``trail`` are the context extensions (output pixels) before / after the core, each
    ``context + band`` long (or 0 at an image border). On an extended side the weight is 0 over
    the outer ``lead - band`` pixels, then rises linearly over ``2·band`` pixels centred on the
    core boundary. The neighbouring tile mirrors this, so the two weights sum to 1 across the
    band, and every pixel with weight > 0 had at least ``lead - band`` pixels of context.
    """
    u = torch.arange(length, device=device, dtype=torch.float32) + 0.5
    w = torch.ones(length, device=device)
    if lead > 0:
        w = torch.minimum(w, ((u - (lead - band)) / (2 * band)).clamp(0, 1))
    if trail > 0:
        w = torch.minimum(w, ((length - u - (trail - band)) / (2 * band)).clamp(0, 1))
    return w


def tiled_forward(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    scale: int,
    tile: int,
    tile_pad: int = 10,
    multiple: int = 1,
    out_channels: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Tensor:
    """Run an SR network ``fn`` over ``x`` tile by tile and blend the tiles.

    Args:
        fn: maps ``(B, C, th, tw)`` to ``(B, C', scale·th, scale·tw)``; called under the
            caller's grad mode. It may run on another device: tiles are passed as they are and
            results moved back to ``x``'s device.
        x: LR input ``(B, C, h, w)`` float; h and w multiples of ``multiple`` (see
            :func:`pad_to_multiple`).
        scale: upscale factor of ``fn``.
        tile: core size in LR pixels; ``<= 0`` or >= the image runs ``fn`` once on the whole image.
        tile_pad: context in LR pixels added on each inner side of a tile (>= 0).
        multiple: tile windows are aligned to this (a network size requirement, e.g. 4 for
            pixel-unshuffle ×1 models).
        out_channels: C' (default: C).
        progress: called with the number of tiles done after each tile.
    Returns:
        ``(B, C', scale·h, scale·w)`` float32 on ``x``'s device.
    Raises:
        ShapeError: x is not 4-D or not aligned to ``multiple``. ConfigError: negative ``tile_pad``.
    """
    if x.ndim != 4:
        raise ShapeError(f"x must be (B, C, h, w); got shape {tuple(x.shape)}")
    if tile_pad < 0:
        raise ConfigError(f"tile_pad must be >= 0; got {tile_pad}")
    b, c, h, w = x.shape
    if h % multiple or w % multiple:
        raise ShapeError(f"x of size {h}×{w} is not a multiple of {multiple}; pad it with pad_to_multiple")
    if tile <= 0 or (h <= tile and w <= tile):
        out = fn(x).to(x.device, torch.float32)
        if progress is not None:
            progress(1)
        return out
    tile = math.ceil(tile / multiple) * multiple
    band = max(1, tile_pad // 2)  # half-width of the cross-fade band, LR px
    pad = math.ceil((tile_pad + band) / multiple) * multiple  # context + band, aligned
    c_out = out_channels or c
    out = torch.zeros(b, c_out, h * scale, w * scale, dtype=torch.float32, device=x.device)
    weight = torch.zeros(1, 1, h * scale, w * scale, dtype=torch.float32, device=x.device)
    done = 0
    for y0 in tile_starts(h, tile):
        y1 = min(y0 + tile, h)
        py0, py1 = max(y0 - pad, 0), min(y1 + pad, h)
        wy = _ramp(
            (py1 - py0) * scale,
            (y0 - py0) * scale,
            (py1 - y1) * scale,
            band * scale,
            x.device,
        )
        for x0 in tile_starts(w, tile):
            x1 = min(x0 + tile, w)
            px0, px1 = max(x0 - pad, 0), min(x1 + pad, w)
            wx = _ramp(
                (px1 - px0) * scale,
                (x0 - px0) * scale,
                (px1 - x1) * scale,
                band * scale,
                x.device,
            )
            res = fn(x[:, :, py0:py1, px0:px1]).to(x.device, torch.float32)
            win = wy[:, None] * wx[None, :]
            out[:, :, py0 * scale : py1 * scale, px0 * scale : px1 * scale] += res * win
            weight[:, :, py0 * scale : py1 * scale, px0 * scale : px1 * scale] += win
            done += 1
            if progress is not None:
                progress(done)
    return out / weight
