"""``optisr bench guided``: guided depth SR quality tables under the two published protocols.

Examples::

    optisr bench guided --dataset middlebury30 --data-dir ../shared/data/depth_lu2014_middlebury30
    optisr bench guided --dataset rgbdd --data-dir ../shared/data/depth_rgbdd_test405 --limit 60
    optisr bench guided --dataset middlebury2014 --data-dir DIR --protocol B --scales 4 8 16 32
    optisr bench guided --dataset rgbdd-real --data-dir ../shared/data/depth_rgbdd_realscene3 --methods model

    optisr bench guided --dataset middlebury2005 --data-dir ../shared/data/depth_middlebury2005_6scenes \
        --protocol noisy --noise-sigma 6 --scales 2 4 8 16

Protocols (see ``research/anchors.md`` §1.1; their numbers are not comparable):

* **A** (DKN/FDSR/DCTNet line): the HR ground truth is cropped to a multiple of the scale
  (:func:`~optisr.metrics.depth.mod_crop`), the LR input is the ``bicubic`` operator (PIL's
  antialiased bicubic on the float image, computed in float64 and stored as float32, as Pillow's
  ``F`` mode does), and the score is the per-image RMSE in the dataset's reporting unit
  (``report_scale``), masked where the ground truth is invalid, averaged over images.
* **B** (LGR/DADA line): non-overlapping ``--tile-size``² crops from the origin are the samples; the LR
  input of each crop is the NaN-aware ``area`` operator (block mean over valid pixels, blocks
  without one are invalid); the scores are masked MSE (cm²) and MAE (cm) over batches of 8 tiles
  (:func:`~optisr.metrics.depth.protocol_b_errors`).
* **NOISY** (``--protocol noisy``; a depth sensor's noisy source): as protocol A, the HR ground truth
  is cropped to a multiple of the scale, but the LR input is the ``area`` operator (NaN-aware block
  average; ``--noise-operator bicubic`` for PIL-exact bicubic) plus i.i.d. Gaussian noise of std
  ``--noise-sigma`` (default 6) in the reporting unit (0–255 for the Middlebury disparity sets),
  drawn per image and scale from a fixed seed (``--noise-seed``, default 0; see
  :class:`~optisr.bench.guided_protocols.NoiseSpec`), so every method sees the same LR. The score
  is protocol A's per-image RMSE on the full image (no border crop), averaged over images. Graph
  methods solve with the same operator as made the LR. Default methods: bicubic, guided filter,
  JBU, the fast bilateral solver ``fbs``, the exact colour graph, the shipped model (exact) and the
  soft colour graph (λ = 1); default scales 2 4 8 16.

**Real LR** (``--lr real``; the default for datasets whose loader sets ``real_lr``, i.e. the
RGB-D-D real-scene triplets ``rgbdd-real``): the LR input is the dataset's own LR depth instead of a
synthesised one. Its size need not be an integer fraction of the HR (RGB-D-D: 144×192 phone ToF
for a 384×512 HR, ratio 8/3), so it is first resampled onto the ×s grid ``(H/s, W/s)`` with the
same PIL-exact antialiased bicubic (kernel a = −0.5, PIL's pixel-centre geometry, float64 maths,
float32 result) as the ``bicubic`` operator, and every method then solves an ordinary ×s task
with that operator (s = 4 by default, as SGNet/SPFNet treat the real branch). ``bicubic-raw``
is the direct bicubic resize of the unresampled LR to the HR size, the natural reference. The
score is protocol A's RMSE on the full HR (no crop; its size must be a multiple of s), also
listed per image. Nothing is tuned on these sets.

Every method is also scored on LR consistency: the RMSE of ``D x̂ − s`` over valid LR pixels,
with the protocol's own operator ``D`` and in the same unit as the main metric, averaged over
images (A) or tiles (B). The ``color`` method (the colour-affinity graph of
:func:`optisr.guided_upsample`) is solved with that same operator, so it is consistent to solver
precision; the classic baselines are not. With real LR, consistency is measured against the
resampled (H/s, W/s) LR; a real sensor's LR is not a downsampled ground truth, so exact
consistency with it does not imply a low error.

Output: ``OUT/<stem>.md`` (the tables, also printed to stdout) and, for the first ``--figures``
images, ``OUT/figures/<stem>_<image>_x<scale>.png`` panels (guide | LR | methods | |error| maps;
maps share one colour scale, errors another), where ``<stem>`` is ``<dataset>_protocol<P>``, or
``<dataset>_reallr_protocol<P>`` / ``<dataset>_synthlr_protocol<P>`` when ``--lr`` overrides the dataset's default LR
source. Files are written atomically. Progress goes to stderr.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optisr.bench.guided_protocols import (
    LR_SOURCES,
    NOISY,
    ORACLE,
    PROTOCOLS,
    PUBLISHED_BORDER,
    RAW_BICUBIC,
    REAL_GRIDS,
    Case,
    NoiseSpec,
    ProtocolBStream,
    consistency_rmse,
    lr_source,
    oracle_weights,
    report_units,
    resample_bicubic,
    scored_regions,
)
from optisr.bench.guided_report import BenchResult, format_markdown, write_figure
from optisr.bench.report import finite_mean, safe_name, write_text
from optisr.devices import resolve_device
from optisr.errors import ConfigError, ConvergenceWarning, InputFileError
from optisr.guided.baselines import fill_nearest
from optisr.guided.methods import METHODS as GUIDED_METHODS
from optisr.guided.methods import MODEL_SUFFIX, VARIANTS, closest_method, get_method, is_graph_method, upsample_with
from optisr.guided.model import SHIPPED_MODELS, default_model_path, guided_model_path, load_guided_model
from optisr.metrics.depth import protocol_a_rmse

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_NOISY_METHODS",
    "DEFAULT_NOISY_SCALES",
    "DEFAULT_REAL_METHODS",
    "DEFAULT_REAL_SCALES",
    "DEFAULT_SCALES",
    "LR_SOURCES",
    "METHODS",
    "NOISY",
    "PROTOCOLS",
    "BenchResult",
    "NoiseSpec",
    "bench_to_folder",
    "benchmark",
    "check_options",
]

METHODS = (*(m for m in GUIDED_METHODS if m != "default"), *VARIANTS, RAW_BICUBIC, ORACLE)
"""Methods the harness can run (:mod:`optisr.guided.methods` without ``default``, which would silently
fall back to ``color``): ``color`` is the exact colour-affinity graph, ``model`` the shipped learned
graph (any ``*.safetensors`` guided model file is accepted too), the baselines, the graph variants
(``color-soft``, ``model-soft``: the soft data term with λ = 1) and ``bicubic-raw`` (real LR only),
bicubic straight from the unresampled LR to the HR size."""

DEFAULT_METHODS = ("bicubic", "color", "guided-filter", "jbu")
DEFAULT_SCALES = (4, 8, 16)
DEFAULT_REAL_METHODS = ("bicubic", RAW_BICUBIC, "color", "guided-filter", "jbu")
DEFAULT_REAL_SCALES = (4,)  # the integer scale above RGB-D-D's 8/3 (SGNet/SPFNet's "×4 real" task)
DEFAULT_NOISY_METHODS = ("bicubic", "guided-filter", "jbu", "fbs", "color", "model", "color-soft")
"""The noisy protocol's defaults (``model`` is left out where no model is shipped)."""
DEFAULT_NOISY_SCALES = (2, 4, 8, 16)


