"""What the jobs of ``optisr serve`` do: a guided upsampling run and a blind upscaling run.

Both take checked requests (:class:`GuidedRequest`, :class:`BlindRequest`; the web form is parsed
in :mod:`optisr.serve.app`) and return the function the job runner calls on its worker thread.
They use the same code paths as the CLI, so results and one-line errors are the CLI's:

* guided: :func:`optisr.cli.guided_runner.process` (read, fit sizes, solve with
  :func:`optisr.guided_upsample` or a baseline, round integer PNGs exactly, write with
  :func:`optisr.io.rasters.write_raster`), then the figures: the result's colour map, the LR
  consistency map ``|D x − s|`` and, with a ground truth, the error map ``|x − truth|``;
* blind: :func:`optisr.upscale` (tile by tile, with progress) on each photo, written with
  :func:`optisr.io.images.write_image`, with 8-bit previews for the before/after slider.

Every file is written inside the job's folder (``out/``), under names made here, never under
an uploaded name that was not sanitised.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optisr.devices import resolve_device
from optisr.errors import InputFileError, ShapeError
from optisr.ops.operators import make_operator, resampling_operator
from optisr.serve.figures import lr_residual, save_colour_map, save_preview, value_range
from optisr.serve.jobs import Job

__all__ = ["BROWSER_IMAGES", "BlindRequest", "GuidedRequest", "blind_work", "guided_work"]

BROWSER_IMAGES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
"""Image types every browser shows as they are (TIFF results get an 8-bit PNG preview)."""


@dataclass(frozen=True)
class GuidedRequest:
    """A checked guided job: uploaded files (inside the job folder) and options (as ``optisr guided``).

    ``mode`` is the fidelity: ``exact`` (D x = s) or ``soft`` (penalty of weight ``lam``);
    ``exclude_outliers``: as ``--exclude-outliers`` (the consistency shown leaves them out too).
    ``guide_filter``: as ``--guide-filter`` (``auto``, ``always``, ``off``).
    ``nonlocal_smoothness``: as ``--nonlocal auto`` (True) / ``off`` (False).
    ``register``: as ``--register auto`` (True) / ``off`` (False).
    """

    guide: Path
    source: Path
    truth: Path | None
    scale: int | None  # None: from the sizes, as optisr guided without --scale
    method: str = "default"
    operator: str = "area"
    mode: str = "exact"
    lam: float | None = None
    sigma: float | None = None
    fit: str | None = None
    exclude_outliers: bool = False
    guide_filter: str = "auto"
    nonlocal_smoothness: bool = True
    register: bool = True


@dataclass(frozen=True)
class BlindRequest:
    """A checked blind job: uploaded photos (inside the job folder), model name, LR tile size."""

    photos: tuple[Path, ...]
    model: str
    tile_size: int = 0


def _line(text: str) -> str:
    """A CLI log line without its ``optisr guided: `` prefix."""
    head = "optisr guided: "
    return text[len(head) :] if text.startswith(head) else text


def guided_work(request: GuidedRequest, device: torch.device | None) -> Callable[[Job], list[dict[str, Any]]]:
    """The job function of one guided run (see the module docstring)."""

    def work(job: Job) -> list[dict[str, Any]]:
        from optisr.cli.guided_plan import OUTPUT_EXTENSIONS
        from optisr.cli.guided_plan import Job as GuidedJob
        from optisr.cli.guided_runner import GUIDE_FILTER_OPTIONS, GuidedOptions, describe_fidelity, process
        from optisr.io.rasters import read_guide, read_raster

        out_dir = job.folder / "out"
        ext = request.source.suffix.lower()
        ext = ext if ext in OUTPUT_EXTENSIONS else ".tif"
        tag = f"x{request.scale}" if request.scale is not None else "hr"
        output = out_dir / f"{request.source.stem}_{tag}{ext}"
        options = GuidedOptions(
            method=request.method, scale=request.scale, operator=request.operator, fidelity=request.mode,
            lam=request.lam, sigma=request.sigma, fit=request.fit, device=device, quiet=True,
            exclude_outliers=request.exclude_outliers,
            guide_filter=GUIDE_FILTER_OPTIONS[request.guide_filter],
            nonlocal_smoothness=request.nonlocal_smoothness,
            register=request.register,
        )  # fmt: skip
        what = f"×{request.scale}" if request.scale is not None else "at the sizes' scale"
        job.report(f"solving {what} with {request.method}", None)
        t0 = time.perf_counter()
        details: dict[str, Any] = {}
        process(GuidedJob(request.guide, request.source, None, output), options, lambda s: job.note(_line(s)), details)
        if details.get("choice") is not None:  # graph methods: what was seen and chosen (guide σ, noise σ, fidelity)
            job.note(describe_fidelity(details["choice"]))
        seconds = time.perf_counter() - t0

        job.report("drawing the figures", 0.9)
        result = read_raster(output)
        x = result.data.astype(np.float64)
        source = read_raster(request.source)
        if request.scale is None:  # no fit without a scale: the whole source, at the sizes' ratio
            s, valid = source.data.astype(np.float64), source.mask
            op = resampling_operator(request.operator, x.shape, s.shape, sigma=request.sigma)
        else:
            h, w = -(-x.shape[0] // request.scale), -(-x.shape[1] // request.scale)
            s, valid = source.data[:h, :w].astype(np.float64), source.mask[:h, :w]  # --crop keeps the top-left
            op = make_operator(request.operator, x.shape, request.scale, sigma=request.sigma)
        guide = read_guide(request.guide)
        numbers: dict[str, Any] = {}
        if request.exclude_outliers:  # the pixels the solve left out (process() hands its mask back)
            kept = details.get("valid")
            if kept is not None and kept.shape == valid.shape:
                valid = valid & kept
            numbers["outliers_left_out"] = int(details.get("outliers", 0))
        lo, hi = value_range(s, valid)
        figures = [
            {"title": "guide", "file": save_preview(out_dir / "fig_guide.png", guide).name},
            {"title": f"source ({s.shape[0]}×{s.shape[1]})",
             "file": save_colour_map(out_dir / "fig_source.png", s, lo, hi, mask=valid).name, "pixelated": True},
            {"title": f"result ({x.shape[0]}×{x.shape[1]})",
             "file": save_colour_map(out_dir / "fig_result.png", x, lo, hi, mask=result.mask).name},
        ]  # fmt: skip
        numbers.update({"range": [lo, hi], "seconds": round(seconds, 3)})
        residual = np.abs(lr_residual(x, s, op.scale, operator=op))
        worst = float(residual[valid].max())
        numbers["max_lr_error"] = worst
        figures.append({
            "title": f"LR consistency |D x − s| (max {worst:.3g})",
            "file": save_colour_map(out_dir / "fig_consistency.png", residual, 0.0, max(worst, 1e-12), mask=valid,
                                    errors=True).name,
            "pixelated": True,
        })  # fmt: skip
        if request.truth is not None:
            truth = read_raster(request.truth)
            if truth.shape != x.shape:
                raise ShapeError(
                    f"{request.truth}: ground truth is {truth.shape[0]}×{truth.shape[1]} but the result is "
                    f"{x.shape[0]}×{x.shape[1]}"
                )
            both = truth.mask & result.mask
            if not both.any():
                raise InputFileError(f"{request.truth}: no valid ground-truth pixel")
            err = np.abs(x - truth.data.astype(np.float64))
            numbers["mae"] = float(err[both].mean())
            numbers["rmse"] = float(np.sqrt((err[both] ** 2).mean()))
            top = value_range(err, both)[1]
            figures.append({
                "title": f"error |x − truth| (MAE {numbers['mae']:.3g}, RMSE {numbers['rmse']:.3g})",
                "file": save_colour_map(out_dir / "fig_error.png", err, 0.0, top, mask=both, errors=True).name,
            })  # fmt: skip
        return [{"name": request.source.name, "download": output.name, "figures": figures, "numbers": numbers}]

    return work


def blind_work(request: BlindRequest, device: torch.device | None) -> Callable[[Job], list[dict[str, Any]]]:
    """The job function of one blind run over one or more photos (see the module docstring).

    A photo that fails gives a result entry with its one-line ``error``; the others go on (as
    ``optisr upscale`` does with a folder). The job fails only when the model cannot be loaded
    or every photo failed.
    """

    def work(job: Job) -> list[dict[str, Any]]:
        from optisr.blind.api import get_model, upscale
        from optisr.blind.tiling import count_tiles, min_tile_size
        from optisr.cli.main import describe_error
        from optisr.io.images import read_image, write_image

        job.report(f"loading {request.model}", None)
        resolved = resolve_device(device, what="device")  # None: CUDA when available, as the CLI's "auto"
        net, scale = get_model(request.model, device=resolved)
        multiple = int(getattr(net, "size_multiple", 1))
        tile = request.tile_size
        if 0 < tile < min_tile_size(multiple):
            job.note(f"tile size {tile} raised to {min_tile_size(multiple)} (the smallest tile)")
            tile = min_tile_size(multiple)

        job.report("reading the photos", 0.0)
        images: list[np.ndarray | Exception] = []
        for p in request.photos:
            try:
                images.append(read_image(p))
            except Exception as exc:  # reported per photo below, like optisr upscale with a folder
                images.append(exc)
        sizes = [im.shape[:2] for im in images if isinstance(im, np.ndarray)]
        total = sum(count_tiles(int(h), int(w), tile, multiple) for h, w in sizes)
        done = 0

        def tick(_: int) -> None:
            nonlocal done
            done += 1
            job.report(f"upscaling: tile {done} of {total}", done / max(total, 1))

        out_dir = job.folder / "out"
        results: list[dict[str, Any]] = []
        first_error: Exception | None = None
        for i, (path, img) in enumerate(zip(request.photos, images)):
            stem = f"{i + 1:02d}_{path.stem}"
            try:
                if isinstance(img, Exception):
                    raise img
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    out = upscale(img, net, tile_size=tile, device=resolved, progress=tick)
                for w in caught:
                    job.note(f"{path.name}: {str(w.message).splitlines()[0]}")
                has_alpha = img.ndim == 3 and img.shape[2] in (2, 4)
                ext = path.suffix.lower()
                if has_alpha and ext in (".jpg", ".jpeg", ".bmp"):
                    ext = ".png"
                target = out_dir / f"{path.stem}_x{scale}{ext}"
                if target.exists():  # two photos of the same name
                    target = out_dir / f"{stem}_x{scale}{ext}"
                write_image(target, out, overwrite=False)
                before = save_preview(out_dir / f"{stem}_before.png", img)
                after = target if ext in BROWSER_IMAGES and out.dtype == np.uint8 else None
                if after is None:
                    after = save_preview(out_dir / f"{stem}_after.png", out)
            except Exception as exc:
                line = describe_error(exc)
                if line is None:
                    raise
                first_error = first_error or exc
                results.append({"name": path.name, "error": line})
                continue
            results.append({
                "name": path.name, "download": target.name, "before": before.name, "after": after.name,
                "size_in": list(img.shape[:2]), "size_out": list(out.shape[:2]),
            })  # fmt: skip
        if first_error is not None and all("error" in r for r in results):
            raise first_error
        return results

    return work
