"""Depth-sensor degradations of a low-resolution depth source (training augmentation for guided SR).

Depth maps are numpy float32 ``(h, w)`` in any unit (mm, disparity...); every strength is
relative to the map's own depth range ``r = max − min`` (or its largest value), so the same
settings fit every unit. Kinds:

* ``misalign``: the HR depth is shifted by a sub-pixel to 2-px offset before the LR is made
  (RGB–depth registration error); the target stays aligned with the guide.
* ``flying``: LR pixels whose HR footprint straddles a depth discontinuity take a random mix of
  the footprint's nearest and farthest depth (ToF / stereo flying pixels).
* ``depth``: Gaussian noise with σ ∝ d² (ToF / stereo), σ = k·d_max at the farthest depth.
* ``gaussian``: Gaussian noise with σ a fraction of the range.
* ``quantise``: rounding to ``r / levels``.
* ``holes``: blob-shaped invalid regions, set to NaN (the guided model and solver read NaN as
  "no measurement").

:func:`draw_lr_noise` draws a :class:`LRNoisePlan` (which kinds, how strong) from a generator;
:func:`shift_depth` applies the misalignment to the HR depth; :func:`apply_lr_noise` the rest to
the LR source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from optisr.config import check_range
from optisr.errors import ConfigError, ShapeError

__all__ = [
    "LR_NOISE_KINDS",
    "LRNoiseConfig",
    "LRNoisePlan",
    "add_depth_dependent_noise",
    "add_gaussian_noise",
    "apply_lr_noise",
    "draw_lr_noise",
    "flying_pixels",
    "punch_holes",
    "quantise_depth",
    "shift_depth",
]

LR_NOISE_KINDS = ("misalign", "flying", "depth", "gaussian", "quantise", "holes")


@dataclass
class LRNoiseConfig:
    """Depth-sensor degradations of the LR source (the ``datasets.train.lr_noise`` section).

    Attributes:
        prob: probability that a sample is degraded at all (0 = off, the default).
        kinds: ``{kind: probability}`` of each kind in :data:`LR_NOISE_KINDS` for a degraded
            sample, drawn independently (so kinds combine, as on a real sensor).
        gaussian_std: σ of ``gaussian`` as a fraction of the depth range.
        depth_k: σ of ``depth`` at the farthest depth, as a fraction of that depth (σ ∝ d²).
        flying_frac: fraction of the discontinuity pixels that fly.
        flying_min_jump: depth jump (fraction of the range) inside an LR pixel's HR footprint that
            counts as a discontinuity.
        quant_levels: number of quantisation steps across the range (drawn log-uniformly).
        hole_rate: fraction of LR pixels lost to holes.
        hole_sigma: size (LR px) of the smoothing that makes holes blob-shaped (0 = single pixels).
        misalign_px: length (HR px) of the HR depth's shift, random direction.
    """

    prob: float = 0.0
    kinds: dict[str, float] = field(
        default_factory=lambda: {
            "misalign": 0.3,
            "flying": 0.4,
            "depth": 0.4,
            "gaussian": 0.4,
            "quantise": 0.3,
            "holes": 0.3,
        }
    )
    gaussian_std: tuple[float, float] = (0.002, 0.02)
    depth_k: tuple[float, float] = (0.002, 0.01)
    flying_frac: tuple[float, float] = (0.3, 1.0)
    flying_min_jump: float = 0.05
    quant_levels: tuple[float, float] = (64.0, 1024.0)
    hole_rate: tuple[float, float] = (0.005, 0.05)
    hole_sigma: tuple[float, float] = (0.0, 2.0)
    misalign_px: tuple[float, float] = (0.25, 2.0)

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.prob) <= 1.0:
            raise ConfigError(f"lr_noise.prob must be in [0, 1], got {self.prob}")
        for k, p in self.kinds.items():
            if k not in LR_NOISE_KINDS:
                raise ConfigError(f"lr_noise.kinds: unknown kind {k!r} (known: {', '.join(LR_NOISE_KINDS)})")
            if not 0.0 <= float(p) <= 1.0:
                raise ConfigError(f"lr_noise.kinds.{k} must be a probability in [0, 1], got {p}")
        self.gaussian_std = check_range("lr_noise.gaussian_std", self.gaussian_std, 0.0, 1.0)
        self.depth_k = check_range("lr_noise.depth_k", self.depth_k, 0.0, 1.0)
        self.flying_frac = check_range("lr_noise.flying_frac", self.flying_frac, 0.0, 1.0)
        if not 0.0 < float(self.flying_min_jump) <= 1.0:
            raise ConfigError(f"lr_noise.flying_min_jump must be in (0, 1], got {self.flying_min_jump}")
        self.quant_levels = check_range("lr_noise.quant_levels", self.quant_levels, 2.0, 1e9)
        self.hole_rate = check_range("lr_noise.hole_rate", self.hole_rate, 0.0, 0.5)
        self.hole_sigma = check_range("lr_noise.hole_sigma", self.hole_sigma, 0.0, 64.0)
        self.misalign_px = check_range("lr_noise.misalign_px", self.misalign_px, 0.0, 16.0)


@dataclass
class LRNoisePlan:
    """The drawn degradation of one sample; ``None`` = that kind is off.

    shift: (dy, dx) HR px; gaussian_std, depth_k: fractions as in :class:`LRNoiseConfig`;
    flying_frac; quant_levels; hole_rate with hole_sigma (LR px).
    """

    shift: tuple[float, float] | None = None
    flying_frac: float | None = None
    depth_k: float | None = None
    gaussian_std: float | None = None
    quant_levels: float | None = None
    hole_rate: float | None = None
    hole_sigma: float = 0.0


def draw_lr_noise(rng: np.random.Generator, cfg: LRNoiseConfig) -> LRNoisePlan:
    """One sample's plan (nothing is drawn when ``cfg.prob == 0``)."""
    plan = LRNoisePlan()
    if cfg.prob <= 0 or rng.random() >= cfg.prob:
        return plan
    on = {k: bool(rng.random() < float(cfg.kinds.get(k, 0.0))) for k in LR_NOISE_KINDS}
    if on["misalign"]:
        length, angle = rng.uniform(*cfg.misalign_px), rng.uniform(0.0, 2.0 * math.pi)
        plan.shift = (float(length * math.sin(angle)), float(length * math.cos(angle)))
    if on["flying"]:
        plan.flying_frac = float(rng.uniform(*cfg.flying_frac))
    if on["depth"]:
        plan.depth_k = float(rng.uniform(*cfg.depth_k))
    if on["gaussian"]:
        plan.gaussian_std = float(rng.uniform(*cfg.gaussian_std))
    if on["quantise"]:
        lo, hi = cfg.quant_levels
        plan.quant_levels = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    if on["holes"]:
        plan.hole_rate = float(rng.uniform(*cfg.hole_rate))
        plan.hole_sigma = float(rng.uniform(*cfg.hole_sigma))
    return plan