def _needs_shipped_model(name: str) -> bool:
    """Whether a method name solves with the shipped model (``model``, ``model-soft``)."""
    entry = get_method(name) if name in METHODS and name not in (RAW_BICUBIC, ORACLE) else None
    return entry is not None and entry.weights == "model"


def check_options(
    scales: Sequence[int] | None,
    methods: Sequence[str] | None,
    protocol: str,
    tile_size: int,
    real: bool | None = None,
) -> tuple[list[int], list[str]]:
    """Validate and normalise scales and method names; raise ConfigError with the fix.

    ``tile_size`` is protocol B's tile (HR px, a multiple of every scale).

    ``None`` scales / methods mean the defaults of the LR source; ``real`` is whether the LR input
    is the dataset's own (None: not known yet, so the checks that depend on it are skipped).
    """
    noisy = str(protocol).upper() == NOISY
    if scales is None:
        scales = DEFAULT_NOISY_SCALES if noisy else DEFAULT_REAL_SCALES if real else DEFAULT_SCALES
    if methods is None:
        methods = DEFAULT_NOISY_METHODS if noisy else DEFAULT_REAL_METHODS if real else DEFAULT_METHODS
        if noisy and not default_model_path().is_file():
            methods = [m for m in methods if not _needs_shipped_model(m)]
    if not scales:
        raise ConfigError("--scales needs at least one scale, e.g. --scales 4 8 16")
    bad = [s for s in scales if isinstance(s, bool) or int(s) != s or not 1 <= int(s) <= 64]
    if bad:
        raise ConfigError(f"--scales must be integers in 1..64; got {bad}")
    scales = list(dict.fromkeys(int(s) for s in scales))
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    if real and protocol != "A":
        raise ConfigError(
            "real LR input (--lr real, or a real-LR dataset such as rgbdd-real) is scored under protocol A only"
        )
    if protocol == "B":
        if tile_size < 1:
            raise ConfigError(f"--tile-size must be >= 1; got {tile_size}")
        odd = [s for s in scales if tile_size % s]
        if odd:
            raise ConfigError(f"--tile-size {tile_size} must be a multiple of every scale for protocol B; not of {odd}")
    if not methods:
        raise ConfigError(f"--methods needs at least one method from {', '.join(METHODS)}")
    names = []
    for m in methods:
        if m.endswith(MODEL_SUFFIX):  # a trained guided model file
            if not Path(m).is_file():
                raise ConfigError(f"{m}: guided model file not found")
            names.append(m)
            continue
        key = m.strip().lower().replace("_", "-")
        if key not in METHODS:
            close = closest_method(key, METHODS)
            hint = f" (did you mean {close!r}?)" if close else ""
            raise ConfigError(f"unknown method {m!r}{hint}; valid methods: {', '.join(METHODS)}")
        if _needs_shipped_model(key) and not default_model_path().is_file():
            raise ConfigError(f"method {key!r}: no default guided model is shipped in this install")
        names.append(key)
    names = list(dict.fromkeys(names))
    if real is False and RAW_BICUBIC in names:
        raise ConfigError(f"method {RAW_BICUBIC!r} needs real LR input (--lr real); drop it from --methods")
    return scales, names


