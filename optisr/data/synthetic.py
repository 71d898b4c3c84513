"""Procedural synthetic RGB-D scenes for training guided depth super-resolution.

Every scene is drawn from scratch by a small z-buffer renderer, so the data are licence-free,
unlimited and fully deterministic given a seed. A scene contains:

* a background made of slanted planes (a back wall, usually a floor, sometimes a side wall);
* foreground objects composited with a z-buffer: flat slanted polygons (some with thin table legs),
  3-D cuboids, ellipsoids/spheres, cylinders and curved quadric patches, giving occlusion boundaries;
* thin structures (poles, sagging wires) 1-4 px wide, in front of what lies behind them;
* albedo textures that are independent of depth (solid stripes/checkers in 3-D, image-space noise,
  colour gradients, printed-like blobs and text marks), and objects whose colour nearly equals the
  colour behind them (depth edges with a weak guide edge);
* Lambertian shading from normals computed from the depth, vignetting, camera noise and optional
  blur / JPEG compression on the RGB guide;
* depth sensor effects: noise whose standard deviation grows with depth squared, holes on the far
  side of occlusion boundaries and random dropouts.

Example:
    >>> from optisr.data.synthetic import make_scene, preview
    >>> scene = make_scene(256, 320, seed=0)
    >>> scene.guide.shape, scene.depth.shape
    ((256, 320, 3), (256, 320))
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields
from typing import Callable

import cv2
import numpy as np

from optisr.errors import ConfigError

__all__ = ["SceneConfig", "SyntheticScene", "make_scene", "make_batch", "preview"]

_F32 = np.float32
_MIN_SIZE = 8


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def _prob(default: float):
    return field(default=default, metadata={"kind": "prob"})


def _frange(default: tuple[float, float], lo: float, hi: float):
    return field(default=default, metadata={"kind": "frange", "bounds": (lo, hi)})


def _irange(default: tuple[int, int], lo: int, hi: int):
    return field(default=default, metadata={"kind": "irange", "bounds": (lo, hi)})


def _num(default: float, lo: float, hi: float):
    return field(default=default, metadata={"kind": "num", "bounds": (lo, hi)})


@dataclass(frozen=True, kw_only=True)
class SceneConfig:
    """Every parameter of the scene generator.

    Fields named ``*_range`` or holding a ``(low, high)`` pair are sampled uniformly per scene (or
    per object); integer pairs are inclusive on both ends. Probabilities lie in ``[0, 1]``.
    Invalid values raise :class:`optisr.errors.ConfigError` (a ``ValueError``) at construction.
    """

    # Hard clip of every depth value, in mm (low > 0).
    depth_range_mm: tuple[float, float] = _frange((500.0, 5000.0), 1e-3, 1e7)
    # Depth of the back wall where it crosses the optical axis, in mm (inside depth_range_mm).
    background_depth_mm: tuple[float, float] = _frange((2200.0, 5000.0), 1e-3, 1e7)
    # Focal length in pixels as a multiple of max(height, width).
    focal_scale: tuple[float, float] = _frange((0.8, 1.4), 0.2, 10.0)
    # Largest tilt of the back wall away from fronto-parallel, in degrees.
    wall_max_tilt_deg: float = _num(35.0, 0.0, 60.0)
    # Probability that the scene has a floor plane.
    floor_prob: float = _prob(0.7)
    # Image row of the floor's horizon as a fraction of the height (negative = above the image).
    floor_horizon: tuple[float, float] = _frange((-0.2, 0.65), -2.0, 0.9)
    # Probability of a side wall on the left or the right.
    side_wall_prob: float = _prob(0.3)
    # Number of foreground objects.
    num_objects: tuple[int, int] = _irange((3, 8), 0, 64)
    # Object radius as a fraction of min(height, width).
    object_size: tuple[float, float] = _frange((0.06, 0.3), 0.005, 2.0)
    # Probability that an object is curved (ellipsoid, cylinder or quadric patch) rather than planar.
    curved_prob: float = _prob(0.45)
    # Probability that a planar object is a 3-D cuboid rather than a flat slanted polygon.
    box_prob: float = _prob(0.35)
    # Largest tilt of a flat polygon away from fronto-parallel, in degrees.
    polygon_max_tilt_deg: float = _num(60.0, 0.0, 80.0)
    # Probability that a flat polygon gets thin legs below it (a table).
    table_legs_prob: float = _prob(0.3)
    # Number of thin structures (poles and wires), besides table legs.
    num_thin: tuple[int, int] = _irange((1, 4), 0, 64)
    # Width of thin structures in pixels.
    thin_width_px: tuple[int, int] = _irange((1, 4), 1, 64)
    # Probability that a thin structure is a sagging wire rather than a near-vertical pole.
    wire_prob: float = _prob(0.4)
    # Probability that a surface carries a procedural texture (stripes, checker or noise).
    texture_prob: float = _prob(0.7)
    # Period of solid (3-D) stripe and checker textures, in mm.
    texture_period_mm: tuple[float, float] = _frange((20.0, 400.0), 1e-3, 1e6)
    # Probability that a surface colour is overlaid with a linear colour gradient.
    gradient_prob: float = _prob(0.4)
    # Probability that an object copies the colour behind it (depth edge with a weak guide edge).
    weak_edge_prob: float = _prob(0.2)
    # Standard deviation of the colour difference of weak-edge objects, in [0, 1] RGB units.
    weak_edge_color_std: float = _num(0.015, 0.0, 1.0)
    # Number of printed-like marks (blobs and text) painted onto single surfaces.
    num_marks: tuple[int, int] = _irange((2, 8), 0, 256)
    # Probability that a mark is text-like rather than a blob.
    text_prob: float = _prob(0.5)
    # Ambient fraction of the illumination (the rest is Lambertian).
    ambient: tuple[float, float] = _frange((0.25, 0.5), 0.0, 1.0)
    # Largest lateral component of the light direction (0 = light at the camera).
    light_spread: float = _num(0.8, 0.0, 5.0)
    # Vignetting strength: brightness falls by this fraction at the image corners.
    vignetting: tuple[float, float] = _frange((0.0, 0.3), 0.0, 1.0)
    # Standard deviation of RGB camera noise at mid-grey, in [0, 1] units.
    rgb_noise_std: tuple[float, float] = _frange((0.002, 0.02), 0.0, 1.0)
    # Probability of a slight Gaussian blur of the guide.
    blur_prob: float = _prob(0.3)
    # Sigma of that blur, in pixels.
    blur_sigma_px: tuple[float, float] = _frange((0.4, 1.0), 0.0, 20.0)
    # Probability of JPEG compression of the guide.
    jpeg_prob: float = _prob(0.3)
    # JPEG quality (1-100).
    jpeg_quality: tuple[int, int] = _irange((60, 95), 1, 100)
    # Probability that sensor noise is added to the depth.
    depth_noise_prob: float = _prob(0.5)
    # Depth noise standard deviation at 1 m, in mm; it scales with (depth / 1 m) ** 2.
    depth_noise_mm_at_1m: tuple[float, float] = _frange((0.5, 3.0), 0.0, 1e4)
    # Probability that the scene has holes along occlusion boundaries.
    edge_hole_prob: float = _prob(0.6)
    # Width of occlusion-boundary holes, in pixels (on the far side of the boundary).
    edge_hole_width_px: tuple[int, int] = _irange((1, 5), 1, 256)
    # Relative depth jump that counts as an occlusion boundary for holes.
    edge_hole_min_jump: float = _num(0.05, 1e-4, 10.0)
    # Fraction of occlusion-boundary hole candidates that are kept (patchy holes).
    edge_hole_keep: tuple[float, float] = _frange((0.5, 0.9), 0.0, 1.0)
    # Probability that the scene has random dropout blobs.
    dropout_prob: float = _prob(0.6)
    # Fraction of pixels lost to dropout blobs when dropouts are on.
    dropout_rate: tuple[float, float] = _frange((0.0, 0.03), 0.0, 1.0)

    def __post_init__(self) -> None:
        for f in fields(self):
            kind = f.metadata.get("kind")
            value = getattr(self, f.name)
            if kind == "prob":
                _check_number(f.name, value, 0.0, 1.0)
            elif kind == "num":
                _check_number(f.name, value, *f.metadata["bounds"])
            elif kind in ("frange", "irange"):
                pair = _check_pair(f.name, value, *f.metadata["bounds"], integer=kind == "irange")
                object.__setattr__(self, f.name, pair)
        lo, hi = self.depth_range_mm
        if not lo < hi:
            raise ConfigError(f"depth_range_mm must have low < high, got {self.depth_range_mm}")
        blo, bhi = self.background_depth_mm
        if blo < lo or bhi > hi:
            raise ConfigError(
                f"background_depth_mm {self.background_depth_mm} must lie inside "
                f"depth_range_mm {self.depth_range_mm}"
            )
        if blo < 1.5 * lo:
            raise ConfigError(
                "background_depth_mm low must be at least 1.5 x depth_range_mm low so that "
                f"objects fit in front of the wall, got {blo} vs {lo}"
            )


def _check_number(name: str, value, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(float(value)) or not lo <= float(value) <= hi:
        raise ConfigError(f"{name} must be finite and in [{lo}, {hi}], got {value!r}")


def _check_pair(name: str, value, lo: float, hi: float, *, integer: bool) -> tuple:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ConfigError(f"{name} must be a (low, high) pair, got {value!r}")
    out = []
    for v in value:
        if integer:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ConfigError(f"{name} must hold integers, got {value!r}")
            v = int(v)
        _check_number(name, v, lo, hi)
        out.append(v if integer else float(v))
    if out[0] > out[1]:
        raise ConfigError(f"{name} must have low <= high, got {value!r}")
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Result type
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Rendering helpers
# --------------------------------------------------------------------------------------------


@dataclass
class _Camera:
    h: int
    w: int
    f: float
    cx: float
    cy: float

    def ray(self, u: float, v: float) -> np.ndarray:
        return np.array([(u - self.cx) / self.f, (v - self.cy) / self.f, 1.0])


class _Canvas:
    """Z-buffer, albedo and segment buffers."""

    def __init__(self, h: int, w: int) -> None:
        self.z = np.full((h, w), np.inf, _F32)
        self.albedo = np.zeros((h, w, 3), _F32)
        self.seg = np.zeros((h, w), np.int32)

    def paint(self, y0: int, x0: int, zp: np.ndarray, colour: Callable, seg: int) -> int:
        """Z-tests a depth patch (inf outside the surface) placed at (y0, x0).

        ``colour(rows, cols, z)`` receives rows (h, 1), cols (1, w) and z (h, w) and returns an
        (h, w, 3) albedo patch; for sparse selections it receives rows, cols and z of shape (n, 1)
        for the drawn pixels only and returns (n, 1, 3). Returns the number of pixels drawn.
        """
        ph, pw = zp.shape
        zb = self.z[y0 : y0 + ph, x0 : x0 + pw]
        sel = zp < zb
        count = int(np.count_nonzero(sel))
        if count == 0:
            return 0
        np.copyto(zb, zp, where=sel)
        np.copyto(self.seg[y0 : y0 + ph, x0 : x0 + pw], np.int32(seg), where=sel)
        alb = self.albedo[y0 : y0 + ph, x0 : x0 + pw]
        if count * 4 < ph * pw:  # sparse (thin structures, small visible parts): gather pixels
            rr, cc = np.nonzero(sel)
            rows = (rr + y0).astype(_F32)[:, None]
            cols = (cc + x0).astype(_F32)[:, None]
            alb[rr, cc] = colour(rows, cols, zp[rr, cc][:, None])[:, 0]
        else:
            rows, cols = _grid(y0, y0 + ph, x0, x0 + pw)
            zc = np.where(sel, zp, _F32(1000))  # finite dummy depth where nothing is drawn
            np.copyto(alb, colour(rows, cols, zc), where=sel[..., None])
        return count


def _bbox(cy: float, cx: float, ry: float, rx: float, h: int, w: int):
    y0, y1 = max(0, int(math.floor(cy - ry))), min(h, int(math.ceil(cy + ry)) + 1)
    x0, x1 = max(0, int(math.floor(cx - rx))), min(w, int(math.ceil(cx + rx)) + 1)
    if y0 >= y1 or x0 >= x1:
        return None
    return y0, y1, x0, x1


def _grid(y0: int, y1: int, x0: int, x1: int):
    return np.arange(y0, y1, dtype=_F32)[:, None], np.arange(x0, x1, dtype=_F32)[None, :]


def _plane_depth(cam: _Camera, n: np.ndarray, p0: np.ndarray, rows, cols) -> np.ndarray:
    """Depth (mm) of the plane {X : n.X = n.p0} along the rays of pixels (rows, cols); inf if none."""
    d = float(n @ p0)
    a, b, c = (float(n[0]) / cam.f, float(n[1]) / cam.f, float(n[2]))
    denom = a * (cols - cam.cx) + b * (rows - cam.cy) + c
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (d / denom).astype(_F32, copy=False)
    z[~(z > 0)] = np.inf
    return z


def _tilted_normal(rng: np.random.Generator, max_tilt_deg: float) -> np.ndarray:
    """Unit normal facing the camera (negative z), tilted by at most ``max_tilt_deg``."""
    theta = math.radians(max_tilt_deg) * math.sqrt(rng.random())
    phi = rng.uniform(0, 2 * math.pi)
    return np.array([math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi), -math.cos(theta)])


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _value_noise(rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 3) -> np.ndarray:
    """Smooth fractal noise (h, w) float32 in roughly [0, 1] with feature size ``cell`` px."""
    out = np.zeros((h, w), _F32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
        g = rng.random((gh, gw), dtype=_F32)
        out += amp * cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
        cell = max(1.0, cell / 2)
    out /= total
    return out


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(0.05, 0.95, 3)
    grey = base.mean()
    sat = rng.uniform(0.0, 1.0) ** 0.7
    return (grey + sat * (base - grey)).astype(_F32)


# --------------------------------------------------------------------------------------------
# Materials
# --------------------------------------------------------------------------------------------


class _Material:
    """Albedo as a function of pixel position and depth; independent of the object's outline."""

    def __init__(self, rng: np.random.Generator, cfg: SceneConfig, cam: _Camera, flat=None) -> None:
        self.rng, self.cam = rng, cam
        self.c1 = _random_colour(rng) if flat is None else flat.astype(_F32)
        self.kind = "flat"
        if flat is None and rng.random() < cfg.texture_prob:
            self.kind = ("stripes", "checker", "noise")[rng.integers(3)]
            self.c2 = _random_colour(rng)
            if rng.random() < 0.4:  # low-contrast texture
                self.c2 = (self.c1 + rng.uniform(0.1, 0.5) * (self.c2 - self.c1)).astype(_F32)
            self.period = float(np.exp(rng.uniform(*np.log(cfg.texture_period_mm))))
            self.rot = _rotation(rng)
            self.hard = rng.random() < 0.6
            self.cell = float(rng.uniform(0.01, 0.15) * min(cam.h, cam.w)) + 2.0
            self.threshold = rng.random() < 0.4
        self.gradient = flat is None and rng.random() < cfg.gradient_prob
        if self.gradient:
            self.c3 = _random_colour(rng)
            self.g_angle = rng.uniform(0, 2 * math.pi)
            self.g_strength = rng.uniform(0.2, 0.8)

    def __call__(self, rows: np.ndarray, cols: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Albedo float32 (..., 3) for pixel rows, cols and depth z in mm (broadcastable arrays).

        Either a dense patch (rows (h, 1), cols (1, w), z (h, w)) or sparse pixels (all (n, 1)).
        """
        cam = self.cam
        r0, c0 = float(rows.min()), float(cols.min())
        ph, pw = int(rows.max() - r0) + 1, int(cols.max() - c0) + 1
        if self.kind == "flat":
            col = np.broadcast_to(self.c1, (*z.shape, 3))
        else:
            if self.kind == "noise":
                t = _value_noise(self.rng, ph, pw, self.cell)
                if t.shape != z.shape:  # sparse pixels
                    t = t[(rows - r0).astype(np.intp), (cols - c0).astype(np.intp)]
                if self.threshold:
                    t = (t > 0.5).astype(_F32)
            else:
                x = z * ((cols - _F32(cam.cx)) / _F32(cam.f))
                y = z * ((rows - _F32(cam.cy)) / _F32(cam.f))
                r = self.rot.astype(_F32) * _F32(1.0 / self.period)
                if self.kind == "stripes":
                    s = (r[0, 0] * x + r[0, 1] * y + r[0, 2] * z) * _F32(2 * math.pi)
                    t = _F32(0.5) + _F32(0.5) * np.sin(s)
                    if self.hard:
                        t = (t > 0.5).astype(_F32)
                else:
                    k = np.floor(r[0, 0] * x + r[0, 1] * y + r[0, 2] * z)
                    k += np.floor(r[1, 0] * x + r[1, 1] * y + r[1, 2] * z)
                    t = np.mod(k, 2).astype(_F32)
            col = self.c1 + t[..., None] * (self.c2 - self.c1)
        if self.gradient:
            extent = _F32(max(ph, pw, 2) - 1)
            g = np.abs(
                (cols - _F32(c0)) * _F32(math.cos(self.g_angle) * self.g_strength / extent)
                + (rows - _F32(r0)) * _F32(math.sin(self.g_angle) * self.g_strength / extent)
            )
            col = col + g[..., None] * (self.c3 - col)
        return col


# --------------------------------------------------------------------------------------------
# Scene parts
# --------------------------------------------------------------------------------------------


def _render_background(canvas: _Canvas, cam: _Camera, rng, cfg: SceneConfig) -> None:
    h, w = cam.h, cam.w
    zmin, zmax = cfg.depth_range_mm
    rows, cols = _grid(0, h, 0, w)
    # Back wall, scaled so that it stays inside the depth range.
    n = _tilted_normal(rng, cfg.wall_max_tilt_deg)
    corners_r = np.array([0.0, 0.0, h - 1.0, h - 1.0])
    corners_c = np.array([0.0, w - 1.0, 0.0, w - 1.0])
    rel = _plane_depth(cam, n, np.array([0.0, 0.0, 1.0]), corners_r, corners_c)
    z0 = rng.uniform(*cfg.background_depth_mm)
    if np.all(np.isfinite(rel)):
        z0 = min(z0, 0.99 * zmax / float(rel.max()))
    canvas.paint(0, 0, _plane_depth(cam, n, np.array([0.0, 0.0, z0]), rows, cols), _Material(rng, cfg, cam), 0)
    # Floor through the horizon row, with slight roll.
    if rng.random() < cfg.floor_prob:
        v_h = rng.uniform(*cfg.floor_horizon) * h
        ry_h = (v_h - cam.cy) / cam.f
        alpha = -math.atan(ry_h)
        gamma = rng.uniform(-0.08, 0.08)
        nf = np.array([0.0, -math.cos(alpha), -math.sin(alpha)])
        nf = np.array([nf[0] * math.cos(gamma) - nf[1] * math.sin(gamma),
                       nf[0] * math.sin(gamma) + nf[1] * math.cos(gamma), nf[2]])
        v_b = h - 1.0
        if (v_b - cam.cy) / cam.f > ry_h + 0.05:
            z_b = rng.uniform(1.3 * zmin, max(1.4 * zmin, 0.6 * z0))
            p0 = z_b * cam.ray((w - 1) / 2, v_b)
            zf = _plane_depth(cam, nf, p0, rows, cols)
            canvas.paint(0, 0, zf, _Material(rng, cfg, cam), 1)
    # Side wall on the left or right.
    if rng.random() < cfg.side_wall_prob:
        side = -1.0 if rng.random() < 0.5 else 1.0
        psi = math.radians(rng.uniform(10, 35))
        ns = np.array([-side * math.cos(psi), rng.uniform(-0.1, 0.1), -math.sin(psi)])
        u0 = (w - 1) / 2 + side * rng.uniform(0.2, 0.4) * w
        v0 = rng.uniform(0.3, 0.7) * h
        zb = float(canvas.z[int(v0), int(np.clip(u0, 0, w - 1))])
        p0 = rng.uniform(0.6, 0.9) * min(zb, zmax) * cam.ray(u0, v0)
        canvas.paint(0, 0, _plane_depth(cam, ns, p0, rows, cols), _Material(rng, cfg, cam), 2)
    # Anything left uncovered (extreme slants) becomes the far limit.
    canvas.z[~np.isfinite(canvas.z)] = zmax


def _star_polygon(rng, u0: float, v0: float, r: float) -> np.ndarray:
    k = int(rng.integers(3, 9))
    ang = np.sort(rng.uniform(0, 2 * math.pi, k))
    if rng.random() < 0.5:  # more regular shapes (boards, frames, tables)
        ang = np.linspace(0, 2 * math.pi, 4, endpoint=False) + rng.uniform(0, math.pi)
        k = 4
    rad = r * rng.uniform(0.5, 1.0, k)
    sx, sy = rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4)
    return np.stack([u0 + sx * rad * np.cos(ang), v0 + sy * rad * np.sin(ang)], 1)


def _poly_patch(poly: np.ndarray, h: int, w: int):
    """Filled polygon mask over its (clipped) bounding box: (y0, x0, bool mask) or None."""
    x0, x1 = max(0, int(math.floor(poly[:, 0].min()))), min(w, int(math.ceil(poly[:, 0].max())) + 1)
    y0, y1 = max(0, int(math.floor(poly[:, 1].min()))), min(h, int(math.ceil(poly[:, 1].max())) + 1)
    if y0 >= y1 or x0 >= x1:
        return None
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    pts = np.round((poly - [x0, y0]) * 16).astype(np.int32)
    cv2.fillPoly(m, [pts], 1, lineType=cv2.LINE_8, shift=4)
    return y0, x0, m.astype(bool)


def _render_polygon(canvas, cam, rng, cfg, u0, v0, r, z0, mat, seg, legs_out) -> None:
    poly = _star_polygon(rng, u0, v0, r)
    patch = _poly_patch(poly, cam.h, cam.w)
    if patch is None:
        return
    y0, x0, m = patch
    n = _tilted_normal(rng, cfg.polygon_max_tilt_deg)
    p0 = z0 * cam.ray(u0, v0)
    rows, cols = _grid(y0, y0 + m.shape[0], x0, x0 + m.shape[1])
    zp = _plane_depth(cam, n, p0, rows, cols)
    zp[~m] = np.inf
    canvas.paint(y0, x0, zp, mat, seg)
    if rng.random() < cfg.table_legs_prob:
        low = poly[np.argsort(poly[:, 1])[-2:]]  # the two lowest vertices
        for u, v in low:
            zl = _plane_depth(cam, n, p0, np.array([v], _F32), np.array([u], _F32))[0]
            if np.isfinite(zl):
                legs_out.append((u, v, float(zl), mat))


def _render_box(canvas, cam, rng, cfg, u0, v0, r, z0, mat, seg) -> None:
    zmin = cfg.depth_range_mm[0]
    size_mm = r * z0 / cam.f
    half = size_mm * rng.uniform(0.35, 0.8, 3)
    rot = _rotation(rng)
    centre = (z0 + half.mean()) * cam.ray(u0, v0)
    for axis in range(3):
        a1, a2 = [i for i in range(3) if i != axis]
        for sign in (-1.0, 1.0):
            n = sign * rot[:, axis]
            fc = centre + n * half[axis]
            if n @ fc >= 0:  # back-facing
                continue
            corners = np.array(
                [fc + s1 * rot[:, a1] * half[a1] + s2 * rot[:, a2] * half[a2]
                 for s1, s2 in ((1, 1), (1, -1), (-1, -1), (-1, 1))]
            )
            if np.any(corners[:, 2] < 0.3 * zmin):
                return
            poly = np.stack(
                [cam.f * corners[:, 0] / corners[:, 2] + cam.cx, cam.f * corners[:, 1] / corners[:, 2] + cam.cy], 1
            )
            patch = _poly_patch(poly, cam.h, cam.w)
            if patch is None:
                continue
            y0, x0, m = patch
            rows, cols = _grid(y0, y0 + m.shape[0], x0, x0 + m.shape[1])
            zp = _plane_depth(cam, n, fc, rows, cols)
            zp[~m] = np.inf
            canvas.paint(y0, x0, zp, mat, seg)


def _render_curved(canvas, cam, rng, cfg, u0, v0, r, z0, mat, seg) -> None:
    kind = ("ellipsoid", "cylinder", "quadric")[rng.integers(3)]
    ang = rng.uniform(0, math.pi)
    ca, sa = math.cos(ang), math.sin(ang)
    size_mm = r * z0 / cam.f
    if kind == "cylinder":
        a, b = r * rng.uniform(1.0, 3.0), r * rng.uniform(0.15, 0.5)  # half length, radius
    elif kind == "ellipsoid":
        a = r
        b = r if rng.random() < 0.4 else r * rng.uniform(0.4, 1.0)
    else:
        a, b = r, r * rng.uniform(0.5, 1.0)
    ext = max(a, b)
    box = _bbox(v0, u0, ext, ext, cam.h, cam.w)
    if box is None:
        return
    y0, y1, x0, x1 = box
    rows, cols = _grid(*box)
    dx, dy = cols - _F32(u0), rows - _F32(v0)
    s = (dx * _F32(ca) + dy * _F32(sa)) / _F32(a)  # along the main axis, normalised
    t = (dy * _F32(ca) - dx * _F32(sa)) / _F32(b)
    if kind == "ellipsoid":
        q = s * s + t * t
        rz = size_mm * (1.0 if b == a else rng.uniform(0.5, 1.5))
        zp = _F32(z0) - _F32(rz) * np.sqrt(np.maximum(_F32(1) - q, 0))
        zp[q >= 1] = np.inf
    elif kind == "cylinder":
        slope = rng.uniform(-0.25, 0.25)
        radius_mm = b * z0 / cam.f
        inside = (np.abs(s) < 1) & (np.abs(t) < 1)
        zp = _F32(z0) * (_F32(1) + _F32(slope) * s) - _F32(radius_mm) * np.sqrt(np.maximum(_F32(1) - t * t, 0))
        zp[~inside] = np.inf
    else:
        k1, k2 = rng.uniform(-0.6, 0.6, 2) * size_mm
        gx, gy = rng.uniform(-0.4, 0.4, 2) * size_mm
        q = s * s + t * t
        zp = _F32(z0) + _F32(k1) * s * s + _F32(k2) * t * t + _F32(gx) * s + _F32(gy) * t
        shape = rng.random() < 0.5
        zp[(q >= 1) if shape else ((np.abs(s) >= 1) | (np.abs(t) >= 1))] = np.inf
    canvas.paint(y0, x0, zp.astype(_F32, copy=False), mat, seg)


def _render_thin(canvas, cam, rng, cfg, pts: np.ndarray, z_ends, width: int, mat, seg) -> None:
    """Draws a polyline ``pts`` (k, 2) in (u, v) px, ``width`` px wide, depth interpolated along it."""
    h, w = cam.h, cam.w
    pad = width + 1
    box = _bbox(
        (pts[:, 1].min() + pts[:, 1].max()) / 2, (pts[:, 0].min() + pts[:, 0].max()) / 2,
        (pts[:, 1].max() - pts[:, 1].min()) / 2 + pad, (pts[:, 0].max() - pts[:, 0].min()) / 2 + pad, h, w,
    )
    if box is None:
        return
    y0, y1, x0, x1 = box
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    ipts = np.round((pts - [x0, y0]) * 16).astype(np.int32)
    cv2.polylines(m, [ipts], False, 1, thickness=1, lineType=cv2.LINE_8, shift=4)
    if width > 1:
        m = cv2.dilate(m, np.ones((width, width), np.uint8))
    rows, cols = _grid(*box)
    p, q = pts[0], pts[-1]
    d = q - p
    tt = ((cols - _F32(p[0])) * _F32(d[0]) + (rows - _F32(p[1])) * _F32(d[1])) / _F32(max(d @ d, 1e-6))
    tt = np.clip(tt, 0, 1)
    zp = _F32(z_ends[0]) + tt * _F32(z_ends[1] - z_ends[0])
    zp[m == 0] = np.inf
    canvas.paint(y0, x0, zp, mat, seg)


def _depth_at(canvas: _Canvas, u: float, v: float) -> float:
    h, w = canvas.z.shape
    return float(canvas.z[int(np.clip(round(v), 0, h - 1)), int(np.clip(round(u), 0, w - 1))])


def _thin_structures(canvas, cam, rng, cfg, seg: int, legs) -> int:
    h, w = cam.h, cam.w
    zmin = cfg.depth_range_mm[0]
    for u, v, zl, mat in legs:
        length = rng.uniform(0.1, 0.35) * h
        width = int(rng.integers(cfg.thin_width_px[0], cfg.thin_width_px[1] + 1))
        pts = np.array([[u, v], [u + rng.uniform(-0.03, 0.03) * length, v + length]])
        _render_thin(canvas, cam, rng, cfg, pts, (zl, zl * rng.uniform(0.97, 1.03)), width, mat, seg)
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
        zb = min(_depth_at(canvas, *pts[0]), _depth_at(canvas, *pts[-1]), _depth_at(canvas, *pts[len(pts) // 2]))
        z_ends = [max(zmin * 1.05, zb * rng.uniform(0.4, 0.85)) for _ in range(2)]
        mat = _Material(rng, cfg, cam)
        _render_thin(canvas, cam, rng, cfg, pts, z_ends, width, mat, seg)
        seg += 1
    return seg


_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
)
_CHARS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 "))


def _paint_marks(canvas: _Canvas, rng, cfg: SceneConfig) -> None:
    """Printed-like blobs and text, each restricted to the surface under its centre."""
    h, w = canvas.seg.shape
    s = min(h, w)
    for _ in range(int(rng.integers(cfg.num_marks[0], cfg.num_marks[1] + 1))):
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        target = canvas.seg[cy, cx]
        colour = _random_colour(rng)
        if rng.random() < cfg.text_prob:
            font = _FONTS[rng.integers(len(_FONTS))]
            scale = rng.uniform(0.2, 1.0) * s / 256
            thick = max(1, int(round(scale * rng.uniform(1, 2.5))))
            lines = ["".join(rng.choice(_CHARS, int(rng.integers(2, 12)))) for _ in range(int(rng.integers(1, 5)))]
            sizes = [cv2.getTextSize(t, font, scale, thick) for t in lines]
            lh = max(sz[0][1] + sz[1] for sz in sizes) + thick + 2
            pw = max(sz[0][0] for sz in sizes) + 2 * thick + 2
            ph = lh * len(lines) + 2
            patch = np.zeros((ph, pw), np.uint8)
            for i, t in enumerate(lines):
                cv2.putText(patch, t, (thick, (i + 1) * lh - sizes[i][1]), font, scale, 255, thick, cv2.LINE_AA)
            alpha = patch.astype(_F32) / 255
        else:
            ax = int(rng.uniform(0.01, 0.1) * s) + 1
            ay = int(ax * rng.uniform(0.3, 1.0)) + 1
            pw = ph = 2 * max(ax, ay) + 3
            patch = np.zeros((ph, pw), np.uint8)
            cv2.ellipse(patch, (pw // 2, ph // 2), (ax, ay), rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_AA)
            alpha = patch.astype(_F32) / 255
            if rng.random() < 0.4:
                alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.5, ax / 4))
        alpha *= rng.uniform(0.6, 1.0)
        y0, x0 = cy - ph // 2, cx - pw // 2
        ya, xa = max(0, y0), max(0, x0)
        yb, xb = min(h, y0 + ph), min(w, x0 + pw)
        if ya >= yb or xa >= xb:
            continue
        a = alpha[ya - y0 : yb - y0, xa - x0 : xb - x0] * (canvas.seg[ya:yb, xa:xb] == target)
        region = canvas.albedo[ya:yb, xa:xb]
        region += a[..., None] * (colour - region)


# --------------------------------------------------------------------------------------------
# Image formation and sensor model
# --------------------------------------------------------------------------------------------


def _one_sided_gradients(z: np.ndarray, rel_jump: float):
    """Per-axis depth derivatives using the smaller one-sided difference (no smearing at edges)."""
    out = []
    for axis in (1, 0):
        d = np.diff(z, axis=axis)
        if axis == 1:
            fwd = np.concatenate([d, d[:, -1:]], 1)
            bwd = np.concatenate([d[:, :1], d], 1)
        else:
            fwd = np.concatenate([d, d[-1:]], 0)
            bwd = np.concatenate([d[:1], d], 0)
        g = np.where(np.abs(fwd) < np.abs(bwd), fwd, bwd)
        g[np.abs(g) > rel_jump * z] = 0  # isolated pixels of thin structures: face the camera
        out.append(g)
    return out


def _shading(z: np.ndarray, cam: _Camera, rng, cfg: SceneConfig) -> np.ndarray:
    zu, zv = _one_sided_gradients(z, 0.05)
    rows, cols = _grid(0, cam.h, 0, cam.w)
    f = _F32(cam.f)
    nx, ny = f * zu, f * zv
    nz = -(z + (cols - _F32(cam.cx)) * zu + (rows - _F32(cam.cy)) * zv)
    light = np.array([*rng.uniform(-cfg.light_spread, cfg.light_spread, 2), -1.0])
    light /= np.linalg.norm(light)
    lam = (nx * _F32(light[0]) + ny * _F32(light[1]) + nz * _F32(light[2])) / np.sqrt(nx * nx + ny * ny + nz * nz)
    amb = _F32(rng.uniform(*cfg.ambient))
    return amb + (_F32(1) - amb) * np.clip(lam, 0, 1)


def _form_guide(canvas: _Canvas, depth: np.ndarray, cam: _Camera, rng, cfg: SceneConfig) -> np.ndarray:
    h, w = cam.h, cam.w
    light = _shading(depth, cam, rng, cfg)
    rows, cols = _grid(0, h, 0, w)
    r2 = ((rows - _F32(cam.cy)) / _F32(h / 2)) ** 2 + ((cols - _F32(cam.cx)) / _F32(w / 2)) ** 2
    light *= _F32(1) - _F32(rng.uniform(*cfg.vignetting) / 2) * r2
    img = canvas.albedo * light[..., None]
    if rng.random() < cfg.blur_prob:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(*cfg.blur_sigma_px))
    std = rng.uniform(*cfg.rgb_noise_std)
    if std > 0:
        noise = rng.standard_normal(img.shape, dtype=_F32)
        img += _F32(std) * np.sqrt(_F32(0.5) + img) * noise
    np.clip(img, 0, 1, out=img)
    if rng.random() < cfg.jpeg_prob:
        q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        u8 = np.round(img[..., ::-1] * 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(_F32) / _F32(255)
    return np.ascontiguousarray(img, dtype=_F32)


def _sensor(depth_clean: np.ndarray, rng, cfg: SceneConfig):
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
        gate = _value_noise(rng, h, w, rng.uniform(2, 8), octaves=2)
        holes |= cand & (gate < np.quantile(gate[::3, ::3], keep))
    if rng.random() < cfg.dropout_prob:
        rate = rng.uniform(*cfg.dropout_rate)
        if rate > 0:
            blob = _value_noise(rng, h, w, rng.uniform(0.02, 0.1) * min(h, w), octaves=3)
            holes |= blob < np.quantile(blob[::3, ::3], 0.9 * rate)
            holes |= rng.random((h, w), dtype=_F32) < _F32(0.1 * rate)
    mask = ~holes
    depth[holes] = 0
    return depth, mask


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _as_rng(seed) -> np.random.Generator:
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
    cam = _Camera(h, w, rng.uniform(*cfg.focal_scale) * max(h, w), (w - 1) / 2, (h - 1) / 2)
    canvas = _Canvas(h, w)
    _render_background(canvas, cam, rng, cfg)

    # Foreground objects, sampled then painted back to front (the z-buffer resolves overlaps).
    s = min(h, w)
    objects = []
    for _ in range(int(rng.integers(cfg.num_objects[0], cfg.num_objects[1] + 1))):
        u0, v0 = rng.uniform(-0.05, 1.05) * w, rng.uniform(-0.05, 1.05) * h
        r = rng.uniform(*cfg.object_size) * s
        far = _depth_at(canvas, u0, v0)
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
            mat = _Material(rng, cfg, cam, flat=flat)
        else:
            mat = _Material(rng, cfg, cam)
        if rng.random() < cfg.curved_prob:
            _render_curved(canvas, cam, rng, cfg, u0, v0, r, z0, mat, seg)
        elif rng.random() < cfg.box_prob:
            _render_box(canvas, cam, rng, cfg, u0, v0, r, z0, mat, seg)
        else:
            _render_polygon(canvas, cam, rng, cfg, u0, v0, r, z0, mat, seg, legs)
        seg += 1
    _thin_structures(canvas, cam, rng, cfg, seg, legs)
    _paint_marks(canvas, rng, cfg)
    np.clip(canvas.albedo, 0, 1, out=canvas.albedo)

    depth_clean = np.clip(canvas.z, zmin, zmax).astype(_F32, copy=False)
    guide = _form_guide(canvas, depth_clean, cam, rng, cfg)
    depth, mask = _sensor(depth_clean, rng, cfg)
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
    from optisr.errors import ShapeError

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