def _check_2d(x: np.ndarray, name: str) -> None:
    if x.ndim != 2:
        raise ShapeError(f"{name} must be a 2-D depth map (h, w), got shape {x.shape}")


def _range(x: np.ndarray) -> float:
    finite = x[np.isfinite(x)]
    return float(finite.max() - finite.min()) if finite.size else 0.0


def shift_depth(depth: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """``depth`` (H, W) float32 moved by (dy, dx) px: out[y, x] = depth[y − dy, x − dx] (bilinear, edges replicated)."""
    _check_2d(depth, "depth")
    m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], np.float64)
    h, w = depth.shape
    out = cv2.warpAffine(depth.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.astype(np.float32)


def flying_pixels(
    lr: np.ndarray, hr: np.ndarray, scale: int, frac: float, min_jump: float, rng: np.random.Generator
) -> np.ndarray:
    """Flying pixels: LR pixels whose HR footprint holds a jump become a random near/far mix.

    Args:
        lr: (h, w) float32 LR depth.
        hr: (H, W) float32 HR depth it was made from, ``H <= scale·h``, ``W <= scale·w``.
        scale: integer factor; the footprint of LR pixel (i, j) is HR block [i·f, (i+1)·f) × [j·f, (j+1)·f).
        frac: fraction of the discontinuity pixels that fly.
        min_jump: block max − min, as a fraction of the HR range, that counts as a discontinuity.
        rng: generator.
    Returns:
        (h, w) float32; a flying pixel is ``t·near + (1 − t)·far``, t ~ U(0, 1), with near / far
        the block's minimum / maximum; the other pixels are unchanged.
    """
    _check_2d(lr, "lr")
    _check_2d(hr, "hr")
    h, w = lr.shape
    f = int(scale)
    if hr.shape[0] > f * h or hr.shape[1] > f * w:
        raise ShapeError(f"HR depth {hr.shape} does not fit the LR grid {lr.shape} at ×{f}")
    pad = np.pad(hr, ((0, f * h - hr.shape[0]), (0, f * w - hr.shape[1])), mode="edge")
    blocks = pad.reshape(h, f, w, f)
    near, far = blocks.min(axis=(1, 3)), blocks.max(axis=(1, 3))
    edge = (far - near) > min_jump * _range(hr)
    fly = edge & (rng.random((h, w)) < frac)
    t = rng.random((h, w))
    out = lr.copy()
    out[fly] = (t * near + (1.0 - t) * far)[fly]
    return out.astype(np.float32)


def add_depth_dependent_noise(lr: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with σ(d) = k·d_max·(d⁺/d_max)², d⁺ = d if the map is positive, else d − min + range.

    Args:
        lr: (h, w) float32 depth (larger = farther); ``k``: σ at the farthest depth as a fraction of it.
    Returns:
        (h, w) float32.
    """
    _check_2d(lr, "lr")
    finite = lr[np.isfinite(lr)]
    if finite.size == 0:
        return lr.copy()
    lo = float(finite.min())
    d = lr.astype(np.float64) if lo > 0 else lr.astype(np.float64) - lo + max(_range(lr), 1e-12)
    d_max = float(np.nanmax(d))
    sigma = k * d * d / d_max
    return (lr + sigma * rng.standard_normal(lr.shape)).astype(np.float32)


def add_gaussian_noise(lr: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of σ = ``std`` × the range of ``lr`` (h, w) float32."""
    _check_2d(lr, "lr")
    return (lr + std * _range(lr) * rng.standard_normal(lr.shape)).astype(np.float32)


def quantise_depth(lr: np.ndarray, levels: float) -> np.ndarray:
    """``lr`` (h, w) rounded to the grid min + n·step, step = range / ``levels``."""
    _check_2d(lr, "lr")
    r = _range(lr)
    if r <= 0:
        return lr.copy()
    lo = float(np.nanmin(lr))
    step = r / levels
    return (lo + np.round((lr.astype(np.float64) - lo) / step) * step).astype(np.float32)


def punch_holes(lr: np.ndarray, rate: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``lr`` (h, w) with ``rate`` of its pixels (± 1) set to NaN, in blobs of ``sigma`` LR px (0 = single pixels).

    At least one pixel always stays valid.
    """
    _check_2d(lr, "lr")
    out = lr.astype(np.float32, copy=True)
    n = int(rate * lr.size + rng.random())  # stochastic rounding: the expected fraction is ``rate`` on tiny maps too
    if n <= 0:
        return out
    field_: np.ndarray = rng.standard_normal(lr.shape)
    if sigma > 0:
        field_ = cv2.GaussianBlur(field_, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    order = np.argsort(field_, axis=None, kind="stable")[: min(n, lr.size - 1)]
    out.flat[order] = np.nan
    return out


def apply_lr_noise(
    lr: np.ndarray, hr: np.ndarray, scale: int, plan: LRNoisePlan, cfg: LRNoiseConfig, rng: np.random.Generator
) -> np.ndarray:
    """The plan's LR-side kinds, in sensor order: flying pixels, depth noise, Gaussian noise, quantisation, holes.

    Args:
        lr: (h, w) float32 LR source made from ``hr``.
        hr: (H, W) float32 HR depth the LR was made from (after any misalignment).
        scale: integer factor.
        plan: from :func:`draw_lr_noise` (its ``shift`` is applied by the caller to ``hr``).
        cfg: the config the plan was drawn from (``flying_min_jump``).
        rng: generator.
    Returns:
        (h, w) float32, NaN at holes.
    """
    out = lr.astype(np.float32, copy=True)
    if plan.flying_frac is not None:
        out = flying_pixels(out, hr, scale, plan.flying_frac, cfg.flying_min_jump, rng)
    if plan.depth_k is not None:
        out = add_depth_dependent_noise(out, plan.depth_k, rng)
    if plan.gaussian_std is not None:
        out = add_gaussian_noise(out, plan.gaussian_std, rng)
    if plan.quant_levels is not None:
        out = quantise_depth(out, plan.quant_levels)
    if plan.hole_rate is not None:
        out = punch_holes(out, plan.hole_rate, plan.hole_sigma, rng)
    return out
