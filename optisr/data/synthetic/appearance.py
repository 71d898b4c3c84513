"""Scene appearance: albedo materials, printed marks, Lambertian shading and the RGB guide.

Albedo and guide images are float32 (H, W, 3) RGB in [0, 1]; depth is float32 (H, W) in mm.
Randomness comes only from the ``rng`` passed in.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from optisr.data.synthetic.config import SceneConfig
from optisr.data.synthetic.geometry import Camera, Canvas, grid, rotation

__all__ = ["Material", "form_guide", "paint_marks", "random_colour", "shading", "value_noise"]

_F32 = np.float32


def value_noise(rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 3) -> np.ndarray:
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


def random_colour(rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(0.05, 0.95, 3)
    grey = base.mean()
    sat = rng.uniform(0.0, 1.0) ** 0.7
    return (grey + sat * (base - grey)).astype(_F32)


class Material:
    """Albedo as a function of pixel position and depth; independent of the object's outline."""

    def __init__(self, rng: np.random.Generator, cfg: SceneConfig, cam: Camera, flat: np.ndarray | None = None) -> None:
        self.rng, self.cam = rng, cam
        self.c1 = random_colour(rng) if flat is None else flat.astype(_F32)
        self.kind = "flat"
        if flat is None and rng.random() < cfg.texture_prob:
            self.kind = ("stripes", "checker", "noise")[rng.integers(3)]
            self.c2 = random_colour(rng)
            if rng.random() < 0.4:  # low-contrast texture
                self.c2 = (self.c1 + rng.uniform(0.1, 0.5) * (self.c2 - self.c1)).astype(_F32)
            self.period = float(np.exp(rng.uniform(*np.log(cfg.texture_period_mm))))
            self.rot = rotation(rng)
            self.hard = rng.random() < 0.6
            self.cell = float(rng.uniform(0.01, 0.15) * min(cam.h, cam.w)) + 2.0
            self.threshold = rng.random() < 0.4
        self.gradient = flat is None and rng.random() < cfg.gradient_prob
        if self.gradient:
            self.c3 = random_colour(rng)
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
                t = value_noise(self.rng, ph, pw, self.cell)
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


_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
)


_CHARS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 "))


def paint_marks(canvas: Canvas, rng: np.random.Generator, cfg: SceneConfig) -> None:
    """Printed-like blobs and text, each restricted to the surface under its centre."""
    h, w = canvas.seg.shape
    s = min(h, w)
    for _ in range(int(rng.integers(cfg.num_marks[0], cfg.num_marks[1] + 1))):
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        target = canvas.seg[cy, cx]
        colour = random_colour(rng)
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
            alpha: np.ndarray = patch.astype(_F32) / 255  # (ph, pw) float32 coverage in [0, 1]
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


def _one_sided_gradients(z: np.ndarray, rel_jump: float) -> list[np.ndarray]:
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


def shading(z: np.ndarray, cam: Camera, rng: np.random.Generator, cfg: SceneConfig) -> np.ndarray:
    zu, zv = _one_sided_gradients(z, 0.05)
    rows, cols = grid(0, cam.h, 0, cam.w)
    f = _F32(cam.f)
    nx, ny = f * zu, f * zv
    nz = -(z + (cols - _F32(cam.cx)) * zu + (rows - _F32(cam.cy)) * zv)
    light = np.array([*rng.uniform(-cfg.light_spread, cfg.light_spread, 2), -1.0])
    light /= np.linalg.norm(light)
    lam = (nx * _F32(light[0]) + ny * _F32(light[1]) + nz * _F32(light[2])) / np.sqrt(nx * nx + ny * ny + nz * nz)
    amb = _F32(rng.uniform(*cfg.ambient))
    return amb + (_F32(1) - amb) * np.clip(lam, 0, 1)


def form_guide(
    canvas: Canvas, depth: np.ndarray, cam: Camera, rng: np.random.Generator, cfg: SceneConfig
) -> np.ndarray:
    h, w = cam.h, cam.w
    light = shading(depth, cam, rng, cfg)
    rows, cols = grid(0, h, 0, w)
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
            decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            assert decoded is not None  # decodes the JPEG that imencode just wrote
            img = decoded[..., ::-1].astype(_F32) / _F32(255)
    return np.ascontiguousarray(img, dtype=_F32)
