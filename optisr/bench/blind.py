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
* ``otsr``: a degraded LR made here with the ``otsr-compact-x4`` teacher-cache recipe
  (configs/blind/teacher_cache.yaml: Gaussian blur, MATLAB bicubic ↓s, real noise mined from the
  PolyU ``*_real`` crops of ``--noise-dir``, JPEG q30-95), one fixed draw per image
  (``np.random.default_rng([seed, index])``, :func:`optisr.degrade.blur_noise_jpeg.fixed_draw_lr`),
  exactly the degraded LR of ``benchmarks/otsr_compact.py``.

No-GT set (``realsrset``: RealSRSet+5images): every method upscales the real photo; NIQE of the
output is reported.

NIQE is MATLAB's (:func:`optisr.metrics.niqe.niqe`: the authors' ``computequality.m`` with their
pristine model, on the BT.601 luma), so its values compare with published MATLAB / BasicSR NIQE tables.

Methods: ``bicubic`` (MATLAB-compatible bicubic upscale, the classic baseline) and any model
:func:`optisr.blind.api.upscale` accepts: a registry name (``optisr models list``) or a weights
file, plain or as ``LABEL=PATH`` (shown under ``LABEL``; :func:`parse_method`). Grey images (Set14 ``bridge``) are expanded to RGB first, as BasicSR's ``cv2.IMREAD_COLOR``
does; an alpha channel is dropped; 16-bit images are rounded to 8 bit.

Modules: :mod:`optisr.data.sr_sets` (the test sets), :mod:`optisr.bench.blind_report` (tables,
CSV, crops); this one runs the methods. Outputs, written atomically to ``--out-dir``: ``blind_<dataset>.md`` (table of per-method means,
per-image table, conventions), ``blind_<dataset>.csv`` (per-image rows) and
``blind_<dataset>_crops/<image>.png`` (side-by-side crops of the first ``--crops`` images, the same
region for every method) and ``blind_<dataset>_panels/<image>.png`` (``--panels``: input ×s nearest |
every method, whole images or a centre crop, for a README).

Output cache (``cache_dir``): every network output is kept as
``<cache_dir>/<dataset>-x<scale>-<lr>/<label>/<image>.png`` (uint8 RGB, lossless) with
``<image>.json`` = ``{"seconds": <wall time of the upscale>}`` and reused when both exist, so slow
models run once and a table can be rebuilt with more rows cheaply. ``<lr>`` is the ``--lr`` value
(``otsr`` with seed 0, ``otsr-seed<N>`` otherwise); ``<label>`` carries ``-<sha256[:8]>`` of the
weights file (for registry models, of the file the name resolves to here), so a changed file — a
new release of a shipped model included — is never served stale. ``bicubic`` and model
objects are not cached. The cache assumes the same device and tile size across runs.

Speed (``speed_size``): :func:`upscale_seconds`, one upscale of a ``speed_size``² LR input, 1 CPU
thread, model loaded, best of 2.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from optisr.bench.blind_report import (
    BenchResult,
    comparison_panel,
    crop_panel,
    means_table,
    per_image_csv,
    report_markdown,
)
from optisr.bench.report import finite_mean, write_text
from optisr.blind.api import ModelSpec, get_model, upscale
from optisr.blind.registry import MODELS, find_source, load_model
from optisr.blind.teacher_cache import CacheDegradationConfig, NoiseSourceConfig, mine_noise_pool
from optisr.data import sr_sets
from optisr.data.sr_sets import DATASETS, Sample, imresize_matlab, load_dataset
from optisr.degrade.blur_noise_jpeg import fixed_draw_lr
from optisr.errors import ConfigError, InputFileError, ShapeError
from optisr.io.images import read_image, to_rgb8, write_image
from optisr.metrics.image_quality import psnr, ssim
from optisr.metrics.niqe import niqe, niqe_params_path

