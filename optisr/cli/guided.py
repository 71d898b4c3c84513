"""``optisr guided``: guided super-resolution of depth maps and other single-band rasters.

Examples::

    optisr guided --guide rgb.png --source depth_lr.png --scale 8 -o depth_hr.png
    optisr guided --guide rgb.png --source dem_lr.tif --scale 4 -o dem_hr.tif --operator bicubic
    optisr guided --guide images/ --source depths/ --scale 8 -o out/ --method jbu
    optisr guided --guide rgb.png --source depth_lr.png --scale 8 -o hr.png --pad
    optisr guided --guide big.png --source big_lr.tif --scale 8 -o hr.tif --dask local:2   # tiles as tasks

One line per written file goes to stdout: the output path, the solve time and the LR
consistency error ``max |D x - s|`` over valid source pixels, in the source's unit. Progress,
notes and errors go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from optisr.cli.options import add_device_option, add_tile_option, device_from_args
from optisr.errors import ConfigError, InputFileError, OptiSRError
from optisr.ops.operators import OPERATORS

if TYPE_CHECKING:
    from optisr.cli.guided_plan import Job
    from optisr.cli.guided_runner import GuidedOptions

__all__ = ["add_parser", "options_from_args", "run"]


def _floor_arg(text: str) -> float | str:
    """``--floor``: a number, or ``cv``."""
    if text.strip().lower() == "cv":
        return "cv"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1) or cv, got {text!r}") from None


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "guided",
        help="guided super-resolution of a depth map (or any single-band raster) with an RGB image",
        description="Upsample a low-resolution single-band raster (depth, disparity, elevation, ...) "
        "×SCALE with a high-resolution RGB guide. The default method solves for the smoothest map "
        "under a colour-affinity graph of the guide that reproduces the source exactly when "
        "downsampled with --operator. Files or folders (paired by file stem). Output format from "
        "the extension of -o: an 8/16-bit PNG source gives the same PNG type (rounded), float "
        "formats (.tif .npy .pfm .exr) hold float32, GeoTIFFs keep their CRS with the pixel size "
        "divided by SCALE. The guide must be SCALE·h × SCALE·w for an h × w source (the colour "
        "method also takes ceil(guide size / SCALE) = h × w); see --crop and --pad otherwise.",
    )
    p.add_argument("--guide", required=True, metavar="RGB", help="HR RGB (or grey) guide image, or a folder of them")
    p.add_argument(
        "--source",
        required=True,
        metavar="LR",
        help="LR single-band raster (.png 8/16-bit, .tif, .npy, .pfm, .exr, GeoTIFF), or a folder; "
        "invalid pixels: 0 in integer rasters without nodata, NaN, nodata, --invalid-value",
    )
    p.add_argument(
        "--scale",
        type=_scale_arg,
        default=None,
        metavar="N|auto",
        help="integer upsampling scale N (1..64), or auto (default): from each guide's and source's sizes, an "
        "integer if one fits (ceil(guide size / N) = source size), else their exact ratio (e.g. a 180×240 ToF "
        "map beside a 480×640 image: graph methods solve at 8/3 with a resampling operator, tile-wise too; baselines "
        "upsample to the guide's size)",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="output file (format from its extension: .png .tif .tiff .npy .pfm .exr) or folder",
    )
    p.add_argument(
        "--method",
        default="default",
        metavar="METHOD",
        help="default: the learned graph model shipped with optisr (the colour graph if this install "
        "has none); model: the same, and an error if it is missing; PATH.safetensors: a guided model "
        "you trained (optisr train guided); unet-v1: the U-Net that was the default until 2026-12-02; "
        "color: colour-affinity graph, no learning; all of these are exactly LR-consistent. bicubic, "
        "guided-filter, jbu, fbs: classic baselines (not LR-consistent)",
    )
    p.add_argument(
        "--operator",
        default="area",
        choices=OPERATORS,
        help="how the source was made from the target: area (block mean, default), sum (block "
        "sum), bicubic (antialiased), gaussian (PSF width --sigma); baselines use it only for "
        "the reported consistency error",
    )
    p.add_argument(
        "--fidelity",
        "--mode",
        dest="fidelity",
        default="auto",
        choices=("auto", "exact", "soft", "robust"),
        help="graph methods: how far to trust the source. auto (default): estimate the source's noise "
        "and solve exactly when it is clean, else soft with λ (and the graph's weight floor) minimising GCV, the "
        "generalised cross-validation score of the LR prediction; exact: "
        "D x = s on valid pixels; soft: penalty (Dx−s)ᵀC(Dx−s) against λ·smoothness; robust: soft "
        "with a Huber data term (flying pixels, outliers). --mode is the former name",
    )
    p.add_argument(
        "--lam",
        type=float,
        default=None,
        metavar="L",
        help="λ of --fidelity soft/robust (default: from the noise level)",
    )
    p.add_argument(
        "--floor",
        type=_floor_arg,
        default=None,
        metavar="F|cv",
        help="graph methods: edge-weight floor in [0, 1), every weight becomes F + (1-F)·w (default: the graph's "
        "own, except that auto's exact solves of clean sources up to x4 pick one of 0, 0.03, 0.1 by cross-validation "
        "on a small central window; where λ is searched, with auto choosing soft or soft without --lam, it is "
        "searched too, by the same GCV); "
        "cv: for exact solves, the floor whose solves best predict held-out source pixels (2-fold cross-validation, "
        "10 extra solves; helps where the guide's texture is not depth, e.g. people in patterned clothes)",
    )
    p.add_argument(
        "--refine",
        type=int,
        default=None,
        metavar="N",
        help="graph methods, exact and soft solves: re-weight the graph by the solution and solve again N times "
        "(default: 1 for soft solves, 0 for exact ones; 0 = off); exact solves stay exactly LR-consistent",
    )
    p.add_argument(
        "--exclude-outliers",
        action="store_true",
        help="graph methods, up to ×4: leave isolated spikes of the source (a pixel or pair far beyond its "
        "neighbours where the guide shows no object; stereo mismatches, multipath) out of the data term when "
        "they are at least 0.4%% of the pixels (off by default: thin structures of clean sources can look alike)",
    )
    p.add_argument(
        "--guide-filter",
        choices=("auto", "always", "off"),
        default="auto",
        help="graph methods: smooth the guide first with a bilateral filter scaled to its own estimated noise; auto "
        "(default): only when the noise is at least 6.5%% of the guide's contrast (dim, noisy captures), always: "
        "whenever noise is seen, off: never",
    )
    p.add_argument(
        "--nonlocal",
        dest="nonlocal_term",
        choices=("auto", "off"),
        default="auto",
        help="graph methods: auto (default): when auto fidelity solves a noisy source softly with the learned "
        "graph, add a non-local smoothness term (the guide's bilateral grid) to its last solve (each tile's) at "
        "scales where it helped on allowed data; off: the 4-connected graph alone",
    )
    p.add_argument(
        "--register",
        choices=("auto", "off"),
        default="auto",
        help="graph methods: auto (default): look for a shift of a few pixels between source and guide (a "
        "calibration offset) and, when held-out source pixels confirm it, move the guide onto the source (the "
        "output keeps the source's geometry; up to ×8); off: use the guide as given. Not with --dask",
    )
    p.add_argument(
        "--noise-sigma",
        default="auto",
        metavar="auto|S",
        help="noise std of the source in its own units, or auto (default: estimated from the source)",
    )
    p.add_argument(
        "--confidence",
        default=None,
        metavar="FILE",
        help="per-LR-pixel confidence (.npy/.tif/.png on the source grid, >= 0) weighting the data term "
        "of soft/robust/auto fidelity",
    )
    p.add_argument(
        "--sigma",
        type=float,
        default=None,
        metavar="S",
        help="PSF standard deviation in HR pixels for --operator gaussian",
    )
    p.add_argument(
        "--mask",
        default=None,
        metavar="M",
        help="LR validity mask (.png or .npy, nonzero = valid) on the source grid; with folders, "
        "a folder of masks named like the sources or one mask for all",
    )
    p.add_argument(
        "--invalid-value",
        dest="invalid_value",
        type=float,
        metavar="V",
        default=None,
        help="source value that marks invalid pixels (e.g. 65535), besides 0/NaN/nodata",
    )
    fit = p.add_mutually_exclusive_group()
    fit.add_argument(
        "--crop",
        dest="fit",
        action="store_const",
        const="crop",
        help="on a size mismatch, crop the guide (top-left part) to N·h × N·w; where it is too "
        "small, crop both to the largest multiple of N and the source to match",
    )
    fit.add_argument(
        "--pad",
        dest="fit",
        action="store_const",
        const="pad",
        help="on a size mismatch, pad the guide at the bottom/right by edge replication to "
        "N·h × N·w (h, w = ceil(guide size / N)); the output is N·h × N·w",
    )
    p.add_argument(
        "--ext",
        choices=("auto", "png", "tif", "npy", "pfm", "exr"),
        default="auto",
        help="output format in folder mode (default: the source's)",
    )
    add_tile_option(
        p,
        default=None,
        help="graph methods: solve tile-wise on N×N HR-pixel tiles (rounded up to a multiple of the scale; "
        "at least max(128, 32·scale), smaller values are raised to it with a note; 8·scale pixels of "
        "overlap for exact solves, 16·scale for soft ones, at least 96 with a learned model; exact "
        "consistency kept) to bound memory; default: tiles of 1024 when the guide has more "
        "than 2048×2048 pixels; 0: never tile. Guides above 2048×2048 "
        "pixels, and any run with N > 0, are solved in float32 with the guide kept 8/16-bit (memory-lean: "
        "an 8192×8192 guide at ×8 peaks at about 1.0–1.2 GB); smaller ones in float64",
    )
    p.add_argument(
        "--tol",
        type=float,
        default=1e-4,
        metavar="T",
        help="graph methods: relative CG tolerance (default 1e-4). It sets how close to the smoothest "
        "solution the solver gets, not the consistency, which holds to rounding either way; 1e-3 is "
        "about 1.5x faster and changed procedural-scene errors by < 0.1%%",
    )
    p.add_argument(
        "--precond",
        choices=("jacobi", "multigrid"),
        default="jacobi",
        help="graph methods: CG preconditioner (default jacobi). multigrid needs 4-8x fewer iterations "
        "(about 25 at x8) but was slower on a CPU in every case measured; use it where Jacobi stalls "
        "(weights near the floor, float64 at tight tolerances)",
    )
    add_device_option(p, help_prefix="graph methods (the baselines run on the CPU): where to compute; ")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--dask",
        metavar="ADDRESS",
        default=None,
        help="graph methods: solve the tiles of each raster as tasks on a Dask cluster, a scheduler address "
        "(tcp://host:8786) or local:N (N worker processes on this machine); the same result as the tiled "
        "solve in one process (--tile-size, default 1024 here; 0 is refused), each tile tried up to 3 times, "
        'the output written once after all tiles. Needs pip install "optisr[dask]"',
    )
    return p


# ------------------------------------------------------------------------------ options


def options_from_args(args: argparse.Namespace, log: Callable[[str], None]) -> GuidedOptions:
    """Check the parsed options (one-line ConfigError/InputFileError) and return them as GuidedOptions.

    A ``--tile-size`` below :func:`optisr.guided.tiling.min_tile_size` is raised to it, with a
    note through ``log``.
    """
    from optisr.cli.guided_runner import GUIDE_FILTER_OPTIONS, GuidedOptions
    from optisr.guided.methods import METHODS, MODEL_SUFFIX, closest_method
    from optisr.guided.methods import is_graph_method as _is_graph
    from optisr.guided.tiling import DEFAULT_TILE, min_tile_size

    if args.method.endswith(MODEL_SUFFIX):
        if not Path(args.method).is_file():
            raise InputFileError(f"{args.method}: guided model file not found")
    elif args.method not in METHODS:
        close = closest_method(args.method)
        hint = f" (did you mean {close!r}?)" if close else ""
        raise ConfigError(f"--method {args.method!r}{hint}: use one of {', '.join(METHODS)} or a .safetensors model")
    if args.scale is not None and not 1 <= args.scale <= 64:
        raise ConfigError(f"--scale must be an integer in 1..64 or auto, got {args.scale}")
    if args.scale is None and args.fit is not None:
        raise ConfigError("--crop and --pad fit the guide to a given scale; add --scale N")
    noise_sigma: str | float = "auto"
    if str(args.noise_sigma).strip().lower() != "auto":
        try:
            noise_sigma = float(args.noise_sigma)
        except ValueError:
            raise ConfigError(f"--noise-sigma must be auto or a number >= 0, got {args.noise_sigma!r}") from None
        if not noise_sigma >= 0:
            raise ConfigError(f"--noise-sigma must be auto or a number >= 0, got {args.noise_sigma!r}")
    if _is_graph(args.method):
        if args.lam is not None and args.fidelity not in ("soft", "robust"):
            raise ConfigError("--lam is the λ of --fidelity soft or robust; add one of them or drop --lam")
        if args.lam is not None and not args.lam > 0:
            raise ConfigError(f"--lam must be > 0, got {args.lam}")
        if args.confidence is not None and args.fidelity == "exact":
            raise ConfigError("--confidence weights the data term of soft/robust/auto fidelity; exact has none")
        if args.floor is not None and args.floor != "cv" and not 0 <= args.floor < 1:
            raise ConfigError(f"--floor must be in [0, 1), got {args.floor}")
        if args.refine is not None and args.refine < 0:
            raise ConfigError(f"--refine must be an integer >= 0 (re-weighted solves; 0 = off), got {args.refine}")
    elif (
        args.fidelity != "auto"
        or args.lam is not None
        or args.floor is not None
        or args.refine is not None
        or args.exclude_outliers
        or args.guide_filter != "auto"
        or args.nonlocal_term != "auto"
        or args.register != "auto"
        or args.confidence is not None
        or noise_sigma != "auto"
    ):
        raise ConfigError(
            "--fidelity, --lam, --floor, --refine, --exclude-outliers, --guide-filter, --nonlocal, --register, "
            "--noise-sigma and "
            "--confidence "
            f"apply to the graph methods (default, model, color), not {args.method}"
        )
    if args.tile_size is not None:
        if args.tile_size < 0:
            raise ConfigError(f"--tile-size must be >= 0 HR pixels (0 = no tiling), got {args.tile_size}")
        if not _is_graph(args.method) and args.tile_size:
            raise ConfigError(f"--tile-size applies to the graph methods (default, model, color), not {args.method}")
    if not 0 < args.tol < 1:
        raise ConfigError(f"--tol must be in (0, 1), got {args.tol}")
    device = None
    if _is_graph(args.method):
        device = device_from_args(args)
    elif args.device != "auto" or getattr(args, "gpu_id", None) is not None:
        raise ConfigError(f"--device applies to the graph methods (default, model, color), not {args.method}")
    if args.sigma is not None and (args.operator != "gaussian" or not args.sigma > 0):
        raise ConfigError(f"--sigma must be > 0 and needs --operator gaussian; got --operator {args.operator}")
    if args.method == "fbs":
        from optisr.guided.baselines import fbs_available

        if not fbs_available():
            raise ConfigError(
                "--method fbs needs OpenCV-contrib's working fastBilateralSolverFilter, which this "
                "install lacks; use --method jbu or guided-filter"
            )
    tile_size = args.tile_size
    if getattr(args, "dask", None) is not None:
        if not _is_graph(args.method):
            raise ConfigError(f"--dask applies to the graph methods (default, model, color), not {args.method}")
        if tile_size == 0:
            raise ConfigError("--dask solves tiles as tasks, so it needs tiling; drop --tile-size 0")
        if tile_size is None:
            tile_size = DEFAULT_TILE
    if tile_size and args.scale is not None and tile_size < min_tile_size(args.scale):
        tile_size = min_tile_size(args.scale)
        log(
            f"optisr guided: note: --tile-size {args.tile_size} is below the minimum of {tile_size} HR pixels "
            f"at ×{args.scale} (max(128, 32·scale)); using {tile_size}"
        )
    return GuidedOptions(
        method=args.method,
        scale=args.scale,
        operator=args.operator,
        fidelity=args.fidelity,
        lam=args.lam,
        floor=args.floor,
        refine=args.refine,
        exclude_outliers=args.exclude_outliers,
        guide_filter=GUIDE_FILTER_OPTIONS[args.guide_filter],
        nonlocal_smoothness=args.nonlocal_term == "auto",
        register=args.register == "auto",
        noise_sigma=noise_sigma,
        confidence=None if args.confidence is None else Path(args.confidence),
        sigma=args.sigma,
        fit=args.fit,
        invalid_value=args.invalid_value,
        tile_size=tile_size,
        tol=args.tol,
        precond=args.precond,
        device=device,
        overwrite=args.overwrite,
        quiet=args.quiet,
    )


def _scale_arg(text: str) -> int | None:
    """``--scale``: an integer, or ``auto`` (None: from the files' sizes)."""
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or auto, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    """``optisr guided``: process every job, one stdout line per written file; the exit code."""
    from tqdm import tqdm

    from optisr.cli.guided_plan import plan_jobs

    def log(line: str) -> None:
        tqdm.write(line, file=sys.stderr)

    options = options_from_args(args, log)
    jobs, folder_mode = plan_jobs(args.guide, args.source, args.output, args.mask, args.ext)
    if getattr(args, "dask", None) is None:
        return _run_jobs(jobs, folder_mode, options, log)
    import dataclasses

    from optisr.scaleout import connect, dask_tile_map

    if not folder_mode and jobs[0].output.exists() and not args.overwrite:  # before the cluster starts
        raise InputFileError(f"{jobs[0].output}: output exists; pass --overwrite to replace it")
    with connect(args.dask) as client:
        return _run_jobs(jobs, folder_mode, dataclasses.replace(options, map_tiles=dask_tile_map(client)), log)


def _run_jobs(jobs: list[Job], folder_mode: bool, options: GuidedOptions, log: Callable[[str], None]) -> int:
    """Process every job, one stdout line per written file; the exit code."""
    from tqdm import tqdm

    from optisr.cli.guided_runner import process

    failures = 0
    for job in tqdm(jobs, unit="file", disable=options.quiet or not folder_mode, file=sys.stderr):
        try:
            line = process(job, options, log)
        except OptiSRError as exc:
            if not folder_mode:
                raise
            failures += 1
            log(f"optisr guided: error: {exc}")
            continue
        tqdm.write(line, file=sys.stdout)
    if failures:
        log(f"optisr guided: {failures} of {len(jobs)} files failed")
        return 1
    return 0
