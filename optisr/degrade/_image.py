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
    """Any image from :func:`optisr.io.images.read_image` → float32 ``(H, W, 3)`` RGB in [0, 1]
    (:func:`optisr.io.images.to_rgb_float`)."""
    from optisr.io.images import to_rgb_float

    return to_rgb_float(img)
