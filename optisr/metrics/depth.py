"""Depth error metrics and the two published evaluation protocols.

* Masked pixel errors: :func:`masked_mse`, :func:`masked_rmse`, :func:`masked_mae`.
* **Protocol A** (DKN/FDSR/DCTNet/SGNet...): per-image RMSE in the dataset's reporting unit
  (Middlebury30: 0–255 units; RGB-D-D: mm → cm; NYUv2: m → cm), averaged over images. The HR is
  cropped to a multiple of the scale first (:func:`mod_crop`); an optional border crop is
  available. See :func:`protocol_a_rmse`.
* **Protocol B** (graph-SR / DADA): non-overlapping 256² tiles from the origin (remainders
  dropped), masked MSE in cm² and MAE in cm, averaged per batch of tiles and then over batches.
  See :func:`protocol_b_errors`.
* **LR consistency**: RMSE between the LR input and the block-averaged prediction
  (:func:`lr_consistency_rmse`), as in DADA's Table 3.

All functions take NumPy arrays (CPU torch tensors are converted), compute in float64 and
return Python floats. Pixels are used where ``mask`` is True *and* the target is finite; with
no such pixel the result is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optisr.errors import ConfigError, ShapeError

__all__ = [
    "masked_mse",
    "masked_rmse",
    "masked_mae",
    "mod_crop",
    "protocol_a_rmse",
    "tiles_from_origin",
    "ProtocolBResult",
    "protocol_b_errors",
    "block_mean",
    "lr_consistency_rmse",
    "UNIT_TO_CM",
]

UNIT_TO_CM = {"mm": 0.1, "cm": 1.0, "m": 100.0}
"""Factor from a depth unit to centimetres."""


def _array(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 2:
        raise ShapeError(f"{name} must be an (H, W) or (..., H, W) array; got shape {arr.shape}")
    return arr


def _valid_pair(pred: Any, target: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return the 1-D arrays of prediction and target at valid pixels."""
    p, t = _array(pred, "pred"), _array(target, "target")
    if p.shape != t.shape:
        raise ShapeError(f"pred and target shapes differ: {p.shape} vs {t.shape}")
    valid = np.isfinite(t)
    if mask is not None:
        m = np.asarray(mask.detach().cpu().numpy() if hasattr(mask, "detach") else mask, dtype=bool)
        if m.shape != t.shape:
            raise ShapeError(f"mask shape {m.shape} does not match target shape {t.shape}")
        valid &= m
    return p[valid], t[valid]


def masked_mse(pred: Any, target: Any, mask: Any = None) -> float:
    """Mean squared error over valid pixels.

    Args:
        pred: (..., H, W) prediction.
        target: (..., H, W) ground truth, same unit; NaN/inf pixels are ignored.
        mask: optional (..., H, W) bool, True where the pixel counts.
    Returns:
        MSE in the squared unit of the inputs; NaN when no pixel is valid.
    Raises:
        ShapeError: if the shapes differ.
    """
    p, t = _valid_pair(pred, target, mask)
    return float(np.mean((p - t) ** 2)) if t.size else float("nan")


def masked_rmse(pred: Any, target: Any, mask: Any = None) -> float:
    """Root of :func:`masked_mse`, in the unit of the inputs."""
    return float(np.sqrt(masked_mse(pred, target, mask)))


def masked_mae(pred: Any, target: Any, mask: Any = None) -> float:
    """Mean absolute error over valid pixels, in the unit of the inputs (see :func:`masked_mse`)."""
    p, t = _valid_pair(pred, target, mask)
    return float(np.mean(np.abs(p - t))) if t.size else float("nan")


# ----------------------------------------------------------------------------------- protocol A


