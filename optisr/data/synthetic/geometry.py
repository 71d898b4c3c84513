"""Scene geometry: a pinhole camera, a z-buffered canvas and the surfaces painted into it.

Coordinates: pixel columns ``u``/``cols`` and rows ``v``/``rows`` (float32), camera-space points
in millimetres with ``z`` pointing away from the camera; depth patches are float32 (h, w) in mm,
``inf`` where the surface is absent. Materials (``mat``) are callables from
:mod:`optisr.data.synthetic.appearance`; randomness comes only from the ``rng`` passed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from optisr.data.synthetic.config import SceneConfig

__all__ = [
    "Albedo",
    "Camera",
    "Canvas",
    "bbox",
    "depth_at",
    "grid",
    "plane_depth",
    "poly_patch",
    "render_box",
    "render_curved",
    "render_polygon",
    "render_thin",
    "rotation",
    "star_polygon",
    "tilted_normal",
]

_F32 = np.float32

# albedo(rows, cols, z) -> (..., 3) float32: see Canvas.paint
Albedo = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Camera:
    h: int
    w: int
    f: float
    cx: float
    cy: float

    def ray(self, u: float, v: float) -> np.ndarray:
        return np.array([(u - self.cx) / self.f, (v - self.cy) / self.f, 1.0])


class Canvas:
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
            rows, cols = grid(y0, y0 + ph, x0, x0 + pw)
            zc = np.where(sel, zp, _F32(1000))  # finite dummy depth where nothing is drawn
            np.copyto(alb, colour(rows, cols, zc), where=sel[..., None])
        return count


def bbox(cy: float, cx: float, ry: float, rx: float, h: int, w: int) -> tuple[int, int, int, int] | None:
    y0, y1 = max(0, int(math.floor(cy - ry))), min(h, int(math.ceil(cy + ry)) + 1)
    x0, x1 = max(0, int(math.floor(cx - rx))), min(w, int(math.ceil(cx + rx)) + 1)
    if y0 >= y1 or x0 >= x1:
        return None
    return y0, y1, x0, x1


def grid(y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(y0, y1, dtype=_F32)[:, None], np.arange(x0, x1, dtype=_F32)[None, :]


def plane_depth(cam: Camera, n: np.ndarray, p0: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Depth (mm) of the plane {X : n.X = n.p0} along the rays of pixels (rows, cols); inf if none."""
    d = float(n @ p0)
    a, b, c = (float(n[0]) / cam.f, float(n[1]) / cam.f, float(n[2]))
    denom = a * (cols - cam.cx) + b * (rows - cam.cy) + c
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (d / denom).astype(_F32, copy=False)
    z[~(z > 0)] = np.inf
    return z


def tilted_normal(rng: np.random.Generator, max_tilt_deg: float) -> np.ndarray:
    """Unit normal facing the camera (negative z), tilted by at most ``max_tilt_deg``."""
    theta = math.radians(max_tilt_deg) * math.sqrt(rng.random())
    phi = rng.uniform(0, 2 * math.pi)
    return np.array([math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi), -math.cos(theta)])


def rotation(rng: np.random.Generator) -> np.ndarray:
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


def star_polygon(rng: np.random.Generator, u0: float, v0: float, r: float) -> np.ndarray:
    k = int(rng.integers(3, 9))
    ang = np.sort(rng.uniform(0, 2 * math.pi, k))
    if rng.random() < 0.5:  # more regular shapes (boards, frames, tables)
        ang = np.linspace(0, 2 * math.pi, 4, endpoint=False) + rng.uniform(0, math.pi)
        k = 4
    rad = r * rng.uniform(0.5, 1.0, k)
    sx, sy = rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4)
    return np.stack([u0 + sx * rad * np.cos(ang), v0 + sy * rad * np.sin(ang)], 1)


def poly_patch(poly: np.ndarray, h: int, w: int) -> tuple[int, int, np.ndarray] | None:
    """Filled polygon mask over its (clipped) bounding box: (y0, x0, bool mask) or None."""
    x0, x1 = max(0, int(math.floor(poly[:, 0].min()))), min(w, int(math.ceil(poly[:, 0].max())) + 1)
    y0, y1 = max(0, int(math.floor(poly[:, 1].min()))), min(h, int(math.ceil(poly[:, 1].max())) + 1)
    if y0 >= y1 or x0 >= x1:
        return None
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    pts = np.round((poly - [x0, y0]) * 16).astype(np.int32)
    cv2.fillPoly(m, [pts], 1, lineType=cv2.LINE_8, shift=4)
    return y0, x0, m.astype(bool)