def _graph_input(case: Case, scale: int, native: bool) -> tuple[np.ndarray, int | None]:
    """(source with NaN holes, scale) a graph method solves: the real LR on its own grid when ``native``
    and the case has one (scale None: the sizes' ratio), else ``case.lr`` at ×``scale``."""
    if native and case.raw_lr is not None and case.raw_lr_valid is not None:
        return np.where(case.raw_lr_valid, case.raw_lr, np.nan).astype(np.float32), None
    return np.where(case.lr_valid, case.lr, np.nan).astype(np.float32), scale


def _method_fn(
    name: str, operator: str, device: torch.device | None, to_255: float | None = None, native: bool = False
) -> Callable[[Case, int], np.ndarray]:
    """``f(case, scale) -> (H, W)`` prediction for a method name (from ``case.lr`` and ``case.guide``;
    the oracle also reads ``case.depth``, with ``to_255`` its factor to 0–255 units, see
    :func:`~optisr.bench.guided_protocols.oracle_weights`). ``native``: graph methods and the oracle
    solve against a real-LR case's own LR grid (:func:`_graph_input`)."""
    if name == ORACLE:

        def oracle(case: Case, scale: int) -> np.ndarray:
            from optisr.guided.api import guided_upsample

            w = oracle_weights(case.depth, case.valid, to_255)
            source, s = _graph_input(case, scale, native)
            return guided_upsample(source, case.guide, s, weights=w, fidelity="exact", operator=operator, device=device)

        return oracle
    if name == RAW_BICUBIC:

        def raw_bicubic(case: Case, scale: int) -> np.ndarray:
            if case.raw_lr is None or case.raw_lr_valid is None:
                raise ConfigError(f"method {RAW_BICUBIC!r} needs real LR input (--lr real)")
            if not case.raw_lr_valid.any():
                raise InputFileError("the real LR depth has no valid pixel")
            src = fill_nearest(case.raw_lr.astype(np.float64), case.raw_lr_valid)  # as the bicubic baseline
            return resample_bicubic(src, None, case.depth.shape)[0]

        return raw_bicubic
    if is_graph_method(name):
        model = None
        weights = get_method(name).weights
        if weights == "model" or weights in SHIPPED_MODELS or name.endswith(MODEL_SUFFIX):  # load once, not per image
            model, _ = load_guided_model(guided_model_path("default" if weights == "model" else name))

        def graph(case: Case, scale: int) -> np.ndarray:
            source, s = _graph_input(case, scale, native)
            return upsample_with(name, source, case.guide, s, model=model, operator=operator, device=device)

        return graph

    def baseline(case: Case, scale: int) -> np.ndarray:
        return upsample_with(name, case.lr, case.guide, scale, mask=case.lr_valid)

    return baseline