__all__ = [
    "DATASETS",
    "DEFAULT_METHODS",
    "LR_MODES",
    "NOISE_SUBDIR",
    "BenchResult",
    "Method",
    "Sample",
    "benchmark",
    "cache_folder",
    "default_noise_dir",
    "imresize_matlab",
    "load_dataset",
    "niqe_unavailable",
    "otsr_lr",
    "parse_method",
    "upscale_seconds",
]

DEFAULT_METHODS = ("bicubic", "realsr-df2k-x4", "realesrgan-x4plus")
"""``--models`` default: the classic baseline and two shipped real-world models."""

LR_MODES = (*sr_sets.LR_MODES, "otsr")
"""``--lr`` values: the loader's (:data:`optisr.data.sr_sets.LR_MODES`) and ``otsr`` (degraded here)."""

NOISE_SUBDIR = "sr_realnoise_polyu_crops100/CroppedImages"
"""Where the PolyU real-noise crops of ``--lr otsr`` live under the shared data root."""

Method = ModelSpec | tuple[str, ModelSpec]
"""A method of :func:`benchmark`: ``"bicubic"``, a model, or ``(label, model)`` to show it under ``label``."""

_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def parse_method(text: str) -> Method:
    """One ``--models`` word: ``LABEL=PATH`` → ``(LABEL, Path(PATH))``, anything else unchanged.

    Raises:
        ConfigError: a bad label (letters, digits, ``._+-``; it names a cache folder).
        InputFileError: ``PATH`` is not a file.
    """
    if "=" not in text:
        return text
    label, _, path = text.partition("=")
    if not _LABEL.fullmatch(label):
        raise ConfigError(f"--models {text}: LABEL must be letters, digits, '.', '_', '+' or '-' (LABEL=PATH)")
    weights = Path(path).expanduser()
    if not weights.is_file():
        raise InputFileError(f"{weights}: weights file not found (--models {text})")
    return label, weights


def _method_label(method: object) -> str:
    if isinstance(method, tuple):
        return str(method[0])
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


def upscale_seconds(
    model: ModelSpec, size: int, *, device: str = "cpu", tile_size: int = 0, bicubic_scale: int = 4
) -> float:
    """Seconds of one upscale of a ``size``² uint8 RGB input (seeded noise) by ``model``: 1 CPU thread,
    model loaded first (on a 16² input), best of 2 runs. ``model`` may be ``"bicubic"`` (MATLAB bicubic
    ×``bicubic_scale``)."""
    x = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)

    def once(img: np.ndarray) -> None:
        if isinstance(model, str) and model == "bicubic":
            imresize_matlab(img, float(bicubic_scale))
        else:
            upscale(img, model, device=device, tile_size=tile_size)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        once(x[:16, :16])  # load the model
        best = math.inf
        for _ in range(2):
            t0 = time.perf_counter()
            once(x)
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return best


def _file_hash(path: Path) -> str:
    """First 8 hex digits of the SHA-256 of a weights file (with an ncnn ``.param``: of ``.param`` + ``.bin``)."""
    h = hashlib.sha256()
    for p in (path, path.with_suffix(".bin")) if path.suffix == ".param" else (path,):
        if p.is_file():
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:8]


def cache_folder(cache_dir: str | os.PathLike, dataset: str, scale: int, lr_part: str, method: Method) -> Path | None:
    """The output-cache folder of one method (see the module docstring), or None when it is not cached.

    ``<cache_dir>/<dataset>-x<scale>-<lr_part>/<label>``, the label followed by ``-<sha256[:8]>``
    of the weights file (of the file a registry name resolves to, when it is installed); None for
    ``bicubic`` and model objects.
    """
    label = _method_label(method)
    spec = method[1] if isinstance(method, tuple) else method
    if not isinstance(spec, (str, os.PathLike)) or (isinstance(spec, str) and spec == "bicubic"):
        return None
    if isinstance(spec, str) and spec in MODELS:
        # a registry model: the hash of the file it resolves to here (a new release of a shipped
        # model, or another version of its package, gets its own entries)
        source = find_source(spec)
        if source is not None:
            label = f"{label}-{_file_hash(source)}"
    else:
        label = f"{label}-{_file_hash(Path(spec).expanduser())}"
    return Path(cache_dir) / f"{dataset}-x{scale}-{lr_part}" / label


