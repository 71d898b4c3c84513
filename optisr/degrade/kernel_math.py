"""Kernel arithmetic shared by :mod:`optisr.degrade.kernels` and :mod:`optisr.degrade.kernelgan`.

Kernels are 2-D float arrays ``(kh, kw)`` of correlation weights; the functions here return
float64 kernels that sum to 1.
"""

from __future__ import annotations

import math

import numpy as np

from optisr.errors import ShapeError

__all__ = ["compose_x4_kernel", "kernel_sigma", "normalise_kernel"]


def normalise_kernel(k: np.ndarray, *, name: str = "kernel") -> np.ndarray:
    """Validate a 2-D kernel and scale it to sum 1 (float64).

    Raises:
        ShapeError: not 2-D, empty, non-finite, or a sum that is not > 0.
    """
    k = np.asarray(k, dtype=np.float64)
    if k.ndim != 2 or k.size == 0:
        raise ShapeError(f"{name} must be a 2-D array; got shape {k.shape}")
    if not np.isfinite(k).all():
        raise ShapeError(f"{name} has non-finite values")
    total = k.sum()
    if not total > 1e-12:
        raise ShapeError(f"{name} must have a positive sum; got {total:g}")
    return k / total


def compose_x4_kernel(k2: np.ndarray) -> np.ndarray:
    """The ×4 kernel equivalent to degrading twice by the ×2 kernel ``k2`` (KernelGAN's analytic ×4).

    ``deg(deg(x, k, 2), k, 2)[j] = Σ_{s,t} k[s] k[t] x[4j + 2s + t]``, so the ×4 kernel is the
    full convolution of ``k`` with ``k`` dilated by 2. Returns ``(3k−2, 3k'−2)`` float64, sum 1.
    """
    k = normalise_kernel(k2)
    kh, kw = k.shape
    dil = np.zeros((2 * kh - 1, 2 * kw - 1))
    dil[::2, ::2] = k
    out = np.zeros((dil.shape[0] + kh - 1, dil.shape[1] + kw - 1))
    for r in range(kh):
        for c in range(kw):
            out[r : r + dil.shape[0], c : c + dil.shape[1]] += k[r, c] * dil
    return normalise_kernel(out)


def kernel_sigma(k: np.ndarray) -> float:
    """Effective width of a kernel: ``sqrt(mean eigenvalue of its covariance)`` in pixels.

    For an isotropic Gaussian of std-dev σ (not truncated) this is σ. Negative taps are clipped.
    """
    k = np.clip(np.asarray(k, dtype=np.float64), 0.0, None)
    k = normalise_kernel(k)
    rr, cc = np.meshgrid(np.arange(k.shape[0]), np.arange(k.shape[1]), indexing="ij")
    mr, mc = (k * rr).sum(), (k * cc).sum()
    vr, vc = (k * (rr - mr) ** 2).sum(), (k * (cc - mc) ** 2).sum()
    return float(math.sqrt(0.5 * (vr + vc)))