def benchmark(
    dataset: Any,
    *,
    scales: Sequence[int] | None = None,
    methods: Sequence[str] | None = None,
    protocol: str = "A",
    lr: str = "auto",
    limit: int | None = None,
    tile_size: int = 256,
    figures: int = 0,
    figure_dir: str | Path | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    noise: NoiseSpec | None = None,
    real_grid: str = "native",
) -> BenchResult:
    """Run every method at every scale on the first ``limit`` images of ``dataset``.

    Args:
        dataset: a :class:`~optisr.data.PairedDataset` (or any indexable object of samples with
            ``guide``, ``depth``, ``mask``, ``name``, and the attributes ``units``,
            ``report_units``, ``report_scale``).
        scales: integer scales (None: 4 8 16; 4 with real LR; 2 4 8 16 for the noisy protocol).
        methods: names from :data:`METHODS` (None: the defaults of the protocol and LR source).
        protocol: ``"A"``, ``"B"`` or ``"NOISY"`` (see the module docstring).
        lr: one of :data:`LR_SOURCES`: ``"real"`` scores the dataset's own LR depth (``Sample.lr_depth``)
            resampled to the ×s grid (protocol A only), ``"synthetic"`` makes the LR from the ground truth,
            ``"auto"`` follows the dataset's ``real_lr`` flag.
        limit: evaluate only the first ``limit`` images (None: all).
        tile_size: protocol B tile size, HR px.
        figures: write panels for the first ``figures`` images into ``figure_dir``.
        figure_dir: folder of the panels (required when ``figures > 0``).
        progress: show a tqdm bar on stderr.
        device: where the graph methods solve (``"auto"``: CUDA when available; None: the CPU);
            the baselines always run on the CPU.
        noise: the noisy protocol's LR noise (None: :class:`NoiseSpec` defaults, σ = 6, ``area``,
            seed 0); a ConfigError with another protocol.
        real_grid: one of :data:`REAL_GRIDS`; with real LR, ``"native"`` (default) has the graph
            methods and the oracle solve against the sensor's LR on its own grid (what ``optisr guided``
            does with such files), ``"scale"`` gives them the LR resampled to the ×s grid like the baselines.
    Returns:
        :class:`BenchResult`.
    Raises:
        ConfigError: bad options. InputFileError: empty dataset, or real LR asked of a sample without one.
        ShapeError: real LR whose view or size does not fit the HR (see :func:`real_lr_case`).
    """
    protocol = protocol.upper()
    if noise is not None and protocol != NOISY:
        raise ConfigError(f"noise options apply to the noisy protocol (--protocol noisy), not protocol {protocol}")
    if protocol == NOISY and noise is None:
        noise = NoiseSpec()
    real, lr_is_default = lr_source(dataset, lr, protocol)
    scales, methods = check_options(scales, methods, protocol, tile_size, real)
    if real_grid not in REAL_GRIDS:
        raise ConfigError(f"real_grid must be one of {', '.join(REAL_GRIDS)}; got {real_grid!r}")
    if real_grid == "scale" and not real:
        raise ConfigError("--real-grid applies to real LR input (--lr real, or rgbdd-real); drop it")
    native = real and real_grid == "native"
    dev = None if device is None else resolve_device(device, what="device")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1; got {limit}")
    if figures < 0:
        raise ConfigError(f"--figures must be >= 0; got {figures}")
    if figures and figure_dir is None:
        raise ConfigError("figures > 0 needs figure_dir, the folder to write them to")
    n_available = len(dataset)
    if n_available == 0:
        raise InputFileError(f"{getattr(dataset, 'root', 'dataset')}: the dataset holds no image")
    n = n_available if limit is None else min(limit, n_available)
    kind = noise.operator if noise is not None else PROTOCOLS[protocol]
    unit_scale, unit, b_units = report_units(dataset, protocol)
    name = str(getattr(dataset, "name", "dataset"))
    lr_kind = "real" if real else "synthetic"
    tag = "" if lr_is_default else ("_reallr" if real else "_synthlr")  # only when --lr overrides the dataset
    stem = f"{safe_name(name)}{tag}_protocol{protocol}"
    if noise is not None:
        stem = f"{safe_name(name)}_noisy{noise.sigma:g}_{noise.operator}"
    res = BenchResult(name, protocol, kind, unit, scales, methods, n, n_available, lr=lr_kind, stem=stem, noise=noise)
    res.real_grid = real_grid
    if real and real_grid == "scale":
        res.stem += "_scalegrid"
    if protocol == "B" and b_units is None:
        res.notes.append(
            f"the depth unit {unit!r} is not metric, so MSE and MAE are in {unit}² and {unit}, not cm² and cm"
        )
    # the oracle's μ is in 0–255 depth units: exact for 8-bit disparity sets, else each image's range
    to_255 = unit_scale if unit == "0-255" else None
    fns = {m: _method_fn(m, kind, dev, to_255, native) for m in methods}
    solved_native = {m: native and (m == ORACLE or is_graph_method(m)) for m in methods}
    if ORACLE in methods:
        res.notes.append(
            "`oracle`: the exact graph layer with edge weights from the ground-truth HR depth, "
            "w = 0.001 + 0.999·exp(−ΔD²/μ²), μ = 1 in 0–255 units"
            + ("" if to_255 is not None else " (each image's valid depth range mapped onto 0–255)")
            + ", 4-connected: the layer's ceiling, not a method (it reads the answer)"
        )
    per_rmse: dict[str, dict[int, list[float]]] = {m: {s: [] for s in scales} for m in methods}
    per_rmse_crop: dict[str, dict[int, list[float]]] = {m: {s: [] for s in scales} for m in methods}
    per_cons: dict[str, dict[int, list[float]]] = {m: {s: [] for s in scales} for m in methods}
    per_time: dict[str, dict[int, list[float]]] = {m: {s: [] for s in scales} for m in methods}  # seconds
    streams = {m: {s: ProtocolBStream(b_units or "cm") for s in scales} for m in methods}
    unconverged = {m: {s: 0 for s in scales} for m in methods}
    res.n_regions = {s: 0 for s in scales}
    scored_as_a = protocol in ("A", NOISY)  # per-image RMSE
    res.image_rmse = {s: {} for s in scales} if scored_as_a else {}
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        tqdm = None
    indices: Any = range(n)
    if progress and tqdm is not None:
        indices = tqdm(indices, desc=f"{name} protocol {protocol}", unit="img", file=sys.stderr)
    for index in indices:
        sample = dataset[index]
        if getattr(sample, "lr_depth", None) is not None and index == 0 and not real:
            res.notes.append(
                "the dataset ships LR depth; this run ignores it and synthesises the LR input (--lr real uses it)"
            )
        for scale in scales:
            cases, covered = scored_regions(
                sample, scale, protocol, tile_size, real, noise=noise, image_index=index, unit_scale=unit_scale
            )
            res.n_regions[scale] += len(cases)
            if not cases:
                continue
            preds: dict[str, list[np.ndarray]] = {m: [] for m in methods}
            for case in cases:
                for m in methods:
                    t0 = time.perf_counter()
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        pred = np.asarray(fns[m](case, scale), dtype=np.float64)
                    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
                        unconverged[m][scale] += 1
                    per_time[m][scale].append(time.perf_counter() - t0)
                    per_cons[m][scale].append(unit_scale * consistency_rmse(pred, case, kind, scale, solved_native[m]))
                    if scored_as_a:
                        score = protocol_a_rmse(pred, case.depth, case.valid, report_scale=unit_scale)
                        per_rmse[m][scale].append(score)
                        if 2 * PUBLISHED_BORDER < min(case.depth.shape):
                            per_rmse_crop[m][scale].append(
                                protocol_a_rmse(
                                    pred, case.depth, case.valid, report_scale=unit_scale, border=PUBLISHED_BORDER
                                )
                            )
                        res.image_rmse[scale].setdefault(str(sample.name), {})[m] = score
                    else:
                        streams[m][scale].add(pred, case.depth, case.valid)
                    if index < figures:
                        preds[m].append(pred.astype(np.float32))
            if index < figures:
                assert figure_dir is not None  # figures > 0 needs it (checked above)
                path = Path(figure_dir) / f"{stem}_{safe_name(sample.name)}_x{scale}.png"
                write_figure(path, cases, preds, covered, scale)
                res.figures.append(path)
    region = "image" if scored_as_a else "tile"
    if real:
        res.notes += _real_lr_notes(dataset, n)
    if protocol == "B" and not any(res.n_regions.values()):
        res.notes.append(
            f"no image is at least {tile_size}×{tile_size}, so no tile was scored; try a smaller --tile-size"
        )
    for m in methods:
        for s, count in unconverged[m].items():
            if count:
                res.notes.append(f"{m} ×{s}: the solver stopped before its tolerance on {count} {region}(s)")
        res.consistency[m] = {s: finite_mean(per_cons[m][s]) for s in scales}
        res.seconds[m] = {s: finite_mean(per_time[m][s]) for s in scales}
        if scored_as_a:
            res.rmse[m] = {s: finite_mean(per_rmse[m][s]) for s in scales}
            res.rmse_cropped[m] = {s: finite_mean(per_rmse_crop[m][s]) for s in scales}
        else:
            pairs = {s: streams[m][s].result() for s in scales}
            res.mse[m] = {s: pairs[s][0] for s in scales}
            res.mae[m] = {s: pairs[s][1] for s in scales}
    return res


