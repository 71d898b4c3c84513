"""Private helpers shared by the degradation modules: input checks and image conversion."""

from __future__ import annotations

import numpy as np

from optisr.errors import ShapeError

__all__ = ["as_rgb_float", "check_image"]


def check_image(x: np.ndarray, name: str = "x") -> np.ndarray:
    """Validate an ``(H, W, C)`` float image and return it as float32 (no copy when possible).

    Raises:
        ShapeError: not 3-D, no pixels, or not a floating dtype.
    """
    arr = np.asarray(x)
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ShapeError(f"{name} must be an (H, W, C) image; got shape {arr.shape}")
    if arr.dtype.kind != "f":
        raise ShapeError(
            f"{name} must be float in [0, 1]; got dtype {arr.dtype} (convert with optisr.io.images.to_float)"
        )
    return arr.astype(np.float32, copy=False)


def as_rgb_float(img: np.ndarray) -> np.ndarray:
    """Any image from :func:`optisr.io.images.read_image` → float32 ``(H, W, 3)`` RGB in [0, 1].

    Grey is repeated to three channels; an alpha channel is dropped.
    """
    from optisr.io.images import to_float

    x = to_float(np.asarray(img))
    if x.ndim == 2:
        x = x[:, :, None]
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    elif x.shape[2] == 4:
        x = x[:, :, :3]
    return np.ascontiguousarray(np.clip(x, 0.0, 1.0), dtype=np.float32)