def mod_crop(x: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right of an (H, W, ...) array so that H and W are multiples of ``scale``."""
    if int(scale) != scale or scale < 1:
        raise ConfigError(f"scale must be a positive integer, got {scale!r}")
    h, w = x.shape[0] - x.shape[0] % int(scale), x.shape[1] - x.shape[1] % int(scale)
    if h == 0 or w == 0:
        raise ShapeError(f"array of size {x.shape[0]}x{x.shape[1]} is smaller than scale {scale}")
    return x[:h, :w]


def protocol_a_rmse(
    pred: Any,
    target: Any,
    mask: Any = None,
    *,
    report_scale: float = 1.0,
    border: int = 0,
) -> float:
    """Protocol A RMSE of one image, in the dataset's reporting unit.

    .. math:: \\mathrm{RMSE} = s\\sqrt{\\tfrac{1}{|V|}\\sum_{p\\in V}(\\hat d_p - d_p)^2}

    Args:
        pred: (H, W) prediction in the dataset's published unit.
        target: (H, W) ground truth in the same unit (already mod-cropped).
        mask: optional (H, W) bool validity.
        report_scale: factor s from the published unit to the reporting unit
            (``PairedDataset.report_scale``: 1 for Middlebury30, 0.1 for RGB-D-D, 100 for NYUv2).
        border: pixels removed on every side before the error is computed.
    Returns:
        RMSE in the reporting unit. Average it over images for the dataset score.
    """
    p, t = _array(pred, "pred"), _array(target, "target")
    m = None if mask is None else np.asarray(mask, dtype=bool)
    if border:
        if 2 * border >= min(t.shape[-2:]):
            raise ShapeError(f"border={border} removes the whole {t.shape[-2]}x{t.shape[-1]} image")
        sl = (..., slice(border, -border), slice(border, -border))
        p, t = p[sl], t[sl]
        m = None if m is None else m[sl]
    return float(report_scale) * masked_rmse(p, t, m)


# ----------------------------------------------------------------------------------- protocol B


def tiles_from_origin(x: np.ndarray, tile: int = 256) -> list[np.ndarray]:
    """Non-overlapping ``tile``×``tile`` views of an (H, W, ...) array, row-major from (0, 0).

    Remainders at the bottom and right are dropped (graph-SR / DADA evaluation).
    """
    rows, cols = x.shape[0] // tile, x.shape[1] // tile
    return [x[i * tile : (i + 1) * tile, j * tile : (j + 1) * tile] for i in range(rows) for j in range(cols)]


@dataclass(frozen=True)
class ProtocolBResult:
    """Protocol B scores.

    Attributes:
        mse_cm2: batch-mean of masked MSE, in cm² (not RMSE).
        mae_cm: batch-mean of masked MAE, in cm.
        n_tiles: tiles evaluated.
        n_batches: batches with at least one valid pixel.
    """

    mse_cm2: float
    mae_cm: float
    n_tiles: int
    n_batches: int


def protocol_b_errors(
    preds: Sequence[Any],
    targets: Sequence[Any],
    masks: Sequence[Any] | None = None,
    *,
    units: str = "mm",
    std_mm: float | None = None,
    tile: int | None = 256,
    batch_size: int | None = 8,
) -> ProtocolBResult:
    """Protocol B (graph-SR / DADA) MSE in cm² and MAE in cm over a list of images.

    Each image is cut into non-overlapping ``tile``² tiles from the origin. Tiles are taken in
    order in batches of ``batch_size``; in each batch the masked MSE and MAE are computed over
    all valid pixels of its tiles, and the scores are the means over batches (so a short last
    batch weighs as much as a full one, as in the original code).

    Args:
        preds: sequence of (H, W) predictions.
        targets: sequence of (H, W) ground truths (NaN = invalid).
        masks: optional sequence of (H, W) bool validity masks.
        units: unit of the inputs: ``"mm"``, ``"cm"``, ``"m"``, or ``"normalised"`` (depth
            divided by the dataset std, which then needs ``std_mm``).
        std_mm: dataset depth std in mm (graph-SR: Middlebury 1122.7, NYUv2 1386.05,
            DIML 1154.29); only used with ``units="normalised"``.
        tile: tile size; None evaluates whole images.
        batch_size: tiles per batch (graph-SR 8, DADA 32); None pools every tile into one
            batch, 1 gives the mean of per-tile errors.
    Returns:
        :class:`ProtocolBResult`.
    Raises:
        ConfigError: unknown unit, missing ``std_mm``, or bad tile/batch size.
        ShapeError: mismatched lengths or shapes.
    """
    if units == "normalised":
        if std_mm is None or std_mm <= 0:
            raise ConfigError("units='normalised' needs std_mm, the dataset depth std in mm (> 0)")
        to_cm = 0.1 * float(std_mm)
    elif units in UNIT_TO_CM:
        to_cm = UNIT_TO_CM[units]
    else:
        raise ConfigError(f"units must be one of 'mm', 'cm', 'm', 'normalised'; got {units!r}")
    if tile is not None and tile < 1:
        raise ConfigError(f"tile must be >= 1 or None, got {tile}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1 or None, got {batch_size}")
    if len(preds) != len(targets) or (masks is not None and len(masks) != len(targets)):
        raise ShapeError("preds, targets and masks must have the same length")

    sq_tiles: list[tuple[float, float, int]] = []  # (sum sq err, sum abs err, count) per tile
    for i, (pred, target) in enumerate(zip(preds, targets, strict=True)):
        p, t = _array(pred, "pred"), _array(target, "target")
        if p.shape != t.shape:
            raise ShapeError(f"image {i}: pred {p.shape} and target {t.shape} differ")
        valid = np.isfinite(t)
        if masks is not None:
            valid &= np.asarray(masks[i], dtype=bool)
        diff = np.where(valid, p - t, 0.0)
        if tile is None:
            views = [(diff, valid)]
        else:
            views = list(zip(tiles_from_origin(diff, tile), tiles_from_origin(valid, tile), strict=True))
        for d, v in views:
            sq_tiles.append((float(np.sum(d[v] ** 2)), float(np.sum(np.abs(d[v]))), int(v.sum())))

    step = len(sq_tiles) if batch_size is None else batch_size
    mse_b, mae_b = [], []
    for start in range(0, len(sq_tiles), max(step, 1)):
        batch = sq_tiles[start : start + step]
        count = sum(c for _, _, c in batch)
        if count:
            mse_b.append(sum(s for s, _, _ in batch) / count)
            mae_b.append(sum(a for _, a, _ in batch) / count)
    if not mse_b:
        return ProtocolBResult(float("nan"), float("nan"), len(sq_tiles), 0)
    return ProtocolBResult(
        mse_cm2=float(np.mean(mse_b)) * to_cm**2,
        mae_cm=float(np.mean(mae_b)) * to_cm,
        n_tiles=len(sq_tiles),
        n_batches=len(mse_b),
    )


# -------------------------------------------------------------------------------- consistency


def block_mean(x: Any, scale: int, mask: Any = None) -> np.ndarray:
    """NaN-aware average of non-overlapping ``scale``×``scale`` blocks.

    Args:
        x: (H, W) array; H and W multiples of ``scale``.
        scale: block size f >= 1 (the integer scale).
        mask: optional (H, W) bool; pixels with False (or NaN) are left out of their block.
    Returns:
        (H/f, W/f) float64; NaN for blocks without a valid pixel.
    Raises:
        ShapeError: if H or W is not a multiple of ``scale``.
    """
    a = _array(x, "x")
    if a.ndim != 2:
        raise ShapeError(f"x must be (H, W); got shape {a.shape}")
    f = int(scale)
    if f != scale or f < 1:
        raise ConfigError(f"scale must be a positive integer, got {scale!r}")
    h, w = a.shape
    if h % f or w % f:
        raise ShapeError(
            f"scale must divide H and W; got scale={f} for x of size {h}x{w}. Crop to a multiple of {f}."
        )
    valid = np.isfinite(a)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    total = np.where(valid, a, 0.0).reshape(h // f, f, w // f, f).sum(axis=(1, 3))
    count = valid.reshape(h // f, f, w // f, f).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def lr_consistency_rmse(
    lr: Any,
    pred: Any,
    *,
    scale: int | None = None,
    mask_lr: Any = None,
    report_scale: float = 1.0,
) -> float:
    """RMSE between the LR input and the downsampled prediction, in the reporting unit.

    Args:
        lr: (h, w) LR source.
        pred: the prediction already downsampled to (h, w), or, with ``scale``, the HR
            prediction (h·f, w·f), which is then block-averaged (:func:`block_mean`).
        scale: integer scale f, if ``pred`` is at HR.
        mask_lr: optional (h, w) bool validity of ``lr``.
        report_scale: factor to the reporting unit (as in :func:`protocol_a_rmse`).
    Returns:
        RMSE in LR space; 0 for an exactly consistent prediction.
    Raises:
        ShapeError: if the sizes do not agree.
    """
    s = _array(lr, "lr")
    p = _array(pred, "pred")
    if scale is not None:
        if p.shape != (s.shape[0] * scale, s.shape[1] * scale):
            raise ShapeError(
                f"pred must be {s.shape[0] * scale}x{s.shape[1] * scale} (lr size × {scale}); got {p.shape}"
            )
        p = block_mean(p, scale)
    if p.shape != s.shape:
        raise ShapeError(f"downsampled pred {p.shape} and lr {s.shape} differ; pass scale= for an HR pred")
    return float(report_scale) * masked_rmse(p, s, mask_lr)
