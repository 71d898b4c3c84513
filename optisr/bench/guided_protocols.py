"""The two guided depth SR protocols of ``optisr bench guided``: which regions are scored, their LR input, the scores.

See :mod:`optisr.bench.guided` for the protocols in words. Here:

* :func:`scored_regions` cuts one dataset sample into :class:`Case` s (protocol A: the mod-cropped
  image; B: non-overlapping tiles; NOISY: the mod-cropped image with a noisy LR; real LR: the whole
  image with its resampled LR);
* :func:`make_lr` synthesises the LR input with the protocol's operator, :func:`add_noise` adds the
  noisy protocol's seeded Gaussian noise (:class:`NoiseSpec`), :func:`resample_bicubic` resamples a
  real LR depth onto the ×s grid (PIL-exact bicubic, any ratio);
* :func:`consistency_rmse` scores ``D x̂ − s``; :class:`ProtocolBStream` accumulates protocol B's
  batch-mean MSE/MAE; :func:`report_units` and :func:`lr_source` read dataset attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from optisr.errors import ConfigError, InputFileError, ShapeError
from optisr.guided.graph_weights import DEPTH_MU
from optisr.metrics.depth import UNIT_TO_CM, masked_rmse, mod_crop, protocol_b_errors
from optisr.ops.operators import bicubic_matrix, make_operator, resampling_operator
from optisr.rng import derive_seed

__all__ = [
    "LR_SOURCES",
    "NOISE_OPERATORS",
    "NOISY",
    "PROTOCOLS",
    "PROTOCOL_B_BATCH",
    "PUBLISHED_BORDER",
    "ORACLE",
    "ORACLE_FLOOR",
    "ORACLE_MU",
    "RAW_BICUBIC",
    "REAL_GRIDS",
    "Case",
    "NoiseSpec",
    "ProtocolBStream",
    "add_noise",
    "consistency_rmse",
    "lr_source",
    "make_lr",
    "oracle_weights",
    "real_lr_case",
    "report_units",
    "resample_bicubic",
    "scored_regions",
]

NOISY = "NOISY"
"""The noisy protocol's name (``--protocol noisy``)."""

PROTOCOLS = {"A": "bicubic", "B": "area", NOISY: "area"}
"""Protocol -> the degradation operator that makes its LR input (and scores consistency); the noisy
protocol's default, which :attr:`NoiseSpec.operator` sets."""

NOISE_OPERATORS = ("area", "bicubic")
"""The LR operators of the noisy protocol: block average (the default) or PIL-exact bicubic."""


@dataclass(frozen=True)
class NoiseSpec:
    """The noisy protocol's LR: ``operator`` applied to the HR, plus Gaussian noise.

    Attributes:
        sigma: noise standard deviation in the dataset's reporting unit (0–255 for the Middlebury
            disparity sets, cm for RGB-D-D); >= 0.
        operator: one of :data:`NOISE_OPERATORS`.
        seed: the base seed; the noise of image ``i`` at scale ``s`` is drawn from
            ``numpy.random.default_rng(derive_seed(seed, i, s))`` (:func:`optisr.rng.derive_seed`), so
            every method sees the same noisy LR and a run is reproducible.
    """

    sigma: float = 6.0
    operator: str = "area"
    seed: int = 0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.sigma) and self.sigma >= 0):
            raise ConfigError(f"--noise-sigma must be a number >= 0; got {self.sigma!r}")
        if self.operator not in NOISE_OPERATORS:
            raise ConfigError(f"--noise-operator must be one of {', '.join(NOISE_OPERATORS)}; got {self.operator!r}")
        if isinstance(self.seed, bool) or int(self.seed) != self.seed or self.seed < 0:
            raise ConfigError(f"--noise-seed must be an integer >= 0; got {self.seed!r}")


PROTOCOL_B_BATCH = 8  # tiles per batch in protocol B's batch-mean (graph-SR's test batch size)

REAL_GRIDS = ("native", "scale")
"""``--real-grid``: with real LR, do the graph methods solve against the sensor's LR on its own grid
(``native``: at the sizes' ratio, e.g. 8/3 for RGB-D-D, with a resampling operator) or against the LR
resampled onto the ×s grid, as the baselines do (``scale``)."""

LR_SOURCES = ("auto", "synthetic", "real")
"""``--lr``: synthesise the LR from the ground truth, use the dataset's own (real) LR depth, or
``auto``: real for loaders whose ``real_lr`` is true (``rgbdd-real``), synthetic otherwise."""

