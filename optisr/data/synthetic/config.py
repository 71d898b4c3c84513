"""Settings of the procedural scene generator: :class:`SceneConfig` (validated on construction).

Lengths are in millimetres (``_mm``) or pixels (``_px``); probabilities are in [0, 1]; ``(low,
high)`` pairs are sampled uniformly per scene.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields

from optisr.errors import ConfigError

__all__ = ["SceneConfig"]


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
                f"background_depth_mm {self.background_depth_mm} must lie inside depth_range_mm {self.depth_range_mm}"
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
