"""The guide image as the graph and its pre-filter read it: float32 in [0, 1] units.

One conversion for every path (the untiled API, each tile of a tiled solve, the guide's noise gate),
so a uint16 guide means the same thing everywhere. Nothing here reads files.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from optisr.errors import ShapeError

__all__ = ["GUIDE_DTYPES", "guide_tensor_to_unit", "guide_to_unit"]

GUIDE_DTYPES = ("uint8", "uint16", "float")
"""Guide array dtypes: uint8 (÷ 255), uint16 (÷ 65535), or any float dtype already in [0, 1]."""


def guide_to_unit(guide: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) guide -> float32 of the same shape in [0, 1] units.

    uint8 is divided by 255, uint16 by 65535; float arrays are cast to float32 (no copy when they
    already are) and not rescaled. Any other dtype is a :class:`~optisr.errors.ShapeError`.
    """
    g = np.asarray(guide)
    if g.dtype == np.uint8:
        return g.astype(np.float32) / 255.0
    if g.dtype == np.uint16:
        return g.astype(np.float32) / 65535.0
    if not np.issubdtype(g.dtype, np.floating):
        raise ShapeError(f"guide must be uint8, uint16 or float in [0, 1], got {g.dtype}")
    return g.astype(np.float32, copy=False)


def guide_tensor_to_unit(guide: Tensor) -> Tensor:
    """A guide tensor in [0, 1] units: uint8 divided by 255 (as float32); any other dtype as it is
    (float tensors are taken to be in [0, 1] already)."""
    return guide.float() / 255.0 if guide.dtype == torch.uint8 else guide
