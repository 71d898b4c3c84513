"""Running one ``optisr guided`` job: read, fit sizes, solve, round, check consistency, write.

:func:`process` takes a :class:`~optisr.cli.guided_plan.Job` and the run's
:class:`GuidedOptions` (the checked command-line options, no argparse) and returns the stdout
line of the written file. The maths lives in the library: the methods in
:mod:`optisr.guided.methods`, integer rounding in :mod:`optisr.guided.quantize`, the
consistency check in :mod:`optisr.guided.consistency`.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optisr.cli.guided_plan import Job, check_output, fit_sizes, read_mask
from optisr.errors import ConfigError, InputFileError, OptiSRError, ShapeError
from optisr.guided import api as guided_api
from optisr.guided.consistency import lr_consistency_error
from optisr.guided.fidelity import FidelityChoice, choose_fidelity
from optisr.guided.guide_filter import noisy_guide_sigma
from optisr.guided.methods import get_method, is_graph_method, upsample_with
from optisr.guided.quantize import round_to_integers
from optisr.guided.refine import resolve_refinement
from optisr.guided.tiling import TileMap, tiled_guided_upsample
from optisr.io.rasters import Raster, geo_for_upsampled, read_guide, read_raster, write_raster
from optisr.ops.operators import DownsampleOperator, is_resampling, resampling_operator, scale_for_sizes

__all__ = ["LEAN_PIXELS", "GuidedOptions", "process", "to_output"]

# Large images take the memory-lean path: the guide stays in its stored dtype (uint8/uint16, converted
# to float tile by tile), the graph solve runs in float32 instead of float64 (half the memory of every
# HR-sized array; the solution moves by ~1e-6 of the range, far below 16-bit rounding, and 16-bit PNG
# output is still made exactly consistent by the rounding), and the PNG rounding and the consistency
# check run on strips of LR rows instead of whole-image float64/int64 temporaries. It is taken above
# LEAN_PIXELS guide pixels (2048², where the learned model's auto-tiling starts, so every auto-tiled
# solve is lean) and whenever --tile-size > 0; smaller images are solved in float64 as before.
LEAN_PIXELS = 2048 * 2048


GUIDE_FILTER_OPTIONS: dict[str, bool | str] = {"auto": True, "always": "always", "off": False}
"""``--guide-filter`` (and the web app's choice) -> ``guided_upsample(guide_filter=...)``."""


@dataclass(frozen=True)
class GuidedOptions:
    """The checked options of one ``optisr guided`` run (see its ``--help`` for each)."""

    method: str
    scale: int | None  # None: from each file's sizes (see resolve_scale)
    operator: str = "area"
    fidelity: str = "auto"
    lam: float | None = None
    floor: float | str | None = None  # a number, or "cv"
    refine: int | None = None
    exclude_outliers: bool = False
    guide_filter: bool | str = True  # True: noisy guides only, "always", False: never
    nonlocal_smoothness: bool = True  # --nonlocal auto / off
    register: bool = True  # --register auto / off (not with --dask)
    noise_sigma: str | float = "auto"
    confidence: Path | None = None
    sigma: float | None = None
    fit: str | None = None
    invalid_value: float | None = None
    tile_size: int | None = None
    tol: float = 1e-4
    precond: str = "jacobi"
    device: torch.device | None = None
    overwrite: bool = False
    quiet: bool = False
    map_tiles: TileMap | None = None
    """How tiles are solved (graph methods, tile-wise): None = in this process; see ``--dask``."""

    @property
    def graph(self) -> bool:
        """Whether the method is a graph method (exactly LR-consistent)."""
        return is_graph_method(self.method)


def to_output(
    x: np.ndarray,
    source: np.ndarray,
    valid: np.ndarray,
    options: GuidedOptions,
    raster: Raster,
    ext: str,
    solved_exact: bool = False,
    scale: int | None = None,
    operator: str | DownsampleOperator | None = None,
) -> tuple[np.ndarray, np.dtype]:
    """(array to write, dtype on disk): integer PNG sources stay integer, everything else float32.

    ``solved_exact``: the solution is exactly consistent, so the rounding keeps ``D x = s`` where the
    integers allow (block operators at an integer scale). ``scale``/``operator``: this file's (default:
    the options').
    """
    scale = options.scale if scale is None else scale
    operator = options.operator if operator is None else operator
    assert scale is not None  # resolved per file by resolve_scale
    if ext != ".png":
        return x.astype(np.float32, copy=False), np.dtype(np.float32)
    dtype = np.dtype(raster.dtype_on_disk)
    lo = 1.0 if raster.nodata is None else None  # 0 means "invalid" in such PNGs
    exact = options.graph and solved_exact and not is_resampling(operator)
    op_kind = operator if isinstance(operator, str) else operator.kind
    out = round_to_integers(x, source, valid, scale, dtype=dtype, lo=lo, operator=op_kind, exact=exact)
    return out, dtype


def resolve_scale(
    job: Job, hr: tuple[int, int], lr: tuple[int, int], options: GuidedOptions, log: Callable[[str], None]
) -> tuple[int, str | DownsampleOperator]:
    """``(scale, operator)`` of one file: ``--scale N`` as given; ``auto``: the integer that fits the
    sizes, else a resampling operator at their exact ratio (the graph methods solve with it; the
    baselines upsample to the guide's size and it measures their LR consistency), said in one note line."""
    if options.scale is not None:
        return options.scale, options.operator
    f = scale_for_sizes(hr, lr)
    if f is not None:
        return f, options.operator
    ratio = f"{hr[0] / lr[0]:.4g}×{hr[1] / lr[1]:.4g}" if lr[0] and lr[1] else "?"
    if hr[0] < lr[0] or hr[1] < lr[1]:
        raise ShapeError(
            f"{job.guide.name} is {hr[0]}×{hr[1]} and {job.source.name} {lr[0]}×{lr[1]}: no integer scale fits "
            f"(ratio {ratio}); the guide must be at least as large as the source"
        )
    op = resampling_operator(options.operator, hr, lr, sigma=options.sigma)
    log(f"optisr guided: {job.source.name}: scale {ratio} from the sizes ({lr[0]}×{lr[1]} -> {hr[0]}×{hr[1]})")
    return op.scale, op


def process(job: Job, options: GuidedOptions, log: Callable[[str], None], details: dict[str, Any] | None = None) -> str:
    """Upsample one file; returns the stdout line (path, solve time, LR consistency error).

    ``details`` (a dict, filled in place): ``valid``, the (h, w) bool mask of the source samples
    the solve kept (after ``fit``; isolated spikes left out when ``exclude_outliers``), and
    ``outliers``, their count (the web app shows both without finding them again), and ``choice``,
    the :class:`~optisr.guided.fidelity.FidelityChoice` of a graph method (None for the baselines).
    """
    raster = read_raster(job.source, invalid_value=options.invalid_value)
    check_output(job, np.dtype(raster.dtype_on_disk), options.overwrite)
    native = options.graph
    # graph solves take the guide in its stored dtype (8/16-bit: 1/4 or 1/2 of float32) and
    # convert it themselves, tile by tile when tiled; the baselines want float RGB
    guide = read_guide(job.guide, as_float=not native)
    source = raster.data.astype(np.float64)
    valid = raster.mask.copy()
    if job.mask is not None:
        valid &= read_mask(job.mask, raster.shape)
    scale, operator = resolve_scale(job, guide.shape[:2], source.shape, options, log)
    note = ""
    if not is_resampling(operator):  # a resampling operator fits the sizes as they are
        guide, source, valid, note = fit_sizes(job, guide, source, valid, scale, options.fit, native)
    if note:
        log(f"optisr guided: {job.source.name}: {note}")
    if not valid.any():
        raise InputFileError(f"{job.source}: no valid pixel (all 0, NaN, nodata, --invalid-value or masked out)")
    source[~valid] = np.nan
    # memory-lean above LEAN_PIXELS or when tiling is asked for: float32 solve (see LEAN_PIXELS)
    lean = guide.shape[0] * guide.shape[1] > LEAN_PIXELS or bool(options.tile_size)
    graph_options: dict[str, Any] = {}
    confidence = None
    if native:
        graph_options = dict(
            operator=operator,
            sigma=options.sigma,
            dtype=torch.float32 if lean else torch.float64,
            tile_size=options.tile_size,
            progress=not options.quiet,
            tol=options.tol,
            precond=options.precond,
            device=options.device,
        )
        if options.confidence is not None:
            confidence = read_confidence(options.confidence, source.shape)

    t0 = time.perf_counter()
    outliers = 0
    choice: FidelityChoice | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if native and options.exclude_outliers:
            # as guided_upsample(exclude_outliers=True) does, here so that the consistency reported
            # and the integer rounding below leave them out too (above ×4: a warning line)
            valid, outliers = guided_api.outlier_mask(source, guide, valid, scale, operator, None)
        if native and options.map_tiles is not None and options.tile_size:
            # the tiled solve of guided_upsample(weights=method, tile_size=...), its tiles solved by
            # map_tiles. λ: given, or the closed-form rule of the noise level (no discrepancy search,
            # which would solve the whole raster several times)
            if options.floor is not None:
                raise ConfigError("--floor is not supported with --dask (tile-wise solves) yet")
            choice, lam = choose_fidelity(
                source, scale, fidelity=options.fidelity, noise_sigma=options.noise_sigma, lam=options.lam,
                mask=valid,
            )  # fmt: skip
            tiled = {k: v for k, v in graph_options.items() if k != "tile_size"}
            refinement = resolve_refinement(options.refine, choice.fidelity, source, valid)
            guide_sigma = (
                noisy_guide_sigma(guide, always=options.guide_filter == "always") if options.guide_filter else None
            )
            x = tiled_guided_upsample(
                source, guide, scale, tile=options.tile_size, weights=options.method, mask=valid,
                map_tiles=options.map_tiles, mode=choice.fidelity, lam=1.0 if lam is None else float(lam),
                refinement=refinement, confidence=None if choice.fidelity == "exact" else confidence,
                guide_sigma=guide_sigma, **tiled,
            )  # fmt: skip
            if guide_sigma is not None:
                choice = dataclasses.replace(choice, guide_sigma=guide_sigma)
            if refinement is not None:
                choice = dataclasses.replace(choice, refine=refinement.passes)
        elif native:
            x, choice = guided_api.guided_upsample(  # type: ignore[assignment]  # numpy in: numpy out
                source, guide, scale, weights=get_method(options.method).weights, mask=valid,
                fidelity=options.fidelity, lam=options.lam, floor=options.floor, refine=options.refine,
                exclude_outliers=False,  # left out above, when asked
                guide_filter=options.guide_filter,
                nonlocal_smoothness=options.nonlocal_smoothness,
                register=options.register,
                noise_sigma=options.noise_sigma,
                confidence=confidence, return_info=True, **graph_options,
            )  # fmt: skip
        else:
            x = upsample_with(options.method, source, guide, None if is_resampling(operator) else scale, mask=valid)
    seconds = time.perf_counter() - t0
    if outliers and choice is not None:
        choice = dataclasses.replace(choice, outliers=outliers)
    if details is not None:
        details.update(valid=valid, outliers=outliers, choice=choice)
    del guide  # not needed any more: free it before the output arrays are made
    for w in caught:
        log(f"optisr guided: warning: {job.source.name}: {str(w.message).splitlines()[0]}")

    ext = job.output.suffix.lower()
    x = np.asarray(x)
    if x.dtype != np.float32:
        x = x.astype(np.float64, copy=False)
    solved_exact = choice is not None and choice.fidelity == "exact"
    out, dtype = to_output(x, source, valid, options, raster, ext, solved_exact, scale, operator)
    del x
    geo = None
    if raster.geo is not None:
        if ext in (".tif", ".tiff"):
            ratio = getattr(operator, "ratio", None)
            geo = geo_for_upsampled(raster.geo, scale if ratio is None else ratio)
        else:
            log(f"optisr guided: note: {job.output.name}: {ext} keeps no georeferencing; write .tif to keep the CRS")
    err = lr_consistency_error(out, source, valid, scale, operator=operator, sigma=options.sigma)
    try:
        # overwrite=False: a file that another run wrote meanwhile is never replaced (OutputExistsError)
        write_raster(job.output, out, dtype=dtype, geo=geo, nodata=raster.nodata, overwrite=options.overwrite)
    except OptiSRError:
        raise
    except OSError as exc:
        raise InputFileError(f"{job.output}: cannot write ({exc.strerror or exc})") from exc
    return f"{job.output}\t{seconds:.2f} s\tmax|Dx-s| {err:.3g}" + (
        "" if choice is None else f"\t{describe_fidelity(choice)}"
    )


def describe_fidelity(choice: FidelityChoice) -> str:
    """One line: the guide's noise (when its pre-filter ran), the source's noise level and the fidelity
    solved with, e.g. ``guide σ 0.0061 (filtered) -> noise σ 3.1 (estimated) -> fidelity auto: soft λ 0.0213 floor 0.03``."""
    parts = [f"guide σ {choice.guide_sigma:.2g} (filtered)"] if choice.guide_sigma else []
    if choice.guide_shift is not None:
        dy, dx = choice.guide_shift
        parts.append(f"guide moved ({dy:+d}, {dx:+d}) px onto the source")
    if choice.noise_sigma is not None:
        parts.append(f"noise σ {choice.noise_sigma:.3g} ({'estimated' if choice.sigma_estimated else 'given'})")
    solved = (
        choice.fidelity if choice.lam is None or choice.fidelity == "exact" else f"{choice.fidelity} λ {choice.lam:.3g}"
    )
    if choice.floor is not None:
        solved += f" floor {choice.floor:g}"
    if choice.refine:
        solved += f" refined ×{choice.refine}"
    if choice.nonlocal_kappa:
        solved += f" non-local κ {choice.nonlocal_kappa:g}"
    if choice.requested == "auto":
        solved = f"auto: {solved}"
    if choice.outliers:
        solved += f", {choice.outliers} outliers left out"
    return " -> ".join([*parts, f"fidelity {solved}"])


def read_confidence(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A per-LR-pixel confidence map (any raster format optisr reads) on the source grid ``shape``; >= 0, finite."""
    conf = read_raster(path).data.astype(np.float64)
    if conf.shape != tuple(shape):
        raise InputFileError(f"{path}: confidence is {conf.shape[0]}×{conf.shape[1]}, the source {shape[0]}×{shape[1]}")
    if not np.isfinite(conf).all() or (conf < 0).any():
        raise InputFileError(f"{path}: confidence must be finite and >= 0 everywhere")
    return conf
