"""Per-axis matrices of the separable downsampling operators (numpy float64).

``axis_matrix(kind, n_in, scale)`` is the (n_out × n_in) matrix ``A`` of one axis of
:class:`optisr.ops.operators.DownsampleOperator` (``D x = A_y x A_xᵀ``), with ``n_out =
ceil(n_in / scale)``; :func:`bicubic_matrix` is PIL's antialiased bicubic resampling matrix for
any length ratio (also used to resample real LR depth maps); :func:`resample_matrix` is the matrix of
any operator kind for any length ratio ``n_in / n_out >= 1`` (a source whose grid is not an integer
fraction of the guide's, e.g. a 240×180 ToF map beside a 640×480 RGB image).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from optisr.errors import ConfigError

__all__ = ["axis_matrix", "bicubic_matrix", "resample_matrix"]


def _pil_bicubic(t: np.ndarray) -> np.ndarray:
    """PIL's bicubic kernel (a = -0.5), support 2."""
    a = -0.5
    t = np.abs(t)
    out = np.zeros_like(t)
    near = t < 1.0
    far = (t >= 1.0) & (t < 2.0)
    tn = t[near]
    out[near] = ((a + 2.0) * tn - (a + 3.0)) * tn * tn + 1.0
    tf = t[far]
    out[far] = (((tf - 5.0) * tf + 8.0) * tf - 4.0) * a
    return out


def _resample_matrix(
    n_in: int, n_out: int, kernel: Callable[[np.ndarray], np.ndarray], support: float
) -> np.ndarray:
    """Dense (n_out, n_in) matrix of PIL's antialiased resampling with ``kernel``.

    Mirrors Pillow's ``precompute_coeffs``: the filter is stretched by the scale when
    downsampling, taps are ``int(center ± support + 0.5)`` clipped to the image, and each row
    is normalised to sum to one.
    """
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = support * filterscale
    mat = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        center = (i + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), n_in)
        xs = np.arange(xmin, xmax, dtype=np.float64)
        w = kernel((xs - center + 0.5) / filterscale)
        total = w.sum()
        if total != 0.0:
            w = w / total
        mat[i, xmin:xmax] = w
    return mat


def bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """PIL's antialiased bicubic resampling matrix (n_out × n_in, float64) for any length ratio."""
    return _resample_matrix(n_in, n_out, _pil_bicubic, 2.0)


def _gaussian_matrix(n_in: int, n_out: int, s: float) -> np.ndarray:
    """(n_out, n_in) Gaussian PSF of std ``s`` HR px at the centres ``(i + 0.5)·n_in/n_out − 0.5``, rows summing to 1."""
    step = n_in / n_out
    radius = max(1, int(math.ceil(3.0 * s)))
    mat = np.zeros((n_out, n_in))
    for i in range(n_out):
        c = (i + 0.5) * step - 0.5
        lo, hi = max(0, int(math.floor(c - radius))), min(n_in, int(math.ceil(c + radius)) + 1)
        xs = np.arange(lo, hi, dtype=np.float64)
        w = np.exp(-0.5 * ((xs - c) / s) ** 2)
        mat[i, lo:hi] = w / w.sum()
    return mat


@functools.lru_cache(maxsize=64)
def axis_matrix(kind: str, n_in: int, scale: int, sigma: float | None = None) -> np.ndarray:
    """The per-axis matrix ``A`` (n_out × n_in) of operator ``kind`` (float64, read-only).

    Args:
        kind: one of ``area``, ``sum``, ``bicubic``, ``gaussian``.
        n_in: HR length along the axis.
        scale: integer downsampling scale f >= 1.
        sigma: Gaussian standard deviation in HR pixels (``gaussian`` only; default ``f / 2``).
    """
    n_out = -(-n_in // scale)
    if kind in ("area", "sum"):
        mat = np.zeros((n_out, n_in))
        for i in range(n_out):
            lo, hi = scale * i, min(scale * (i + 1), n_in)
            mat[i, lo:hi] = 1.0 / (hi - lo) if kind == "area" else 1.0
    elif kind == "bicubic":
        mat = bicubic_matrix(n_in, n_out)
    elif kind == "gaussian":
        mat = _gaussian_matrix(n_in, n_out, scale / 2.0 if sigma is None else float(sigma))
    else:  # pragma: no cover - guarded by make_operator
        raise ConfigError(f"unknown operator {kind!r}")
    mat.setflags(write=False)
    return mat


def _overlap_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) lengths of overlap between LR cell ``[i·r, (i+1)·r)`` and HR pixel ``[j, j+1)``, r = n_in/n_out.

    Computed in exact rational arithmetic (cell edges ``i·n_in / n_out``), so an integer ratio gives
    exactly the 0/1 blocks of :func:`axis_matrix`'s ``sum``.
    """
    mat = np.zeros((n_out, n_in))
    for i in range(n_out):
        # cell [a, b) in HR pixel units, a = i·n_in/n_out; work in units of 1/n_out to stay exact
        a, b = i * n_in, (i + 1) * n_in
        for j in range(a // n_out, min(n_in, -(-b // n_out))):
            lo, hi = max(a, j * n_out), min(b, (j + 1) * n_out)
            if hi > lo:
                mat[i, j] = (hi - lo) / n_out
    return mat


@functools.lru_cache(maxsize=64)
def resample_matrix(kind: str, n_in: int, n_out: int, sigma: float | None = None) -> np.ndarray:
    """The per-axis matrix (n_out × n_in, float64, read-only) of operator ``kind`` at any ratio ``r = n_in / n_out``.

    LR pixel ``i`` covers the HR interval ``[i·r, (i+1)·r)`` (both grids span the same extent):

    * ``area``: the mean over that interval, HR pixels weighted by the length they share with it
      (the exact box integral; OpenCV's ``INTER_AREA`` for shrinking);
    * ``sum``: the integral itself (each HR pixel's value is split over the LR cells it overlaps, so
      totals are kept: counts, population);
    * ``bicubic``: PIL's antialiased bicubic (:func:`bicubic_matrix`);
    * ``gaussian``: a Gaussian PSF of std ``sigma`` HR px (default r/2) at the cell centres ``(i + 0.5)·r − 0.5``.

    For ``n_in = f·n_out`` every kind equals :func:`axis_matrix` at scale f.
    """
    if n_out < 1 or n_in < n_out:
        raise ConfigError(f"resampling needs 1 <= n_out <= n_in, got {n_out} from {n_in}")
    if kind in ("area", "sum"):
        mat = _overlap_matrix(n_in, n_out)
        if kind == "area":
            mat = mat * (n_out / n_in)
    elif kind == "bicubic":
        mat = bicubic_matrix(n_in, n_out)
    elif kind == "gaussian":
        mat = _gaussian_matrix(n_in, n_out, n_in / n_out / 2.0 if sigma is None else float(sigma))
    else:
        raise ConfigError(f"unknown operator {kind!r}")
    mat.setflags(write=False)
    return mat
