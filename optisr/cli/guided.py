"""``optisr guided``: guided super-resolution of depth maps and other single-band rasters.

Examples::

    optisr guided --guide rgb.png --source depth_lr.png --scale 8 -o depth_hr.png
    optisr guided --guide rgb.png --source dem_lr.tif --scale 4 -o dem_hr.tif --operator bicubic
    optisr guided --guide images/ --source depths/ --scale 8 -o out/ --method jbu
    optisr guided --guide rgb.png --source depth_lr.png --scale 8 -o hr.png --pad

One line per written file goes to stdout: the output path, the solve time and the LR
consistency error ``max |D x - s|`` over valid source pixels, in the source's unit. Progress,
notes and errors go to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optisr.errors import ConfigError, InputFileError, OptiSRError, ShapeError

OPERATORS = ("area", "sum", "bicubic", "gaussian")
METHODS = ("default", "model", "color", "bicubic", "guided-filter", "jbu", "fbs")
GRAPH_METHODS = ("default", "model", "color")  # exact / soft graph solves (the rest are baselines)
GUIDE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
OUTPUT_EXTENSIONS = (".png", ".tif", ".tiff", ".npy", ".pfm", ".exr")
# Folder mode pairs files by stem; when no exact match exists, these trailing words are ignored.
GUIDE_SUFFIXES = ("color", "colour", "rgb", "image", "img", "guide")
SOURCE_SUFFIXES = ("depth", "lr", "source", "src", "disp", "dem")
# Large images take the memory-lean path: the guide stays in its stored dtype (uint8/uint16, converted
# to float tile by tile), the graph solve runs in float32 instead of float64 (half the memory of every
# HR-sized array; the solution moves by ~1e-6 of the range, far below 16-bit rounding, and 16-bit PNG
# output is still made exactly consistent by the rounding), and the PNG rounding and the consistency
# check run on strips of LR rows instead of whole-image float64/int64 temporaries. It is taken above
# LEAN_PIXELS guide pixels (2048², where the learned model's auto-tiling starts, so every auto-tiled
# solve is lean) and whenever --tile-size > 0; smaller images are solved in float64 as before.
LEAN_PIXELS = 2048 * 2048
# HR pixels per strip of the PNG rounding and of the consistency check (~80 MB of temporaries)
STRIP_PIXELS = 1 << 20


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
    p.add_argument("--scale", type=int, required=True, metavar="N", help="integer upsampling factor N (1..64)")
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
        "you trained (optisr train guided); color: colour-affinity graph, no learning; all three are "
        "exactly LR-consistent. bicubic, guided-filter, jbu, fbs: classic baselines (not LR-consistent)",
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
        "--mode",
        default=None,
        choices=("exact", "soft"),
        help="exact: D x = s on valid pixels (default); soft: penalty of weight --lam (color only)",
    )
    p.add_argument("--lam", type=float, default=None, metavar="L", help="penalty weight λ of --mode soft (default 1.0)")
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
    p.add_argument(
        "--tile-size",
        "--tile_size",
        dest="tile_size",
        type=int,
        default=None,
        metavar="T",
        help="graph methods: solve tile-wise on T×T HR-pixel tiles (rounded up to a multiple of N; "
        "16·N pixels of overlap, exact consistency kept) to bound memory; default: tiles of 1024 "
        "when the guide has more than 4096×4096 pixels (2048×2048 with a learned model); 0: never "
        "tile. Guides above 2048×2048 pixels, and any run with T > 0, are solved in float32 with "
        "the guide kept 8/16-bit (memory-lean: an 8192×8192 guide at ×8 peaks at about 1.0–1.2 GB); smaller "
        "ones in float64",
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
        "--device",
        default=None,
        metavar="DEV",
        help="graph methods: where to compute, e.g. cuda (default: cpu); output is written the same",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


# ------------------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Job:
    guide: Path
    source: Path
    mask: Path | None
    output: Path


def _listing(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    return sorted(
        f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in extensions
    )


def _loose_key(stem: str, suffixes: tuple[str, ...]) -> str:
    """Lower-case stem without one trailing ``_word`` / ``-word`` from ``suffixes``."""
    key = stem.lower()
    for sep in ("_", "-"):
        head, _, tail = key.rpartition(sep)
        if head and tail in suffixes:
            return head
    return key


def _by_stem(files: list[Path], folder: Path, what: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in files:
        if f.stem in out:
            raise InputFileError(
                f"{folder}: two {what} files share the stem {f.stem!r} ({out[f.stem].name}, {f.name}); keep one of them"
            )
        out[f.stem] = f
    return out


def _names(paths: list[str], limit: int = 5) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _pair(guide_dir: Path, source_dir: Path) -> list[tuple[Path, Path]]:
    """Pair sources with guides by exact stem, else by stem without suffixes like _color / _depth."""
    from optisr.io.rasters import RASTER_EXTENSIONS

    sources = _by_stem(_listing(source_dir, RASTER_EXTENSIONS), source_dir, "source")
    if not sources:
        raise InputFileError(f"{source_dir}: folder holds no raster files ({' '.join(RASTER_EXTENSIONS)})")
    guides = _by_stem(_listing(guide_dir, GUIDE_EXTENSIONS), guide_dir, "guide")
    loose: dict[str, list[Path]] = {}
    for g in guides.values():
        loose.setdefault(_loose_key(g.stem, GUIDE_SUFFIXES), []).append(g)
    pairs, missing = [], []
    for stem, s in sources.items():
        g = guides.get(stem)
        if g is None:
            found = loose.get(_loose_key(stem, SOURCE_SUFFIXES), [])
            g = found[0] if len(found) == 1 else None
        if g is None:
            missing.append(s.name)
        else:
            pairs.append((g, s))
    if missing:
        raise InputFileError(
            f"{guide_dir}: no guide for {len(missing)} of {len(sources)} sources (files are paired by stem, "
            f"ignoring a trailing _color/_rgb/_image and _depth/_lr): {_names(missing)}"
        )
    return pairs


def _output_ext(source: Path, ext: str) -> str:
    return source.suffix.lower() if ext == "auto" else f".{ext}"


def _jobs(args: argparse.Namespace) -> tuple[list[Job], bool]:
    """Resolve the files to process; returns (jobs, folder_mode)."""
    guide, source, out = Path(args.guide), Path(args.source), Path(args.output)
    mask = Path(args.mask) if args.mask else None
    if source.is_dir() != guide.is_dir():
        folder, other = (source, "--guide") if source.is_dir() else (guide, "--source")
        raise ConfigError(f"{folder} is a folder, so {other} must be a folder too (files are paired by stem)")
    if not source.is_dir():
        if mask is not None and mask.is_dir():
            raise ConfigError(f"--mask {mask} is a folder; with a single --source pass one mask file")
        if out.is_dir():
            out = out / f"{source.stem}{_output_ext(source, args.ext)}"
        return [Job(guide, source, mask, out)], False
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out}: with folder inputs the output must be a folder, and this is a file")
    jobs = []
    for g, s in _pair(guide, source):
        m = mask
        if mask is not None and mask.is_dir():  # a mask per source, same stem; .npy before .png
            m = next(
                (c for c in (mask / f"{s.stem}.npy", mask / f"{s.stem}.png") if c.exists()), mask / f"{s.stem}.png"
            )
        jobs.append(Job(g, s, m, out / f"{s.stem}{_output_ext(s, args.ext)}"))
    return jobs, True


# ----------------------------------------------------------------------------- validation


def _is_graph(method: str) -> bool:
    return method in GRAPH_METHODS or method.endswith(".safetensors")


def _check_options(args: argparse.Namespace) -> None:
    if args.method.endswith(".safetensors"):
        if not Path(args.method).is_file():
            raise InputFileError(f"{args.method}: guided model file not found")
    elif args.method not in METHODS:
        import difflib

        close = difflib.get_close_matches(args.method, METHODS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"--method {args.method!r}{hint}: use one of {', '.join(METHODS)} or a .safetensors model")
    if not 1 <= args.scale <= 64:
        raise ConfigError(f"--scale must be an integer in 1..64, got {args.scale}")
    if _is_graph(args.method):
        if args.lam is not None and args.mode != "soft":
            raise ConfigError("--lam is the penalty weight of --mode soft; add --mode soft or drop --lam")
        if args.lam is not None and not args.lam > 0:
            raise ConfigError(f"--lam must be > 0, got {args.lam}")
    elif args.mode is not None or args.lam is not None:
        raise ConfigError(f"--mode and --lam apply to the graph methods (default, model, color), not {args.method}")
    if args.tile_size is not None:
        if args.tile_size < 0:
            raise ConfigError(f"--tile-size must be >= 0 HR pixels (0 = no tiling), got {args.tile_size}")
        if not _is_graph(args.method) and args.tile_size:
            raise ConfigError(f"--tile-size applies to the graph methods (default, model, color), not {args.method}")
    if not 0 < args.tol < 1:
        raise ConfigError(f"--tol must be in (0, 1), got {args.tol}")
    if args.device is not None:
        import torch

        try:
            dev = torch.device(args.device)
        except RuntimeError:
            raise ConfigError(f"--device {args.device!r}: not a device name (cpu, cuda, cuda:1, mps)") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"--device {args.device}: this torch build or machine has no CUDA")
        if not _is_graph(args.method):
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


def _check_output(job: Job, source_dtype: np.dtype, overwrite: bool) -> None:
    from optisr.io.rasters import exr_supported

    ext = job.output.suffix.lower()
    if ext not in OUTPUT_EXTENSIONS:
        raise ConfigError(
            f"{job.output}: unsupported output extension {ext or '(none)'!r}; use one of {' '.join(OUTPUT_EXTENSIONS)}"
        )
    if ext == ".exr" and not exr_supported():
        raise ConfigError(f"{job.output}: this OpenCV build cannot write OpenEXR; use .tif, .npy or .pfm")
    if ext == ".png" and source_dtype not in (np.uint8, np.uint16):
        raise ConfigError(
            f"{job.output}: PNG holds 8/16-bit integers but {job.source.name} holds {source_dtype} samples; "
            "write .tif, .npy or .pfm to keep them"
        )
    if job.output.exists() and not overwrite:
        raise InputFileError(f"{job.output}: output exists; pass --overwrite to replace it")


# ------------------------------------------------------------------------------ sizes, masks


def _read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) bool: nonzero and finite = valid."""
    from optisr.io.rasters import read_raster

    if not path.exists():
        raise InputFileError(f"{path}: mask file not found")
    if path.suffix.lower() == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise InputFileError(f"{path}: cannot read .npy mask ({type(exc).__name__}: {exc})") from exc
        data = np.squeeze(data)
    else:
        data = read_raster(path, zero_invalid=False).data
    if data.shape != shape:
        raise ShapeError(
            f"{path}: mask is {'×'.join(map(str, data.shape))} but the source is {shape[0]}×{shape[1]}; "
            "the mask lives on the source (LR) grid"
        )
    valid = data != 0
    if np.issubdtype(data.dtype, np.floating):
        valid &= np.isfinite(data)
    return valid