RAW_BICUBIC = "bicubic-raw"
"""The real-LR reference method: bicubic straight from the unresampled LR to the HR size."""

PUBLISHED_BORDER = 6
"""HR border (pixels per side) that SGNet's and DCTNet's test code crop before the protocol-A RMSE."""

ORACLE = "oracle"
"""The ceiling of the exact graph layer: edge weights from the *ground-truth* HR depth (see
:func:`oracle_weights`), exact consistency. It shows how much of the colour→oracle gap a model closes."""

ORACLE_MU = DEPTH_MU
"""μ of the oracle weights, in 0–255 depth units (a jump of 1/255 of the range gives exp(−1))."""

ORACLE_FLOOR = 1e-3
"""Weight floor of the oracle (as the colour graph and the learned model)."""


def oracle_weights(depth: np.ndarray, valid: np.ndarray, to_255: float | None = None) -> np.ndarray:
    """Edge weights from the ground truth: ``w = floor + (1 − floor)·exp(−ΔD²/μ²)``, 4-connected.

    Args:
        depth: (H, W) ground-truth depth, any unit; invalid pixels are filled with the nearest
            valid value (so they neither cut nor make edges of their own).
        valid: (H, W) bool, True where ``depth`` is valid.
        to_255: factor from ``depth``'s unit to 0–255 units (1 for 8-bit disparity); None maps each
            image's valid range onto 0–255.
    Returns:
        (2, H, W) float64 weights in [ORACLE_FLOOR, 1] (the layout of :mod:`optisr.ops.lattice`).
    """
    from optisr.guided.baselines import fill_nearest
    from optisr.ops.lattice import edge_weights

    d = fill_nearest(np.asarray(depth, np.float64), valid)
    if to_255 is None:
        span = float(np.ptp(d[valid])) if valid.any() else 0.0
        to_255 = 255.0 / span if span > 0 else 1.0
    w = edge_weights(torch.from_numpy(d * to_255)[None, None], ORACLE_MU, floor=ORACLE_FLOOR)
    return w[0].numpy()


@dataclass
class Case:
    """One evaluated region: the whole mod-cropped image (A) or one tile (B)."""

    y: int  # top-left corner in the image, HR pixels
    x: int
    depth: np.ndarray  # (H, W) float32 ground truth, NaN where invalid
    valid: np.ndarray  # (H, W) bool
    guide: np.ndarray  # (H, W, 3) float32
    lr: np.ndarray  # (h, w) float32 LR input (0 at invalid pixels), h = H / scale
    lr_valid: np.ndarray  # (h, w) bool
    raw_lr: np.ndarray | None = None  # real LR only: the dataset's LR as read, (h0, w0) float32, NaN holes
    raw_lr_valid: np.ndarray | None = None  # (h0, w0) bool


