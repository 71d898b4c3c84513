"""Planning ``optisr guided`` runs: which files to process and how guide and source sizes fit.

* :func:`plan_jobs` turns ``--guide``/``--source``/``-o`` (files or folders) into :class:`Job` s,
  pairing folder contents by file stem (:func:`pair_files`).
* :func:`check_output` rejects an output that cannot be written, before any work.
* :func:`read_mask` reads an LR validity mask; :func:`fit_sizes` applies ``--crop``/``--pad``.

No argument parsing and no printing here (that is :mod:`optisr.cli.guided`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optisr.errors import ConfigError, InputFileError, ShapeError
from optisr.io.outputs import check_output_file, refuse_overlap
from optisr.io.rasters import RASTER_EXTENSIONS, exr_supported, read_raster
from optisr.ops.operators import lr_size

__all__ = [
    "GUIDE_EXTENSIONS",
    "GUIDE_SUFFIXES",
    "OUTPUT_EXTENSIONS",
    "SOURCE_SUFFIXES",
    "Job",
    "check_output",
    "fit_sizes",
    "pair_files",
    "plan_jobs",
    "read_mask",
]

GUIDE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
OUTPUT_EXTENSIONS = (".png", ".tif", ".tiff", ".npy", ".pfm", ".exr")
# Folder mode pairs files by stem; when no exact match exists, these trailing words are ignored.
GUIDE_SUFFIXES = ("color", "colour", "rgb", "image", "img", "guide")
SOURCE_SUFFIXES = ("depth", "lr", "source", "src", "disp", "dem")


@dataclass(frozen=True)
class Job:
    """One file to upsample: its guide, source, optional LR mask and output path."""

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


def pair_files(guide_dir: Path, source_dir: Path) -> list[tuple[Path, Path]]:
    """Pair sources with guides by exact stem, else by stem without suffixes like _color / _depth."""
    sources = _by_stem(_listing(source_dir, RASTER_EXTENSIONS), source_dir, "source")
    if not sources:
        raise InputFileError(f"{source_dir}: folder holds no raster files ({' '.join(RASTER_EXTENSIONS)})")
    guides = _by_stem(_listing(guide_dir, GUIDE_EXTENSIONS), guide_dir, "guide")
    loose: dict[str, list[Path]] = {}
    for guide in guides.values():
        loose.setdefault(_loose_key(guide.stem, GUIDE_SUFFIXES), []).append(guide)
    pairs: list[tuple[Path, Path]] = []
    missing: list[str] = []
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


def plan_jobs(
    guide: str | Path, source: str | Path, output: str | Path, mask: str | Path | None = None, ext: str = "auto"
) -> tuple[list[Job], bool]:
    """The files to process for ``--guide``/``--source``/``-o``/``--mask``/``--ext``; returns (jobs, folder_mode).

    Two files give one job (``-o`` may be a folder); two folders pair sources with guides by file
    stem (:func:`pair_files`), masks by source stem from a mask folder, or one mask for all.
    """
    guide, source, out = Path(guide), Path(source), Path(output)
    mask = Path(mask) if mask else None
    if source.is_dir() != guide.is_dir():
        folder, other = (source, "--guide") if source.is_dir() else (guide, "--source")
        raise ConfigError(f"{folder} is a folder, so {other} must be a folder too (files are paired by stem)")
    if not source.is_dir():
        if mask is not None and mask.is_dir():
            raise ConfigError(f"--mask {mask} is a folder; with a single --source pass one mask file")
        if out.is_dir():
            out = out / f"{source.stem}{_output_ext(source, ext)}"
        return [Job(guide, source, mask, out)], False
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out}: with folder inputs the output must be a folder, and this is a file")
    jobs = []
    for g, s in pair_files(guide, source):
        m = mask
        if mask is not None and mask.is_dir():  # a mask per source, same stem; .npy before .png
            m = next(
                (c for c in (mask / f"{s.stem}.npy", mask / f"{s.stem}.png") if c.exists()), mask / f"{s.stem}.png"
            )
        jobs.append(Job(g, s, m, out / f"{s.stem}{_output_ext(s, ext)}"))
    return jobs, True


def check_output(job: Job, source_dtype: np.dtype, overwrite: bool) -> None:
    """A one-line error before any work when ``job.output`` cannot be written as asked."""
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
    inputs = [job.guide, job.source] + ([job.mask] if job.mask is not None else [])
    refuse_overlap(job.output, inputs)  # never write over what we read
    check_output_file(job.output, overwrite=overwrite)  # writable folder, not under a file, exists?


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """The LR validity mask of a file as (h, w) bool: nonzero and finite = valid; ``shape`` = the source's."""
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


def fit_sizes(
    job: Job, guide: np.ndarray, source: np.ndarray, valid: np.ndarray, scale: int, fit: str | None, native: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Make the guide ``scale`` × the source; returns (guide, source, valid, note).

    ``native`` (graph methods) also accepts a guide with ``ceil(guide size / scale)`` = source size
    as is. Otherwise ``fit`` ``"crop"`` crops (top-left), ``"pad"`` replicates the guide's edges,
    and ``None`` raises a ShapeError that names the fixes. ``note`` says what was changed ("" if
    nothing). Arrays: guide (H, W, C), source and valid (h, w).
    """
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