def _mismatch(job: Job, guide_hw: tuple[int, int], source_hw: tuple[int, int], scale: int, native: bool) -> str:
    from optisr.ops.operators import lr_size

    (H, W), (h, w) = guide_hw, source_hw
    hh, ww = min(h, H // scale), min(w, W // scale)
    crop = f"use the top-left {scale * hh}×{scale * ww} of the guide"
    if (hh, ww) != (h, w):
        crop += f" and {hh}×{ww} of the source"
    fixes = [f"--crop ({crop})"] if hh and ww else []
    if lr_size((H, W), scale) == (h, w):
        fixes.append(f"--pad (replicate the guide's edges up to {scale * h}×{scale * w})")
    hint = ""
    if H < h and W < w:
        hint = "; did you swap --guide and --source?"
    elif h and w and H % h == 0 and W % w == 0 and H // h == W // w and H // h != scale:
        hint = f"; or did you mean --scale {H // h}?"
    allowed = (
        f" ({scale * (h - 1) + 1}..{scale * h} × {scale * (w - 1) + 1}..{scale * w} with partial last blocks)"
        if native
        else ""
    )
    return (
        f"{job.guide.name} is {H}×{W} but ×{scale} of source {job.source.name} ({h}×{w}) needs a "
        f"{scale * h}×{scale * w} guide{allowed}; pass " + " or ".join(fixes or ["a matching guide"]) + hint
    )


def _fit_sizes(
    job: Job, guide: np.ndarray, source: np.ndarray, valid: np.ndarray, scale: int, fit: str | None, native: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Make the guide N × the source (or ceil-compatible for ``native``); returns arrays and a note."""
    from optisr.ops.operators import lr_size

    (H, W), (h, w) = guide.shape[:2], source.shape
    if (H, W) == (scale * h, scale * w) or (native and fit is None and lr_size((H, W), scale) == (h, w)):
        return guide, source, valid, ""
    if fit is None:
        raise ShapeError(_mismatch(job, (H, W), (h, w), scale, native))
    if fit == "crop":
        hh, ww = min(h, H // scale), min(w, W // scale)
        if not (hh and ww):
            raise ShapeError(f"{job.guide.name} ({H}×{W}) is smaller than one {scale}×{scale} block; check --scale")
        note = f"cropped guide {H}×{W} -> {scale * hh}×{scale * ww}"
        if (hh, ww) != (h, w):
            note += f", source {h}×{w} -> {hh}×{ww}"
        return guide[: scale * hh, : scale * ww], source[:hh, :ww], valid[:hh, :ww], note
    if H > scale * h or W > scale * w or lr_size((H, W), scale) != (h, w):
        raise ShapeError(
            f"--pad only adds fewer than {scale} rows/columns, but {job.guide.name} is {H}×{W} and ×{scale} of "
            f"{job.source.name} needs {scale * h}×{scale * w}; use --crop or check --scale"
        )
    padded = np.pad(guide, ((0, scale * h - H), (0, scale * w - W), (0, 0)), mode="edge")
    return padded, source, valid, f"padded guide {H}×{W} -> {scale * h}×{scale * w}"


# ------------------------------------------------------------------------------- output type


def _lr_strips(h: int, w: int, scale: int) -> range:
    """Starts of strips of LR rows holding about ``STRIP_PIXELS`` HR pixels each (one strip if small)."""
    return range(0, h, max(1, STRIP_PIXELS // max(1, scale * scale * w)))


def _round_block_sums(
    x: np.ndarray, source: np.ndarray, valid: np.ndarray, scale: int, kind: str, lo: float, hi: float
) -> np.ndarray:
    """Largest-remainder rounding of one strip of whole LR rows (float64 (H', W) in, float64 out)."""
    H, W = x.shape
    h, w = source.shape
    x = np.clip(x, lo, hi)
    base = np.zeros((h * scale, w * scale))
    frac = np.full((h * scale, w * scale), -1.0)  # padding never receives a unit
    base[:H, :W] = np.floor(x)
    frac[:H, :W] = x - base[:H, :W]
    inside = np.zeros((h * scale, w * scale))
    inside[:H, :W] = 1.0

    def blocks(a):
        return a.reshape(h, scale, w, scale).transpose(0, 2, 1, 3).reshape(h, w, scale * scale)

    count = blocks(inside).sum(-1)
    target = np.rint(np.where(valid, source, 0.0) * (count if kind == "area" else 1.0))
    deficit = np.where(valid, np.clip(target - blocks(base).sum(-1), 0, count), 0)
    rank = np.argsort(np.argsort(-blocks(frac), axis=-1, kind="stable"), axis=-1)  # 0 = largest fraction
    add = (rank < deficit[..., None]).astype(np.float64)
    add = add.reshape(h, w, scale, scale).transpose(0, 2, 1, 3).reshape(h * scale, w * scale)
    return np.minimum(base + add, hi)[:H, :W]


def _round_consistent(
    x: np.ndarray, source: np.ndarray, valid: np.ndarray, scale: int, kind: str, lo: float, hi: float, dtype: np.dtype
) -> np.ndarray:
    """Round ``x`` to integers so that every valid block keeps the exact sum the source asks for.

    With an integer source and the ``area``/``sum`` operators, plain rounding moves block means
    by up to 0.5; here each block is floored and its missing units go to the pixels with the
    largest fractional parts (largest-remainder rounding), so ``D round(x) = s`` still holds.
    Blocks are independent, so the work runs on strips of whole LR rows (float64 temporaries of
    one strip only) and fills an output of ``dtype`` (integers in ``[lo, hi]``, stored exactly).
    """
    H = x.shape[0]
    h, w = source.shape
    out = np.empty(x.shape, dtype=dtype)
    for i0 in (starts := _lr_strips(h, w, scale)):
        i1 = min(h, i0 + starts.step)
        r0, r1 = i0 * scale, min(H, i1 * scale)
        strip = np.asarray(x[r0:r1], dtype=np.float64)
        out[r0:r1] = _round_block_sums(strip, source[i0:i1], valid[i0:i1], scale, kind, lo, hi)
    return out


def _round_clip(x: np.ndarray, lo: float, hi: float, dtype: np.dtype) -> np.ndarray:
    """``clip(rint(x), lo, hi)`` as ``dtype``, strip by strip."""
    out = np.empty(x.shape, dtype=dtype)
    step = max(1, STRIP_PIXELS // max(1, x.shape[1]))
    for r in range(0, x.shape[0], step):
        out[r : r + step] = np.clip(np.rint(np.asarray(x[r : r + step], dtype=np.float64)), lo, hi)
    return out


def _to_output(
    x: np.ndarray, source: np.ndarray, valid: np.ndarray, scale: int, args: argparse.Namespace, raster, ext: str
) -> tuple[np.ndarray, np.dtype]:
    """(array to write, dtype on disk): integer PNG sources stay integer, everything else float32."""
    if ext != ".png":
        return x.astype(np.float32, copy=False), np.dtype(np.float32)
    dtype = np.dtype(raster.dtype_on_disk)
    info = np.iinfo(dtype)
    lo = 1.0 if raster.nodata is None else float(info.min)  # 0 means "invalid" in such PNGs
    exact = _is_graph(args.method) and (args.mode or "exact") == "exact"
    if exact and args.operator in ("area", "sum"):
        out = _round_consistent(x, source, valid, scale, args.operator, lo, float(info.max), dtype)
    else:
        out = _round_clip(x, lo, float(info.max), dtype)
    return out, dtype


def _consistency_error(
    out: np.ndarray, source: np.ndarray, valid: np.ndarray, kind: str, scale: int, sigma: float | None
) -> float:
    """``max |D out − s|`` over valid LR pixels, in float64, with O(strip) HR temporaries."""
    import torch

    from optisr.ops.operators import make_operator

    H, W = out.shape
    h, w = source.shape
    starts = _lr_strips(h, w, scale)
    if len(starts) == 1:  # small image: one whole-image float64 application
        op = make_operator(kind, out.shape, scale, sigma=sigma)
        lr = op.apply(torch.from_numpy(out.astype(np.float64))).numpy()
    elif kind in ("area", "sum"):  # blocks lie inside strips of whole LR rows
        lr = np.empty((h, w))
        for i0 in starts:
            i1 = min(h, i0 + starts.step)
            r0, r1 = i0 * scale, min(H, i1 * scale)
            strip = torch.from_numpy(out[r0:r1].astype(np.float64))
            lr[i0:i1] = make_operator(kind, strip.shape, scale).apply(strip).numpy()
    else:  # separable D = A_y X A_xᵀ: columns strip by strip (H × w), then the rows
        op = make_operator(kind, out.shape, scale, sigma=sigma)
        rows = starts.step * scale
        t = torch.cat(
            [op._ax.fwd.apply(torch.from_numpy(out[r : r + rows].astype(np.float64)), -1) for r in range(0, H, rows)]
        )
        lr = op._ay.fwd.apply(t, -2).numpy()
    return float(np.abs(lr - source)[valid].max())


# ----------------------------------------------------------------------------------- one file


def _process(job: Job, args: argparse.Namespace, log: Callable[[str], None]) -> str:
    """Upsample one file; returns the stdout line (path, solve time, LR consistency error)."""
    import torch

    from optisr.guided.api import guided_upsample
    from optisr.guided.baselines import get_baseline
    from optisr.io.rasters import geo_for_upsampled, read_guide, read_raster, write_raster

    raster = read_raster(job.source, invalid_value=args.invalid_value)
    _check_output(job, np.dtype(raster.dtype_on_disk), args.overwrite)
    native = _is_graph(args.method)
    # graph solves take the guide in its stored dtype (8/16-bit: 1/4 or 1/2 of float32) and
    # convert it themselves, tile by tile when tiled; the baselines want float RGB
    guide = read_guide(job.guide, as_float=not native)
    source = raster.data.astype(np.float64)
    valid = raster.mask.copy()
    if job.mask is not None:
        valid &= _read_mask(job.mask, raster.shape)
    guide, source, valid, note = _fit_sizes(job, guide, source, valid, args.scale, args.fit, native)
    if note:
        log(f"optisr guided: {job.source.name}: {note}")
    if not valid.any():
        raise InputFileError(f"{job.source}: no valid pixel (all 0, NaN, nodata, --invalid-value or masked out)")
    source[~valid] = np.nan
    # memory-lean above LEAN_PIXELS or when tiling is asked for: float32 solve (see LEAN_PIXELS)
    lean = guide.shape[0] * guide.shape[1] > LEAN_PIXELS or bool(args.tile_size)

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if native:
            x = guided_upsample(
                source,
                guide,
                args.scale,
                operator=args.operator,
                mode=args.mode or "exact",
                weights=args.method,
                mask=valid,
                lam=1.0 if args.lam is None else args.lam,
                sigma=args.sigma,
                dtype=torch.float32 if lean else torch.float64,
                tile_size=args.tile_size,
                progress=not args.quiet,
                tol=args.tol,
                device=args.device,
            )
        else:
            x = get_baseline(args.method)(source, guide, args.scale, mask_lr=valid)
    seconds = time.perf_counter() - t0
    del guide  # not needed any more: free it before the output arrays are made
    for w in caught:
        log(f"optisr guided: warning: {job.source.name}: {str(w.message).splitlines()[0]}")

    ext = job.output.suffix.lower()
    x = np.asarray(x)
    if x.dtype != np.float32:
        x = x.astype(np.float64, copy=False)
    out, dtype = _to_output(x, source, valid, args.scale, args, raster, ext)
    del x
    geo = None
    if raster.geo is not None:
        if ext in (".tif", ".tiff"):
            geo = geo_for_upsampled(raster.geo, args.scale)
        else:
            log(f"optisr guided: note: {job.output.name}: {ext} keeps no georeferencing; write .tif to keep the CRS")
    err = _consistency_error(out, source, valid, args.operator, args.scale, args.sigma)
    try:
        write_raster(job.output, out, dtype=dtype, geo=geo, nodata=raster.nodata)
    except OSError as exc:
        raise InputFileError(f"{job.output}: cannot write ({exc.strerror or exc})") from exc
    return f"{job.output}\t{seconds:.2f} s\tmax|Dx-s| {err:.3g}"


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    _check_options(args)
    jobs, folder_mode = _jobs(args)

    def log(line: str) -> None:
        tqdm.write(line, file=sys.stderr)

    failures = 0
    for job in tqdm(jobs, unit="file", disable=args.quiet or not folder_mode, file=sys.stderr):
        try:
            line = _process(job, args, log)
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