def make_lr(depth: np.ndarray, valid: np.ndarray, kind: str, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """LR input of an HR crop with the protocol's operator (float64 maths, float32 result)."""
    op = make_operator(kind, depth.shape, scale)
    lr, ok = op.apply_masked(torch.from_numpy(depth.astype(np.float64)), torch.from_numpy(valid))
    return lr.numpy().astype(np.float32), ok.numpy()


def add_noise(
    lr: np.ndarray, valid: np.ndarray, noise: NoiseSpec, image_index: int, scale: int, unit_scale: float = 1.0
) -> np.ndarray:
    """``lr`` plus seeded Gaussian noise of std ``noise.sigma / unit_scale`` on the valid pixels (float32).

    Args:
        lr: (h, w) float LR map in the dataset's published unit.
        valid: (h, w) bool; invalid pixels are left as they are.
        noise: the protocol's :class:`NoiseSpec` (``sigma`` in the reporting unit).
        image_index, scale: which image and scale (they pick the noise stream).
        unit_scale: the dataset's ``report_scale`` (reporting unit per published unit).
    """
    rng = np.random.default_rng(derive_seed(noise.seed, image_index, scale))
    draw = rng.standard_normal(lr.shape) * (noise.sigma / unit_scale)
    return np.where(valid, lr.astype(np.float64) + draw, lr).astype(np.float32)


def resample_bicubic(x: np.ndarray, valid: np.ndarray | None, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """PIL-exact antialiased bicubic resize of a 2-D map to ``size = (H', W')``, NaN-aware.

    Any size ratio, up or down. The per-axis matrices are the ``bicubic`` operator's
    (:mod:`optisr.ops.operators`: PIL's kernel a = −0.5, taps and pixel-centre geometry, filter
    stretched by the ratio when downsampling, rows renormalised at the borders), so the result
    is ``PIL.Image.resize(..., BICUBIC)`` of the float (``F`` mode) image, computed in float64.
    Invalid pixels (``valid`` False or non-finite ``x``) get zero weight and each output pixel is
    renormalised by the weight of the valid ones, as :meth:`DownsampleOperator.apply_masked`.

    Args:
        x: (h, w) float map, any unit.
        valid: (h, w) bool, or None (all finite pixels valid).
        size: output (H', W').
    Returns:
        ``(out, ok)``: (H', W') float32, 0 where ``ok`` is False; bool (H', W'), False where no
        valid input pixel reaches the output pixel.
    """
    x = np.asarray(x, dtype=np.float64)
    v = np.isfinite(x) if valid is None else np.asarray(valid, dtype=bool) & np.isfinite(x)
    ay = bicubic_matrix(x.shape[0], int(size[0]))  # (H', h)
    ax = bicubic_matrix(x.shape[1], int(size[1]))  # (W', w)
    num = ay @ np.where(v, x, 0.0) @ ax.T
    den = ay @ v.astype(np.float64) @ ax.T
    ok = den > 1e-6  # rows sum to 1, so den == 1 where every tap is valid
    out = np.where(ok, num / np.where(ok, den, 1.0), 0.0)
    return out.astype(np.float32), ok


def real_lr_case(sample: Any, depth: np.ndarray, valid: np.ndarray, guide: np.ndarray, scale: int) -> Case:
    """The real-LR case of one sample: its LR depth resampled onto the exact ×``scale`` grid.

    The (h0, w0) real LR must cover the same field of view as the (H, W) HR (one ratio on both
    axes: H·w0 = W·h0), and H, W must be multiples of ``scale``; the LR input is then the
    (H/scale, W/scale) :func:`resample_bicubic` of the real LR.
    """
    name = getattr(sample, "name", "?")
    if getattr(sample, "lr_depth", None) is None:
        raise InputFileError(
            f"{name}: the sample has no LR depth file; real LR input needs a dataset that ships one (e.g. rgbdd-real)"
        )
    raw = np.asarray(sample.lr_depth, dtype=np.float32)
    raw_mask = getattr(sample, "lr_mask", None)
    raw_valid = np.isfinite(raw) if raw_mask is None else np.asarray(raw_mask, dtype=bool) & np.isfinite(raw)
    (H, W), (h0, w0) = depth.shape, raw.shape
    if H * w0 != W * h0:
        raise ShapeError(
            f"{name}: LR depth {h0}x{w0} and HR {H}x{W} have different aspect ratios; they must cover the same view"
        )
    if H % scale or W % scale:
        raise ShapeError(
            f"{name}: HR {H}x{W} is not a multiple of x{scale}; real LR is resampled onto the exact x{scale} grid"
        )
    lr, ok = resample_bicubic(raw, raw_valid, (H // scale, W // scale))
    return Case(0, 0, depth, valid, guide, lr, ok, raw, raw_valid)


def scored_regions(
    sample: Any,
    scale: int,
    protocol: str,
    tile: int,
    real: bool = False,
    *,
    noise: NoiseSpec | None = None,
    image_index: int = 0,
    unit_scale: float = 1.0,
) -> tuple[list[Case], tuple[int, int]]:
    """Split one sample into the regions the protocol scores; also return the covered (H, W).

    The noisy protocol needs ``noise`` (None: the default :class:`NoiseSpec`), the sample's
    ``image_index`` (its noise stream) and the dataset's ``unit_scale`` (``report_scale``).
    """
    depth = np.asarray(sample.depth, dtype=np.float32)
    valid = np.asarray(sample.mask, dtype=bool) & np.isfinite(depth)
    guide = np.asarray(sample.guide, dtype=np.float32)
    if real:
        return [real_lr_case(sample, depth, valid, guide, scale)], depth.shape
    if protocol == "A":
        d, v, g = mod_crop(depth, scale), mod_crop(valid, scale), mod_crop(guide, scale)
        lr, ok = make_lr(d, v, PROTOCOLS["A"], scale)
        return [Case(0, 0, d, v, g, lr, ok)], d.shape
    if protocol == NOISY:
        spec = NoiseSpec() if noise is None else noise
        d, v, g = mod_crop(depth, scale), mod_crop(valid, scale), mod_crop(guide, scale)
        lr, ok = make_lr(d, v, spec.operator, scale)
        lr = add_noise(lr, ok, spec, image_index, scale, unit_scale)
        return [Case(0, 0, d, v, g, lr, ok)], d.shape
    rows, cols = depth.shape[0] // tile, depth.shape[1] // tile
    cases = []
    for i in range(rows):
        for j in range(cols):
            sl = (slice(i * tile, (i + 1) * tile), slice(j * tile, (j + 1) * tile))
            d, v, g = depth[sl], valid[sl], guide[sl]
            lr, ok = make_lr(d, v, PROTOCOLS["B"], scale)
            cases.append(Case(i * tile, j * tile, d, v, g, lr, ok))
    return cases, (rows * tile, cols * tile)


def consistency_rmse(pred: np.ndarray, case: Case, kind: str, scale: int, native: bool = False) -> float:
    """RMSE of D x̂ − s over valid LR pixels, in the dataset's published unit.

    ``native``: s is the case's real LR on its own grid (``case.raw_lr``), D the
    :func:`~optisr.ops.operators.resampling_operator` of ``kind`` onto it; else s = ``case.lr`` at ×``scale``.
    """
    if native and case.raw_lr is not None and case.raw_lr_valid is not None:
        op = resampling_operator(kind, pred.shape, case.raw_lr.shape)
        lr, valid = case.raw_lr, case.raw_lr_valid
    else:
        op = make_operator(kind, pred.shape, scale)
        lr, valid = case.lr, case.lr_valid
    down = op.apply(torch.from_numpy(np.asarray(pred, dtype=np.float64))).numpy()
    return masked_rmse(down, np.nan_to_num(lr.astype(np.float64)), valid)


class ProtocolBStream:
    """Protocol B's batch-mean errors, computed batch by batch so no prediction is kept."""

    def __init__(self, units: str) -> None:
        self.units = units
        self.buffer: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.mse: list[float] = []
        self.mae: list[float] = []
        self.n_tiles = 0

    def add(self, pred: np.ndarray, target: np.ndarray, valid: np.ndarray) -> None:
        self.buffer.append((np.asarray(pred, dtype=np.float32), target, valid))
        self.n_tiles += 1
        if len(self.buffer) == PROTOCOL_B_BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        preds, targets, masks = (list(t) for t in zip(*self.buffer, strict=True))
        res = protocol_b_errors(preds, targets, masks, units=self.units, tile=None, batch_size=None)
        if res.n_batches:
            self.mse.append(res.mse_cm2)
            self.mae.append(res.mae_cm)
        self.buffer = []

    def result(self) -> tuple[float, float]:
        self._flush()
        if not self.mse:
            return float("nan"), float("nan")
        return float(np.mean(self.mse)), float(np.mean(self.mae))


def report_units(dataset: Any, protocol: str) -> tuple[float, str, str | None]:
    """(scale from the published unit to the reported unit, reported unit, protocol B unit)."""
    units = str(getattr(dataset, "units", "unknown"))
    if protocol in ("A", NOISY):
        return float(getattr(dataset, "report_scale", 1.0)), str(getattr(dataset, "report_units", units)), None
    if units in UNIT_TO_CM:
        return UNIT_TO_CM[units], "cm", units
    return 1.0, units, None


def lr_source(dataset: Any, lr: str, protocol: str = "A") -> tuple[bool, bool]:
    """(use the dataset's real LR?, is that the dataset's default?) for an ``--lr`` value.

    The noisy protocol always synthesises its LR: ``auto`` is ``synthetic`` there (and the
    default), ``real`` is a ConfigError.
    """
    key = str(lr).strip().lower()
    if key not in LR_SOURCES:
        raise ConfigError(f"--lr must be one of {', '.join(LR_SOURCES)}; got {lr!r}")
    if str(protocol).upper() == NOISY:
        if key == "real":
            raise ConfigError(
                "the noisy protocol synthesises its LR from the ground truth; drop --lr real (a real sensor's LR "
                "is scored under protocol A)"
            )
        return False, True
    default = bool(getattr(dataset, "real_lr", False))
    real = default if key == "auto" else key == "real"
    return real, real == default
