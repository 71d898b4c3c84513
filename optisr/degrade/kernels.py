"""Blur kernels: loading (``.mat``/``.npy``), random anisotropic Gaussians, kernel degradation.

RealSR's "kernel" degradation (and OTSR's DPED track) makes LR images as

.. math::  l = (h \\star k)\\downarrow_f

where ``⋆`` is 2-D *correlation* of every colour channel with the kernel (symmetric border) and
``↓_f`` keeps rows and columns ``0, f, 2f, …`` -- RealSR's ``round(linspace(0, H − f, H/f))``
sampling, with no shift to re-centre the kernel. Kernels are float64/float32 ``(k, k)`` arrays
that sum to 1; images are float32 ``(H, W, C)`` in [0, 1].

Per-image kernels are estimated with a KernelGAN-style deep linear generator:
:func:`estimate_kernel` (implemented in :mod:`optisr.degrade.kernelgan`, re-exported here; it
imports torch only when called). Kernel arithmetic (normalising, ×4 composition, width) lives in
:mod:`optisr.degrade.kernel_math`, which both modules use.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from optisr.degrade._image import check_image
from optisr.degrade.kernel_math import compose_x4_kernel, kernel_sigma, normalise_kernel
from optisr.degrade.kernelgan import estimate_kernel
from optisr.errors import ConfigError, InputFileError, ShapeError

__all__ = [
    "GaussianKernelConfig",
    "KERNEL_KEYS",
    "anisotropic_gaussian_kernel",
    "compose_x4_kernel",
    "degrade_with_kernel",
    "estimate_kernel",
    "kernel_sigma",
    "load_kernel",
    "load_kernels",
    "normalise_kernel",
    "random_gaussian_kernel",
    "save_kernel",
]

# keys tried, in order, when a .mat file holds several arrays (KernelGAN saves "Kernel")
KERNEL_KEYS = ("Kernel", "kernel", "K", "k", "kernel_x4", "kernel_x2")


def load_kernel(path: str | os.PathLike) -> np.ndarray:
    """Load a kernel from ``.mat`` (SciPy ``loadmat``) or ``.npy``, normalised to sum 1.

    In a ``.mat`` file the array is found by key: the first of :data:`KERNEL_KEYS` present,
    else the only 2-D numeric variable. MATLAB v7.3 (HDF5) files are not supported.

    Returns:
        ``(k, k')`` float64 summing to 1.
    Raises:
        InputFileError: missing/unreadable file, unknown extension, no or ambiguous kernel key,
            or an invalid kernel (the message names the file).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if not path.is_file():
        raise InputFileError(f"{path}: kernel file not found")
    try:
        if ext == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif ext == ".mat":
            import scipy.io

            data = scipy.io.loadmat(path)
            arr = _pick_mat_kernel(data, path)
        else:
            raise InputFileError(f"{path}: unsupported kernel file type {ext!r}; use .mat or .npy")
    except InputFileError:
        raise
    except (OSError, ValueError, NotImplementedError) as exc:
        raise InputFileError(f"{path}: cannot read kernel ({exc})") from None
    try:
        return normalise_kernel(np.squeeze(arr), name=str(path))
    except ShapeError as exc:
        raise InputFileError(str(exc)) from None


def _pick_mat_kernel(data: dict, path: Path) -> np.ndarray:
    for key in KERNEL_KEYS:
        if key in data:
            return np.asarray(data[key])
    arrays = {
        k: v
        for k, v in data.items()
        if not k.startswith("__") and isinstance(v, np.ndarray) and v.dtype.kind in "fiu" and np.squeeze(v).ndim == 2
    }
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    found = ", ".join(sorted(k for k in data if not k.startswith("__"))) or "none"
    raise InputFileError(
        f"{path}: cannot tell which variable is the kernel (variables: {found}); "
        f"name it one of {', '.join(KERNEL_KEYS)}"
    )


def load_kernels(folder: str | os.PathLike) -> list[np.ndarray]:
    """Every ``.mat``/``.npy`` kernel in ``folder`` (sorted by name), normalised."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"{folder}: kernel folder not found")
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in (".mat", ".npy"))
    if not files:
        raise InputFileError(f"{folder}: no .mat or .npy kernels in this folder")
    return [load_kernel(f) for f in files]


def save_kernel(path: str | os.PathLike, k: np.ndarray) -> Path:
    """Write a kernel atomically as ``.npy`` or ``.mat`` (key ``Kernel``, as KernelGAN)."""
    from optisr.io.atomic import atomic_path

    path = Path(path)
    k = np.asarray(k, dtype=np.float64)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".mat":
            import scipy.io

            scipy.io.savemat(tmp, {"Kernel": k})
        elif path.suffix.lower() == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, k)
        else:
            raise InputFileError(f"{path}: kernels are written as .mat or .npy")
    return path


def anisotropic_gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float = 0.0) -> np.ndarray:
    """Sampled 2-D Gaussian ``exp(−½ xᵀΣ⁻¹x)`` with principal std-devs ``sigma_x, sigma_y`` (pixels),
    rotated by ``theta`` (radians), centred on the middle pixel of an odd ``size``; sums to 1.

    Returns:
        ``(size, size)`` float64.
    """
    if size < 1 or size % 2 == 0:
        raise ConfigError(f"kernel size must be a positive odd integer; got {size}")
    if not (sigma_x > 0 and sigma_y > 0):
        raise ConfigError(f"sigmas must be > 0; got {sigma_x}, {sigma_y}")
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    cov = rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T
    inv = np.linalg.inv(cov)
    r = np.arange(size, dtype=np.float64) - size // 2
    xx, yy = np.meshgrid(r, r)  # xx: column offset, yy: row offset
    q = inv[0, 0] * xx * xx + 2 * inv[0, 1] * xx * yy + inv[1, 1] * yy * yy
    return normalise_kernel(np.exp(-0.5 * q))


@dataclass(frozen=True, kw_only=True)
class GaussianKernelConfig:
    """Random anisotropic Gaussian kernels (a stand-in for estimated kernels)."""

    size: int = 21  # odd kernel side, pixels
    sigma_range: tuple[float, float] = (0.6, 3.0)  # each principal std-dev, pixels
    isotropic_prob: float = 0.0  # probability of sigma_y = sigma_x
    rotation_range: tuple[float, float] = (-math.pi, math.pi)  # radians

    def __post_init__(self) -> None:
        if self.size < 1 or self.size % 2 == 0:
            raise ConfigError(f"kernel size must be a positive odd integer; got {self.size}")
        lo, hi = self.sigma_range
        if not 0 < lo <= hi:
            raise ConfigError(f"sigma_range must satisfy 0 < low <= high; got {self.sigma_range}")
        if not 0.0 <= self.isotropic_prob <= 1.0:
            raise ConfigError(f"isotropic_prob must be in [0, 1]; got {self.isotropic_prob}")


def random_gaussian_kernel(cfg: GaussianKernelConfig, generator: np.random.Generator) -> np.ndarray:
    """Draw one kernel from :class:`GaussianKernelConfig` (sum 1, ``(size, size)`` float64)."""
    sx = float(generator.uniform(*cfg.sigma_range))
    if generator.uniform() < cfg.isotropic_prob:
        return anisotropic_gaussian_kernel(cfg.size, sx, sx, 0.0)
    sy = float(generator.uniform(*cfg.sigma_range))
    theta = float(generator.uniform(*cfg.rotation_range))
    return anisotropic_gaussian_kernel(cfg.size, sx, sy, theta)


def degrade_with_kernel(x: np.ndarray, kernel: np.ndarray, scale: int) -> np.ndarray:
    """Correlate every channel with ``kernel`` (symmetric border) and keep every ``scale``-th pixel.

    Args:
        x: ``(H, W, C)`` float32 in [0, 1]; H and W should be multiples of ``scale`` (the
            output is ``floor(H/scale) × floor(W/scale)``).
        kernel: ``(k, k')`` kernel; normalised to sum 1 here. Its anchor is the middle pixel
            (``k//2``), as for odd kernels.
        scale: integer stride ``f >= 1``; rows/cols ``0, f, 2f, …`` are kept.
    Returns:
        ``(H//f, W//f, C)`` float32, clipped to [0, 1].
    """
    x = check_image(x)
    if int(scale) != scale or scale < 1:
        raise ConfigError(f"scale must be a positive integer; got {scale}")
    scale = int(scale)
    k = normalise_kernel(kernel).astype(np.float32)
    h, w = (x.shape[0] // scale) * scale, (x.shape[1] // scale) * scale
    if h == 0 or w == 0:
        raise ShapeError(f"image {x.shape[:2]} is smaller than the scale {scale}")
    blurred = cv2.filter2D(np.ascontiguousarray(x), -1, k, borderType=cv2.BORDER_REFLECT)
    if blurred.ndim == 2:
        blurred = blurred[:, :, None]
    return np.clip(blurred[0:h:scale, 0:w:scale], 0.0, 1.0).astype(np.float32)
