"""Tile-wise guided super-resolution for large images, with exact LR consistency.

The LR grid ``h × w`` is cut into core tiles of ``T = tile / f`` LR pixels; each is solved on a
padded tile (``P = overlap / f`` more LR pixels on each side, clipped at the image border) whose
HR block is the ``f``-aligned block of the guide. Tile solutions are cross-faded with linear ramps
of half-width ``blend`` HR pixels centred on the core borders (the ramps form a partition of unity,
so no normalisation is needed), then the blended image is made exactly consistent again:

* ``area`` / ``sum``: ``D Dᵀ`` is diagonal, so the projection onto ``{D x = s}`` acts block by
  block; it is applied per core tile (an ``f``-aligned tile is a union of whole LR blocks).
* ``bicubic`` / ``gaussian``: the supports overlap neighbouring blocks, so the projection is
  global: ``x += Dᵀ (D Dᵀ)⁻¹ (s − D x)`` with the separable (Kronecker) Gram inverse on the LR
  grid, applied in HR row strips. Its memory is O(HR / f) besides the output.

Each padded tile is solved with the tile's own operator. For ``area``/``sum`` that is the global
operator restricted to the tile. For ``bicubic``/``gaussian`` it is the global operator's rows and
columns for the tile, each row renormalised to its full sum where the tile border truncates it
(what PIL does at the image border), so tiles follow the global geometry also when the image size
is not a multiple of ``f``.

At a non-integer ratio (the whole image's operator from
:func:`~optisr.ops.operators.resampling_operator`, ``r = H/h`` per axis) the LR grid is cut the
same way, into cores of about ``tile / r`` LR px; a core's HR rows are ``[⌊r·c0⌋, ⌊r·c1⌋)`` (the
cores partition the HR grid) and a padded tile holds every HR pixel its LR pixels cover
(``[⌊r·p0⌋, ⌈r·p1⌉)``), solved with the whole operator's rows and columns for the tile. Cells do
not align with any tile, so the final projection is the global one for every kind.

Memory: the output, the source and the guide in its own dtype, plus per-tile temporaries (the
guide is converted to float one tile at a time). Nothing here reads files or parses arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from torch import Tensor

from optisr.errors import ConfigError, ShapeError
from optisr.guided.graph_weights import color_weights, resolve_weights
from optisr.guided.guides import guide_to_unit
from optisr.guided.layer import graph_solve
from optisr.guided.nonlocal_term import bilateral_laplacian
from optisr.guided.refine import REFINED_FIDELITIES, Refinement, refine_solve
from optisr.ops.operators import OPERATORS, DownsampleOperator, covered_hr, is_resampling, lr_size, make_operator
from optisr.solvers.graph import check_precond
from optisr.solvers.robust import mad_sigma

__all__ = [
    "DEFAULT_BLEND_LR",
    "DEFAULT_OVERLAP_LR",
    "DEFAULT_TILE",
    "NETWORK_CONTEXT_HR",
    "SOLVER_CONTEXT_LR",
    "MIN_TILE_HR",
    "MIN_TILE_LR",
    "Span",
    "TileMap",
    "TileProblem",
    "WeightsFn",
    "axis_factors",
    "axis_spans",
    "check_tiling",
    "default_overlap",
    "iter_tiles",
    "min_tile_size",
    "project_blocks",
    "project_global",
    "solve_tile",
    "solve_tiles_here",
    "tile_grid",
    "tile_problems",
    "tiled_guided_upsample",
]

# Defaults: core tile in HR px; context (overlap on each side) and cross-fade half-width.
#
# The context a tile needs is the larger of two lengths, so the default overlap is
# max(solver context in LR px · scale, network context in HR px) (:func:`default_overlap`):
#
# * The solve: how far the tile's free border reaches into its core. With the default tolerance
#   (1e-4) and exact fidelity, 4-16 LR px of context gave the same error against the converged
#   untiled solve as the untiled tol-1e-4 solve itself (procedural scenes seeds 0-4, colour and
#   learned graph, area and bicubic, ×4/×8/×16; 2026-12-02: RMS 0.0007-0.0046 % of the range at
#   every overlap, the max set by the solver's tolerance, not by the seams). Converged solves
#   (tol 1e-9) show the seams: on the worst scene (a weakly coupled thin structure crossing
#   tiles) max |tiled − untiled| / range was 2.3e-2, 4.4e-3, 3.0e-3, 5.5e-4 for 4, 8, 12, 16 LR
#   px. Exact solves take 8 LR px. Soft solves couple further (the data term does not pin block
#   means): at λ = 30, ×8, 8 LR px doubled the max error against the converged solve (0.13-0.20
#   against 0.04-0.08 % of the range), 12-16 did not; they keep 16 LR px, as robust (IRLS) ones.
# * The learned edge network: its weights depend on the guide up to ~128 HR px away (weights of a
#   cropped image against the whole one, by distance from the crop border: 1.4e-2 at 64 px,
#   4e-3 at 96, 4e-4 at 128, at every scale, since the network works on HR px). With 64 HR px of
#   context the tiled solve's max error doubled (×8, seed 0: 0.145 against 0.05 % of the range),
#   with 96 it matched the untiled solve. Colour weights are local (one pixel).
#
# A one-block cross-fade makes jumps across tile borders as small as anywhere else; wider fades
# only bring tile borders (the worst part of each tile solution) into the image.
DEFAULT_TILE = 1024
SOLVER_CONTEXT_LR = {"exact": 8, "soft": 16, "robust": 16}
NETWORK_CONTEXT_HR = 96
DEFAULT_OVERLAP_LR = SOLVER_CONTEXT_LR["soft"]  # the largest solver context (kept for callers of 0.1)
DEFAULT_BLEND_LR = 1
# Smallest tile the public entry points (guided_upsample(tile_size=), optisr guided --tile-size) accept:
# with 16 LR px of overlap on each side (soft solves), a tile of T LR px solves (T + 32)² LR px for T² kept, so
# tiny tiles redo most of the work many times (tile 1 at ×4 ran 24× slower than untiled). At 32 LR px
# the padded tile is 4× the core; 128 HR px keeps small scales from tiles of a few hundred pixels.
MIN_TILE_HR = 128
MIN_TILE_LR = 32


def min_tile_size(scale: int) -> int:
    """The smallest core tile, in HR pixels, that tile-wise solves accept at ``scale``: ``max(128, 32·scale)``."""
    return max(MIN_TILE_HR, MIN_TILE_LR * int(scale))


@dataclass(frozen=True)
class Span:
    """One axis of one tile: core ``[c0, c1)`` and padded ``[p0, p1)`` in LR px; HR equivalents."""

    c0: int
    c1: int
    p0: int
    p1: int
    first: bool
    last: bool

    def hr(self, f: int | Fraction, n_hr: int) -> tuple[int, int, int, int]:
        """(core start, core end, padded start, padded end) in HR pixels, clipped to ``n_hr``.

        ``f``: HR px per LR px along this axis, the integer scale, or at a non-integer ratio the
        exact ``Fraction(H, h)``. Cores start and end at ``⌊f·c⌋`` (they partition the HR axis); a
        padded span is :func:`~optisr.ops.operators.covered_hr`, every HR pixel its LR pixels cover (as
        :meth:`~optisr.ops.operators.DownsampleOperator.hr_window`). For an integer ``f`` both are
        ``f·c``. (``Fraction`` rounds exactly.)
        """
        return (math.floor(f * self.c0), min(n_hr, math.floor(f * self.c1)), *covered_hr(self.p0, self.p1, f, n_hr))


def axis_spans(n_lr: int, tile_lr: int, overlap_lr: int) -> list[Span]:
    """Core/padded spans of one axis: cores of ``tile_lr`` LR px (last one partial), padded by ``overlap_lr``."""
    spans = []
    starts = list(range(0, n_lr, tile_lr))
    for k, c0 in enumerate(starts):
        c1 = min(n_lr, c0 + tile_lr)
        spans.append(Span(c0, c1, max(0, c0 - overlap_lr), min(n_lr, c1 + overlap_lr), k == 0, k == len(starts) - 1))
    return spans


def _ramp(span: Span, f: int | Fraction, n_hr: int, blend: float) -> np.ndarray:
    """Blend weights over the padded HR span: 1 in the core, linear ramps of half-width ``blend``."""
    C0, C1, R0, R1 = span.hr(f, n_hr)
    y = np.arange(R0, R1, dtype=np.float64) + 0.5
    w = np.ones(R1 - R0)
    if blend > 0:
        if not span.first:
            w = np.minimum(w, np.clip((y - (C0 - blend)) / (2 * blend), 0.0, 1.0))
        if not span.last:
            w = np.minimum(w, np.clip(((C1 + blend) - y) / (2 * blend), 0.0, 1.0))
    else:
        w = ((y >= C0) & (y < C1)).astype(np.float64)
    return w


# ------------------------------------------------------------------------------ projections


def project_blocks(out: np.ndarray, source: np.ndarray, valid: np.ndarray, kind: str, f: int, spans) -> None:
    """In place: exact projection of ``out`` onto ``{D x = s}`` for ``area``/``sum``, core tile by core tile."""
    H, W = out.shape
    ys, xs = spans
    for sy in ys:
        C0, C1, _, _ = sy.hr(f, H)
        for sx in xs:
            D0, D1, _, _ = sx.hr(f, W)
            op = make_operator(kind, (C1 - C0, D1 - D0), f)
            x = torch.from_numpy(out[C0:C1, D0:D1])
            s = torch.from_numpy(source[sy.c0 : sy.c1, sx.c0 : sx.c1]).to(x.dtype)
            m = torch.from_numpy(valid[sy.c0 : sy.c1, sx.c0 : sx.c1])
            x.copy_(op.project(x, s, None if bool(m.all()) else m))


def project_global(
    out: np.ndarray, source: np.ndarray, valid: np.ndarray, op: DownsampleOperator, strip: int = 256
) -> None:
    """In place: exact projection onto ``{D x = s}`` for any separable operator, in HR row strips.

    ``x += Dᵀ (D Dᵀ)⁻¹ (s − D x)`` by :meth:`DownsampleOperator.project_`: ``D x`` is built strip
    by strip along the rows (O(H·w) memory), the Gram solve is Kronecker (or LR PCG with a mask),
    and ``Dᵀ z`` is added one block of HR rows at a time, so no HR-sized temporary is created.
    """
    m = torch.from_numpy(valid)
    op.project_(torch.from_numpy(out), torch.from_numpy(source), None if bool(m.all()) else m, rows=strip)


# --------------------------------------------------------------------------------- the solve


def _guide_tile(
    guide: np.ndarray, rows: slice, cols: slice, dtype: torch.dtype, guide_sigma: float | None = None
) -> Tensor:
    """(1, C, H', W') float guide tile; bilateral-filtered at ``guide_sigma`` when given (> 0)."""
    g = guide_to_unit(guide[rows, cols])  # as the untiled path does
    if g.ndim == 2:
        g = g[:, :, None]
    if guide_sigma:
        from optisr.guided.guide_filter import filter_guide

        g = filter_guide(g, guide_sigma)  # the padded tile: its border pixels lie in the overlap
    return torch.from_numpy(np.ascontiguousarray(g.transpose(2, 0, 1))).to(dtype)[None]


def tile_grid(
    hr_size: tuple[int, int], scale: int, tile: int, overlap: int, lr: tuple[int, int] | None = None
) -> tuple[list[Span], list[Span]]:
    """The row and column spans for an HR size; ``tile``/``overlap`` in HR px (multiples of ``scale``).

    ``lr``: the LR size at a non-integer ratio (:func:`~optisr.ops.operators.resampling_operator`);
    then each axis has cores of ``round(tile / r)`` and padding of ``⌈overlap / r⌉`` LR px, ``r = H/h``
    (``scale`` is not used). None: the integer scale's ``ceil(H / scale)``.
    """
    if lr is None:
        h, w = lr_size(hr_size, scale)
        return axis_spans(h, tile // scale, overlap // scale), axis_spans(w, tile // scale, overlap // scale)
    axes = []
    for n_hr, n_lr in zip(hr_size, lr):
        r = n_hr / n_lr
        axes.append(axis_spans(n_lr, max(1, round(tile / r)), math.ceil(overlap / r)))
    return axes[0], axes[1]


def axis_factors(op: DownsampleOperator | None, scale: int) -> tuple[int | Fraction, int | Fraction]:
    """HR px per LR px along rows and columns for :meth:`Span.hr`: ``scale`` twice, or at a
    non-integer ratio (``op`` from :func:`~optisr.ops.operators.resampling_operator`) the exact
    ``Fraction(H, h)`` and ``Fraction(W, w)``."""
    if op is None or not is_resampling(op):
        return scale, scale
    (H, W), (h, w) = op.hr_size, op.lr_size
    return Fraction(H, h), Fraction(W, w)


def default_overlap(scale: int, mode: str = "exact", learned: bool = False) -> int:
    """The default context on each side of a tile, HR px: ``max(SOLVER_CONTEXT_LR[mode]·scale,
    NETWORK_CONTEXT_HR if learned)`` rounded up to a multiple of ``scale`` (see the module's notes).

    ``learned``: the weights come from a network run on each tile (a callable), not from the guide's
    colours or a given weight array.
    """
    hr = SOLVER_CONTEXT_LR[mode] * int(scale)
    if learned:
        hr = max(hr, NETWORK_CONTEXT_HR)
    return int(scale) * math.ceil(hr / int(scale))


def check_tiling(scale: int, tile: Any, overlap: Any, *, mode: str = "exact", learned: bool = False) -> tuple[int, int]:
    """Validate ``tile``/``overlap`` (HR px); returns them rounded up to multiples of ``scale``.

    ``overlap=None`` is :func:`default_overlap` for ``mode`` and ``learned``.
    """
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 1:
        raise ConfigError(f"tile size must be a positive integer number of HR pixels, got {tile!r}")
    if overlap is None:
        overlap = default_overlap(scale, mode, learned)
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or overlap < 0:
        raise ConfigError(f"tile overlap must be an integer >= 0 HR pixels, got {overlap!r}")
    tile_r = scale * max(1, math.ceil(tile / scale))
    overlap_r = scale * math.ceil(overlap / scale)
    return int(tile_r), int(overlap_r)


@dataclass(frozen=True)
class TileProblem:
    """One padded tile's solve, self-contained: windows of the inputs, not whole images.

    It pickles (a few MB at 1024-px tiles), so :func:`solve_tile` can run it in another process
    or on another machine (:mod:`optisr.scaleout`). Sizes: the solved tile is ``H' × W'`` HR px
    over ``h' × w'`` LR px (the planned padded tile, grown where it held no valid source pixel).

    Attributes:
        rows, cols: the planned spans (what the cross-fade and the projection use).
        source: (h', w') LR window, invalid pixels set to 0, in the solve's numpy dtype.
        valid: (h', w') bool LR validity window.
        guide: (H', W'[, C]) HR guide window in the guide's stored dtype (uint8/uint16/float).
        weights: ``None`` (colour weights of the guide window) or a (2, H', W') edge-weight window.
        operator: the downsampling operator restricted to the solved tile.
        crop: ``(r0, r1, q0, q1)`` HR px to cut the solution back to the planned padded tile, or None.
        mode, lam, tol, max_iter, precond: as :func:`tiled_guided_upsample`.
        dtype: torch computation dtype; device: where to solve (None: CPU).
        refinement: re-weighted solves of the tile after the first (exact and soft modes,
            :mod:`optisr.guided.refine`; the range factor is the whole source's), or None.
        confidence: (h', w') per-LR-pixel data weights (soft and robust modes), or None.
        robust_sigma: robust mode: the residual scale σ (source units) of the whole image, so that
            every tile's Huber threshold is the same; None: each tile estimates its own.
        guide_sigma: the whole guide's noise σ̂: the tile's guide is bilateral-filtered at it before
            weights are computed (:func:`optisr.guided.guide_filter.filter_guide`); None: not filtered.
        nonlocal_kappa: soft mode: κ of the non-local term added to the tile's last solve
            (:func:`optisr.guided.nonlocal_term.bilateral_laplacian` of the tile's guide); 0: none.
    """

    rows: Span
    cols: Span
    source: np.ndarray
    valid: np.ndarray
    guide: np.ndarray
    weights: np.ndarray | None
    operator: DownsampleOperator
    crop: tuple[int, int, int, int] | None
    mode: str
    lam: float
    tol: float
    max_iter: int
    dtype: torch.dtype
    device: str | torch.device | None = None
    refinement: Refinement | None = None
    precond: str = "jacobi"
    confidence: np.ndarray | None = None
    robust_sigma: float | None = None
    guide_sigma: float | None = None
    nonlocal_kappa: float = 0.0


WeightsFn = Callable[[Tensor, Tensor], Tensor]
"""Callable edge weights ``(guide_tile (1, C, H', W'), source_tile (1, 1, h', w') NaN = invalid) -> (1, 2, H', W')``."""

TileMap = Callable[[Iterable[TileProblem], "WeightsFn | None"], Iterable[tuple[TileProblem, np.ndarray]]]
"""How tiles are solved: ``(problems, weights_fn) -> (problem, solution)`` pairs in the problems' order."""


def solve_tile(problem: TileProblem, weights_fn: WeightsFn | None = None) -> np.ndarray:
    """The HR solution of one padded tile, (R1 - R0, Q1 - Q0) numpy in the solve dtype.

    ``weights_fn`` (callable weights, e.g. a learned model) takes precedence over ``problem.weights``.
    A plain function of its arguments: the same problem gives the same solution in any process.
    """
    dtype = problem.dtype
    src = torch.from_numpy(np.ascontiguousarray(problem.source)).to(dtype)[None, None]
    m = torch.from_numpy(np.ascontiguousarray(problem.valid))[None, None]
    g = _guide_tile(problem.guide, slice(None), slice(None), dtype, problem.guide_sigma)
    conf = None
    if problem.confidence is not None:
        conf = torch.from_numpy(np.ascontiguousarray(problem.confidence)).to(dtype)[None, None]
    if problem.device is not None:
        src, m, g = src.to(problem.device), m.to(problem.device), g.to(problem.device)
        conf = None if conf is None else conf.to(problem.device)
    with torch.no_grad():
        if weights_fn is not None:
            nan = torch.full((), float("nan"), dtype=src.dtype, device=src.device)
            wt = weights_fn(g, torch.where(m, src, nan))
        elif problem.weights is not None:
            w = problem.weights
            wt = torch.from_numpy(np.ascontiguousarray(w)).to(g.device, g.dtype).reshape(1, 2, *w.shape[-2:])
        else:
            wt = color_weights(g)

        def solve(w_: Tensor, extra: Callable[[Tensor], Tensor] | None = None, init: Tensor | None = None) -> Tensor:
            return graph_solve(
                src, w_, problem.operator.scale, operator=problem.operator, mode=problem.mode, lam=problem.lam,
                mask=None if bool(m.all()) else m, tol=problem.tol, max_iter=problem.max_iter, precond=problem.precond,
                confidence=conf, noise_sigma=problem.robust_sigma, extra_smoothness=extra, init=init,
            )  # fmt: skip

        kappa = problem.nonlocal_kappa if problem.mode == "soft" else 0.0
        extra = bilateral_laplacian(g, kappa) if kappa else None
        x = solve(wt)
        if problem.refinement is not None and problem.mode in REFINED_FIDELITIES:
            first = x if extra is not None else None  # κ = 0: as before, from the default start
            x = refine_solve(lambda w_: solve(w_, extra, first), wt, x, problem.refinement)
        elif extra is not None:
            x = solve(wt, extra, x)
    sol = x[0, 0].cpu().numpy()
    if problem.crop is not None:  # grown to reach a valid pixel: cut back to the planned padding
        r0, r1, q0, q1 = problem.crop
        sol = sol[r0:r1, q0:q1]
    return sol


def solve_tiles_here(
    problems: Iterable[TileProblem], weights_fn: WeightsFn | None
) -> Iterator[tuple[TileProblem, np.ndarray]]:
    """The default :data:`TileMap`: each tile solved in this process, in order."""
    for problem in problems:
        yield problem, solve_tile(problem, weights_fn)


def tile_problems(
    source: np.ndarray,
    guide: np.ndarray,
    scale: int,
    spans: tuple[list[Span], list[Span]],
    *,
    operator: str | DownsampleOperator,
    mode: str,
    weights: np.ndarray | None,
    valid: np.ndarray,
    lam: float,
    sigma: float | None,
    tol: float,
    max_iter: int,
    dtype: torch.dtype,
    device: str | torch.device | None = None,
    refinement: Refinement | None = None,
    precond: str = "jacobi",
    confidence: np.ndarray | None = None,
    robust_sigma: float | None = None,
    guide_sigma: float | None = None,
    nonlocal_kappa: float = 0.0,
) -> Iterator[TileProblem]:
    """The padded tiles' problems, row-major, each sliced from the whole arrays when it is reached.

    ``source`` (h, w) with invalid pixels 0, ``valid`` (h, w) bool, ``guide`` (H, W[, C]) in its
    stored dtype, ``weights`` None or a (2, H, W) edge-weight array, ``confidence`` None or (h, w)
    data weights ≥ 0 (a tile grows until it holds a valid pixel of positive confidence).
    ``operator``: a kind at the integer ``scale``, or the whole image's operator (e.g. a
    :func:`~optisr.ops.operators.resampling_operator` at a non-integer ratio).
    """
    H, W = guide.shape[:2]
    whole = (
        operator if isinstance(operator, DownsampleOperator) else make_operator(operator, (H, W), scale, sigma=sigma)
    )
    fy, fx = axis_factors(whole, scale)
    held = valid if confidence is None else valid & (confidence > 0)
    holes = _hole_map(held)
    all_spans = [*spans[0], *spans[1]]
    context = max(max(s.c0 - s.p0, s.p1 - s.c1) for s in all_spans)
    reach = max(context, max(s.c1 - s.c0 for s in all_spans) // 2)
    for sy in spans[0]:
        for sx in spans[1]:
            sy_, sx_ = _with_valid_pixel(sy, sx, held)
            if holes is not None:
                sy_, sx_ = _around_holes(sy_, sx_, holes, context, reach)
            _, _, R0, R1 = sy_.hr(fy, H)
            _, _, Q0, Q1 = sx_.hr(fx, W)
            crop = None
            if (sy_, sx_) != (sy, sx):
                _, _, r0, r1 = sy.hr(fy, H)
                _, _, q0, q1 = sx.hr(fx, W)
                crop = (r0 - R0, r1 - R0, q0 - Q0, q1 - Q0)
            yield TileProblem(
                rows=sy,
                cols=sx,
                source=np.ascontiguousarray(source[sy_.p0 : sy_.p1, sx_.p0 : sx_.p1]),
                valid=np.ascontiguousarray(valid[sy_.p0 : sy_.p1, sx_.p0 : sx_.p1]),
                guide=guide[R0:R1, Q0:Q1],  # a view: _guide_tile copies it once, into (C, H, W) floats
                weights=None if weights is None else np.ascontiguousarray(weights[..., R0:R1, Q0:Q1]),
                operator=whole.restrict((sy_.p0, sy_.p1), (sx_.p0, sx_.p1)),
                crop=crop,
                mode=mode,
                lam=lam,
                tol=tol,
                max_iter=max_iter,
                dtype=dtype,
                device=device,
                refinement=refinement,
                precond=precond,
                confidence=None
                if confidence is None
                else np.ascontiguousarray(confidence[sy_.p0 : sy_.p1, sx_.p0 : sx_.p1]),
                robust_sigma=robust_sigma,
                guide_sigma=guide_sigma,
                nonlocal_kappa=nonlocal_kappa,
            )


def iter_tiles(
    source: np.ndarray,
    guide: np.ndarray,
    scale: int,
    spans: tuple[list[Span], list[Span]],
    *,
    operator: str | DownsampleOperator,
    mode: str,
    weights: Any,
    valid: np.ndarray,
    lam: float,
    sigma: float | None,
    tol: float,
    max_iter: int,
    dtype: torch.dtype,
    device: str | torch.device | None = None,
    map_tiles: TileMap | None = None,
    refinement: Refinement | None = None,
    precond: str = "jacobi",
    confidence: np.ndarray | None = None,
    robust_sigma: float | None = None,
    guide_sigma: float | None = None,
    nonlocal_kappa: float = 0.0,
) -> Iterator[tuple[Span, Span, np.ndarray]]:
    """Solve each padded tile (on ``device``, default CPU) with ``map_tiles`` (default: here, in order).

    Yields ``(row span, col span, HR solution of the padded tile)``, the solution as numpy.
    """
    weights_fn, weights_arr = _split_weights(weights)
    problems = tile_problems(
        source, guide, scale, spans, operator=operator, mode=mode, weights=weights_arr, valid=valid,
        lam=lam, sigma=sigma, tol=tol, max_iter=max_iter, dtype=dtype, device=device, refinement=refinement,
        precond=precond, confidence=confidence, robust_sigma=robust_sigma, guide_sigma=guide_sigma,
        nonlocal_kappa=nonlocal_kappa,
    )  # fmt: skip
    for problem, sol in (map_tiles or solve_tiles_here)(problems, weights_fn):
        yield problem.rows, problem.cols, sol


def _split_weights(weights: Any) -> tuple[WeightsFn | None, np.ndarray | None]:
    """``weights`` as (callable or None, (2, H, W) array or None); neither = colour weights."""
    if weights is None or (isinstance(weights, str) and weights == "color"):
        return None, None
    if isinstance(weights, np.ndarray):
        return None, weights
    if callable(weights):
        return weights, None
    raise ConfigError(
        f"weights must be None, 'color', an edge-weight array or a callable, got {type(weights).__name__}"
    )


def _hole_map(held: np.ndarray) -> tuple[np.ndarray, list] | None:
    """The unconstrained LR regions: (labels (h, w), 0 where held; bounding slices per label), or None."""
    if held.all():
        return None
    from scipy import ndimage

    labels, _ = ndimage.label(~held)  # 4-connected
    return labels, ndimage.find_objects(labels)


def _around_holes(sy: Span, sx: Span, holes: tuple[np.ndarray, list], context: int, reach: int) -> tuple[Span, Span]:
    """Grow a tile's padding over the unconstrained regions that reach into its core.

    Inside a hole of the source the solution is filled in from the hole's whole border; a tile that
    cuts such a hole puts a free border where part of that data is. So each hole touching the core
    is taken in whole, with ``context`` LR px around it, but no side grows beyond ``reach`` LR px
    from the core (the tile stays at most (1 + 2·reach/core)² its core; larger holes stay cut).
    Measured (2048² guide, ×8, 512-px tiles, a 40² LR hole across a tile corner, converged solves
    at tol 1e-8): max |tiled − untiled| 6.2e-2 of the range with cut holes, 1.9e-5 with whole ones.
    (At the default tol 1e-4 both solves stop early inside such a hole, ~2e-2 apart either way.)
    """
    labels, boxes = holes
    h, w = labels.shape
    ids = np.unique(labels[sy.c0 : sy.c1, sx.c0 : sx.c1])
    ids = ids[ids > 0]
    if not ids.size:
        return sy, sx
    r0, r1, q0, q1 = sy.p0, sy.p1, sx.p0, sx.p1
    for i in ids:
        rows, cols = boxes[i - 1]
        r0, r1 = min(r0, rows.start - context), max(r1, rows.stop + context)
        q0, q1 = min(q0, cols.start - context), max(q1, cols.stop + context)
    r0, r1 = max(0, r0, sy.c0 - reach), min(h, r1, sy.c1 + reach)
    q0, q1 = max(0, q0, sx.c0 - reach), min(w, q1, sx.c1 + reach)
    return (
        Span(sy.c0, sy.c1, min(r0, sy.p0), max(r1, sy.p1), sy.first, sy.last),
        Span(sx.c0, sx.c1, min(q0, sx.p0), max(q1, sx.p1), sx.first, sx.last),
    )


def _with_valid_pixel(sy: Span, sx: Span, valid: np.ndarray) -> tuple[Span, Span]:
    """Grow a tile's padding (doubling) until it holds a valid source pixel."""
    h, w = valid.shape
    pad = max(sy.c0 - sy.p0, sy.p1 - sy.c1, sx.c0 - sx.p0, sx.p1 - sx.c1, 1)
    while not valid[sy.p0 : sy.p1, sx.p0 : sx.p1].any():
        pad *= 2
        sy = Span(sy.c0, sy.c1, max(0, sy.c0 - pad), min(h, sy.c1 + pad), sy.first, sy.last)
        sx = Span(sx.c0, sx.c1, max(0, sx.c0 - pad), min(w, sx.c1 + pad), sx.first, sx.last)
    return sy, sx


def tiled_guided_upsample(
    source: np.ndarray,
    guide: np.ndarray,
    scale: int,
    *,
    tile: int = DEFAULT_TILE,
    overlap: int | None = None,
    blend: float | None = None,
    operator: str | DownsampleOperator = "area",
    mode: str = "exact",
    weights: Any = None,
    mask: np.ndarray | None = None,
    lam: float = 1.0,
    sigma: float | None = None,
    tol: float = 1e-4,
    max_iter: int = 2000,
    dtype: torch.dtype | None = None,
    progress: bool | Callable[[int, int], None] = False,
    device: str | torch.device | None = None,
    map_tiles: TileMap | None = None,
    refinement: Refinement | None = None,
    precond: str = "jacobi",
    confidence: np.ndarray | None = None,
    robust_sigma: float | None = None,
    guide_sigma: float | None = None,
    nonlocal_kappa: float = 0.0,
) -> np.ndarray:
    """Guided upsampling solved tile by tile, with bounded memory and exact consistency kept.

    Args:
        source: LR map (h, w), NaN = invalid.
        guide: HR guide (H, W, C) or (H, W): uint8, uint16 or float in [0, 1]; kept in its dtype
            and converted one tile at a time. ``(h, w) = ceil((H, W) / scale)``.
        scale: integer upsampling scale (at a non-integer ratio the operator's nominal ``scale``).
        tile: core tile size in HR px, rounded up to a multiple of ``scale``.
        overlap: context added on each side of a tile, HR px (rounded up to a multiple of
            ``scale``); default :func:`default_overlap`: ``8·scale`` for exact solves, ``16·scale``
            for soft ones, at least 96 HR px with a learned model.
        blend: half-width in HR px of the linear cross-fade at core borders (default ``scale``,
            at most the overlap; 0 = each HR pixel from exactly one tile).
        operator, lam, sigma, tol, max_iter, precond: as :func:`optisr.guided_upsample`. ``operator``
            may be the whole image's :class:`~optisr.ops.operators.DownsampleOperator`, e.g. a
            :func:`~optisr.ops.operators.resampling_operator` when the sizes are a non-integer
            ratio apart (a 180×240 source under a 480×640 guide): then each axis is cut into cores
            of about ``tile / r`` LR px (``r = H/h``), a padded tile holds every HR pixel its LR
            pixels cover, and the final projection is global.
        mode: ``"exact"``, ``"soft"`` or ``"robust"`` (the fidelity once chosen; ``"auto"`` is
            resolved by :func:`optisr.guided_upsample`).
        weights: ``"default"``/``"model"``/a model or its path (the learned graph, with the
            whole image's source statistics), ``None``/``"color"`` (colour weights of each guide tile: local, so identical to
            the global ones inside the tile), an edge-weight array (2, H, W) / (1, 2, H, W), or a
            callable ``(guide_tile (1, C, h', w'), source_tile (1, 1, h'', w'')) -> weights``.
        mask: optional LR validity mask (h, w), True = valid.
        dtype: computation and output dtype (default float32, float64 for a float64 source).
        progress: ``True`` for a tqdm bar on stderr, or a callable ``(done, total)``.
        device: where each tile is solved (e.g. ``"cuda"``; default CPU). Blending and the final
            projection run on the CPU, in the numpy output.
        map_tiles: how the tiles' :class:`TileProblem` s are solved (default :func:`solve_tiles_here`,
            in this process); e.g. :func:`optisr.scaleout.dask_tile_map` solves them on a Dask cluster.
            It must return the solutions in the problems' order, so the cross-fade sums in the same
            order and the result does not depend on where tiles ran.
        refinement: re-weighted solves inside each tile (exact and soft modes; see
            :func:`optisr.guided.refine.resolve_refinement`), or None (no refinement, the default
            here; :func:`optisr.guided_upsample` passes its own).
        confidence: optional (h, w) per-LR-pixel data weights ``C ≥ 0`` of the soft and robust
            data terms (``(Dx − s)ᵀ C (Dx − s)``), cut into tiles like the source.
        robust_sigma: robust mode: the residual scale σ in source units. None (default): as the
            untiled solve estimates it, the normalised MAD of the residuals ``D x − s`` of a soft
            solve with the same λ, here of the whole image (a tiled soft solve first), so that
            every tile uses the same σ.
        guide_sigma: the guide's noise σ̂ ([0, 1] units, :func:`~optisr.guided.guide_filter.estimate_guide_noise`
            of the whole guide): each padded tile's guide is bilateral-filtered at it before weights are
            computed from it (what ``guided_upsample(guide_filter=True)`` does untiled); None: not filtered.
        nonlocal_kappa: soft mode: κ of the non-local smoothness term that each tile's last solve adds
            (:mod:`optisr.guided.nonlocal_term`, the grid of the tile's guide); 0 (default): none.
    Returns:
        (H, W) numpy array. In ``exact`` mode ``D x = s`` on valid pixels (a final projection).
    """
    if isinstance(scale, bool) or int(scale) != scale or scale < 1:
        raise ConfigError(f"scale must be a positive integer, got {scale!r}")
    scale = int(scale)
    if not isinstance(operator, DownsampleOperator) and operator not in OPERATORS:
        raise ConfigError(f"unknown operator {operator!r}; choose one of {', '.join(OPERATORS)}")
    if mode not in SOLVER_CONTEXT_LR:
        raise ConfigError(f"mode must be 'exact', 'soft' or 'robust', got {mode!r}")
    check_precond(precond)
    if not isinstance(source, np.ndarray) or source.ndim != 2:
        raise ShapeError(f"tiled upsampling takes a numpy (h, w) source, got {getattr(source, 'shape', type(source))}")
    if not isinstance(guide, np.ndarray) or guide.ndim not in (2, 3):
        raise ShapeError(
            f"tiled upsampling takes a numpy (H, W[, C]) guide, got {getattr(guide, 'shape', type(guide))}"
        )
    if not (guide.dtype in (np.uint8, np.uint16) or np.issubdtype(guide.dtype, np.floating)):
        raise ShapeError(f"guide must be uint8, uint16 or float in [0, 1], got {guide.dtype}")
    check_tiling(scale, tile, overlap)  # bad values fail before any work
    if dtype is None:
        dtype = torch.float64 if source.dtype == np.float64 else torch.float32
    H, W = guide.shape[:2]
    if isinstance(operator, DownsampleOperator):
        if operator.hr_size != (H, W) or operator.lr_size != source.shape:
            raise ShapeError(
                f"{operator!r} maps {operator.hr_size[0]}×{operator.hr_size[1]} onto "
                f"{operator.lr_size[0]}×{operator.lr_size[1]}, but the guide is {H}×{W} and the source "
                f"{source.shape[0]}×{source.shape[1]}"
            )
        if not is_resampling(operator) and operator.scale != scale:
            raise ConfigError(f"{operator!r} is not an operator at ×{scale}")
        whole = operator
    else:
        need = lr_size((H, W), scale)
        if source.shape != need:
            raise ShapeError(
                f"guide is {H}×{W}, so at ×{scale} the source must be {need[0]}×{need[1]} (ceil(guide size / scale)), "
                f"but it is {source.shape[0]}×{source.shape[1]}"
            )
        whole = make_operator(operator, (H, W), scale, sigma=sigma)
    if isinstance(weights, np.ndarray) and tuple(weights.shape[-3:]) != (2, H, W):
        raise ShapeError(f"edge weights must be (2, {H}, {W}), got {weights.shape}")
    if (
        weights is not None
        and not isinstance(weights, (np.ndarray, Tensor))
        and (not callable(weights) or isinstance(weights, torch.nn.Module))
    ):
        weights, _ = resolve_weights(weights, scale, source, mask)  # "default", "model", a .safetensors path
    learned = callable(weights) and not isinstance(weights, str)
    tile, overlap = check_tiling(scale, tile, overlap, mode=mode, learned=learned)
    blend = DEFAULT_BLEND_LR * scale if blend is None else float(blend)
    if blend < 0:
        raise ConfigError(f"blend must be >= 0 HR pixels, got {blend}")
    blend = min(blend, overlap, tile / 2)
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    valid = np.isfinite(source)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool).reshape(source.shape) if np.size(mask) == source.size else None
        if mask is None:
            raise ShapeError(f"mask must be {source.shape[0]}×{source.shape[1]} (the source grid)")
        valid &= mask
    if not valid.any():
        raise ShapeError("the source has no valid pixel: nothing constrains the output")
    src = np.where(valid, source, 0.0).astype(np_dtype)
    conf = None
    if confidence is not None:
        if mode == "exact":
            raise ConfigError("confidence weights the soft data term; exact fidelity has none (use soft or robust)")
        conf = np.asarray(confidence, dtype=np_dtype)
        if conf.shape != source.shape:
            raise ShapeError(
                f"confidence must be {source.shape[0]}×{source.shape[1]} (the source grid), got {conf.shape}"
            )
        if not np.isfinite(conf).all() or (conf < 0).any():
            raise ConfigError("confidence must be finite and >= 0")
        if not (valid & (conf > 0)).any():
            raise ShapeError("no valid source pixel has a positive confidence: nothing constrains the output")
    if mode == "robust" and robust_sigma is None:
        # σ of the whole image, as graph_solve estimates it for an untiled solve (MAD of a soft
        # solve's residuals over C > 0); per-tile estimates differed by up to 8 % of the range
        soft = tiled_guided_upsample(
            source, guide, scale, tile=tile, overlap=overlap, blend=blend, operator=whole, mode="soft",
            weights=weights, mask=mask, lam=lam, sigma=sigma, tol=tol, max_iter=max_iter, dtype=dtype,
            progress=progress is True, device=device, map_tiles=map_tiles, precond=precond, confidence=conf,
            guide_sigma=guide_sigma,
        )  # fmt: skip
        r = whole.apply_strips(soft, dtype=torch.float64)[None, None] - torch.from_numpy(src.astype(np.float64))
        c = torch.from_numpy(valid if conf is None else valid & (conf > 0))
        robust_sigma = float(mad_sigma(r, c[None, None])[0])
        del soft

    spans = tile_grid((H, W), scale, tile, overlap, lr=source.shape if is_resampling(whole) else None)
    fy, fx = axis_factors(whole, scale)
    total = len(spans[0]) * len(spans[1])
    bar, callback = None, None
    if callable(progress):
        callback = progress
    elif progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=total, unit="tile", file=sys.stderr, desc="guided tiles", leave=False)

    out = np.zeros((H, W), dtype=np_dtype)
    ramps: dict = {}
    tiles = iter_tiles(
        src, guide, scale, spans, operator=whole, mode=mode, weights=weights, valid=valid,
        lam=lam, sigma=sigma, tol=tol, max_iter=max_iter, dtype=dtype, device=device, map_tiles=map_tiles, precond=precond,
        refinement=refinement, confidence=conf, robust_sigma=robust_sigma, guide_sigma=guide_sigma,
        nonlocal_kappa=nonlocal_kappa,
    )  # fmt: skip
    try:
        for done, (sy, sx, sol) in enumerate(tiles, 1):
            _, _, R0, R1 = sy.hr(fy, H)
            _, _, Q0, Q1 = sx.hr(fx, W)
            for key, span, n, f in (("y", sy, H, fy), ("x", sx, W, fx)):
                if (key, span) not in ramps:
                    ramps[(key, span)] = _ramp(span, f, n, blend).astype(np_dtype)
            wy, wx = ramps[("y", sy)], ramps[("x", sx)]
            if total == 1:
                out[...] = sol
            else:
                # in place: two HR-tile temporaries less per tile (fresh 10-20 MB arrays page-fault;
                # 0.3 s of a 16 MP call)
                if not sol.flags.writeable:
                    sol = sol.copy()
                sol *= wy[:, None]
                sol *= wx[None, :]
                out[R0:R1, Q0:Q1] += sol
            if bar is not None:
                bar.update(1)
            if callback is not None:
                callback(done, total)
    finally:
        if bar is not None:
            bar.close()
    if mode == "exact" and total > 1:
        if whole.diagonal_gram:  # area/sum at an integer scale: block by block
            project_blocks(out, src, valid, whole.kind, scale, spans)
        else:
            project_global(out, src, valid, whole)
    return out
