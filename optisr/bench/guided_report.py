"""The report of ``optisr bench guided``: the result of a run, its markdown tables and its figures."""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from optisr.bench.guided_protocols import NOISY, PROTOCOL_B_BATCH, RAW_BICUBIC, Case, NoiseSpec
from optisr.bench.report import format_number, markdown_table
from optisr.io.images import write_image
from optisr.version import __version__
from optisr.viz.panels import depth_panel

__all__ = ["BenchResult", "format_markdown", "write_figure"]


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
        rmse: protocol A: method -> scale -> mean per-image RMSE on the full image.
        rmse_cropped: protocol A: the same with a 6-px HR border cropped first, as SGNet's and
            DCTNet's test code do (the headline for comparisons with their published tables).
        image_rmse: protocol A: scale -> image name -> method -> RMSE (the per-image scores).
        mse, mae: protocol B: method -> scale -> batch-mean MSE / MAE.
        consistency: method -> scale -> mean LR-consistency RMSE.
        seconds: method -> scale -> mean run time per region, seconds.
        figures: written figure paths.
        notes: remarks that belong in the report.
        noise: the noisy protocol's LR noise; None for the other protocols.
        real_grid: real LR only: ``"native"`` (graph methods solve against the sensor's LR on its own
            grid, at the sizes' ratio) or ``"scale"`` (every method gets the LR resampled to the ×s grid).
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
    rmse_cropped: dict[str, dict[int, float]] = field(default_factory=dict)
    image_rmse: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    mse: dict[str, dict[int, float]] = field(default_factory=dict)
    mae: dict[str, dict[int, float]] = field(default_factory=dict)
    consistency: dict[str, dict[int, float]] = field(default_factory=dict)
    seconds: dict[str, dict[int, float]] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    noise: NoiseSpec | None = None
    real_grid: str = "native"


def write_figure(
    path: Path, cases: list[Case], preds: dict[str, list[np.ndarray]], covered: tuple[int, int], scale: int
) -> None:
    """Stitch the regions of one image back together and write the comparison panel (PNG, atomically).

    Args:
        path: the PNG to write.
        cases: the scored regions of one image (:func:`~optisr.bench.guided_protocols.scored_regions`).
        preds: method -> one (h, w) prediction per case, in the order of ``cases``.
        covered: (H, W) of the image part the cases cover.
        scale: the upsampling scale.
    """
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
    panel = depth_panel(guide, {f"LR x{scale}": lr, **maps}, reference=depth, error_of=list(preds), valid=valid)
    write_image(path, np.ascontiguousarray(panel))


def _table(title: str, rows: dict[str, dict[int, float]], scales: list[int], digits: int = 2) -> list[str]:
    cells = [
        [m] + [format_number(by_scale[s], digits, small_in_sci=True) for s in scales] for m, by_scale in rows.items()
    ]
    return [f"### {title}", "", *markdown_table(["method"] + [f"×{s}" for s in scales], cells), ""]


def _image_table(
    title: str,
    by_image: dict[str, dict[str, float]],
    methods: list[str],
    means: dict[str, dict[int, float]],
    scale: int,
) -> list[str]:
    """Per-image table (image × method) with a last row of the means."""
    cells = [[image] + [format_number(scores.get(m, math.nan), small_in_sci=True) for m in methods]
             for image, scores in by_image.items()]  # fmt: skip
    cells.append(["**mean**"] + [format_number(means[m][scale], small_in_sci=True) for m in methods])
    return [f"### {title}", "", *markdown_table(["image", *methods], cells), ""]


def format_markdown(res: BenchResult, *, command: str | None = None, data_dir: str | None = None) -> str:
    """The report of a :class:`BenchResult` as markdown (tables: method × scale)."""
    per_image = res.protocol in ("A", NOISY)
    region = "image" if per_image else "tile"
    if res.noise is not None:
        title = f"noisy protocol (σ = {res.noise.sigma:g} in {res.units}, {res.noise.operator} LR)"
    else:
        title = f"protocol {res.protocol}"
    lines = [f"# Guided depth SR benchmark: {res.dataset}, {title}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines.append(f"- data: {data_dir or '(in memory)'}; {res.n_images} of {res.n_available} images")
    counts = ", ".join(f"×{s}: {res.n_regions.get(s, 0)}" for s in res.scales)
    if res.lr == "real":
        lines.append(
            "- LR input: the dataset's own (real) LR depth, resampled onto the ×s grid (H/s × W/s) with PIL-exact "
            "antialiased bicubic (the `bicubic` operator's kernel and geometry, float64 maths, float32 result); "
            + (
                "the baselines then solve a ×s task; the graph methods (and the oracle) solve against the "
                "sensor's LR on its own grid instead, with the `bicubic` operator at the sizes' ratio "
                "(`optisr.guided_upsample(source, guide, scale=None)`, `--real-grid native`). "
                if res.real_grid == "native"
                else "every method then solves a ×s task with the `bicubic` operator (`--real-grid scale`). "
            )
            + f"`{RAW_BICUBIC}`: direct PIL bicubic of the unresampled LR to the HR size"
        )
        lines.append(
            f"- metric: RMSE in {res.units}, over pixels with valid ground truth (GT > 0), on the full HR "
            "(no crop), per image and averaged over images"
        )
    elif res.noise is not None:
        op = "NaN-aware block mean" if res.noise.operator == "area" else "PIL-exact antialiased bicubic"
        lines.append(
            f"- LR input: HR ground truth cropped to a multiple of the scale, downsampled with the "
            f"`{res.noise.operator}` operator ({op}, float64 maths), plus i.i.d. Gaussian noise of std "
            f"{res.noise.sigma:g} (in {res.units}) on valid LR pixels, drawn from "
            f"`numpy.random.default_rng(optisr.rng.derive_seed({res.noise.seed}, image index, scale))`; float32"
        )
        lines.append(
            f"- metric: RMSE in {res.units}, over pixels with valid ground truth, per image, averaged over "
            "images; with a 6-px HR border cropped (the published code's convention) and on the full image"
        )
    elif res.protocol == "A":
        lines.append(
            "- LR input: HR ground truth cropped to a multiple of the scale, downsampled with the `bicubic` "
            "operator (PIL-exact antialiased bicubic, float64 maths, float32 result; NaN-aware where the "
            "ground truth is invalid)"
        )
        lines.append(
            f"- metric: RMSE in {res.units}, over pixels with valid ground truth, per image, averaged over "
            "images; with a 6-px HR border cropped (SGNet's and DCTNet's test code) and on the full image"
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
        + (
            "; s = the LR each method solved against (the resampled H/s × W/s LR, or the sensor's own for "
            "graph methods with `--real-grid native`)"
            if res.lr == "real"
            else ""
        )
        + ("; s = the noisy LR, so an exactly consistent method keeps its noise" if res.noise is not None else "")
    )
    lines.append(
        "- `color`: colour-affinity graph, exact consistency with the protocol operator "
        f"(`optisr.guided_upsample(..., operator={res.operator!r}, weights='color')`), float32; "
        "baselines: `optisr.guided.baselines` defaults (`fbs`: optisr's own fast bilateral solver on the "
        "bicubic upsampling); `model`: the shipped learned graph, exact; `-soft` variants: the soft data "
        "term, λ = 1; the graph methods see the guide through its noise-scaled bilateral pre-filter "
        "(`guide_filter=True`, the default). No parameter was tuned on this data."
    )
    lines.append(
        f"- optisr {__version__}, torch {torch.__version__}, numpy {np.__version__}, "
        f"{platform.machine()} CPU, {torch.get_num_threads()} torch thread(s), {time.strftime('%Y-%m-%d')}"
    )
    lines += [f"- note: {n}" for n in res.notes]
    lines.append("")
    if per_image and res.rmse_cropped:
        lines += _table(
            f"RMSE ({res.units}), 6-px border cropped (as SGNet/DCTNet's test code; the headline) ↓",
            res.rmse_cropped,
            res.scales,
        )
    if per_image:
        lines += _table(f"RMSE ({res.units}), full image ↓", res.rmse, res.scales)
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
