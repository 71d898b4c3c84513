"""The report of ``optisr bench blind``: the result of a run, its markdown tables, CSV, crop and comparison panels."""

from __future__ import annotations

import csv
import io
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from optisr.bench.report import finite_mean, format_number, markdown_table
from optisr.data.sr_sets import DATASETS, Sample
from optisr.version import __version__

__all__ = ["BenchResult", "comparison_panel", "crop_panel", "means_table", "per_image_csv", "report_markdown"]


@dataclass
class BenchResult:
    """Everything the report needs.

    Attributes:
        dataset: key of :data:`DATASETS`. methods: method labels, in order.
        rows: per image, per method: metric name → value (``psnr_y``, ``ssim_y``, ``psnr_rgb``,
            ``niqe``, ``seconds``).
        means: per method: metric → mean over images (non-finite values excluded).
        hr_niqe: per image NIQE of the HR (paired sets), for reference.
        lr_sources: distinct LR descriptions. files: files written (report, CSV, crops, panels).
        speed: per method: seconds of one upscale of a ``speed_size``² LR input (empty: not timed).
        cached: how many outputs came from ``cache_dir`` (the run's cache folder; None: no cache).
        crop_files, panel_files: the crop and comparison panels written.
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
    speed: dict[str, float] = field(default_factory=dict)
    speed_size: int = 0
    cached: int = 0
    cache_dir: str | None = None
    crop_files: list[Path] = field(default_factory=list)
    panel_files: list[Path] = field(default_factory=list)


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
    tile = np.ascontiguousarray(tile)
    font_scale = max(0.35, tile.shape[1] / 520)
    thick = 1
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thick)
    cv2.rectangle(tile, (0, 0), (min(tile.shape[1] - 1, tw + 6), th + base + 6), (0, 0, 0), -1)
    cv2.putText(tile, text, (3, th + 3), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), thick, cv2.LINE_AA)
    return tile


def crop_panel(
    sample: Sample,
    outputs: dict[str, np.ndarray],
    metrics: dict[str, dict[str, float]],
    scale: int,
    crop_size: int,
    paired: bool,
) -> np.ndarray:
    """Side-by-side uint8 RGB crops, LR (nearest) | methods ... | HR, same region, each shown at >= 256 px."""
    top, left, size = _crop_box(sample.lr, scale, crop_size)
    zoom = max(1, -(-256 // size))
    s = scale

    def tile(img: np.ndarray, text: str) -> np.ndarray:
        c = img[top : top + size, left : left + size]
        c = np.repeat(np.repeat(c, zoom, 0), zoom, 1)
        return _label(c, text)

    lr_c = sample.lr[top // s : (top + size) // s, left // s : (left + size) // s]
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


def _captioned(tile: np.ndarray, text: str, height: int) -> np.ndarray:
    """``tile`` with a white strip of ``height`` px above it holding ``text`` (black, left-aligned, shrunk to fit)."""
    w = tile.shape[1]
    strip = np.full((height, w, 3), 255, np.uint8)
    font_scale = height / 40
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    if tw > w - 6:
        font_scale *= (w - 6) / tw
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    cv2.putText(strip, text, (3, (height + th) // 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, tile], axis=0)


def comparison_panel(
    sample: Sample, outputs: dict[str, np.ndarray], scale: int, crop_side: int, *, full_max: int = 512
) -> np.ndarray:
    """A README panel, uint8 RGB: input ×``scale`` (nearest) | each method's output | HR (paired sets).

    Every tile has the size of the ×``scale`` output and a small caption above it. The whole
    image when the output's longer side is at most ``full_max`` px, else the centre
    ``crop_side``² HR-pixel crop (on the LR grid: a multiple of ``scale``, clipped to the image).

    Args:
        sample: the image (``lr`` (h, w, 3) uint8, ``hr`` (h·s, w·s, 3) or None).
        outputs: method label → (h·s, w·s, 3) uint8 output, in panel order.
        scale: the SR scale. crop_side: crop side in HR pixels (large images).
    """
    h, w = sample.lr.shape[:2]
    if max(h, w) * scale <= full_max:
        top, left, ch, cw = 0, 0, h, w
    else:
        side = max(1, crop_side // scale)
        ch, cw = min(side, h), min(side, w)
        top, left = (h - ch) // 2, (w - cw) // 2

    def cut(img: np.ndarray) -> np.ndarray:
        return img[top * scale : (top + ch) * scale, left * scale : (left + cw) * scale]

    lr = sample.lr[top : top + ch, left : left + cw]
    tiles = [(f"input (nearest ×{scale})", np.repeat(np.repeat(lr, scale, 0), scale, 1))]
    tiles += [(name, cut(out)) for name, out in outputs.items()]
    if sample.hr is not None:
        tiles.append(("HR", cut(sample.hr)))
    caption = max(14, min(24, cw * scale // 12))
    parts = []
    for name, t in tiles:
        parts += [
            _captioned(np.ascontiguousarray(t), name, caption),
            np.full((ch * scale + caption, 4, 3), 255, np.uint8),
        ]
    return np.concatenate(parts[:-1], axis=1)


def _fmt(v: float | None, digits: int) -> str:
    return format_number(v, digits, missing="—")


_COLS = (
    ("psnr_y", "PSNR-Y (dB) ↑", 2),
    ("ssim_y", "SSIM-Y ↑", 4),
    ("psnr_rgb", "PSNR-RGB (dB) ↑", 2),
    ("niqe", "NIQE (MATLAB) ↓", 2),
    ("seconds", "s / image", 2),
)


def means_table(r: BenchResult) -> str:
    """The markdown table of per-method means (and the HR's NIQE), with a one-line caption."""
    cols = [c for c in _COLS if any(c[0] in r.means[m] for m in r.methods)]
    n = len(r.images)
    rows = []
    for m in r.methods:
        name = "bicubic (MATLAB)" if m == "bicubic" else m
        speed = [_fmt(r.speed.get(m), 3)] if r.speed else []
        rows.append([name] + [_fmt(r.means[m].get(c[0]), c[2]) for c in cols] + speed)
    if r.hr_niqe:
        rows.append(
            ["HR (ground truth)"]
            + [_fmt(finite_mean(r.hr_niqe.values()), 2) if c[0] == "niqe" else "—" for c in cols]
            + (["—"] if r.speed else [])
        )
    speed_head = [f"s per {r.speed_size}² LR"] if r.speed else []
    lines = markdown_table(["Method"] + [c[1] for c in cols] + speed_head, rows)
    title = DATASETS[r.dataset].title
    lines.append("")
    lines.append(f"Means over {n} image{'s' if n != 1 else ''} of {title}, ×{r.scale}; device {r.device}.")
    return "\n".join(lines)


def report_markdown(r: BenchResult, command: str, crop_files: list[Path], panel_files: Sequence[Path] = ()) -> str:
    """The full markdown report: means, how the numbers were made, per-image scores, crops, panels."""
    spec = DATASETS[r.dataset]
    buf = io.StringIO()
    w = buf.write
    w(f"# Blind SR benchmark: {spec.title} ×{r.scale}\n\n")
    if command:
        w(f"Command: `{command}`\n\n")
    w(
        f"optisr {__version__}, torch {torch.__version__}, Python {platform.python_version()}, "
        f"device {r.device}, {torch.get_num_threads()} CPU threads, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}.\n\n"
    )
    w("## Mean scores\n\n")
    w(r.table + "\n\n")
    w("## How the numbers were made\n\n")
    if spec.paired:
        w(
            f"* HR: each image mod-cropped to a multiple of {r.scale} (top-left); grey images expanded "
            "to RGB (as BasicSR's `cv2.IMREAD_COLOR`).\n"
        )
        w("* LR: " + "; ".join(r.lr_sources) + ".\n")
        w(
            f"* PSNR-Y / SSIM-Y: BT.601 luma (MATLAB `rgb2ycbcr`, Y in [16, 235], not rounded), "
            f"{r.scale} pixels cropped from every border; SSIM with an 11×11 Gaussian window "
            "(σ = 1.5), as BasicSR `calculate_psnr/ssim(crop_border=scale, test_y_channel=True)` and "
            "most SR papers. PSNR-RGB: all three channels, same crop.\n"
        )
        w(
            "* `bicubic (MATLAB)`: MATLAB-compatible `imresize(LR, scale, 'bicubic')` (a = -0.5, "
            "mirror boundary), rounded to 8 bit.\n"
        )
    else:
        w(
            "* Real-world inputs without ground truth; each method upscales the photo as is "
            "(grey expanded to RGB, alpha dropped). Only no-reference scores are possible.\n"
        )
        w("* `bicubic (MATLAB)`: MATLAB-compatible bicubic upscale, the reference point.\n")
    if r.niqe_note:
        w(f"* NIQE not computed: {r.niqe_note}.\n")
    elif any("niqe" in r.means[m] for m in r.methods):
        cb = f", {r.scale}-pixel border crop" if spec.paired else ", whole image"
        w(
            "* NIQE (MATLAB) (lower = more natural): MATLAB's `niqe` / the authors' `computequality.m` with "
            "their pristine model (`optisr.metrics.niqe`; 5.7296 on Set14 baboon as MATLAB R2021a), on the "
            f"BT.601 luma rounded to integers{cb}, 96×96 blocks at two scales: comparable with published "
            "MATLAB and BasicSR NIQE tables. NIQE fits a 36-dimensional Gaussian to the image's blocks, "
            "so on small images (a few dozen blocks, e.g. Set5) it is noisy; compare methods on the "
            "same image set only. Images with fewer than two whole 96×96 blocks show —.\n"
        )
    w(
        "* Models run in float32 through `optisr.blind.api.upscale` "
        "(whole image unless `--tile-size` is set); `s / image` is the wall time of one upscale.\n"
    )
    if r.speed:
        w(
            f"* `s per {r.speed_size}² LR`: one upscale of a {r.speed_size}×{r.speed_size} RGB input on "
            f"{r.device}, 1 CPU thread, model loaded first, best of 2 (`optisr.bench.blind.upscale_seconds`).\n"
        )
    if r.cache_dir is not None:
        w(
            f"* Network outputs cached in `{r.cache_dir}/<label>/<image>.png` (+ `.json` with the upscale's "
            f"seconds); {r.cached} of {len(r.images) * len(r.methods)} outputs of this run were read from it, "
            "so their `s / image` is the time of the run that made them.\n"
        )
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
        w(
            "Same region for every method (the most textured window of the LR), shown enlarged "
            "with nearest-neighbour zoom: LR | methods | HR.\n\n"
        )
        for p in crop_files:
            rel = f"{p.parent.name}/{p.name}"
            w(f"![{p.stem}]({rel})\n\n")
    if panel_files:
        w("\n## Panels\n\n")
        w(
            f"Input (nearest ×{r.scale}) | each method's output{' | HR' if spec.paired else ''}: the whole image, "
            "or its centre crop for large images.\n\n"
        )
        for p in panel_files:
            w(f"![{p.stem}]({p.parent.name}/{p.name})\n\n")
    return buf.getvalue()


def per_image_csv(r: BenchResult) -> str:
    """The per-image scores as CSV text (one row per image and method, plus the HR's NIQE)."""
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
