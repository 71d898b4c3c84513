"""MATLAB-compatible bicubic ``imresize`` (the resizer of every SR paper's LR images).

MATLAB's ``imresize(x, s)`` with the default ``'bicubic'`` method:

* Keys' cubic convolution kernel with ``a = -0.5``;
* when shrinking (``s < 1``) the kernel is stretched by ``1/s`` and scaled by ``s``
  (antialiasing), so a ×1/4 resize uses a 16-pixel-wide kernel;
* output pixel ``i`` (1-based) samples the input at ``u = i/s + (1 - 1/s)/2`` (pixel-centre
  alignment), the weights of every output pixel are normalised to sum to 1;
* out-of-range taps read the input mirrored *with* the edge pixel repeated ("symmetric");
* the dimension with the smaller scale is resized first (rows first on a tie);
* output size ``ceil(H·s) × ceil(W·s)``;
* integer images are rounded and clipped to their class after each 1-D pass.

The 1-D resampling is a gather of ``taps`` neighbours per output pixel (no dense matrix), so
memory stays ``O(output · taps)``.

The same resizer is used by :mod:`optisr.bench.blind` (``imresize_matlab``), which predates
this module; the tests check both agree to float precision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from optisr.errors import ConfigError, ShapeError

__all__ = ["cubic", "imresize", "resize_weights"]


def cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (``a = -0.5`` is MATLAB's and PIL's bicubic).

    Args:
        x: any-shape float array of distances (in pixels).
        a: the free parameter; OpenCV's ``INTER_CUBIC`` uses -0.75.
    Returns:
        kernel values, same shape as ``x``, float64; support ``|x| < 2``.
    """
    t = np.abs(np.asarray(x, dtype=np.float64))
    t2, t3 = t * t, t * t * t
    near = ((a + 2.0) * t3 - (a + 3.0) * t2 + 1.0) * (t <= 1.0)
    far = (a * t3 - 5.0 * a * t2 + 8.0 * a * t - 4.0 * a) * ((t > 1.0) & (t < 2.0))
    return near + far


def resize_weights(n_in: int, n_out: int, scale: float, *, antialias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Tap indices and weights of a 1-D MATLAB bicubic resize.

    Args:
        n_in: input length (>= 1).
        n_out: output length (>= 1).
        scale: the scale factor ``s`` (MATLAB derives it as ``n_out/n_in`` when a size is given).
        antialias: stretch the kernel by ``1/s`` when ``s < 1`` (MATLAB's default).
    Returns:
        ``(index, weight)``, both ``(n_out, taps)``: 0-based input indices (already mirrored
        into ``[0, n_in)``) and float64 weights whose rows sum to 1.
        ``out[i] = Σ_k weight[i, k] · x[index[i, k]]``.
    """
    if n_in < 1 or n_out < 1:
        raise ShapeError(f"resize lengths must be >= 1; got n_in={n_in}, n_out={n_out}")
    width = 4.0
    stretch = 1.0
    if scale < 1.0 and antialias:
        width /= scale
        stretch = scale
    centre = np.arange(1, n_out + 1, dtype=np.float64) / scale + 0.5 * (1.0 - 1.0 / scale)
    first = np.floor(centre - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = first[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based like MATLAB
    w = stretch * cubic(stretch * (centre[:, None] - idx))
    w /= w.sum(axis=1, keepdims=True)
    # symmetric boundary: ... x2 x1 | x1 x2 ... xn | xn xn-1 ...
    period = np.concatenate([np.arange(n_in), np.arange(n_in - 1, -1, -1)])
    index = period[np.mod(idx.astype(np.int64) - 1, 2 * n_in)]
    keep = np.any(w != 0.0, axis=0)  # drop all-zero tap columns (MATLAB does the same)
    return index[:, keep], w[:, keep]


def _resize_axis(x: np.ndarray, axis: int, n_out: int, scale: float, antialias: bool) -> np.ndarray:
    index, weight = resize_weights(x.shape[axis], n_out, scale, antialias=antialias)
    xm = np.moveaxis(x, axis, 0)
    out = np.zeros((n_out, *xm.shape[1:]), dtype=np.float64)
    extra = (slice(None),) + (None,) * (xm.ndim - 1)
    for k in range(index.shape[1]):
        out += weight[:, k][extra] * xm[index[:, k]]
    return np.moveaxis(out, 0, axis)


def imresize(
    x: np.ndarray,
    scale: float | None = None,
    *,
    output_shape: Sequence[int] | None = None,
    antialias: bool = True,
) -> np.ndarray:
    """Resize an image like MATLAB's ``imresize(x, scale)`` / ``imresize(x, [h w])`` (bicubic).

    Args:
        x: ``(H, W)`` or ``(H, W, C)``; float (any range, usually float32 in [0, 1]) or
            uint8/uint16.
        scale: factor ``s > 0`` for both axes (e.g. ``1/4`` for ×4 LR). Give either ``scale``
            or ``output_shape``.
        output_shape: ``(h, w)``; each axis then uses ``s = h/H`` and ``w/W`` as MATLAB does.
        antialias: MATLAB's ``'Antialiasing'`` (default true); only affects shrinking.
    Returns:
        ``(h, w[, C])`` with ``h = ceil(H·s)``. Float input → float32, **not clipped**
        (bicubic overshoots near edges, as in MATLAB on doubles); integer input → same dtype,
        rounded and clipped after each pass (MATLAB's behaviour on uint8).
    Raises:
        ConfigError: neither or both of ``scale``/``output_shape``, or a non-positive value.
        ShapeError: ``x`` is not 2-D or 3-D.

    Example:
        >>> imresize(np.array([[1., 2., 3., 4.]]).repeat(4, 0), 0.5)[0]
        array([1.4609375, 3.5390625], dtype=float32)
    """
    arr = np.asarray(x)
    if arr.ndim not in (2, 3):
        raise ShapeError(f"imresize expects (H, W) or (H, W, C); got shape {arr.shape}")
    h, w = arr.shape[:2]
    if output_shape is not None and scale is None:
        oh, ow = (int(v) for v in output_shape)
        if oh < 1 or ow < 1:
            raise ConfigError(f"output_shape must be positive; got {tuple(output_shape)}")
        scales = (oh / h, ow / w)
    elif scale is not None and output_shape is None:
        if not (np.isfinite(scale) and scale > 0):
            raise ConfigError(f"resize scale must be a finite number > 0; got {scale}")
        scales = (float(scale), float(scale))
        oh, ow = math.ceil(h * scale - 1e-9), math.ceil(w * scale - 1e-9)
    else:
        raise ConfigError("imresize needs exactly one of scale= or output_shape=")
    integer = arr.dtype.kind in "ui"
    if integer:
        lo, hi = np.iinfo(arr.dtype).min, np.iinfo(arr.dtype).max
    out = arr.astype(np.float64)
    order = (0, 1) if scales[0] <= scales[1] else (1, 0)  # smaller scale first, rows on a tie
    for axis in order:
        n_out = (oh, ow)[axis]
        if n_out == out.shape[axis] and scales[axis] == 1.0:
            continue  # identity pass
        out = _resize_axis(out, axis, n_out, scales[axis], antialias)
        if integer:
            out = np.clip(np.round(out), lo, hi)
    if integer:
        return out.astype(arr.dtype)
    return out.astype(np.float32)