def render_polygon(
    canvas: Canvas, cam: Camera, rng: np.random.Generator, cfg: SceneConfig, u0: float, v0: float, r: float,
    z0: float, mat: Albedo, seg: int, legs_out: list,
) -> None:  # fmt: skip
    poly = star_polygon(rng, u0, v0, r)
    patch = poly_patch(poly, cam.h, cam.w)
    if patch is None:
        return
    y0, x0, m = patch
    n = tilted_normal(rng, cfg.polygon_max_tilt_deg)
    p0 = z0 * cam.ray(u0, v0)
    rows, cols = grid(y0, y0 + m.shape[0], x0, x0 + m.shape[1])
    zp = plane_depth(cam, n, p0, rows, cols)
    zp[~m] = np.inf
    canvas.paint(y0, x0, zp, mat, seg)
    if rng.random() < cfg.table_legs_prob:
        low = poly[np.argsort(poly[:, 1])[-2:]]  # the two lowest vertices
        for u, v in low:
            zl = plane_depth(cam, n, p0, np.array([v], _F32), np.array([u], _F32))[0]
            if np.isfinite(zl):
                legs_out.append((u, v, float(zl), mat))


def render_box(
    canvas: Canvas, cam: Camera, rng: np.random.Generator, cfg: SceneConfig, u0: float, v0: float, r: float,
    z0: float, mat: Albedo, seg: int,
) -> None:  # fmt: skip
    zmin = cfg.depth_range_mm[0]
    size_mm = r * z0 / cam.f
    half = size_mm * rng.uniform(0.35, 0.8, 3)
    rot = rotation(rng)
    centre = (z0 + half.mean()) * cam.ray(u0, v0)
    for axis in range(3):
        a1, a2 = [i for i in range(3) if i != axis]
        for sign in (-1.0, 1.0):
            n = sign * rot[:, axis]
            fc = centre + n * half[axis]
            if n @ fc >= 0:  # back-facing
                continue
            corners = np.array(
                [
                    fc + s1 * rot[:, a1] * half[a1] + s2 * rot[:, a2] * half[a2]
                    for s1, s2 in ((1, 1), (1, -1), (-1, -1), (-1, 1))
                ]
            )
            if np.any(corners[:, 2] < 0.3 * zmin):
                return
            poly = np.stack(
                [cam.f * corners[:, 0] / corners[:, 2] + cam.cx, cam.f * corners[:, 1] / corners[:, 2] + cam.cy], 1
            )
            patch = poly_patch(poly, cam.h, cam.w)
            if patch is None:
                continue
            y0, x0, m = patch
            rows, cols = grid(y0, y0 + m.shape[0], x0, x0 + m.shape[1])
            zp = plane_depth(cam, n, fc, rows, cols)
            zp[~m] = np.inf
            canvas.paint(y0, x0, zp, mat, seg)


def render_curved(
    canvas: Canvas, cam: Camera, rng: np.random.Generator, cfg: SceneConfig, u0: float, v0: float, r: float,
    z0: float, mat: Albedo, seg: int,
) -> None:  # fmt: skip
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
    box = bbox(v0, u0, ext, ext, cam.h, cam.w)
    if box is None:
        return
    y0, _y1, x0, _x1 = box
    rows, cols = grid(*box)
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


def render_thin(
    canvas: Canvas, cam: Camera, rng: np.random.Generator, cfg: SceneConfig, pts: np.ndarray,
    z_ends: tuple[float, float] | list[float], width: int, mat: Albedo, seg: int,
) -> None:  # fmt: skip
    """Draws a polyline ``pts`` (k, 2) in (u, v) px, ``width`` px wide, depth interpolated along it."""
    h, w = cam.h, cam.w
    pad = width + 1
    box = bbox(
        (pts[:, 1].min() + pts[:, 1].max()) / 2,
        (pts[:, 0].min() + pts[:, 0].max()) / 2,
        (pts[:, 1].max() - pts[:, 1].min()) / 2 + pad,
        (pts[:, 0].max() - pts[:, 0].min()) / 2 + pad,
        h,
        w,
    )
    if box is None:
        return
    y0, y1, x0, x1 = box
    m: np.ndarray = np.zeros((y1 - y0, x1 - x0), np.uint8)  # (h', w') 0/1 stroke mask
    ipts = np.round((pts - [x0, y0]) * 16).astype(np.int32)
    cv2.polylines(m, [ipts], False, 1, thickness=1, lineType=cv2.LINE_8, shift=4)
    if width > 1:
        m = cv2.dilate(m, np.ones((width, width), np.uint8))
    rows, cols = grid(*box)
    p, q = pts[0], pts[-1]
    d = q - p
    tt = ((cols - _F32(p[0])) * _F32(d[0]) + (rows - _F32(p[1])) * _F32(d[1])) / _F32(max(d @ d, 1e-6))
    tt = np.clip(tt, 0, 1)
    zp = _F32(z_ends[0]) + tt * _F32(z_ends[1] - z_ends[0])
    zp[m == 0] = np.inf
    canvas.paint(y0, x0, zp, mat, seg)


def depth_at(canvas: Canvas, u: float, v: float) -> float:
    h, w = canvas.z.shape
    return float(canvas.z[int(np.clip(round(v), 0, h - 1)), int(np.clip(round(u), 0, w - 1))])
