"""Allowed guided-SR cases the benchmark scripts share (not a benchmark itself).

``benchmarks/`` is on ``sys.path`` when a script here runs, so scripts import this as ``_cases``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from optisr.bench.guided_protocols import make_lr


def rgbdd_area(folder: str, s: int, *, start: int = 0, step: int = 25) -> Iterator[tuple[np.ndarray, ...]]:
    """``(ground truth cm, valid, guide, area LR)`` of every ``step``-th RGB-D-D test405 image from
    ``start``, cropped to a multiple of ``s`` (depth mm -> cm; the guide as stored, uint8)."""
    from optisr.data.rgbdd import RGBDD

    ds = RGBDD(folder)
    for i in range(start, len(ds), step):
        smp = ds[i]
        H, W = (n - n % s for n in smp.depth.shape)
        hr = smp.depth[:H, :W].astype(np.float64) / 10.0  # mm -> cm
        ok = smp.mask[:H, :W]
        lr, _ = make_lr(np.nan_to_num(hr), ok, "area", s)
        yield hr, ok, smp.guide[:H, :W], lr


def procedural_scenes(scenes: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(disparity 0–255, valid, float32 guide)`` of procedural 384×480 scenes, seeds 7000, 7001, …"""
    from optisr.data.synthetic import disparity_255, make_scene

    for i in range(scenes):
        sc = make_scene(384, 480, seed=7000 + i)
        hr = disparity_255(sc.depth_clean)
        yield hr, np.ones(hr.shape, bool), sc.guide.astype(np.float32)
