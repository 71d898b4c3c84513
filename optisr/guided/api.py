"""``optisr.guided_upsample``: the public entry point of guided super-resolution."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Union, overload

import numpy as np
import torch
from torch import Tensor

from optisr.errors import ConfigError, ShapeError
from optisr.guided.fidelity import (
    FIDELITIES,
    FLOOR_STEPS,
    OUTLIER_MAX_SCALE,
    FidelityChoice,
    choose_fidelity,
    discrepancy_search,
    find_outliers,
    floor_search,
    hutchinson_probe,
    lr_risk,
)
from optisr.guided.graph_weights import COLOR_CONNECT, COLOR_FLOOR, COLOR_MU, color_weights, resolve_weights
from optisr.guided.guide_filter import filter_guide, noisy_guide_sigma
from optisr.guided.guides import guide_tensor_to_unit, guide_to_unit
from optisr.guided.layer import graph_solve
from optisr.guided.nonlocal_term import bilateral_laplacian, nonlocal_kappa
from optisr.guided.refine import REFINED_FIDELITIES, Refinement, check_refine, refine_solve, resolve_refinement
from optisr.guided.registration import (
    ACCEPT_RATIO,
    CV_CROP_HR,
    EDGE_CROP_HR,
    MIN_LR_SIDE,
    central_slices,
    edge_shift,
    search_radius,
    shift_image,
    source_on_guide_grid,
)
from optisr.guided.registration import (
    MAX_SCALE as MAX_REGISTER_SCALE,
)
from optisr.guided.tiling import DEFAULT_TILE, min_tile_size, tiled_guided_upsample
from optisr.ops.lattice import raise_floor
from optisr.ops.operators import (
    DownsampleOperator,
    is_resampling,
    lr_size,
    make_operator,
    resampling_operator,
    scale_for_sizes,
)
from optisr.solvers.graph import check_precond

if TYPE_CHECKING:
    from optisr.guided.model import GraphSRModel

__all__ = [
    "AUTO_TILE_PIXELS",
    "CV_FLOORS",
    "COLOR_CONNECT",
    "COLOR_FLOOR",
    "COLOR_MU",
    "MODEL_AUTO_TILE_PIXELS",
    "FidelityChoice",
    "Weights",
    "color_weights",
    "cv_floor",
    "guided_upsample",
    "outlier_mask",
    "registration_shift",
    "window_floor",
    "WINDOW_FLOORS",
    "WINDOW_FLOOR_HR",
    "WINDOW_FLOOR_MAX_SCALE",
]

Weights = Union[None, str, os.PathLike, "GraphSRModel", Tensor, np.ndarray, Callable[[Tensor, Tensor], Tensor]]
"""What ``weights=`` of :func:`guided_upsample` takes (see its docstring)."""

# the learned model's full-resolution feature maps cost ~100 bytes per HR pixel: tile sooner
MODEL_AUTO_TILE_PIXELS = 2048 * 2048


# numpy inputs with a guide above this many HR pixels are solved tile-wise (optisr.guided.tiling)
# unless tile_size=0: the untiled solve holds ~15 HR-sized float arrays (about 1 GB at 4096²),
# the tiled one the output plus one tile's worth; and 1024² tiles stay in cache: colour graph, ×8,
# 2 threads, fused CG loop, whole call: 2048² 0.77 s untiled / 0.77 s tiled, 3072² 3.3-3.6 / 1.8-2.1 s,
# 4096² 4.9-5.8 / 2.9-3.6 s (0.29-0.34 / 0.18-0.22 µs per pixel; 1024²: 0.14).
AUTO_TILE_PIXELS = 2048 * 2048


def _as_tensors(source: Any, guide: Any, mask: Any, dtype: torch.dtype | None):
    """Normalise inputs to (B, 1, h, w) / (B, C, H, W) / (B, 1, h, w) tensors; remember the kind."""
    numpy_in = isinstance(source, np.ndarray)
    if numpy_in:
        if source.ndim != 2:
            raise ShapeError(f"a numpy source must be a single-channel h×w array, got shape {source.shape}")
        src = torch.from_numpy(
            np.ascontiguousarray(source, dtype=np.float64 if source.dtype == np.float64 else np.float32)
        )
        src = src[None, None]
    elif isinstance(source, Tensor):
        src = source
        if src.dim() == 2:
            src = src[None, None]
        elif src.dim() == 3:
            src = src[None]
        if src.dim() != 4:
            raise ShapeError(f"source must be (h, w), (1, h, w) or (B, 1, h, w), got {tuple(source.shape)}")
        if not src.is_floating_point():
            src = src.float()
    else:
        raise ShapeError(f"source must be a numpy array or a torch tensor, got {type(source).__name__}")
    if dtype is not None:
        src = src.to(dtype)

    if isinstance(guide, np.ndarray):
        g = guide_to_unit(guide)
        if g.ndim == 2:
            g = g[:, :, None]
        if g.ndim != 3:
            raise ShapeError(f"a numpy guide must be H×W or H×W×C, got shape {guide.shape}")
        gt = torch.from_numpy(np.ascontiguousarray(g.transpose(2, 0, 1)))[None]
    elif isinstance(guide, Tensor):
        gt = guide
        if gt.dim() == 2:
            gt = gt[None, None]
        elif gt.dim() == 3:
            gt = gt[None]
        if gt.dim() != 4:
            raise ShapeError(f"guide must be (H, W), (C, H, W) or (B, C, H, W), got {tuple(guide.shape)}")
        gt = guide_tensor_to_unit(gt)
    else:
        raise ShapeError(f"guide must be a numpy array or a torch tensor, got {type(guide).__name__}")
    gt = gt.to(device=src.device, dtype=src.dtype)
    if gt.shape[0] != src.shape[0]:
        if gt.shape[0] == 1:
            gt = gt.expand(src.shape[0], -1, -1, -1)
        else:
            raise ShapeError(f"batch sizes differ: source {src.shape[0]}, guide {gt.shape[0]}")

    m = None
    if mask is not None:
        m = torch.from_numpy(np.asarray(mask, dtype=bool)) if isinstance(mask, np.ndarray) else mask.to(torch.bool)
        while m.dim() < 4:
            m = m[None]
        m = m.to(src.device)
    return numpy_in, src, gt, m


@overload
def guided_upsample(
    source: np.ndarray,
    guide: np.ndarray | Tensor,
    scale: int | None = None,
    *,
    operator: str = "area",
    fidelity: str | None = None,
    mode: str | None = None,
    weights: Weights = None,
    mask: np.ndarray | Tensor | None = None,
    confidence: np.ndarray | Tensor | None = None,
    lam: float | Tensor | None = None,
    floor: float | str | None = None,
    refine: int | None = None,
    exclude_outliers: bool = False,
    guide_filter: bool | str = True,
    nonlocal_smoothness: bool = True,
    register: bool = True,
    noise_sigma: str | float | None = "auto",
    sigma: float | None = None,
    tol: float = 1e-4,
    max_iter: int = 2000,
    precond: str = "jacobi",
    dtype: torch.dtype | None = None,
    tile_size: int | None = None,
    progress: bool | Callable[[int, int], None] = False,
    device: str | torch.device | None = None,
    return_info: Literal[False] = False,
) -> np.ndarray: ...


@overload
def guided_upsample(
    source: Tensor,
    guide: np.ndarray | Tensor,
    scale: int | None = None,
    *,
    operator: str = "area",
    fidelity: str | None = None,
    mode: str | None = None,
    weights: Weights = None,
    mask: np.ndarray | Tensor | None = None,
    confidence: np.ndarray | Tensor | None = None,
    lam: float | Tensor | None = None,
    floor: float | str | None = None,
    refine: int | None = None,
    exclude_outliers: bool = False,
    guide_filter: bool | str = True,
    nonlocal_smoothness: bool = True,
    register: bool = True,
    noise_sigma: str | float | None = "auto",
    sigma: float | None = None,
    tol: float = 1e-4,
    max_iter: int = 2000,
    precond: str = "jacobi",
    dtype: torch.dtype | None = None,
    tile_size: int | None = None,
    progress: bool | Callable[[int, int], None] = False,
    device: str | torch.device | None = None,
    return_info: Literal[False] = False,
) -> Tensor: ...


@overload
def guided_upsample(
    source: np.ndarray | Tensor,
    guide: np.ndarray | Tensor,
    scale: int | None = None,
    *,
    fidelity: str | None = None,
    mode: str | None = None,
    weights: Weights = None,
    mask: np.ndarray | Tensor | None = None,
    confidence: np.ndarray | Tensor | None = None,
    lam: float | Tensor | None = None,
    floor: float | str | None = None,
    refine: int | None = None,
    exclude_outliers: bool = False,
    guide_filter: bool | str = True,
    nonlocal_smoothness: bool = True,
    register: bool = True,
    noise_sigma: str | float | None = "auto",
    sigma: float | None = None,
    tol: float = 1e-4,
    max_iter: int = 2000,
    precond: str = "jacobi",
    dtype: torch.dtype | None = None,
    tile_size: int | None = None,
    progress: bool | Callable[[int, int], None] = False,
    device: str | torch.device | None = None,
    return_info: Literal[True],
) -> tuple[np.ndarray | Tensor, FidelityChoice]: ...


def guided_upsample(
    source: np.ndarray | Tensor,
    guide: np.ndarray | Tensor,
    scale: int | None = None,
    *,
    operator: str = "area",
    fidelity: str | None = None,
    mode: str | None = None,
    weights: Weights = None,
    mask: np.ndarray | Tensor | None = None,
    confidence: np.ndarray | Tensor | None = None,
    lam: float | Tensor | None = None,
    floor: float | str | None = None,
    refine: int | None = None,
    exclude_outliers: bool = False,
    guide_filter: bool | str = True,
    nonlocal_smoothness: bool = True,
    register: bool = True,
    noise_sigma: str | float | None = "auto",
    sigma: float | None = None,
    tol: float = 1e-4,
    max_iter: int = 2000,
    precond: str = "jacobi",
    dtype: torch.dtype | None = None,
    tile_size: int | None = None,
    progress: bool | Callable[[int, int], None] = False,
    device: str | torch.device | None = None,
    return_info: bool = False,
) -> np.ndarray | Tensor | tuple[np.ndarray | Tensor, FidelityChoice]:
    """Upsample a single-channel LR ``source`` ×``scale`` with an HR ``guide`` image.

    Returns the smoothest HR target under a guide-derived graph that agrees with the source (soft
    solves are by default re-weighted once by that first solution and solved again, see
    ``refine``): in ``exact`` mode, downsampling the output with ``operator`` reproduces the
    source to solver precision (invalid source pixels excepted).

    Args:
        source: LR map. numpy ``(h, w)`` or torch ``(h, w)``, ``(1, h, w)``, ``(B, 1, h, w)``.
            NaN marks invalid pixels.
        guide: HR image. numpy ``(H, W, C)`` / ``(H, W)`` (uint8, uint16 or float in [0, 1]) or
            torch ``(C, H, W)`` / ``(B, C, H, W)`` float in [0, 1]. ``(h, w) = ceil((H, W)/scale)``.
        scale: integer scale (2..16 typical, up to 64), or ``None`` (default): from the sizes. An
            integer f whose grid policy fits them (``ceil((H, W)/f) = (h, w)``) if there is one;
            otherwise the source's grid is taken as covering the guide's field of view at the
            ratio ``(H/h, W/w)`` (e.g. a 180×240 ToF map beside a 480×640 image: 8/3), solved with
            :func:`~optisr.ops.operators.resampling_operator` (tile-wise too; a learned model
            is run at the nearest integer scale). An explicit integer scale that does not fit the sizes
            is an error.
        operator: how the source relates to the target: ``area`` (block mean), ``sum`` (block
            sum, for counts), ``bicubic`` (PIL-style antialiased bicubic), ``gaussian``.
        fidelity: how much to trust the source. ``"exact"``: hard consistency ``D x = s``;
            ``"soft"``: the penalty ``‖Dx − s‖²`` against ``λ·xᵀL(w)x`` (LGR's energy), with
            ``lam`` or, without it, λ from the noise level (:func:`optisr.guided.fidelity.rule_lambda`);
            ``"robust"``: as soft, with a robust data term (where the solver layer has it);
            ``"auto"`` (default): estimate the source's noise σ̂ (or take ``noise_sigma``) and
            solve exactly when σ̂ / spread of the source is below
            :data:`~optisr.guided.fidelity.EXACT_BELOW` (a clean source gives bit-identical
            results to ``"exact"``), else ``soft`` with the λ minimising the generalised
            cross-validation score of the LR prediction (searched from the rule's λ, two solves per
            λ tried). See :mod:`optisr.guided.fidelity`.
        mode: the former name of ``fidelity``, kept as an alias with its former meaning:
            ``mode="exact"`` ignores ``lam``; ``mode="soft"`` uses ``lam`` (default 1.0). Giving
            both ``mode`` and a different ``fidelity`` is an error.
        weights: ``"default"`` (the learned model shipped in the package, see
            :mod:`optisr.guided.model`; the colour graph if this install carries none),
            ``"color"`` (colour-affinity graph, no learning), a guided model (a
            :class:`~optisr.guided.model.GraphSRModel` or a path to its ``.safetensors``),
            explicit edge weights ``(B, 2, H, W)`` / ``(2, H, W)``, or a callable
            ``(guide, source) -> weights``. ``None`` means ``"default"``.
        mask: optional LR validity mask (True = valid), same layout as ``source``.
        confidence: optional per-LR-pixel trust ``C ≥ 0`` (same layout as ``source``, e.g. a
            sensor's confidence map in [0, 1]): the data term becomes ``(Dx − s)ᵀ C (Dx − s)``.
            Used by ``soft``/``robust`` (also when ``auto`` chooses soft); an error with
            ``fidelity="exact"``; tile-wise too.
        lam: λ for ``soft``/``robust`` fidelity (float > 0 or a differentiable tensor); an error
            with ``fidelity="exact"`` or ``"auto"`` (auto chooses λ itself).
        floor: edge-weight floor of the graph (:func:`optisr.ops.lattice.raise_floor`: every
            weight becomes ``floor + (1 − floor)·w``), a number in [0, 1). None (default): the
            graph's own weights, except (a) where ``auto`` solves a clean source exactly at scales
            up to :data:`WINDOW_FLOOR_MAX_SCALE` (×4; numpy input, weights from the guide): the
            floor of :data:`WINDOW_FLOORS` that predicts held-out source pixels best on a small
            central window (:func:`window_floor`, 3 small solves), and (b) where λ is searched
            (``auto`` choosing soft, or ``soft`` without ``lam``): there the floor is searched
            too, together with λ, by the same GCV score (:func:`optisr.guided.fidelity.floor_search`, floors
            :data:`~optisr.guided.fidelity.FLOOR_STEPS`): on a noisy source a graph that cuts
            hard keeps the noise of every region between cuts. Images above
            :data:`FLOOR_CROP_HR`² HR px choose the floor on a central crop. ``"cv"`` (numpy
            input): where the solve is exact, the floor of :data:`CV_FLOORS` whose exact solves
            predict held-out source pixels best (:func:`cv_floor`, 2-fold cross-validation on the LR
            grid, 10 extra exact solves, every scale); where it is soft, as None. On allowed clean
            RGB-D-D images it beat the graph's own floor and bicubic, and kept the own floor on
            procedural scenes (``benchmarks/exact_floor_cv.py``); (a) is its cheap version.
        refine: re-weighted exact solves after the first (:mod:`optisr.guided.refine`): the
            graph is re-weighted by the first solution (cuts kept where it jumps, edges restored
            where it is smooth, μ = :data:`~optisr.guided.refine.REFINE_MU` in 0–255 units of the
            source's range) and solved again (exact: still exactly LR-consistent; soft: with the
            same λ, the refined weights floored at the floor used). ``None`` (default):
            :data:`~optisr.guided.refine.REFINE_PASSES`: one pass for soft solves (also when
            ``auto`` chooses soft) on the guide's graphs (``"default"``, ``"color"``, a model),
            none for exact solves (``refine=1`` asks for it), none for explicit weight arrays
            or callables (solved as given); ``0`` turns it off.
            Robust solves are never refined. The gradient treats the first solution, which sets
            the refined weights, as a constant.
        exclude_outliers: leave isolated spikes of the source (stereo mismatches, multipath, dead
            pixels; :func:`optisr.guided.fidelity.find_outliers`: a pixel or pair far above or
            below its neighbours where the guide shows no object) out of the data term, when they
            make up at least 0.4 % of the valid pixels. They are then filled from the graph like
            masked pixels; the fidelity (``auto``: decided again without them) holds on the others.
            Up to :data:`~optisr.guided.fidelity.OUTLIER_MAX_SCALE` (×4; coarser grids cannot tell
            an outlier from a small object: a warning, and nothing is left out). Off by default:
            clean sources have spike-like pixels too (thin structures, bicubic ringing: up to
            ~1 % of the pixels at ×4 on allowed data), which it would leave out. The count is
            ``FidelityChoice.outliers``.
        guide_filter: smooth a noisy guide first with a bilateral filter whose range σ is
            :data:`~optisr.guided.guide_filter.GUIDE_FILTER_K` (4) times the guide's own estimated
            noise (:mod:`optisr.guided.guide_filter`), when the weights come from the guide (a
            model, ``"color"``; not explicit arrays or callables) and the noise is at least
            :data:`~optisr.guided.guide_filter.GUIDE_NOISE_GATE` (6.5 %) of the guide's contrast
            (clean guides are left as they are). ``"always"``: filter at the guide's σ̂ whatever
            its share (for a guide known to be noisy); False: never. Noise of a dim or high-ISO
            guide then no longer cuts the graph where the depth is smooth; colour edges well above
            the noise keep their contrast. Chosen on allowed data (README, *Noisy guides*). The
            guide's σ̂ is ``FidelityChoice.guide_sigma``. A tensor guide is filtered on a CPU copy
            (no gradient flows to the guide through the filter).
        nonlocal_smoothness: when ``auto`` solves softly with a learned graph, add the
            non-local smoothness term of :mod:`optisr.guided.nonlocal_term` (the guide's bilateral-grid
            Laplacian, weight :func:`~optisr.guided.nonlocal_term.nonlocal_kappa` of the scale) to
            its last solve; it averages the noise over pixels of similar colour beyond the lattice's
            cuts. Chosen on allowed noisy data (README, *Noisy sources*); ``FidelityChoice.nonlocal_kappa``
            reports the κ used. False: the lattice alone.
        register: look for a translation between the source and the guide (a depth sensor's
            calibration offset, :mod:`optisr.guided.registration`): the integer shift of at most
            :func:`~optisr.guided.registration.search_radius` HR px that lines the guide's edges
            up with the upsampled source's, kept only when exact solves with the moved guide
            predict held-out source pixels :data:`~optisr.guided.registration.ACCEPT_RATIO` times
            better (:func:`registration_shift`). The guide is then moved onto the source: the output
            keeps the source's geometry and its consistency. ``FidelityChoice.guide_shift``
            reports the shift. Numpy input with weights from the guide only, up to ×8 (else nothing is
            moved). Costs an edge correlation, and two small exact solves when it finds a shift.
            With ``exclude_outliers`` the spikes are found first (against the guide as given) and
            left out of the search too (as ``optisr guided --exclude-outliers`` does). Chosen on
            allowed data (README, *Registration*). False: use the guide as given.
        noise_sigma: noise std of the source in source units, or ``"auto"`` (default; ``None``
            is the same) to estimate it with :func:`optisr.guided.fidelity.estimate_noise_sigma`.
            Used by ``auto`` and by ``soft``/``robust`` without ``lam``. Estimated once on the
            whole source, also for tile-wise solves.
        sigma: PSF width in HR pixels for ``gaussian``.
        tol, max_iter: CG stopping rule (relative residual) and cap.
        precond: CG preconditioner, ``"jacobi"`` (default) or ``"multigrid"`` (4–8× fewer iterations, slower
            in wall time on a CPU; :mod:`optisr.solvers.multigrid`), or ``"none"``.
        dtype: computation dtype (default: float32, or float64 for float64 numpy/torch input).
        tile_size: solve tile-wise with core tiles of this many HR px (rounded up to a multiple of
            ``scale``, and at least :func:`~optisr.guided.tiling.min_tile_size` = ``max(128, 32·scale)``:
            smaller values are raised to it with a warning; see :func:`optisr.guided.tiling.tiled_guided_upsample`): bounded memory,
            exact consistency kept, numpy input only. ``None`` (default): tile-wise with 1024-px
            tiles when a numpy guide has more than ``AUTO_TILE_PIXELS`` (2048², 4.2 MP) pixels
            (``MODEL_AUTO_TILE_PIXELS``, also 2048², with a learned model, whose feature maps are
            large), untiled otherwise; ``0``: never tile.
        progress: tile-wise solves only: ``True`` for a tqdm bar, or a callable ``(done, total)``.
        device: where to compute (e.g. ``"cuda"``; tile-wise: each tile's solve). ``None``: the
            source tensor's device, the CPU for numpy input. Results come back as the input was:
            numpy for numpy input, a tensor on the source's device for torch input.
        return_info: also return what was chosen, a :class:`~optisr.guided.fidelity.FidelityChoice`
            (fidelity solved with, σ̂, spread, λ).
    Returns:
        The HR target: numpy ``(H, W)`` float for numpy input; a torch tensor ``(B, 1, H, W)``
        (or matching the input's leading dims) for torch input. With ``return_info=True``, the
        pair ``(target, choice)``.

    Example:
        >>> import numpy as np, optisr
        >>> guide = np.zeros((32, 32, 3), np.float32); guide[:, 16:] = 1.0
        >>> source = np.array([[1.0, 1.0, 3.0, 3.0]] * 4)
        >>> out = optisr.guided_upsample(source, guide, 8)
        >>> out.shape, float(out[:, :16].mean()), float(out[:, 16:].mean())
        ((32, 32), 1.0, 3.0)
    """
    scale, operator = _resolve_scale(scale, operator, source, guide, sigma)
    if tile_size is not None and (
        isinstance(tile_size, bool) or not isinstance(tile_size, (int, np.integer)) or tile_size < 0
    ):
        raise ConfigError(f"tile_size must be an integer >= 0 HR pixels (0 = no tiling), got {tile_size!r}")
    if not isinstance(return_info, bool):
        raise ConfigError(f"return_info must be True or False, got {return_info!r}")
    if (
        floor is not None
        and not (isinstance(floor, str) and floor == "cv")
        and (
            isinstance(floor, bool)
            or not isinstance(floor, (int, float, np.integer, np.floating))
            or not 0.0 <= float(floor) < 1.0
        )
    ):
        raise ConfigError(f"floor must be a number in [0, 1), 'cv' or None, got {floor!r}")
    if isinstance(floor, str) and not (isinstance(source, np.ndarray) and isinstance(guide, np.ndarray)):
        raise ConfigError("floor='cv' needs numpy source and guide arrays")
    check_refine(refine)
    check_precond(precond)
    if not isinstance(register, bool):
        raise ConfigError(f"register must be True or False, got {register!r}")
    if not isinstance(exclude_outliers, bool):
        raise ConfigError(f"exclude_outliers must be True or False, got {exclude_outliers!r}")
    choice, solve_lam = _choose(source, scale, fidelity, mode, lam, noise_sigma, mask)
    if exclude_outliers:
        # before the registration: spikes would dominate its held-out errors (a misplaced guide
        # only matters to the spike test within a footprint of a colour edge)
        mask, outliers = outlier_mask(source, guide, mask, scale, operator, choice.noise_sigma)
        if outliers:
            choice, solve_lam = _choose(source, scale, fidelity, mode, lam, noise_sigma, mask)
            choice = dataclasses.replace(choice, outliers=outliers)
    if register:
        shift = registration_shift(source, guide, scale, operator=operator, mask=mask, sigma=sigma, weights=weights)
        if shift is not None:  # numpy input (tensors are not searched)
            guide = shift_image(np.asarray(guide), shift)
            choice = dataclasses.replace(choice, guide_shift=shift)
    if not (isinstance(guide_filter, bool) or (isinstance(guide_filter, str) and guide_filter == "always")):
        raise ConfigError(f"guide_filter must be True, False or 'always', got {guide_filter!r}")
    use = bool(guide_filter) and _guide_graph(weights)
    guide_sigma = _guide_noise(guide, always=guide_filter == "always") if use else None
    if guide_sigma is not None:
        choice = dataclasses.replace(choice, guide_sigma=guide_sigma)
    if refine is None and not _guide_graph(weights):
        refine = 0  # explicit weights are solved as given unless refinement is asked for
    if floor is None and choice.requested == "auto" and choice.fidelity == "exact":
        # a clean source: the floor of the exact solve by cross-validation on a small central window
        floor = window_floor(
            source, guide, scale, operator=operator, weights=weights, mask=mask, sigma=sigma, guide_sigma=guide_sigma
        )
        floor = None if floor == 0.0 else floor  # the graph's own weights, bit for bit
    if isinstance(floor, str):  # "cv": cross-validated for exact solves; soft ones search it by GCV
        floor = None
        if choice.fidelity == "exact":
            floor = cv_floor(
                source, guide, scale, operator=operator, weights=weights, mask=mask, guide_filter=guide_filter,
                sigma=sigma, tol=tol, max_iter=max_iter, precond=precond, dtype=dtype, device=device,
            )  # fmt: skip
    refinement = resolve_refinement(refine, choice.fidelity, source, mask)
    if confidence is not None and choice.requested == "exact":
        raise ConfigError("confidence weights the soft data term; exact fidelity has none (use soft, robust or auto)")
    # λ from the noise level (not given): refine the closed-form start by the discrepancy principle
    search = choice.fidelity != "exact" and choice.noise_sigma is not None
    if not isinstance(nonlocal_smoothness, bool):
        raise ConfigError(f"nonlocal_smoothness must be True or False, got {nonlocal_smoothness!r}")
    kappa = nonlocal_kappa(scale) if nonlocal_smoothness and choice.requested == "auto" and search else 0.0
    out, used, solves, floor_used, kappa_used = _upsample(
        source, guide, scale, operator=operator, mode=choice.fidelity, weights=weights, mask=mask,
        floor=None if floor is None else float(floor),
        confidence=None if choice.fidelity == "exact" else confidence, lam=1.0 if solve_lam is None else solve_lam, sigma=sigma, tol=tol, max_iter=max_iter, precond=precond, dtype=dtype,
        tile_size=tile_size, progress=progress, device=device, noise_sigma=choice.noise_sigma if search else None,
        refinement=refinement, guide_sigma=guide_sigma, nonlocal_kappa=kappa,
    )  # fmt: skip
    if kappa_used:
        choice = dataclasses.replace(choice, nonlocal_kappa=kappa_used)
    if search:
        choice = dataclasses.replace(choice, lam=used, solves=solves)
    if floor_used is not None:
        choice = dataclasses.replace(choice, floor=floor_used)
    if refinement is not None:
        choice = dataclasses.replace(choice, refine=refinement.passes, solves=choice.solves + refinement.passes)
    return (out, choice) if return_info else out


CV_FLOORS = (0.0, 0.01, 0.03, 0.1, 0.3)
"""Floors :func:`cv_floor` compares (0.0: the graph's own weights)."""


def cv_floor(
    source: Any,
    guide: Any,
    scale: int,
    *,
    floors: tuple[float, ...] = CV_FLOORS,
    seed: int = 0,
    mask: Any = None,
    operator: Any = "area",
    **options: Any,
) -> float:
    """The edge-weight floor of an exact solve chosen by 2-fold cross-validation on the LR grid.

    The valid source pixels are split in two at random (``seed``); for each floor, each half is
    solved exactly with the other half masked, and ``D x`` is compared with the held-out pixels.
    Returns the floor with the lowest summed squared held-out error (ties: the first, i.e. the
    lowest). An exact solve has no residual, so GCV (what soft solves use) cannot choose it.
    Costs ``2·len(floors)`` exact solves. ``options``: keyword options of :func:`guided_upsample`
    (weights, guide_filter, tol, ...), numpy input only.
    """
    valid = np.isfinite(source) if mask is None else (np.isfinite(source) & np.asarray(mask, bool))
    fold = np.random.default_rng(seed).integers(0, 2, source.shape)
    if not all((valid & (fold == k)).any() for k in (0, 1)):
        return 0.0
    op = (
        operator
        if isinstance(operator, DownsampleOperator)
        else make_operator(operator, guide.shape[:2], scale, sigma=options.get("sigma"))
    )
    errors = []
    for f in floors:
        err = 0.0
        for k in (0, 1):
            x = guided_upsample(
                source, guide, scale, operator=operator, fidelity="exact", floor=float(f), mask=valid & (fold != k),
                refine=0, register=False, **options,
            )  # fmt: skip
            pred = op.apply_strips(np.asarray(x), dtype=torch.float64).cpu().numpy()
            held = valid & (fold == k)
            err += float(((pred - source)[held] ** 2).sum())
        errors.append(err)
    return float(floors[int(np.argmin(errors))])


WINDOW_FLOORS = (0.0, 0.03, 0.1)
"""Floors :func:`window_floor` compares (0.0: the graph's own weights)."""

WINDOW_FLOOR_HR = 256
""":func:`window_floor` solves a central window of at most this many HR px per side."""

WINDOW_FLOOR_MAX_SCALE = 4
"""Scales above this keep the graph's own floor in ``auto``'s exact solves: at ×8 the window's
three solves cost 0.12 s on issue 14's 1024² call, more than its ×8 targets leave (README,
*The floor of clean solves*)."""


def window_floor(
    source: Any,
    guide: Any,
    scale: int,
    *,
    operator: Any = "area",
    weights: Weights = None,
    mask: Any = None,
    sigma: float | None = None,
    guide_sigma: float | None = None,
    seed: int = 0,
) -> float | None:
    """The edge-weight floor ``fidelity="auto"`` gives a clean source's exact solve (None: not chosen).

    A cheap :func:`cv_floor`: on a central window of at most :data:`WINDOW_FLOOR_HR` HR px per side
    (the whole operator restricted to it), the edge weights are computed once from the window's
    guide (pre-filtered at ``guide_sigma`` as the call does) and a random half of its valid source
    pixels (``seed``); for each of :data:`WINDOW_FLOORS` an exact solve on that half predicts the
    other half, and the floor with the lowest squared error wins (ties: the lowest). 3 small solves.
    None, without a solve, for tensors, weights the guide does not determine, scales above
    :data:`WINDOW_FLOOR_MAX_SCALE`, or fewer than :data:`~optisr.guided.registration.MIN_LR_SIDE`
    source px per side. Chosen on allowed data (README, *The floor of clean solves*).
    """
    if not (isinstance(source, np.ndarray) and isinstance(guide, np.ndarray) and _guide_graph(weights)):
        return None
    if scale > WINDOW_FLOOR_MAX_SCALE or source.ndim != 2 or min(source.shape) < MIN_LR_SIDE:
        return None
    split = _held_out_split(source, guide, scale, operator, mask, sigma, WINDOW_FLOOR_HR, seed)
    if split is None:
        return None
    rows, cols, window, src, train, held = split
    seen = np.where(train, src, np.float32(np.nan))
    fn, _ = resolve_weights(weights, scale, seen, train)
    _, s_t, g_t, _ = _as_tensors(seen, guide[rows, cols], None, torch.float32)
    if guide_sigma:
        g_t = _filtered_guide_tensor(g_t, guide_sigma)
    with torch.no_grad():
        w = color_weights(g_t) if isinstance(fn, str) else fn(g_t, s_t)
    errors = []
    for f in WINDOW_FLOORS:
        wf = (w if f == 0.0 else raise_floor(w, f))[0].numpy()
        x = guided_upsample(
            src, guide[rows, cols], None, operator=window, fidelity="exact", weights=wf, mask=train, refine=0,
            register=False,
        )  # fmt: skip
        errors.append(_held_out_error(window, x, src, held))
    return float(WINDOW_FLOORS[int(np.argmin(errors))])


def _held_out_split(
    source: np.ndarray,
    guide: np.ndarray,
    scale: int,
    operator: Any,
    mask: Any,
    sigma: float | None,
    side: int,
    seed: int,
) -> tuple[slice, slice, Any, np.ndarray, np.ndarray, np.ndarray] | None:
    """The held-out test of :func:`window_floor` and :func:`registration_shift`: ``(HR rows, HR cols,
    window operator, window source (float32, as the fused CG loop solves), train mask, held-out
    mask)`` of a central window of at most ``side`` HR px per side (the whole operator restricted to
    it), its valid source pixels split in two halves at random (``seed``). None when the shapes do
    not fit one another (the solve reports that) or a half has fewer than 4 pixels."""
    if source.ndim != 2 or guide.ndim not in (2, 3) or (mask is not None and np.shape(mask) != source.shape):
        return None
    op = (
        operator
        if isinstance(operator, DownsampleOperator)
        else make_operator(operator, guide.shape[:2], scale, sigma=sigma)
    )
    if op.lr_size != source.shape:
        return None
    rows, cols, lr_rows, lr_cols = _central_crop_ratio(op, side)
    window = op.restrict((lr_rows.start, lr_rows.stop), (lr_cols.start, lr_cols.stop))
    src = np.asarray(source, np.float32)[lr_rows, lr_cols]
    valid = _valid(source, mask)[lr_rows, lr_cols]
    fold = np.random.default_rng(seed).integers(0, 2, src.shape).astype(bool)
    train, held = valid & fold, valid & ~fold
    if train.sum() < 4 or held.sum() < 4:
        return None
    return rows, cols, window, src, train, held


def _held_out_error(window: DownsampleOperator, x: Any, src: np.ndarray, held: np.ndarray) -> float:
    """Squared error of ``window``'s prediction ``D x`` at the held-out source pixels."""
    pred = window.apply_strips(np.asarray(x, np.float64), dtype=torch.float64).cpu().numpy()
    return float(((pred - src)[held] ** 2).sum())


def registration_shift(
    source: np.ndarray | Tensor,
    guide: np.ndarray | Tensor,
    scale: int,
    *,
    operator: Any = "area",
    mask: Any = None,
    sigma: float | None = None,
    weights: Weights = None,
    seed: int = 0,
) -> tuple[int, int] | None:
    """The shift ``register=True`` moves the guide by (HR px, down and right), or None.

    :func:`~optisr.guided.registration.edge_shift` proposes a shift (not on sources below
    :data:`~optisr.guided.registration.MIN_LR_SIDE` px per side, nor above ×
    :data:`~optisr.guided.registration.MAX_SCALE`); it is kept when, on a central
    window of at most :data:`~optisr.guided.registration.CV_CROP_HR` HR px, exact colour-graph
    solves on a random half of the valid source pixels (``seed``) predict the other half with the
    moved guide at least :data:`~optisr.guided.registration.ACCEPT_RATIO` times better (squared
    error) than with the guide as given; the shift returned is then the best of the proposal and
    its 8 neighbours by the same held-out error (2 small solves per call that finds a proposal,
    8 more when it is kept). ``scale`` and ``operator`` as resolved by :func:`guided_upsample` (a
    resampling operator for a non-integer ratio). None, without a search, for torch tensors and for
    ``weights`` the guide does not determine (explicit arrays or callables: the guide is not used).
    """
    if not (isinstance(source, np.ndarray) and isinstance(guide, np.ndarray) and _guide_graph(weights)):
        return None
    if source.ndim != 2 or guide.ndim not in (2, 3) or (mask is not None and np.shape(mask) != source.shape):
        return None  # not a single map: the solve reports what is wrong
    hr = guide.shape[:2]
    if min(source.shape) < MIN_LR_SIDE or scale > MAX_REGISTER_SCALE:
        return None
    op = operator if isinstance(operator, DownsampleOperator) else make_operator(operator, hr, scale, sigma=sigma)
    if op.lr_size != source.shape:
        return None
    rows, cols = central_slices(hr, EDGE_CROP_HR)
    up = source_on_guide_grid(np.where(_valid(source, mask), source, np.nan), op, rows, cols)
    shift, _ = edge_shift(up, guide[rows, cols], search_radius(hr))
    if shift == (0, 0):
        return None
    # the window's operator follows the whole image's geometry (also bicubic at sizes f does not divide)
    split = _held_out_split(source, guide, scale, op, mask, sigma, CV_CROP_HR, seed)
    if split is None:
        return None
    rows, cols, window, src, train, held = split

    def held_out_error(t: tuple[int, int]) -> float:
        g = guide if t == (0, 0) else shift_image(guide, t)
        x = guided_upsample(
            src, g[rows, cols], None, operator=window, fidelity="exact", weights="color",
            mask=train, refine=0, guide_filter=False, register=False,
        )  # fmt: skip
        return _held_out_error(window, x, src, held)

    unmoved, moved = held_out_error((0, 0)), held_out_error(shift)
    if unmoved < ACCEPT_RATIO * moved:
        return None
    # the edge correlation's peak can be a pixel off: the best of the proposal and its 8 neighbours
    best, best_error = shift, moved
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            t = (shift[0] + dy, shift[1] + dx)
            if t in (shift, (0, 0)):
                continue
            e = held_out_error(t)
            if e < best_error:
                best, best_error = t, e
    return best


def _valid(source: np.ndarray, mask: Any) -> np.ndarray:
    """Valid source pixels: finite, and True in ``mask`` when one is given."""
    ok = np.isfinite(np.asarray(source, np.float64))
    return ok if mask is None else ok & np.asarray(mask, bool)


def outlier_mask(source: Any, guide: Any, mask: Any, scale: int, operator: Any, sigma: float | None) -> tuple[Any, int]:
    """What ``exclude_outliers=True`` does: ``(mask without the source's isolated spikes, their count)``.

    Up to :data:`~optisr.guided.fidelity.OUTLIER_MAX_SCALE`, the spikes that
    :func:`~optisr.guided.fidelity.find_outliers` reports (with the guide's colours on the source
    grid, the noise level ``sigma`` or an estimate) are set invalid in ``mask`` (None = all
    valid; returned as numpy or torch like the source). Otherwise ``(mask, 0)`` unchanged; above
    that scale with a warning.
    """
    if scale > OUTLIER_MAX_SCALE:
        warnings.warn(
            f"exclude_outliers works up to ×{OUTLIER_MAX_SCALE} (a one-pixel object and an outlier look alike on "
            f"coarser grids); nothing was left out at ×{scale}",
            stacklevel=3,
        )
        return mask, 0
    spikes = find_outliers(source, mask, sigma=sigma, guide_lr=_guide_on_source_grid(guide, source, operator, scale))
    if spikes is None:
        return mask, 0
    return _without(mask, spikes, source), int(spikes.sum())


def _guide_on_source_grid(guide: Any, source: Any, operator: Any, scale: int) -> np.ndarray | None:
    """The guide's mean colour over each source pixel's footprint, (C, h, w) or (B, C, h, w) float in
    [0, 1], for :func:`~optisr.guided.fidelity.find_outliers`; None when it does not fit the source."""
    lr = _hw(source, False)
    if isinstance(guide, np.ndarray) and guide.ndim in (2, 3):
        hr = guide.shape[:2]
        g = guide_to_unit(guide)
        chans = [g] if g.ndim == 2 else [g[..., c] for c in range(g.shape[2])]
    elif isinstance(guide, Tensor) and guide.dim() >= 2:
        gt = guide_tensor_to_unit(guide.detach().cpu())
        gt = gt.reshape(-1, *gt.shape[-2:]) if gt.dim() > 2 else gt[None]
        hr = (int(gt.shape[-2]), int(gt.shape[-1]))
        chans = list(gt)
    else:
        return None
    if isinstance(operator, DownsampleOperator) and is_resampling(operator):
        op = resampling_operator("area", hr, lr)
    elif lr == lr_size(hr, scale):
        op = make_operator("area", hr, scale)
    else:
        return None
    means = [op.apply_strips(c, dtype=torch.float64).numpy() for c in chans]
    out = np.stack(means)
    if isinstance(guide, Tensor) and guide.dim() == 4:
        out = out.reshape(guide.shape[0], guide.shape[1], *lr)
    return out


def _without(mask: Any, spikes: np.ndarray, source: Any) -> Any:
    """``mask`` (None = all valid) with the ``spikes`` (source-shaped bool) set invalid, as numpy or torch like the source."""
    if isinstance(source, Tensor):
        kept = torch.from_numpy(~spikes).to(source.device)
        return kept if mask is None else (torch.as_tensor(mask, device=source.device).to(torch.bool) & kept)
    keep = ~spikes
    return keep if mask is None else (np.asarray(mask, dtype=bool) & keep)


def _hw(a: Any, lead: bool) -> tuple[int, int]:
    """(rows, cols) of a numpy/torch source (``lead=False``) or guide (``lead=True``: numpy (H, W[, C]))."""
    shape = tuple(a.shape)
    if len(shape) < 2:
        raise ShapeError(f"expected a 2-D map or image, got shape {shape}")
    if lead and isinstance(a, np.ndarray):
        return int(shape[0]), int(shape[1])
    return int(shape[-2]), int(shape[-1])


def _resolve_scale(scale: Any, operator: Any, source: Any, guide: Any, sigma: float | None) -> tuple[int, Any]:
    """``(scale, operator)`` for :func:`guided_upsample`: an integer scale, or for ``scale=None`` at a
    non-integer ratio a :func:`resampling_operator` and its nominal scale."""
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)):
            raise ConfigError(f"scale must be a positive integer or None (from the sizes), got {scale!r}")
        if int(scale) != scale or scale < 1:
            raise ConfigError(
                f"scale must be a positive integer, got {scale!r}; pass scale=None to solve at the sizes' own ratio"
            )
        return int(scale), operator
    if not isinstance(source, (np.ndarray, Tensor)) or not isinstance(guide, (np.ndarray, Tensor)):
        raise ShapeError("source and guide must be numpy arrays or torch tensors")
    hr, lr = _hw(guide, True), _hw(source, False)
    if isinstance(operator, DownsampleOperator):
        if operator.hr_size != hr or operator.lr_size != lr:
            raise ShapeError(f"{operator!r} does not map the {hr[0]}×{hr[1]} guide onto the {lr[0]}×{lr[1]} source")
        op = operator
    else:
        op = resampling_operator(operator, hr, lr, sigma=sigma)  # the ordinary operator when an integer fits
    return op.scale, (op if is_resampling(op) else operator)


def _guide_noise(guide: Any, always: bool = False) -> float | None:
    """The guide's noise σ̂ in [0, 1] units when it is worth filtering, else None
    (:func:`~optisr.guided.guide_filter.noisy_guide_sigma`; a tensor batch: its first image, (C, H, W) or (H, W))."""
    if isinstance(guide, Tensor):
        g = guide_tensor_to_unit(guide.detach().cpu()).float()
        if g.dim() == 2:
            return noisy_guide_sigma(g.numpy(), always=always)
        return noisy_guide_sigma(g.reshape(-1, *g.shape[-3:])[0].permute(1, 2, 0).numpy(), always=always)
    if not isinstance(guide, np.ndarray):
        raise ShapeError(f"guide must be a numpy array or a torch tensor, got {type(guide).__name__}")
    return noisy_guide_sigma(guide, always=always)


def _filtered_guide_tensor(gt: Tensor, sigma: float) -> Tensor:
    """(B, C, H, W) float guide through :func:`~optisr.guided.guide_filter.filter_guide` (on a CPU copy)."""
    g = gt.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).numpy()
    out = np.stack([filter_guide(x, sigma) for x in g])
    return torch.from_numpy(out.reshape(g.shape)).permute(0, 3, 1, 2).to(device=gt.device, dtype=gt.dtype)


def _guide_graph(weights: Any) -> bool:
    """True for weights the guide determines (``None``, a name, a model or its path), not explicit arrays or callables."""
    if isinstance(weights, (np.ndarray, Tensor)):
        return False
    return isinstance(weights, torch.nn.Module) or not callable(weights)


def _choose(
    source: Any, scale: int, fidelity: Any, mode: Any, lam: Any, noise_sigma: Any, mask: Any
) -> tuple[FidelityChoice, float | Tensor | None]:
    """Resolve ``fidelity``/``mode`` (the legacy alias)/``lam`` and run :func:`choose_fidelity`."""
    if mode is not None and fidelity is not None and mode != fidelity:
        raise ConfigError(f"mode={mode!r} and fidelity={fidelity!r} disagree; mode is the old name of fidelity")
    if mode is not None and (not isinstance(mode, str) or mode not in FIDELITIES):
        raise ConfigError(f"mode must be one of {', '.join(FIDELITIES)} (alias of fidelity=); got {mode!r}")
    if fidelity is None and mode is not None:
        # the former API: mode="exact" ignored lam, mode="soft" defaulted to λ = 1
        if mode == "exact":
            lam = None
        elif mode in ("soft", "robust") and lam is None:
            lam = 1.0
        fidelity = mode
    return choose_fidelity(
        source, scale, fidelity="auto" if fidelity is None else fidelity, noise_sigma=noise_sigma, lam=lam, mask=mask
    )


FLOOR_CROP_HR = 768
"""Untiled soft solves of images above this² HR px choose the edge-weight floor (GCV,
:func:`~optisr.guided.fidelity.floor_search`) on a central crop of at most this many HR px per side;
λ is then searched again on the whole image at that floor, started from the crop's λ."""

RISK_CROP_HR = 1024
"""Tile-wise soft solves choose λ (GCV, :func:`~optisr.guided.fidelity.lr_risk`) on a central crop of at most this many HR px per side."""


def _central_crop(hr_size: tuple[int, int], scale: int, side: int) -> tuple[slice, slice, slice, slice]:
    """A central crop of whole LR blocks, at most ``side`` HR px per side: ``(hr_rows, hr_cols, lr_rows, lr_cols)``."""
    hr, lr = [], []
    for n in hr_size:
        blocks = n // scale
        keep = max(1, min(blocks, side // scale))
        start = (blocks - keep) // 2
        hr.append(slice(start * scale, (start + keep) * scale))
        lr.append(slice(start, start + keep))
    return hr[0], hr[1], lr[0], lr[1]


def _central_crop_ratio(op: DownsampleOperator, side: int) -> tuple[slice, slice, slice, slice]:
    """:func:`_central_crop` of a :func:`resampling_operator`'s grid: a central LR window of at most
    about ``side`` HR px per side and every HR pixel it covers (:meth:`DownsampleOperator.hr_window`)."""
    lr = []
    for n_hr, n_lr in zip(op.hr_size, op.lr_size):
        keep = max(1, min(n_lr, (side * n_lr) // n_hr))
        start = (n_lr - keep) // 2
        lr.append((start, start + keep))
    rows, cols = op.hr_window(lr[0], lr[1])
    return rows, cols, slice(*lr[0]), slice(*lr[1])


def _central_window(
    operator: Any, hr_size: tuple[int, int], scale: int, side: int, sigma: float | None = None
) -> tuple[slice, slice, slice, slice, Any]:
    """``(hr_rows, hr_cols, lr_rows, lr_cols, operator of the window)``: :func:`_central_crop` with
    the whole image's operator restricted to it (:meth:`DownsampleOperator.restrict`), or at a
    non-integer ratio :func:`_central_crop_ratio` and the resampling operator restricted to it.

    ``area``/``sum`` windows are the operator as given (their blocks never cross the window);
    ``bicubic``/``gaussian`` ones follow the whole image's pixel centres, which an operator made
    for the crop's own size misses by a fraction of a pixel where ``scale`` does not divide H or W.
    """
    if isinstance(operator, DownsampleOperator) and is_resampling(operator):
        rows, cols, lr_rows, lr_cols = _central_crop_ratio(operator, side)
        window = operator.restrict((lr_rows.start, lr_rows.stop), (lr_cols.start, lr_cols.stop))
        return rows, cols, lr_rows, lr_cols, window
    rows, cols, lr_rows, lr_cols = _central_crop(hr_size, scale, side)
    op = make_operator(operator, hr_size, scale, sigma=sigma)
    if op.diagonal_gram:
        return rows, cols, lr_rows, lr_cols, operator
    return rows, cols, lr_rows, lr_cols, op.restrict((lr_rows.start, lr_rows.stop), (lr_cols.start, lr_cols.stop))


def _with_floor(weights: Any, floor: float | None) -> Any:
    """Tile-wise ``weights`` (``None``/``"color"``, a (2, H, W) array or a callable) with a raised floor."""
    if floor is None:
        return weights
    if isinstance(weights, np.ndarray):
        return (
            raise_floor(torch.from_numpy(weights).reshape((-1, *weights.shape[-3:])), floor)
            .reshape(weights.shape)
            .numpy()
        )
    if weights is None or (isinstance(weights, str) and weights == "color"):
        return lambda gt, src: raise_floor(color_weights(gt), floor)
    if callable(weights):
        base = weights
        return lambda gt, src: raise_floor(base(gt, src), floor)
    return weights  # a bad value: reported where it is used


def _crop_weights(w: Tensor, rows: slice, cols: slice) -> Tensor:
    """A (B, 2, H, W) weight window, its last row (ch 0) and column (ch 1) zeroed (they lead outside)."""
    out = w[..., rows, cols].clone()
    out[:, 0, -1, :] = 0
    out[:, 1, :, -1] = 0
    return out


def _gcv_search(
    src: Tensor,
    w: Tensor,
    scale: int,
    *,
    operator: str,
    m: Tensor | None,
    conf: Tensor | None,
    sigma: float | None,
    tol: float,
    max_iter: int,
    noise_sigma: float,
    lam0: float,
    floors: tuple[float | None, ...],
    precond: str = "jacobi",
) -> tuple[float | None, float, Tensor, int]:
    """(floor, λ) of the soft solve by :func:`floor_search` on :func:`lr_risk` (GCV of the LR prediction).

    ``tr H`` comes from one fixed Rademacher probe ``z`` (0 at invalid pixels): one extra solve per
    (floor, λ). Every solve is warm-started from the previous one. Returns ``(floor, λ, x, evaluations)``.
    """
    op = make_operator(operator, (int(w.shape[-2]), int(w.shape[-1])), scale, sigma=sigma)
    valid = torch.isfinite(src) if m is None else (torch.isfinite(src) & m)
    n_valid = int(valid.sum())
    rhs = src.detach()
    z = torch.from_numpy(hutchinson_probe(tuple(src.shape))).to(src)
    z = torch.where(valid, z, torch.zeros_like(z))
    warm: list[Tensor] = []
    warm_z: list[Tensor] = []
    floored: dict[float | None, Tensor] = {}

    def evaluate(floor: float | None, value: float) -> tuple[Tensor, float]:
        if floor not in floored:
            floored.clear()
            floored[floor] = w.detach() if floor is None else raise_floor(w.detach(), floor)
        wf = floored[floor]
        with torch.no_grad():

            def solve(rhs_: Tensor, init: Tensor | None) -> Tensor:
                return graph_solve(
                    rhs_, wf, scale, operator=operator, mode="soft", lam=value, mask=m, sigma=sigma, init=init,
                    tol=tol, max_iter=max_iter, confidence=conf, precond=precond,
                )  # fmt: skip

            x = solve(rhs, warm[-1] if warm else None)
            xz = solve(z, warm_z[-1] if warm_z else None)
            warm[:], warm_z[:] = [x], [xz]
            res = float((op.apply(x) - rhs)[valid].pow(2).sum())
            trace = float((op.apply(xz) * z)[valid].sum())
        return x, lr_risk(res, trace, n_valid, noise_sigma)

    return floor_search(evaluate, lam0, floors)


def _upsample(
    source: Any,
    guide: Any,
    scale: int,
    *,
    operator: str,
    mode: str,
    weights: Weights,
    mask: Any,
    lam: float | Tensor,
    sigma: float | None,
    confidence: Any = None,
    tol: float,
    max_iter: int,
    dtype: torch.dtype | None,
    tile_size: int | None,
    progress: bool | Callable[[int, int], None],
    device: str | torch.device | None,
    noise_sigma: float | None = None,
    floor: float | None = None,
    refinement: Refinement | None = None,
    precond: str = "jacobi",
    guide_sigma: float | None = None,
    nonlocal_kappa: float = 0.0,
) -> tuple[np.ndarray | Tensor, float, int, float | None, float]:
    """The solve of :func:`guided_upsample` once the fidelity (``mode``) is fixed.

    With ``noise_sigma`` (σ̂ > 0, source units), λ is searched from the start ``lam``: for ``soft``
    together with the edge-weight floor (unless ``floor`` is given) by :func:`_gcv_search` (GCV of
    the LR prediction; untiled images above :data:`FLOOR_CROP_HR`² HR px pick the floor on a central
    crop; tile-wise: floor and λ on a central crop of at most :data:`RISK_CROP_HR`² HR px, then one
    tiled solve), for ``robust`` by :func:`discrepancy_search` (tiled or not: the residual is that
    of the whole image). ``floor`` (given) raises the graph's floor in every mode. ``refinement``
    (exact and soft modes) re-weights and solves again with the same λ, the refined weights
    floored at the floor used (:func:`~optisr.guided.refine.refine_solve`; tile-wise: inside each
    tile). ``guide_sigma`` (> 0): the guide is bilateral-filtered at that noise level
    (:func:`~optisr.guided.guide_filter.filter_guide`) before weights are computed from it
    (tile-wise: each padded tile). ``nonlocal_kappa`` (> 0): a soft solve whose λ was searched
    with a learned graph adds :func:`~optisr.guided.nonlocal_term.bilateral_laplacian` of
    the guide to its last solve (the refinement pass, or one more solve warm-started from the
    search's solution); tile-wise, each tile's last solve with the grid of the tile's guide.
    Returns ``(target, λ used, number of solves, floor used or None, κ used or 0.0)``.
    """
    weights, learned = resolve_weights(weights, scale, source, mask)
    numpy_in = isinstance(source, np.ndarray) and isinstance(guide, np.ndarray)
    limit = MODEL_AUTO_TILE_PIXELS if learned else AUTO_TILE_PIXELS
    big = numpy_in and guide.ndim >= 2 and guide.shape[0] * guide.shape[1] > limit
    if tile_size is None and big and not isinstance(weights, Tensor):
        tile_size = DEFAULT_TILE
    if tile_size and tile_size < min_tile_size(scale):
        warnings.warn(
            f"tile_size {tile_size} is below the minimum of {min_tile_size(scale)} HR pixels at ×{scale} "
            f"(max(128, 32·scale)); using {min_tile_size(scale)}",
            stacklevel=2,
        )
        tile_size = min_tile_size(scale)
    if tile_size:
        if not (
            isinstance(source, np.ndarray)
            and isinstance(guide, np.ndarray)
            and (mask is None or isinstance(mask, np.ndarray))
        ):
            raise ConfigError(
                "tile_size needs numpy source, guide and mask arrays (tile-wise solves are not differentiable)"
            )
        if isinstance(weights, np.ndarray) and weights.ndim == 4:
            if weights.shape[0] != 1:
                raise ShapeError(
                    f"edge weights for a numpy source must be (2, H, W) or (1, 2, H, W), got {weights.shape}"
                )
            weights = weights[0]
        if isinstance(lam, Tensor):
            if lam.numel() != 1:
                raise ConfigError("tile-wise solves take one λ (a float), not a tensor of them")
            lam = float(lam)
        if isinstance(confidence, Tensor):
            confidence = confidence.detach().cpu().numpy()
        if confidence is not None:
            confidence = np.asarray(confidence)
            if confidence.size == np.prod(confidence.shape[-2:]):  # (1, 1, h, w) / (1, h, w) -> (h, w)
                confidence = confidence.reshape(confidence.shape[-2:])

        def tiled(value: float, floor_value: float | None, kappa: float = 0.0) -> np.ndarray:
            return tiled_guided_upsample(
                source, guide, scale, tile=int(tile_size), operator=operator, mode=mode,
                weights=_with_floor(weights, floor_value), mask=mask, lam=value, sigma=sigma, tol=tol,
                max_iter=max_iter, dtype=dtype, progress=progress, device=device, precond=precond,
                refinement=None if refinement is None else refinement.with_floor(floor_value),
                confidence=confidence, guide_sigma=guide_sigma, nonlocal_kappa=kappa,
            )  # fmt: skip

        if noise_sigma is None:
            return tiled(lam, floor), lam, 1, floor, 0.0
        if mode == "soft":
            # floor and λ by GCV on a central crop of about RISK_CROP_HR² HR px (untiled), then one tiled solve
            rows, cols, lr_rows, lr_cols, crop_op = _central_window(
                operator, guide.shape[:2], scale, RISK_CROP_HR, sigma
            )
            crop_w = weights
            if isinstance(weights, np.ndarray):
                crop_w = _crop_weights(torch.from_numpy(weights)[None], rows, cols)[0].numpy()
            _, found, n, chosen, _ = _upsample(
                source[lr_rows, lr_cols], guide[rows, cols], scale, operator=crop_op, mode=mode, weights=crop_w,
                mask=None if mask is None else np.asarray(mask)[lr_rows, lr_cols], lam=lam, sigma=sigma, tol=tol,
                max_iter=max_iter, dtype=dtype, tile_size=0, progress=False, device=device, noise_sigma=noise_sigma,
                floor=floor, precond=precond, confidence=None if confidence is None else confidence[lr_rows, lr_cols],
                guide_sigma=guide_sigma,
            )  # fmt: skip
            kappa = nonlocal_kappa if learned else 0.0  # the non-local term: in each tile's last solve
            return tiled(found, chosen, kappa), found, n + 1, chosen, kappa
        op = (
            operator
            if isinstance(operator, DownsampleOperator)
            else make_operator(operator, guide.shape[:2], scale, sigma=sigma)
        )
        valid = np.isfinite(source) if mask is None else (np.isfinite(source) & np.asarray(mask, bool))

        def tiled_ratio(value: float) -> tuple[np.ndarray, float]:
            x = tiled(value, floor)
            r = op.apply_strips(x, dtype=torch.float64).cpu().numpy() - source
            return x, float(np.mean(r[valid] ** 2)) / noise_sigma**2

        found, x, n = discrepancy_search(tiled_ratio, lam)
        return x, found, n, floor, 0.0
    numpy_in, src, gt, m = _as_tensors(source, guide, mask, dtype)
    if guide_sigma:
        gt = _filtered_guide_tensor(gt, guide_sigma)
    in_device = src.device
    if device is not None:
        device = torch.device(device)
        src, gt = src.to(device), gt.to(device)
        m = None if m is None else m.to(device)
    H, W = gt.shape[-2:]
    need = operator.lr_size if isinstance(operator, DownsampleOperator) else lr_size((H, W), scale)
    if tuple(src.shape[-2:]) != need:
        lr_hw = (int(src.shape[-2]), int(src.shape[-1]))
        ratio_hint = "" if scale_for_sizes((H, W), lr_hw) else ", or pass scale=None to solve at the sizes' own ratio"
        raise ShapeError(
            f"guide is {H}×{W}, so at ×{scale} the source must be {need[0]}×{need[1]} (ceil(guide size / scale)), "
            f"but it is {src.shape[-2]}×{src.shape[-1]}; crop or pad the guide to {src.shape[-2] * scale}×"
            f"{src.shape[-1] * scale}{ratio_hint}"
        )
    if weights is None or (isinstance(weights, str) and weights == "color"):
        w = color_weights(gt)
    elif isinstance(weights, str):
        raise ConfigError(
            f"unknown weights {weights!r}; use 'default', 'color', a model (.safetensors), an edge-weight array or a callable"
        )
    elif isinstance(weights, (np.ndarray, Tensor)):
        w = torch.as_tensor(weights).to(device=src.device, dtype=src.dtype)
        if w.dim() == 3:
            w = w[None]
        if tuple(w.shape[1:]) != (2, H, W):
            raise ShapeError(f"edge weights must be (B, 2, {H}, {W}), got {tuple(w.shape)}")
    elif callable(weights):
        # the callable sees invalid source pixels as NaN (as in tile-wise solves)
        w = weights(gt, src if m is None else torch.where(m.expand_as(src), src, torch.full_like(src, float("nan"))))
    else:
        raise ConfigError(f"weights must be None, 'color', an array or a callable, got {type(weights).__name__}")
    conf = None
    if confidence is not None:
        conf = torch.as_tensor(np.asarray(confidence) if isinstance(confidence, np.ndarray) else confidence)
        conf = conf.to(device=src.device, dtype=src.dtype)
        conf = conf.reshape((1, 1, *conf.shape)) if conf.dim() == 2 else (conf[None] if conf.dim() == 3 else conf)
        if tuple(conf.shape[-2:]) != tuple(src.shape[-2:]):
            raise ShapeError(
                f"confidence must be on the source's grid {tuple(src.shape[-2:])}, got {tuple(conf.shape)}"
            )
    solves = 1
    floor_used = floor
    if noise_sigma is not None and mode == "soft":

        def search(
            s_: Tensor,
            w_: Tensor,
            m_: Tensor | None,
            c_: Tensor | None,
            lam0: float,
            floors: tuple[float | None, ...],
            op_: Any = operator,
        ) -> tuple[float | None, float, Tensor, int]:
            return _gcv_search(
                s_, w_, scale, operator=op_, m=m_, conf=c_, sigma=sigma, tol=tol, max_iter=max_iter,
                noise_sigma=noise_sigma, lam0=lam0, floors=floors, precond=precond,
            )  # fmt: skip

        floors: tuple[float | None, ...] = (None, *FLOOR_STEPS) if floor is None else (floor,)
        lam0, evals = float(lam), 0
        if floor is None and H * W > FLOOR_CROP_HR**2:
            # the floor from a central crop; λ is searched again below on the whole image
            rows, cols, lr_rows, lr_cols, floor_op = _central_window(operator, (H, W), scale, FLOOR_CROP_HR, sigma)
            chosen, lam0, _, evals = search(
                src[..., lr_rows, lr_cols], _crop_weights(w, rows, cols),
                None if m is None else m[..., lr_rows, lr_cols], None if conf is None else conf[..., lr_rows, lr_cols],
                lam0, floors, floor_op,
            )  # fmt: skip
            floors = (chosen,)
        floor_used, lam, best, more = search(src, w, m, conf, lam0, floors)
        solves = 2 * (evals + more)
    elif noise_sigma is not None:
        op = make_operator(operator, (H, W), scale, sigma=sigma)
        valid = torch.isfinite(src) if m is None else (torch.isfinite(src) & m)
        warm: list[Tensor] = []
        w_robust = w.detach() if floor is None else raise_floor(w.detach(), floor)

        def ratio(value: float) -> tuple[Tensor, float]:
            with torch.no_grad():
                x = graph_solve(
                    src.detach(), w_robust, scale, operator=operator, mode=mode, lam=value, mask=m, sigma=sigma,
                    init=warm[-1] if warm else None, tol=tol, max_iter=max_iter, confidence=conf, precond=precond,
                )  # fmt: skip
                warm[:] = [x]
                r = (op.apply(x) - src.detach())[valid]
            return x, float(r.pow(2).mean()) / noise_sigma**2

        lam, best, solves = discrepancy_search(ratio, float(lam))
    with torch.no_grad() if not (src.requires_grad or w.requires_grad) else torch.enable_grad():

        def solve(w_: Tensor, extra: Callable[[Tensor], Tensor] | None = None, init: Tensor | None = None) -> Tensor:
            return graph_solve(
                src, w_, scale, operator=operator, mode=mode, lam=lam, mask=m, sigma=sigma, tol=tol,
                max_iter=max_iter, confidence=conf, precond=precond, extra_smoothness=extra, init=init,
            )  # fmt: skip

        searched = noise_sigma is not None and not torch.is_grad_enabled()
        refined = refinement is not None and mode in REFINED_FIDELITIES
        if not (searched and mode == "soft" and learned and nonlocal_kappa > 0):
            nonlocal_kappa = 0.0
        extra = bilateral_laplacian(gt, nonlocal_kappa) if nonlocal_kappa else None
        w_used = w if floor_used is None else raise_floor(w, floor_used)
        if searched and not refined:
            # the search's own solution; with the non-local term one more solve, started from it
            out = best if extra is None else solve(w_used, extra, init=best)
            solves += 0 if extra is None else 1
        else:
            out = best if searched else solve(w_used)
            if refinement is not None and refined:
                last = refinement.with_floor(floor_used)
                first = out if extra is not None else None  # κ = 0: as before, from the default start
                out = refine_solve(lambda w_: solve(w_, extra, init=first), w_used, out, last)
    used = float(lam) if not isinstance(lam, Tensor) or lam.numel() == 1 else float("nan")
    if numpy_in:
        return out[0, 0].cpu().numpy(), used, solves, floor_used, nonlocal_kappa
    out = out.to(in_device)
    if isinstance(source, Tensor) and source.dim() == 2:
        return out[0, 0], used, solves, floor_used, nonlocal_kappa
    if isinstance(source, Tensor) and source.dim() == 3:
        return out[0], used, solves, floor_used, nonlocal_kappa
    return out, used, solves, floor_used, nonlocal_kappa