def _real_lr_notes(dataset: Any, n: int) -> list[str]:
    """Report notes of a real-LR run: the consistency caveat and the dataset's published anchors."""
    notes = [
        "real LR is not a downsampled ground truth: exact consistency with it does not imply a low error, "
        "and the LR consistency column measures consistency with the resampled LR, not with the sensor's LR"
    ]
    total = getattr(dataset, "expected_count", None)
    for ref in getattr(dataset, "published", ()):
        if total and n < total:
            notes.append(f"published reference: {ref}; not comparable: {n} of {total} scenes evaluated here")
        else:
            notes.append(f"published reference: {ref}; not necessarily the same protocol")
    return notes


def bench_to_folder(
    dataset_name: str,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    scales: Sequence[int] | None = None,
    methods: Sequence[str] | None = None,
    protocol: str = "A",
    lr: str = "auto",
    limit: int | None = None,
    tile_size: int = 256,
    figures: int = 3,
    threads: int = 1,
    progress: bool = True,
    device: str | torch.device | None = "auto",
    command: str | None = None,
    noise: NoiseSpec | None = None,
    real_grid: str = "native",
) -> tuple[BenchResult, Path, str]:
    """Load a dataset by name, run :func:`benchmark`, write ``OUT/<stem>.md`` and the figures.

    ``threads``: torch CPU threads during the run (0 keeps torch's setting; restored afterwards).
    ``command`` is recorded in the report; ``noise``: the noisy protocol's LR noise (see :func:`benchmark`).
    Returns (result, report path, report markdown).
    """
    from optisr.data import get_dataset

    protocol = str(protocol).upper()
    check_options(scales, methods, protocol, tile_size)
    if threads < 0:
        raise ConfigError(f"--threads must be >= 0 (0 = torch's default); got {threads}")
    dataset = get_dataset(dataset_name, data_dir)
    real, _ = lr_source(dataset, lr, protocol)
    check_options(scales, methods, protocol, tile_size, real)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputFileError(f"{out}: --out-dir exists and is not a folder")
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        res = benchmark(
            dataset, scales=scales, methods=methods, protocol=protocol, lr=lr, limit=limit, tile_size=tile_size,
            figures=figures, figure_dir=out / "figures", progress=progress, device=device, noise=noise,
            real_grid=real_grid,
        )  # fmt: skip
        text = format_markdown(res, command=command, data_dir=str(data_dir))
    finally:
        torch.set_num_threads(previous)
    report = write_text(out / f"{res.stem}.md", text + "\n")
    return res, report, text
