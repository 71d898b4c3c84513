"""Depth sensor model: noise growing with depth squared, holes behind occlusion edges, dropouts.

Depth maps are float32 (H, W) in millimetres; the returned mask is bool (H, W), False at holes.
"""

from __future__ import annotations

import cv2
import numpy as np

from optisr.data.synthetic.appearance import value_noise
from optisr.data.synthetic.config import SceneConfig

__all__ = ["simulate_sensor"]

_F32 = np.float32


def simulate_sensor(
    depth_clean: np.ndarray, rng: np.random.Generator, cfg: SceneConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Sensor depth (H, W) float32 mm, 0 at holes, and the valid mask (H, W) bool from ``depth_clean``."""
    h, w = depth_clean.shape
    depth = depth_clean.copy()
    if rng.random() < cfg.depth_noise_prob:
        k = rng.uniform(*cfg.depth_noise_mm_at_1m)
        sigma = _F32(k / 1e6) * depth_clean * depth_clean
        depth += sigma * rng.standard_normal((h, w), dtype=_F32)
        np.clip(depth, *cfg.depth_range_mm, out=depth)
    holes = np.zeros((h, w), bool)
    if rng.random() < cfg.edge_hole_prob:
        width = int(rng.integers(cfg.edge_hole_width_px[0], cfg.edge_hole_width_px[1] + 1))
        # Pixels with a clearly closer surface within `width` px to one side (projector shadow),
        # or directly next to them in any direction.
        direction = rng.integers(2)
        kernel = np.ones((1, width + 1), np.uint8)
        anchor = (0, 0) if direction == 0 else (width, 0)
        near_dir = cv2.erode(depth_clean, kernel, anchor=anchor, borderType=cv2.BORDER_REPLICATE)
        near_iso = cv2.erode(depth_clean, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
        thr = _F32(1 + cfg.edge_hole_min_jump)
        cand = (depth_clean > near_dir * thr) | (depth_clean > near_iso * thr)
        keep = rng.uniform(*cfg.edge_hole_keep)
        gate = value_noise(rng, h, w, rng.uniform(2, 8), octaves=2)
        holes |= cand & (gate < np.quantile(gate[::3, ::3], keep))
    if rng.random() < cfg.dropout_prob:
        rate = rng.uniform(*cfg.dropout_rate)
        if rate > 0:
            blob = value_noise(rng, h, w, rng.uniform(0.02, 0.1) * min(h, w), octaves=3)
            holes |= blob < np.quantile(blob[::3, ::3], 0.9 * rate)
            holes |= rng.random((h, w), dtype=_F32) < _F32(0.1 * rate)
    mask = ~holes
    depth[holes] = 0
    return depth, mask