def _cached_output(folder: Path, name: str) -> tuple[np.ndarray, float] | None:
    """(uint8 RGB output, seconds) of a cache entry, or None when its PNG or JSON is missing."""
    png, meta = folder / f"{name}.png", folder / f"{name}.json"
    if not (png.is_file() and meta.is_file()):
        return None
    try:
        seconds = float(json.loads(meta.read_text(encoding="utf-8"))["seconds"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputFileError(f'{meta}: not a cache record {{"seconds": <float>}} ({exc})') from exc
    return to_rgb8(read_image(png)), seconds


def _store_output(folder: Path, name: str, image: np.ndarray, seconds: float) -> None:
    """Write a cache entry atomically: the PNG first, then the JSON that marks the entry complete."""
    write_image(folder / f"{name}.png", image)
    write_text(folder / f"{name}.json", json.dumps({"seconds": seconds}))


def default_noise_dir(data_dir: str | os.PathLike) -> Path:
    """``<data_dir>/`` :data:`NOISE_SUBDIR` (or under the parent of ``data_dir`` when that is a set's folder)."""
    first = Path(data_dir) / NOISE_SUBDIR
    if not first.is_dir() and (Path(data_dir).parent / NOISE_SUBDIR).is_dir():
        return Path(data_dir).parent / NOISE_SUBDIR
    return first


def otsr_lr(
    hrs: Sequence[np.ndarray], noise_dir: str | os.PathLike, *, scale: int = 4, seed: int = 0
) -> tuple[list[np.ndarray], str]:
    """The ``--lr otsr`` LR of mod-``scale`` uint8 RGB HR images, and its one-line description.

    The teacher-cache recipe (the defaults of :class:`~optisr.blind.teacher_cache.CacheDegradationConfig`
    and :class:`~optisr.blind.teacher_cache.NoiseSourceConfig`, which configs/blind/teacher_cache.yaml
    uses) with the real noise mined from ``noise_dir``; image ``i`` gets the draw of
    ``default_rng([seed, i])``.

    Raises:
        ConfigError: no ``*_real.*`` photos in ``noise_dir`` or no flat tile in them.
    """
    d = CacheDegradationConfig()
    noise_cfg = NoiseSourceConfig(photos_dir=str(noise_dir))
    pool = mine_noise_pool(noise_cfg)
    lrs = fixed_draw_lr(hrs, d.build(scale), pool, seed=seed)
    how = (
        f"OTSR-style degraded LR of the mod-{scale} HR, made here with the otsr-compact-x4 teacher-cache recipe "
        f"(configs/blind/teacher_cache.yaml): p={d.blur_prob:g} Gaussian blur ({d.kernel_size}×{d.kernel_size}, "
        f"σ {d.sigma_range[0]:g}-{d.sigma_range[1]:g} HR px, isotropic p={d.isotropic_prob:g}), MATLAB bicubic ↓{scale} "
        f"(8 bit), p={d.noise_prob:g} real noise × U({d.noise_strength[0]:g}, {d.noise_strength[1]:g}) from "
        f"{len(pool or [])} flat {noise_cfg.patch_size}² tiles mined from `{noise_cfg.pattern}` in `{noise_dir}`, "
        f"p={d.jpeg_prob:g} JPEG q {d.jpeg_quality[0]}-{d.jpeg_quality[1]}; one fixed draw per image "
        f"(`np.random.default_rng([{seed}, index])`, index = position in the sorted HR list)"
    )
    return lrs, how


def benchmark(
    dataset: str,
    data_dir: str | os.PathLike,
    methods: Sequence[Method] = ("bicubic",),
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
    seed: int = 0,
    noise_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    speed_size: int = 0,
    panels: Sequence[str] = (),
) -> BenchResult:
    """Run the benchmark and write the report, CSV, crops and panels.

    Args:
        dataset, data_dir, scale, limit: as :func:`load_dataset`.
        methods: ``"bicubic"``, registry names, weights files, or model objects that
            :func:`optisr.blind.api.upscale` accepts (``nn.Module`` with ``scale``, ``LoadedModel``);
            any of them as ``(label, model)`` to show it under ``label`` (:func:`parse_method`).
        out_dir: where ``blind_<dataset>.md/.csv``, ``blind_<dataset>_crops/`` and ``_panels/`` go.
        tile_size: LR tile size for the networks (0 = whole image).
        crops: number of images (the first ones) to make side-by-side crops of.
        crop_size: crop side in HR pixels (panels of large images: a centre crop of twice that).
        lr_mode: :data:`LR_MODES`: the loader's modes, or ``otsr`` (paired sets; :func:`otsr_lr`).
        niqe: also score NIQE on paired sets (always on for no-GT sets).
        device: torch device for the networks (default: CUDA when available, else CPU).
        command: the command line, recorded in the report.
        progress: show tqdm bars on stderr.
        seed: base seed of the ``otsr`` LR draws.
        noise_dir: the real-noise photos of ``otsr`` (default :func:`default_noise_dir` of ``data_dir``).
        cache_dir: keep and reuse network outputs there (see the module docstring); None: no cache.
        speed_size: time every method on a ``speed_size``² LR input (:func:`upscale_seconds`); 0: off.
        panels: image names to write a full-size comparison panel of.
    """
    from tqdm import tqdm

    if tile_size < 0:
        raise ConfigError(f"--tile-size must be >= 0; got {tile_size}")
    if crops < 0:
        raise ConfigError(f"--crops must be >= 0; got {crops}")
    if speed_size < 0:
        raise ConfigError(f"--speed-size must be >= 0 (0 = off); got {speed_size}")
    if not methods:
        raise ConfigError("no methods given")
    spec = DATASETS.get(dataset)
    if spec is None:
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if lr_mode not in LR_MODES:
        raise ConfigError(f"--lr must be one of {', '.join(LR_MODES)}; got {lr_mode!r}")
    labels = [_method_label(m) for m in methods]
    dup = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dup:
        raise ConfigError(
            f"duplicate method label {', '.join(map(repr, dup))} in --models (use LABEL=PATH to tell them apart)"
        )
    models: list[ModelSpec] = [m[1] if isinstance(m, tuple) else m for m in methods]
    for model in models:
        if isinstance(model, os.PathLike) and not Path(model).expanduser().is_file():
            raise InputFileError(f"{model}: weights file not found")
    otsr = lr_mode == "otsr"
    noise_folder = None
    if otsr:
        if not spec.paired:
            raise ConfigError(f"--lr otsr degrades the HR of a paired set; {spec.title} has no HR")
        noise_folder = Path(noise_dir).expanduser() if noise_dir is not None else default_noise_dir(data_dir)
        if not noise_folder.is_dir():
            raise InputFileError(f"{noise_folder}: real-noise photo folder (--noise-dir) not found")
    samples, _ = load_dataset(dataset, data_dir, scale=scale, limit=limit, lr_mode="matlab" if otsr else lr_mode)
    names = [s.name for s in samples]
    unknown = [p for p in panels if p not in names]
    if unknown:
        raise ConfigError(
            f"--panels: no image {', '.join(map(repr, unknown))} in {spec.title} (limit {limit}); "
            f"images: {', '.join(names[:12])}{', ...' if len(names) > 12 else ''}"
        )
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # Fail fast on an unknown / uninstalled model before any slow work. Named and file models are
    # loaded here, once per run, so a weights file changed since an earlier run in this process is
    # never served from the API's in-process model cache.
    runnable: list[ModelSpec] = []
    for model in models:
        if isinstance(model, str) and model == "bicubic":
            runnable.append(model)
        elif isinstance(model, (str, os.PathLike)):
            loaded = load_model(model)
            loaded.model.to(device=torch.device(dev))
            runnable.append(loaded)
        else:
            get_model(model, device=dev)
            runnable.append(model)
    if noise_folder is not None:  # --lr otsr
        lrs, how = otsr_lr([s.hr for s in samples if s.hr is not None], noise_folder, scale=scale, seed=seed)
        samples = [replace(s, lr=lr, lr_source=how) for s, lr in zip(samples, lrs, strict=True)]
    lr_part = f"otsr-seed{seed}" if otsr and seed != 0 else lr_mode
    folders = [None if cache_dir is None else cache_folder(cache_dir, dataset, scale, lr_part, m) for m in methods]
    niqe_note = ""
    want_niqe = niqe or not spec.paired
    if want_niqe:
        niqe_note = niqe_unavailable()
        if niqe_note and not spec.paired:
            raise ConfigError(f"the no-GT benchmark scores NIQE, which is unavailable: {niqe_note}")
        want_niqe = not niqe_note
    crop_border = scale if spec.paired else 0
    rows: dict[str, dict[str, dict[str, float]]] = {s.name: {} for s in samples}
    keep = {s.name for s in samples[:crops]} | set(panels)
    kept: dict[str, dict[str, np.ndarray]] = {name: {} for name in keep}
    n_cached = 0
    for model, label, folder in zip(runnable, labels, folders):
        bar = tqdm(samples, desc=label, unit="img", file=sys.stderr, disable=not progress, leave=False)
        for s in bar:
            hit = _cached_output(folder, s.name) if folder is not None else None
            if hit is not None:
                out, seconds = hit
                n_cached += 1
                want = (s.lr.shape[0] * scale, s.lr.shape[1] * scale, 3)
                if out.shape != want:
                    raise InputFileError(
                        f"{folder / s.name}.png: cached output is {out.shape[1]}×{out.shape[0]}, expected "
                        f"{want[1]}×{want[0]} (a stale cache entry: delete it)"
                    )
            else:
                t0 = time.perf_counter()
                if isinstance(model, str) and model == "bicubic":
                    out = imresize_matlab(s.lr, float(scale))
                else:
                    out = upscale(s.lr, model, tile_size=tile_size, device=dev, outscale=float(scale))
                if dev.startswith("cuda"):
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - t0
                out = np.ascontiguousarray(out)  # as a cached PNG reads back: the metrics sum in the same order
                if folder is not None:
                    _store_output(folder, s.name, out, seconds)
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
    speed = {}
    if speed_size:
        speed = {
            label: upscale_seconds(m, speed_size, device=dev, tile_size=tile_size, bicubic_scale=scale)
            for m, label in zip(runnable, labels)
        }
    lr_sources = sorted({s.lr_source for s in samples})
    result = BenchResult(
        dataset, scale, labels, names, rows, means, hr_niqe, lr_sources, niqe_note, dev,
        speed=speed, speed_size=speed_size, cached=n_cached,
        cache_dir=None if cache_dir is None else str(Path(cache_dir) / f"{dataset}-x{scale}-{lr_part}"),
    )  # fmt: skip
    out_root = Path(out_dir)
    crop_dir = out_root / f"blind_{dataset}_crops"
    crop_files = []
    for s in samples[:crops]:
        panel = crop_panel(s, kept[s.name], rows[s.name], scale, crop_size, spec.paired)
        crop_files.append(write_image(crop_dir / f"{s.name}.png", panel))
    panel_dir = out_root / f"blind_{dataset}_panels"
    panel_files = []
    by_name = {s.name: s for s in samples}
    for name in dict.fromkeys(panels):
        panel = comparison_panel(by_name[name], kept[name], scale, 2 * crop_size)
        panel_files.append(write_image(panel_dir / f"{name}.png", panel))
    result.table = means_table(result)
    md_path = out_root / f"blind_{dataset}.md"
    write_text(md_path, report_markdown(result, command, crop_files, panel_files))
    csv_path = out_root / f"blind_{dataset}.csv"
    write_text(csv_path, per_image_csv(result))
    result.files = [md_path, csv_path, *crop_files, *panel_files]
    result.crop_files, result.panel_files = crop_files, panel_files
    return result
