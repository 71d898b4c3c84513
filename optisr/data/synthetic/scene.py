"""Whole scenes: :func:`make_scene` composes background, objects, thin structures, marks, the
guide image and the sensor depth; :func:`make_batch` stacks seeded scenes; :func:`preview`
draws a scene for eyeballing.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import cv2
import numpy as np

from optisr.data.synthetic.appearance import Material, form_guide, paint_marks
from optisr.data.synthetic.config import SceneConfig
from optisr.data.synthetic.geometry import (
    Camera,
    Canvas,
    depth_at,
    grid,
    plane_depth,
    render_box,
    render_curved,
    render_polygon,
    render_thin,
    tilted_normal,
)
from optisr.data.synthetic.sensor import simulate_sensor
from optisr.errors import ConfigError, ShapeError

__all__ = ["SyntheticScene", "disparity_255", "make_batch", "make_scene", "preview"]

_F32 = np.float32
_MIN_SIZE = 8


@dataclass
class SyntheticScene:
    """One synthetic RGB-D scene (or a batch of them, see :func:`make_batch`).

    Attributes:
        guide: float32 array (H, W, 3), RGB in [0, 1], with shading, vignetting, camera noise and
            optional blur / JPEG artefacts.
        depth: float32 array (H, W), sensor depth in millimetres; 0 where ``mask`` is False.
        mask: bool array (H, W), False at holes (missing depth).
        depth_clean: float32 array (H, W), depth in millimetres before sensor noise and holes
            (complete, within ``SceneConfig.depth_range_mm``).
        segments: int32 array (H, W), id of the surface seen at each pixel (0 = back wall,
            1 = floor, 2 = side wall, larger = objects and thin structures).
        focal_px: focal length in pixels of the pinhole camera (principal point at the centre).

    For :func:`make_batch` every array has an extra leading axis N and ``focal_px`` is a float64
    array of shape (N,).
    """

    guide: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    depth_clean: np.ndarray
    segments: np.ndarray
    focal_px: float | np.ndarray


def disparity_255(depth_mm: np.ndarray) -> np.ndarray:
    """Middlebury-like 8-bit disparity of a depth map (H, W) in mm: 220 at the nearest point, ∝ 1/z.

    Float64 (H, W). What the benchmarks and tests score procedural scenes in (0–255 units), e.g.
    ``disparity_255(make_scene(384, 480, seed=7000).depth_clean)``.
    """
    z = np.asarray(depth_mm, np.float64)
    return 220.0 * z.min() / z


def _render_background(canvas: Canvas, cam: Camera, rng, cfg: SceneConfig) -> None:
    h, w = cam.h, cam.w
    zmin, zmax = cfg.depth_range_mm
    rows, cols = grid(0, h, 0, w)
    # Back wall, scaled so that it stays inside the depth range.
    n = tilted_normal(rng, cfg.wall_max_tilt_deg)
    corners_r = np.array([0.0, 0.0, h - 1.0, h - 1.0])
    corners_c = np.array([0.0, w - 1.0, 0.0, w - 1.0])
    rel = plane_depth(cam, n, np.array([0.0, 0.0, 1.0]), corners_r, corners_c)
    z0 = rng.uniform(*cfg.background_depth_mm)
    if np.all(np.isfinite(rel)):
        z0 = min(z0, 0.99 * zmax / float(rel.max()))
    canvas.paint(0, 0, plane_depth(cam, n, np.array([0.0, 0.0, z0]), rows, cols), Material(rng, cfg, cam), 0)
    # Floor through the horizon row, with slight roll.
    if rng.random() < cfg.floor_prob:
        v_h = rng.uniform(*cfg.floor_horizon) * h
        ry_h = (v_h - cam.cy) / cam.f
        alpha = -math.atan(ry_h)
        gamma = rng.uniform(-0.08, 0.08)
        nf = np.array([0.0, -math.cos(alpha), -math.sin(alpha)])
        nf = np.array(
            [
                nf[0] * math.cos(gamma) - nf[1] * math.sin(gamma),
                nf[0] * math.sin(gamma) + nf[1] * math.cos(gamma),
                nf[2],
            ]
        )
        v_b = h - 1.0
        if (v_b - cam.cy) / cam.f > ry_h + 0.05:
            z_b = rng.uniform(1.3 * zmin, max(1.4 * zmin, 0.6 * z0))
            p0 = z_b * cam.ray((w - 1) / 2, v_b)
            zf = plane_depth(cam, nf, p0, rows, cols)
            canvas.paint(0, 0, zf, Material(rng, cfg, cam), 1)
    # Side wall on the left or right.
    if rng.random() < cfg.side_wall_prob:
        side = -1.0 if rng.random() < 0.5 else 1.0
        psi = math.radians(rng.uniform(10, 35))
        ns = np.array([-side * math.cos(psi), rng.uniform(-0.1, 0.1), -math.sin(psi)])
        u0 = (w - 1) / 2 + side * rng.uniform(0.2, 0.4) * w
        v0 = rng.uniform(0.3, 0.7) * h
        zb = float(canvas.z[int(v0), int(np.clip(u0, 0, w - 1))])
        p0 = rng.uniform(0.6, 0.9) * min(zb, zmax) * cam.ray(u0, v0)
        canvas.paint(0, 0, plane_depth(cam, ns, p0, rows, cols), Material(rng, cfg, cam), 2)
    # Anything left uncovered (extreme slants) becomes the far limit.
    canvas.z[~np.isfinite(canvas.z)] = zmax


def _thin_structures(canvas, cam, rng, cfg, seg: int, legs) -> int:
    h, w = cam.h, cam.w
    zmin = cfg.depth_range_mm[0]
    for u, v, zl, mat in legs:
        length = rng.uniform(0.1, 0.35) * h
        width = int(rng.integers(cfg.thin_width_px[0], cfg.thin_width_px[1] + 1))
        pts = np.array([[u, v], [u + rng.uniform(-0.03, 0.03) * length, v + length]])
        render_thin(canvas, cam, rng, cfg, pts, (zl, zl * rng.uniform(0.97, 1.03)), width, mat, seg)
        seg += 1
    for _ in range(int(rng.integers(cfg.num_thin[0], cfg.num_thin[1] + 1))):
        width = int(rng.integers(cfg.thin_width_px[0], cfg.thin_width_px[1] + 1))
        if rng.random() < cfg.wire_prob:
            # A sagging wire between two points on (or beyond) the image border.
            e = rng.uniform(-0.1, 1.1, (2, 2)) * [w, h]
            side = rng.integers(2)
            e[0, side] = -5.0
            e[1, side] = (w if side == 0 else h) + 4.0
            tt = np.linspace(0, 1, 17)[:, None]
            pts = e[0] + tt * (e[1] - e[0])
            pts[:, 1] += rng.uniform(0, 0.15) * h * 4 * tt[:, 0] * (1 - tt[:, 0])
        else:
            u = rng.uniform(0, w)
            top = rng.uniform(-0.3, 0.5) * h
            bottom = rng.uniform(top + 0.3 * h, 1.3 * h)
            pts = np.array([[u, top], [u + rng.uniform(-0.1, 0.1) * (bottom - top), bottom]])
        zb = min(depth_at(canvas, *pts[0]), depth_at(canvas, *pts[-1]), depth_at(canvas, *pts[len(pts) // 2]))
        z_ends = [max(zmin * 1.05, zb * rng.uniform(0.4, 0.85)) for _ in range(2)]
        mat = Material(rng, cfg, cam)
        render_thin(canvas, cam, rng, cfg, pts, z_ends, width, mat, seg)
        seg += 1
    return seg


def _as_rng(seed: int | np.random.Generator | np.random.SeedSequence | None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (numbers.Integral, np.random.SeedSequence)):
        return np.random.default_rng(seed)
    raise ConfigError(f"seed must be None, an int, a SeedSequence or a numpy Generator, got {seed!r}")


def _check_size(height, width) -> tuple[int, int]:
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < _MIN_SIZE:
            raise ConfigError(f"{name} must be an integer >= {_MIN_SIZE}, got {v!r}")
    return int(height), int(width)


def make_scene(
    height: int,
    width: int,
    *,
    seed: int | np.random.Generator | np.random.SeedSequence | None = None,
    config: SceneConfig | None = None,
) -> SyntheticScene:
    """Renders one random RGB-D scene.

    Args:
        height: image height H in pixels (>= 8).
        width: image width W in pixels (>= 8).
        seed: an int, a ``SeedSequence`` or a ``numpy.random.Generator`` (used and advanced in
            place); the same seed always gives the same scene. ``None`` draws fresh entropy.
        config: generator parameters; defaults to ``SceneConfig()``.

    Returns:
        A :class:`SyntheticScene` with guide (H, W, 3) float32 in [0, 1], depth (H, W) float32 in
        mm (0 at holes), mask (H, W) bool, depth_clean (H, W) float32 in mm, segments (H, W)
        int32 and the focal length in pixels.

    Raises:
        ConfigError: ``height``/``width`` are not integers >= 8, ``config`` is not a
            :class:`SceneConfig`, or ``seed`` has an unsupported type.
    """
    cfg = SceneConfig() if config is None else config
    if not isinstance(cfg, SceneConfig):
        raise ConfigError(f"config must be a SceneConfig, got {type(cfg).__name__}")
    h, w = _check_size(height, width)
    rng = _as_rng(seed)
    zmin, zmax = cfg.depth_range_mm
    cam = Camera(h, w, rng.uniform(*cfg.focal_scale) * max(h, w), (w - 1) / 2, (h - 1) / 2)
    canvas = Canvas(h, w)
    _render_background(canvas, cam, rng, cfg)

    # Foreground objects, sampled then painted back to front (the z-buffer resolves overlaps).
    s = min(h, w)
    objects = []
    for _ in range(int(rng.integers(cfg.num_objects[0], cfg.num_objects[1] + 1))):
        u0, v0 = rng.uniform(-0.05, 1.05) * w, rng.uniform(-0.05, 1.05) * h
        r = rng.uniform(*cfg.object_size) * s
        far = depth_at(canvas, u0, v0)
        lo, hi = 1.15 * zmin, max(1.2 * zmin, 0.9 * far)
        z0 = float(np.exp(rng.uniform(math.log(lo), math.log(hi))))
        objects.append((z0, u0, v0, r))
    objects.sort(key=lambda o: -o[0])
    legs: list = []
    seg = 3
    for z0, u0, v0, r in objects:
        if rng.random() < cfg.weak_edge_prob:
            behind = canvas.albedo[int(np.clip(v0, 0, h - 1)), int(np.clip(u0, 0, w - 1))]
            flat = np.clip(behind + rng.normal(0, cfg.weak_edge_color_std, 3), 0, 1)
            mat = Material(rng, cfg, cam, flat=flat)
        else:
            mat = Material(rng, cfg, cam)
        if rng.random() < cfg.curved_prob:
            render_curved(canvas, cam, rng, cfg, u0, v0, r, z0, mat, seg)
        elif rng.random() < cfg.box_prob:
            render_box(canvas, cam, rng, cfg, u0, v0, r, z0, mat, seg)
        else:
            render_polygon(canvas, cam, rng, cfg, u0, v0, r, z0, mat, seg, legs)
        seg += 1
    _thin_structures(canvas, cam, rng, cfg, seg, legs)
    paint_marks(canvas, rng, cfg)
    np.clip(canvas.albedo, 0, 1, out=canvas.albedo)

    depth_clean = np.clip(canvas.z, zmin, zmax).astype(_F32, copy=False)
    guide = form_guide(canvas, depth_clean, cam, rng, cfg)
    depth, mask = simulate_sensor(depth_clean, rng, cfg)
    return SyntheticScene(
        guide=guide, depth=depth, mask=mask, depth_clean=depth_clean, segments=canvas.seg, focal_px=float(cam.f)
    )


def make_batch(
    n: int,
    height: int,
    width: int,
    seed: int | np.random.SeedSequence | None = None,
    *,
    config: SceneConfig | None = None,
) -> SyntheticScene:
    """Renders ``n`` independent scenes and stacks them.

    Scene ``i`` equals ``make_scene(height, width, seed=np.random.SeedSequence(seed).spawn(n)[i])``,
    so a batch is reproducible from ``seed`` alone.

    Args:
        n: number of scenes (>= 1).
        height: image height H in pixels.
        width: image width W in pixels.
        seed: an int or ``SeedSequence``; ``None`` draws fresh entropy.
        config: generator parameters; defaults to ``SceneConfig()``.

    Returns:
        A :class:`SyntheticScene` whose arrays have a leading batch axis: guide (N, H, W, 3)
        float32, depth and depth_clean (N, H, W) float32 mm, mask (N, H, W) bool, segments
        (N, H, W) int32, focal_px (N,) float64.

    Raises:
        ConfigError: ``n`` is not a positive integer, or as :func:`make_scene`.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    if isinstance(seed, np.random.Generator):
        raise ConfigError("make_batch needs an int or SeedSequence seed, not a Generator")
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    scenes = [make_scene(height, width, seed=child, config=config) for child in ss.spawn(int(n))]
    return SyntheticScene(
        guide=np.stack([s.guide for s in scenes]),
        depth=np.stack([s.depth for s in scenes]),
        mask=np.stack([s.mask for s in scenes]),
        depth_clean=np.stack([s.depth_clean for s in scenes]),
        segments=np.stack([s.segments for s in scenes]),
        focal_px=np.array([s.focal_px for s in scenes], dtype=np.float64),
    )


def preview(scene: SyntheticScene) -> np.ndarray:
    """Side-by-side panel for eyeballing a scene.

    Args:
        scene: a single scene from :func:`make_scene`.

    Returns:
        uint8 array (H, 2W, 3), RGB: the guide on the left, the sensor depth colour-mapped on the
        right (near = red, far = blue, holes black).

    Raises:
        ShapeError: ``scene`` holds a batch rather than a single scene.
    """
    if scene.guide.ndim != 3 or scene.depth.ndim != 2:
        raise ShapeError(f"preview needs a single scene, got guide of shape {scene.guide.shape}")
    left = np.round(np.clip(scene.guide, 0, 1) * 255).astype(np.uint8)
    d, m = scene.depth, scene.mask
    if m.any():
        lo, hi = float(d[m].min()), float(d[m].max())
    else:
        lo, hi = 0.0, 1.0
    t = np.clip((hi - d) / max(hi - lo, 1e-6), 0, 1)
    right = cv2.applyColorMap(np.round(t * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
    right = np.where(m[..., None], right, 0).astype(np.uint8)
    return np.concatenate([left, right], axis=1)
