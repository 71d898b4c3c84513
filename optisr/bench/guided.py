"""``optisr bench guided``: guided depth SR quality tables under the two published protocols.

Examples::

    optisr bench guided --dataset middlebury30 --data-dir ../shared/data/depth_lu2014_middlebury30
    optisr bench guided --dataset rgbdd --data-dir ../shared/data/depth_rgbdd_test405 --limit 60
    optisr bench guided --dataset middlebury2014 --data-dir DIR --protocol B --scales 4 8 16 32
    optisr bench guided --dataset rgbdd-real --data-dir ../shared/data/depth_rgbdd_realscene3 --methods model

Protocols (see ``research/anchors.md`` §1.1; their numbers are not comparable):

* **A** (DKN/FDSR/DCTNet line): the HR ground truth is cropped to a multiple of the scale
  (:func:`~optisr.metrics.depth.mod_crop`), the LR input is the ``bicubic`` operator (PIL's
  antialiased bicubic on the float image, computed in float64 and stored as float32, as Pillow's
  ``F`` mode does), and the score is the per-image RMSE in the dataset's reporting unit
  (``report_scale``), masked where the ground truth is invalid, averaged over images.
* **B** (LGR/DADA line): non-overlapping ``tile``² crops from the origin are the samples; the LR
  input of each crop is the NaN-aware ``area`` operator (block mean over valid pixels, blocks
  without one are invalid); the scores are masked MSE (cm²) and MAE (cm) over batches of 8 tiles
  (:func:`~optisr.metrics.depth.protocol_b_errors`).

**Real LR** (``--lr real``; the default for datasets whose loader sets ``real_lr``, i.e. the
RGB-D-D real-scene triplets ``rgbdd-real``): the LR input is the dataset's own LR depth instead of a
synthesised one. Its size need not be an integer fraction of the HR (RGB-D-D: 144×192 phone ToF
for a 384×512 HR, ratio 8/3), so it is first resampled onto the ×s grid ``(H/s, W/s)`` with the
same PIL-exact antialiased bicubic (kernel a = −0.5, PIL's pixel-centre geometry, float64 maths,
float32 result) as the ``bicubic`` operator, and every method then solves an ordinary ×s task
with that operator (s = 4 by default, as SGNet/SPFNet treat the real branch). ``bicubic-raw``
is the direct bicubic resize of the unresampled LR to the HR size, the natural reference. The
score is protocol A's RMSE on the full HR (no crop; its size must be a multiple of s), also
listed per image. Nothing is tuned on these sets.

Every method is also scored on LR consistency: the RMSE of ``D x̂ − s`` over valid LR pixels,
with the protocol's own operator ``D`` and in the same unit as the main metric, averaged over
images (A) or tiles (B). The ``color`` method (the colour-affinity graph of
:func:`optisr.guided_upsample`) is solved with that same operator, so it is consistent to solver
precision; the classic baselines are not. With real LR, consistency is measured against the
resampled (H/s, W/s) LR; a real sensor's LR is not a downsampled ground truth, so exact
consistency with it does not imply a low error.

Output: ``OUT/<stem>.md`` (the tables, also printed to stdout) and, for the first ``--figures``
images, ``OUT/figures/<stem>_<image>_x<scale>.png`` panels (guide | LR | methods | |error| maps;
maps share one colour scale, errors another), where ``<stem>`` is ``<dataset>_protocol<P>``, or
``<dataset>_reallr_protocol<P>`` / ``<dataset>_synthlr_protocol<P>`` when ``--lr`` overrides the dataset's default LR
source. Files are written atomically. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optisr.errors import ConfigError, ConvergenceWarning, InputFileError, OptiSRError, ShapeError

__all__ = [
    "METHODS",
    "PROTOCOLS",
    "LR_SOURCES",
    "BenchResult",
    "add_arguments",
    "benchmark",
    "format_markdown",
    "main",
    "run",
]

RAW_BICUBIC = "bicubic-raw"

METHODS = ("bicubic", "color", "model", "guided-filter", "jbu", "fbs", RAW_BICUBIC)
"""Methods the harness can run: ``color`` is the exact colour-affinity graph, ``model`` the shipped
learned graph (any ``*.safetensors`` guided model file is accepted too), the rest are baselines;
``bicubic-raw`` (real LR only) is bicubic straight from the unresampled LR to the HR size."""

DEFAULT_METHODS = ("bicubic", "color", "guided-filter", "jbu")
DEFAULT_SCALES = (4, 8, 16)
DEFAULT_REAL_METHODS = ("bicubic", RAW_BICUBIC, "color", "guided-filter", "jbu")
DEFAULT_REAL_SCALES = (4,)  # the integer factor above RGB-D-D's 8/3 (SGNet/SPFNet's "×4 real" task)

LR_SOURCES = ("auto", "synthetic", "real")
"""``--lr``: synthesise the LR from the ground truth, use the dataset's own (real) LR depth, or
``auto``: real for loaders whose ``real_lr`` is true (``rgbdd-real``), synthetic otherwise."""

PROTOCOLS = {"A": "bicubic", "B": "area"}
"""Protocol -> the degradation operator that makes its LR input (and scores consistency)."""

PROTOCOL_B_BATCH = 8  # tiles per batch in protocol B's batch-mean (graph-SR's test batch size)


# ------------------------------------------------------------------------------------ arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``optisr bench guided`` on ``parser``."""
    parser.description = (
        "Evaluate guided depth upsampling methods on a published test set under protocol A "
        "(bicubic LR, RMSE in the dataset's published unit) or B (NaN-aware block-average LR on "
        "256² tiles, MSE cm² / MAE cm), plus the LR-consistency error of every method. Writes "
        "OUT/<dataset>_protocol<P>.md and comparison figures, and prints the tables."
    )
    parser.add_argument("--dataset", required=True, metavar="NAME", help="dataset name (middlebury30, lu, rgbdd, ...)")
    parser.add_argument("--data-dir", required=True, metavar="DIR", help="the dataset's folder")
    parser.add_argument(
        "--scales",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help=f"upsampling factors (default {' '.join(map(str, DEFAULT_SCALES))}; with real LR "
        f"{' '.join(map(str, DEFAULT_REAL_SCALES))})",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="M",
        help=f"methods to compare, from {', '.join(METHODS)} (default: {' '.join(DEFAULT_METHODS)}; with "
        f"real LR {' '.join(DEFAULT_REAL_METHODS)})",
    )
    parser.add_argument(
        "--lr",
        type=str.lower,
        default="auto",
        choices=LR_SOURCES,
        help="LR input: 'synthetic' (made from the ground truth by the protocol's operator), 'real' (the "
        "dataset's own LR depth, resampled to the xN grid; protocol A only) or 'auto' (real for "
        "rgbdd-real, synthetic otherwise; the default)",
    )
    parser.add_argument(
        "--protocol",
        type=str.upper,
        default="A",
        choices=sorted(PROTOCOLS),
        help="A: bicubic LR, RMSE (DKN/FDSR/DCTNet); B: area LR on tiles, MSE/MAE (LGR/DADA). Default A",
    )
    parser.add_argument("--out-dir", default="bench_out", metavar="OUT", help="output folder (default bench_out)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate only the first N images")
    parser.add_argument(
        "--figures", type=int, default=3, metavar="K", help="write comparison panels for the first K images (default 3)"
    )
    parser.add_argument(
        "--tile", type=int, default=256, metavar="T", help="protocol B tile size in HR pixels (default 256)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="torch CPU threads (default 1: the per-image solves are small, and on a shared or busy CPU "
        "more threads than free cores slow the CG down many times over); 0 keeps torch's default",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")


def _check_options(
    scales: Sequence[int] | None,
    methods: Sequence[str] | None,
    protocol: str,
    tile: int,
    real: bool | None = None,
) -> tuple[list, list]:
    """Validate and normalise scales and method names; raise ConfigError with the fix.

    ``None`` scales / methods mean the defaults of the LR source; ``real`` is whether the LR input
    is the dataset's own (None: not known yet, so the checks that depend on it are skipped).
    """
    if scales is None:
        scales = DEFAULT_REAL_SCALES if real else DEFAULT_SCALES
    if methods is None:
        methods = DEFAULT_REAL_METHODS if real else DEFAULT_METHODS
    if not scales:
        raise ConfigError("--scales needs at least one factor, e.g. --scales 4 8 16")
    bad = [s for s in scales if isinstance(s, bool) or int(s) != s or not 1 <= int(s) <= 64]
    if bad:
        raise ConfigError(f"--scales must be integers in 1..64; got {bad}")
    scales = list(dict.fromkeys(int(s) for s in scales))
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    if real and protocol != "A":
        raise ConfigError(
            "real LR input (--lr real, or a real-LR dataset such as rgbdd-real) is scored under protocol A only"
        )
    if protocol == "B":
        if tile < 1:
            raise ConfigError(f"--tile must be >= 1; got {tile}")
        odd = [s for s in scales if tile % s]
        if odd:
            raise ConfigError(f"--tile {tile} must be a multiple of every scale for protocol B; not of {odd}")
    if not methods:
        raise ConfigError(f"--methods needs at least one method from {', '.join(METHODS)}")
    names = []
    for m in methods:
        if m.endswith(".safetensors"):  # a trained guided model file
            if not Path(m).is_file():
                raise ConfigError(f"{m}: guided model file not found")
            names.append(m)
            continue
        key = m.strip().lower().replace("_", "-")
        if key == "model":
            from optisr.guided.model import default_model_path

            if not default_model_path().is_file():
                raise ConfigError("method 'model': no default guided model is shipped in this install")
        if key not in METHODS:
            import difflib

            close = difflib.get_close_matches(key, METHODS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown method {m!r}{hint}; valid methods: {', '.join(METHODS)}")
        names.append(key)
    names = list(dict.fromkeys(names))
    if real is False and RAW_BICUBIC in names:
        raise ConfigError(f"method {RAW_BICUBIC!r} needs real LR input (--lr real); drop it from --methods")
    if "fbs" in names:
        from optisr.guided.baselines import fbs_available

        if not fbs_available():
            raise ConfigError(
                "method 'fbs' needs a working cv2.ximgproc.fastBilateralSolverFilter "
                "(opencv-contrib-python-headless built with Eigen); drop it from --methods"
            )
    return scales, names


# -------------------------------------------------------------------------------------- methods


def _method_fn(name: str, operator: str) -> Callable[[_Case, int], np.ndarray]:
    """``f(case, scale) -> (H, W)`` prediction for a method name (from ``case.lr`` and ``case.guide``)."""
    from optisr import guided_upsample

    if name == "model" or name.endswith(".safetensors"):
        from optisr.guided.model import default_model_path, load_guided_model

        model, _ = load_guided_model(default_model_path() if name == "model" else name)

        def learned(case: _Case, scale: int) -> np.ndarray:
            source = np.where(case.lr_valid, case.lr, np.nan).astype(np.float32)
            return guided_upsample(source, case.guide, scale, operator=operator, weights=model)

        return learned
    if name == "color":

        def color(case: _Case, scale: int) -> np.ndarray:
            source = np.where(case.lr_valid, case.lr, np.nan).astype(np.float32)
            return guided_upsample(source, case.guide, scale, operator=operator, weights="color")

        return color
    if name == RAW_BICUBIC:
        from optisr.guided.baselines import fill_nearest

        def raw_bicubic(case: _Case, scale: int) -> np.ndarray:
            if case.raw_lr is None or case.raw_lr_valid is None:
                raise ConfigError(f"method {RAW_BICUBIC!r} needs real LR input (--lr real)")
            if not case.raw_lr_valid.any():
                raise InputFileError("the real LR depth has no valid pixel")
            src = fill_nearest(case.raw_lr.astype(np.float64), case.raw_lr_valid)  # as the bicubic baseline
            return _resample_bicubic(src, None, case.depth.shape)[0]

        return raw_bicubic
    from optisr.guided.baselines import get_baseline

    base = get_baseline(name)

    def baseline(case: _Case, scale: int) -> np.ndarray:
        return base(case.lr, case.guide, scale, case.lr_valid)

    return baseline


# ------------------------------------------------------------------------------------ the cases


@dataclass
class _Case:
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


def _make_lr(depth: np.ndarray, valid: np.ndarray, kind: str, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """LR input of an HR crop with the protocol's operator (float64 maths, float32 result)."""
    from optisr.ops.operators import make_operator

    op = make_operator(kind, depth.shape, scale)
    lr, ok = op.apply_masked(torch.from_numpy(depth.astype(np.float64)), torch.from_numpy(valid))
    return lr.numpy().astype(np.float32), ok.numpy()


def _resample_bicubic(
    x: np.ndarray, valid: np.ndarray | None, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
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
    from optisr.ops.operators import bicubic_matrix

    x = np.asarray(x, dtype=np.float64)
    v = np.isfinite(x) if valid is None else np.asarray(valid, dtype=bool) & np.isfinite(x)
    ay = bicubic_matrix(x.shape[0], int(size[0]))  # (H', h)
    ax = bicubic_matrix(x.shape[1], int(size[1]))  # (W', w)
    num = ay @ np.where(v, x, 0.0) @ ax.T
    den = ay @ v.astype(np.float64) @ ax.T
    ok = den > 1e-6  # rows sum to 1, so den == 1 where every tap is valid
    out = np.where(ok, num / np.where(ok, den, 1.0), 0.0)
    return out.astype(np.float32), ok


def _real_lr_case(sample: Any, depth: np.ndarray, valid: np.ndarray, guide: np.ndarray, scale: int) -> _Case:
    """The real-LR case of one sample: its LR depth resampled onto the exact ×``scale`` grid.

    The (h0, w0) real LR must cover the same field of view as the (H, W) HR (one ratio on both
    axes: H·w0 = W·h0), and H, W must be multiples of ``scale``; the LR input is then the
    (H/scale, W/scale) :func:`_resample_bicubic` of the real LR.
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
    lr, ok = _resample_bicubic(raw, raw_valid, (H // scale, W // scale))
    return _Case(0, 0, depth, valid, guide, lr, ok, raw, raw_valid)


def _cases(
    sample: Any, scale: int, protocol: str, tile: int, real: bool = False
) -> tuple[list[_Case], tuple[int, int]]:
    """Split one sample into the regions the protocol scores; also return the covered (H, W)."""
    from optisr.metrics.depth import mod_crop

    depth = np.asarray(sample.depth, dtype=np.float32)
    valid = np.asarray(sample.mask, dtype=bool) & np.isfinite(depth)
    guide = np.asarray(sample.guide, dtype=np.float32)
    if real:
        return [_real_lr_case(sample, depth, valid, guide, scale)], depth.shape
    if protocol == "A":
        d, v, g = mod_crop(depth, scale), mod_crop(valid, scale), mod_crop(guide, scale)
        lr, ok = _make_lr(d, v, PROTOCOLS["A"], scale)
        return [_Case(0, 0, d, v, g, lr, ok)], d.shape
    rows, cols = depth.shape[0] // tile, depth.shape[1] // tile
    cases = []
    for i in range(rows):
        for j in range(cols):
            sl = (slice(i * tile, (i + 1) * tile), slice(j * tile, (j + 1) * tile))
            d, v, g = depth[sl], valid[sl], guide[sl]
            lr, ok = _make_lr(d, v, PROTOCOLS["B"], scale)
            cases.append(_Case(i * tile, j * tile, d, v, g, lr, ok))
    return cases, (rows * tile, cols * tile)


def _consistency(pred: np.ndarray, case: _Case, kind: str, scale: int) -> float:
    """RMSE of D x̂ − s over valid LR pixels, in the dataset's published unit."""
    from optisr.metrics.depth import masked_rmse
    from optisr.ops.operators import make_operator

    op = make_operator(kind, pred.shape, scale)
    down = op.apply(torch.from_numpy(np.asarray(pred, dtype=np.float64))).numpy()
    return masked_rmse(down, case.lr.astype(np.float64), case.lr_valid)


class _ProtocolBStream:
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
        from optisr.metrics.depth import protocol_b_errors

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


# ------------------------------------------------------------------------------------ the result


@dataclass
class BenchResult:
    """Scores of one benchmark run.

    Attributes:
        dataset, protocol, operator: what was run.
        lr: the LR source, ``"synthetic"`` or ``"real"``.
        stem: base name of the report and figure files.
        units: unit of ``rmse`` / ``mae`` and of ``consistency`` (``mse`` is in its square).
        scales, methods: table axes.
        n_images, n_available: images evaluated / in the dataset.
        n_regions: scale -> scored regions (images for A, tiles for B).
        rmse: protocol A: method -> scale -> mean per-image RMSE.
        image_rmse: protocol A: scale -> image name -> method -> RMSE (the per-image scores).
        mse, mae: protocol B: method -> scale -> batch-mean MSE / MAE.
        consistency: method -> scale -> mean LR-consistency RMSE.
        seconds: method -> scale -> mean run time per region, seconds.
        figures: written figure paths.
        notes: remarks that belong in the report.
    """

    dataset: str
    protocol: str
    operator: str
    units: str
    scales: list[int]
    methods: list[str]
    n_images: int
    n_available: int
    lr: str = "synthetic"
    stem: str = ""
    n_regions: dict[int, int] = field(default_factory=dict)
    rmse: dict[str, dict[int, float]] = field(default_factory=dict)
    image_rmse: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    mse: dict[str, dict[int, float]] = field(default_factory=dict)
    mae: dict[str, dict[int, float]] = field(default_factory=dict)
    consistency: dict[str, dict[int, float]] = field(default_factory=dict)
    seconds: dict[str, dict[int, float]] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _units(dataset: Any, protocol: str) -> tuple[float, str, str | None]:
    """(factor from the published unit to the reported unit, reported unit, protocol B unit)."""
    from optisr.metrics.depth import UNIT_TO_CM

    units = str(getattr(dataset, "units", "unknown"))
    if protocol == "A":
        return float(getattr(dataset, "report_scale", 1.0)), str(getattr(dataset, "report_units", units)), None
    if units in UNIT_TO_CM:
        return UNIT_TO_CM[units], "cm", units
    return 1.0, units, None


def _lr_source(dataset: Any, lr: str) -> tuple[bool, bool]:
    """(use the dataset's real LR?, is that the dataset's default?) for an ``--lr`` value."""
    key = str(lr).strip().lower()
    if key not in LR_SOURCES:
        raise ConfigError(f"--lr must be one of {', '.join(LR_SOURCES)}; got {lr!r}")
    default = bool(getattr(dataset, "real_lr", False))
    real = default if key == "auto" else key == "real"
    return real, real == default


def benchmark(
    dataset: Any,
    *,
    scales: Sequence[int] | None = None,
    methods: Sequence[str] | None = None,
    protocol: str = "A",
    lr: str = "auto",
    limit: int | None = None,
    tile: int = 256,
    figures: int = 0,
    figure_dir: str | Path | None = None,
    progress: bool = True,
) -> BenchResult:
    """Run every method at every scale on the first ``limit`` images of ``dataset``.

    Args:
        dataset: a :class:`~optisr.data.PairedDataset` (or any indexable object of samples with
            ``guide``, ``depth``, ``mask``, ``name``, and the attributes ``units``,
            ``report_units``, ``report_scale``).
        scales: integer factors (None: 4 8 16, or 4 with real LR).
        methods: names from :data:`METHODS` (None: the defaults of the LR source).
        protocol: ``"A"`` or ``"B"`` (see the module docstring).
        lr: one of :data:`LR_SOURCES`: ``"real"`` scores the dataset's own LR depth (``Sample.lr_depth``)
            resampled to the ×s grid (protocol A only), ``"synthetic"`` makes the LR from the ground truth,
            ``"auto"`` follows the dataset's ``real_lr`` flag.
        limit: evaluate only the first ``limit`` images (None: all).
        tile: protocol B tile size.
        figures: write panels for the first ``figures`` images into ``figure_dir``.
        figure_dir: folder of the panels (required when ``figures > 0``).
        progress: show a tqdm bar on stderr.
    Returns:
        :class:`BenchResult`.
    Raises:
        ConfigError: bad options. InputFileError: empty dataset, or real LR asked of a sample without one.
        ShapeError: real LR whose view or size does not fit the HR (see :func:`_real_lr_case`).
    """
    protocol = protocol.upper()
    real, lr_is_default = _lr_source(dataset, lr)
    scales, methods = _check_options(scales, methods, protocol, tile, real)
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1; got {limit}")
    if figures < 0:
        raise ConfigError(f"--figures must be >= 0; got {figures}")
    if figures and figure_dir is None:
        raise ConfigError("figures > 0 needs figure_dir, the folder to write them to")
    n_available = len(dataset)
    if n_available == 0:
        raise InputFileError(f"{getattr(dataset, 'root', 'dataset')}: the dataset holds no image")
    n = n_available if limit is None else min(limit, n_available)
    kind = PROTOCOLS[protocol]
    factor, unit, b_units = _units(dataset, protocol)
    name = str(getattr(dataset, "name", "dataset"))
    lr_kind = "real" if real else "synthetic"
    tag = "" if lr_is_default else ("_reallr" if real else "_synthlr")  # only when --lr overrides the dataset
    stem = f"{_safe(name)}{tag}_protocol{protocol}"
    res = BenchResult(name, protocol, kind, unit, scales, methods, n, n_available, lr=lr_kind, stem=stem)
    if protocol == "B" and b_units is None:
        res.notes.append(
            f"the depth unit {unit!r} is not metric, so MSE and MAE are in {unit}² and {unit}, not cm² and cm"
        )
    fns = {m: _method_fn(m, kind) for m in methods}
    per_rmse = {m: {s: [] for s in scales} for m in methods}
    per_cons = {m: {s: [] for s in scales} for m in methods}
    per_time = {m: {s: [] for s in scales} for m in methods}
    streams = {m: {s: _ProtocolBStream(b_units or "cm") for s in scales} for m in methods}
    unconverged = {m: {s: 0 for s in scales} for m in methods}
    res.n_regions = {s: 0 for s in scales}
    res.image_rmse = {s: {} for s in scales} if protocol == "A" else {}
    from optisr.metrics.depth import protocol_a_rmse

    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        tqdm = None
    indices: Any = range(n)
    if progress and tqdm is not None:
        indices = tqdm(indices, desc=f"{name} protocol {protocol}", unit="img", file=sys.stderr)
    for index in indices:
        sample = dataset[index]
        if getattr(sample, "lr_depth", None) is not None and index == 0 and not real:
            res.notes.append(
                "the dataset ships LR depth; this run ignores it and synthesises the LR input (--lr real uses it)"
            )
        for scale in scales:
            cases, covered = _cases(sample, scale, protocol, tile, real)
            res.n_regions[scale] += len(cases)
            if not cases:
                continue
            preds: dict[str, list[np.ndarray]] = {m: [] for m in methods}
            for case in cases:
                for m in methods:
                    t0 = time.perf_counter()
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        pred = np.asarray(fns[m](case, scale), dtype=np.float64)
                    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
                        unconverged[m][scale] += 1
                    per_time[m][scale].append(time.perf_counter() - t0)
                    per_cons[m][scale].append(factor * _consistency(pred, case, kind, scale))
                    if protocol == "A":
                        score = protocol_a_rmse(pred, case.depth, case.valid, report_scale=factor)
                        per_rmse[m][scale].append(score)
                        res.image_rmse[scale].setdefault(str(sample.name), {})[m] = score
                    else:
                        streams[m][scale].add(pred, case.depth, case.valid)
                    if index < figures:
                        preds[m].append(pred.astype(np.float32))
            if index < figures:
                path = Path(figure_dir) / f"{stem}_{_safe(sample.name)}_x{scale}.png"
                _write_figure(path, cases, preds, covered, scale)
                res.figures.append(path)
    region = "image" if protocol == "A" else "tile"
    if real:
        res.notes += _real_lr_notes(dataset, n)
    if protocol == "B" and not any(res.n_regions.values()):
        res.notes.append(f"no image is at least {tile}×{tile}, so no tile was scored; try a smaller --tile")
    for m in methods:
        for s, count in unconverged[m].items():
            if count:
                res.notes.append(f"{m} ×{s}: the solver stopped before its tolerance on {count} {region}(s)")
        res.consistency[m] = {s: _nanmean(per_cons[m][s]) for s in scales}
        res.seconds[m] = {s: _nanmean(per_time[m][s]) for s in scales}
        if protocol == "A":
            res.rmse[m] = {s: _nanmean(per_rmse[m][s]) for s in scales}
        else:
            pairs = {s: streams[m][s].result() for s in scales}
            res.mse[m] = {s: pairs[s][0] for s in scales}
            res.mae[m] = {s: pairs[s][1] for s in scales}
    return res


def _real_lr_notes(dataset: Any, n: int) -> list[str]:
    """Report notes of a real-LR run: the consistency caveat and the dataset's published anchors."""
    notes = [
        "real LR is not a downsampled ground truth: exact consistency with it does not imply a low error, "
        "and the LR consistency column measures consistency with the resampled LR, not with the sensor's LR"
    ]
    total = getattr(dataset, "expected_count", None)
    for ref in getattr(dataset, "published", ()):
        if total and n < total:
            notes.append(f"published reference: {ref}; not comparable: {n} of {total} scenes evaluated here")
        else:
            notes.append(f"published reference: {ref}; not necessarily the same protocol")
    return notes


def _nanmean(values: list[float]) -> float:
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def _write_figure(
    path: Path, cases: list[_Case], preds: dict[str, list[np.ndarray]], covered: tuple[int, int], scale: int
) -> None:
    """Stitch the regions of one image back together and write the comparison panel."""
    import cv2

    from optisr.io.atomic import atomic_path
    from optisr.viz.panels import depth_panel

    H, W = covered
    guide = np.zeros((H, W, 3), np.float32)
    depth = np.full((H, W), np.nan, np.float32)
    valid = np.zeros((H, W), bool)
    lr = np.full((H // scale, W // scale), np.nan, np.float32)
    maps = {m: np.full((H, W), np.nan, np.float32) for m in preds}
    for k, c in enumerate(cases):
        h, w = c.depth.shape
        sl = (slice(c.y, c.y + h), slice(c.x, c.x + w))
        guide[sl], depth[sl], valid[sl] = c.guide, c.depth, c.valid
        ly, lx = c.y // scale, c.x // scale
        lr[ly : ly + c.lr.shape[0], lx : lx + c.lr.shape[1]] = np.where(c.lr_valid, c.lr, np.nan)
        for m in preds:
            maps[m][sl] = preds[m][k]
    panel = depth_panel(
        guide, {f"LR x{scale}": lr, **maps}, reference=depth, error_of=list(preds), valid=valid
    )
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(panel[..., ::-1])):
            raise InputFileError(f"{path}: could not write the figure")


# ------------------------------------------------------------------------------------- markdown


def _fmt(v: float, digits: int = 2) -> str:
    if not math.isfinite(v):
        return "n/a"
    if v == 0:
        return "0"
    if abs(v) < 10 ** (-digits):
        return f"{v:.1e}"
    return f"{v:.{digits}f}"


def _table(title: str, rows: dict[str, dict[int, float]], scales: list[int], digits: int = 2) -> list[str]:
    lines = [f"### {title}", "", "| method | " + " | ".join(f"×{s}" for s in scales) + " |"]
    lines.append("|---|" + "---:|" * len(scales))
    for m, by_scale in rows.items():
        lines.append(f"| {m} | " + " | ".join(_fmt(by_scale[s], digits) for s in scales) + " |")
    return lines + [""]


def _image_table(
    title: str,
    by_image: dict[str, dict[str, float]],
    methods: list[str],
    means: dict[str, dict[int, float]],
    scale: int,
) -> list[str]:
    """Per-image table (image × method) with a last row of the means."""
    lines = [f"### {title}", "", "| image | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for image, scores in by_image.items():
        lines.append(f"| {image} | " + " | ".join(_fmt(scores.get(m, math.nan)) for m in methods) + " |")
    lines.append("| **mean** | " + " | ".join(_fmt(means[m][scale]) for m in methods) + " |")
    return lines + [""]


def format_markdown(res: BenchResult, *, command: str | None = None, data_dir: str | None = None) -> str:
    """The report of a :class:`BenchResult` as markdown (tables: method × scale)."""
    import platform

    from optisr.version import __version__

    region = "image" if res.protocol == "A" else "tile"
    lines = [f"# Guided depth SR benchmark: {res.dataset}, protocol {res.protocol}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines.append(f"- data: {data_dir or '(in memory)'}; {res.n_images} of {res.n_available} images")
    counts = ", ".join(f"×{s}: {res.n_regions.get(s, 0)}" for s in res.scales)
    if res.lr == "real":
        lines.append(
            "- LR input: the dataset's own (real) LR depth, resampled onto the ×s grid (H/s × W/s) with PIL-exact "
            "antialiased bicubic (the `bicubic` operator's kernel and geometry, float64 maths, float32 result); "
            "every method then solves a ×s task with the `bicubic` operator. "
            f"`{RAW_BICUBIC}`: direct PIL bicubic of the unresampled LR to the HR size"
        )
        lines.append(
            f"- metric: RMSE in {res.units}, over pixels with valid ground truth (GT > 0), on the full HR "
            "(no crop), per image and averaged over images"
        )
    elif res.protocol == "A":
        lines.append(
            "- LR input: HR ground truth cropped to a multiple of the scale, downsampled with the `bicubic` "
            "operator (PIL-exact antialiased bicubic, float64 maths, float32 result; NaN-aware where the "
            "ground truth is invalid)"
        )
        lines.append(
            f"- metric: RMSE in {res.units}, over pixels with valid ground truth, per image, averaged over "
            "images; no border crop"
        )
    else:
        lines.append(
            f"- LR input: {res.operator!r} operator (NaN-aware block mean) of each non-overlapping tile from "
            "the origin (remainders dropped); each tile is upsampled on its own"
        )
        lines.append(
            f"- metrics: masked MSE ({res.units}²) and MAE ({res.units}), batch means over batches of "
            f"{PROTOCOL_B_BATCH} tiles"
        )
    lines.append(f"- scored {region}s per scale: {counts}")
    lines.append(
        f"- LR consistency: RMSE of D x̂ − s over valid LR pixels, D = `{res.operator}` operator, in "
        f"{res.units}, averaged over {region}s (0 = exactly consistent)"
        + ("; s = the resampled H/s × W/s LR, not the sensor's LR" if res.lr == "real" else "")
    )
    lines.append(
        "- `color`: colour-affinity graph, exact consistency with the protocol operator "
        f"(`optisr.guided_upsample(..., operator={res.operator!r}, weights='color')`), float32; "
        "baselines: `optisr.guided.baselines` defaults. No parameter was tuned on this data."
    )
    lines.append(
        f"- optisr {__version__}, torch {torch.__version__}, numpy {np.__version__}, "
        f"{platform.machine()} CPU, {torch.get_num_threads()} torch thread(s), {time.strftime('%Y-%m-%d')}"
    )
    lines += [f"- note: {n}" for n in res.notes]
    lines.append("")
    if res.protocol == "A":
        lines += _table(f"RMSE ({res.units}) ↓", res.rmse, res.scales)
    if res.lr == "real":
        for s in res.scales:
            title = f"RMSE ({res.units}) per image, ×{s} ↓"
            lines += _image_table(title, res.image_rmse[s], res.methods, res.rmse, s)
    if res.protocol == "B":
        lines += _table(f"MSE ({res.units}²) ↓", res.mse, res.scales)
        lines += _table(f"MAE ({res.units}) ↓", res.mae, res.scales)
    lines += _table(f"LR consistency RMSE ({res.units}) ↓", res.consistency, res.scales, digits=3)
    lines += _table(f"Mean run time per {region} (s, CPU)", res.seconds, res.scales)
    if res.figures:
        lines += ["Figures: " + ", ".join(f"`figures/{p.name}`" for p in res.figures), ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ run


def run(args: argparse.Namespace) -> int:
    """Run ``optisr bench guided`` from parsed arguments; return the exit code."""
    protocol = str(args.protocol).upper()
    _check_options(args.scales, args.methods, protocol, args.tile)
    threads = getattr(args, "threads", 1)
    if threads < 0:
        raise ConfigError(f"--threads must be >= 0 (0 = torch's default); got {threads}")
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run(args, protocol)
    finally:
        torch.set_num_threads(previous)


def _run(args: argparse.Namespace, protocol: str) -> int:
    from optisr.data import get_dataset
    from optisr.io.atomic import atomic_path

    dataset = get_dataset(args.dataset, args.data_dir)
    real, _ = _lr_source(dataset, getattr(args, "lr", "auto"))
    _check_options(args.scales, args.methods, protocol, args.tile, real)
    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        raise InputFileError(f"{out}: --out-dir exists and is not a folder")
    res = benchmark(
        dataset,
        scales=args.scales,
        methods=args.methods,
        protocol=protocol,
        lr=getattr(args, "lr", "auto"),
        limit=args.limit,
        tile=args.tile,
        figures=args.figures,
        figure_dir=out / "figures",
        progress=not args.no_progress,
    )
    command = "optisr bench guided " + " ".join(shlex.quote(a) for a in _argv_of(args))
    text = format_markdown(res, command=command, data_dir=str(args.data_dir))
    report = out / f"{res.stem}.md"
    try:
        with atomic_path(report) as tmp:
            tmp.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise InputFileError(f"{report}: cannot write the report ({exc.strerror or exc})") from exc
    print(text)
    print(report)
    for p in res.figures:
        print(p)
    return 0


def _argv_of(args: argparse.Namespace) -> list[str]:
    """The options of ``args`` written back as command-line words (for the report)."""
    words = ["--dataset", str(args.dataset), "--data-dir", str(args.data_dir)]
    if args.scales is not None:
        words += ["--scales", *map(str, args.scales)]
    if args.methods is not None:
        words += ["--methods", *args.methods]
    words += ["--protocol", str(args.protocol)]
    if getattr(args, "lr", "auto") != "auto":
        words += ["--lr", str(args.lr)]
    words += ["--out-dir", str(args.out_dir)]
    if args.limit is not None:
        words += ["--limit", str(args.limit)]
    words += ["--figures", str(args.figures), "--threads", str(getattr(args, "threads", 1))]
    if str(args.protocol).upper() == "B":
        words += ["--tile", str(args.tile)]
    return words


def main(argv: list[str] | None = None) -> int:
    """``python -m optisr.bench.guided``: the same as ``optisr bench guided``, with its error handling."""
    parser = argparse.ArgumentParser(prog="optisr bench guided")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except OptiSRError as exc:
        print(f"optisr bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("optisr bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
