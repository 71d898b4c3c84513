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

NIQE is MATLAB's (:func:`optisr.metrics.niqe.niqe`: the authors' ``computequality.m`` with their
pristine model, on the BT.601 luma), so its values compare with published MATLAB / BasicSR NIQE tables.

Methods: ``bicubic`` (MATLAB-compatible bicubic upscale, the classic baseline) and any model
:func:`optisr.blind.api.upscale` accepts: a registry name (``optisr models list``) or a weights
file. Grey images (Set14 ``bridge``) are expanded to RGB first, as BasicSR's ``cv2.IMREAD_COLOR``
does; an alpha channel is dropped; 16-bit images are rounded to 8 bit.

Modules: :mod:`optisr.data.sr_sets` (the test sets), :mod:`optisr.bench.blind_report` (tables,
CSV, crops); this one runs the methods. Outputs, written atomically to ``--out-dir``: ``blind_<dataset>.md`` (table of per-method means,
per-image table, conventions), ``blind_<dataset>.csv`` (per-image rows) and
``blind_<dataset>_crops/<image>.png`` (side-by-side crops of the first ``--crops`` images, the same
region for every method).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from optisr.bench.blind_report import BenchResult, crop_panel, means_table, per_image_csv, report_markdown
from optisr.bench.report import finite_mean, write_text
from optisr.blind.api import ModelSpec, get_model, upscale
from optisr.data.sr_sets import DATASETS, LR_MODES, Sample, imresize_matlab, load_dataset
from optisr.errors import ConfigError, ShapeError
from optisr.io.images import write_image
from optisr.metrics.image_quality import psnr, ssim
from optisr.metrics.niqe import niqe, niqe_params_path

__all__ = [
    "DATASETS",
    "DEFAULT_METHODS",
    "LR_MODES",
    "BenchResult",
    "Sample",
    "benchmark",
    "imresize_matlab",
    "load_dataset",
    "niqe_unavailable",
]

DEFAULT_METHODS = ("bicubic", "realsr-df2k-x4", "realesrgan-x4plus")
"""``--models`` default: the classic baseline and two shipped real-world models."""


def _method_label(method: object) -> str:
    if isinstance(method, str) and method == "bicubic":
        return "bicubic"
    if isinstance(method, (str, os.PathLike)):
        p = Path(method)
        return p.stem if p.suffix else str(method)
    name = getattr(method, "metadata", {}).get("name") if hasattr(method, "metadata") else None
    return name or type(getattr(method, "model", method)).__name__


def niqe_unavailable() -> str:
    """'' when NIQE can run, else the reason (only a broken install lacks the packaged pristine model)."""
    path = niqe_params_path()
    return "" if path.is_file() else f"{path}: NIQE pristine-model file missing (reinstall optisr)"


def _safe_niqe(img: np.ndarray, crop_border: int) -> float:
    try:
        return niqe(img, crop_border=crop_border)
    except ShapeError:
        return math.nan  # too small for 96×96 patches at two scales


def benchmark(
    dataset: str,
    data_dir: str | os.PathLike,
    methods: Sequence[ModelSpec] = ("bicubic",),
    *,
    scale: int = 4,
    out_dir: str | os.PathLike = "bench_out",
    limit: int | None = None,
    tile_size: int = 0,
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
        tile_size: LR tile size for the networks (0 = whole image).
        crops: number of images (the first ones) to make side-by-side crops of.
        crop_size: crop side in HR pixels.
        niqe: also score NIQE on paired sets (always on for no-GT sets).
        device: torch device for the networks (default: CUDA when available, else CPU).
        command: the command line, recorded in the report.
        progress: show tqdm bars on stderr.
    """
    from tqdm import tqdm

    if tile_size < 0:
        raise ConfigError(f"--tile-size must be >= 0; got {tile_size}")
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
            get_model(m, device=dev)
    niqe_note = ""
    want_niqe = niqe or not spec.paired
    if want_niqe:
        niqe_note = niqe_unavailable()
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
                out = upscale(s.lr, method, tile_size=tile_size, device=dev, outscale=float(scale))
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
        label: {
            k: finite_mean([rows[s.name][label][k] for s in samples if k in rows[s.name][label]])
            for k in metric_keys
            if any(k in rows[s.name][label] for s in samples)
        }
        for label in labels
    }
    lr_sources = sorted({s.lr_source for s in samples})
    result = BenchResult(
        dataset, scale, labels, [s.name for s in samples], rows, means, hr_niqe, lr_sources, niqe_note, dev
    )
    out_root = Path(out_dir)
    crop_dir = out_root / f"blind_{dataset}_crops"
    for s in samples[:crops]:
        panel = crop_panel(s, kept[s.name], rows[s.name], scale, crop_size, spec.paired)
        result.files.append(write_image(crop_dir / f"{s.name}.png", panel))
    result.table = means_table(result)
    md_path = out_root / f"blind_{dataset}.md"
    write_text(md_path, report_markdown(result, command, [p for p in result.files]))
    csv_path = out_root / f"blind_{dataset}.csv"
    write_text(csv_path, per_image_csv(result))
    result.files = [md_path, csv_path, *result.files]
    return result
