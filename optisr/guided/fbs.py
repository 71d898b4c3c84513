"""The fast bilateral solver (Barron & Poole, "The Fast Bilateral Solver", ECCV 2016), NumPy only.

Given a target ``t`` (an HR map, e.g. the bicubic upsampling of an LR depth), a per-pixel confidence
``c >= 0`` and a guide image, the solver finds the map ``x`` minimising

.. math:: \\frac{\\lambda}{2}\\sum_{i,j}\\hat W_{ij}(x_i - x_j)^2 + \\sum_i c_i (x_i - t_i)^2

where ``Ŵ`` is a bistochastised bilateral affinity of the guide. As in the paper, ``x`` is restricted
to the bilateral-space form ``x = Sᵀ y``: every pixel takes the value of its vertex ``y`` in a
*simplified bilateral grid* (pixels are assigned to the nearest vertex of a regular lattice in
``(x/σ_xy, y/σ_xy, luma/σ_l, u/σ_uv, v/σ_uv)``, the ``splat`` matrix ``S`` is that 0/1 assignment,
the ``blur`` ``B`` is a [1 2 1] filter along each of the D lattice axes between occupied vertices, the
``slice`` is ``Sᵀ``). Bistochastisation finds vertex scales ``n`` with ``n ⊙ (B n) = m = S 1`` (Sinkhorn
style), so ``Ŵ = Sᵀ D_n B D_n S`` has unit row sums; the grid problem is then the sparse linear system

.. math:: \\bigl(\\lambda (D_m - D_n B D_n) + \\operatorname{diag}(S c)\\bigr)\\, y = S (c \\odot t)

solved by conjugate gradients with the Jacobi preconditioner, and ``x = Sᵀ y``. A constant target is
a fixed point (``(D_m - D_n B D_n) 1 = 0`` by the choice of ``m``); pixels with zero confidence are
filled from the confident pixels they are bilaterally connected to.

Units: the guide is read as RGB (or grey) in [0, 1] (uint8 is divided by 255) and converted to
JPEG-YCbCr in 0–255 units, so ``sigma_luma`` / ``sigma_chroma`` are in 8-bit grey levels;
``sigma_spatial`` is in pixels. ``lam`` weighs smoothness against the confidence (which is
dimensionless, 1 = a fully trusted pixel). The target may have any unit; the output has the same.

Public names: :func:`fast_bilateral_solve` (the one-call solver), :class:`BilateralGrid`
(splat / blur / slice of one guide), :func:`grid_coordinates`, :func:`bistochastize`,
:func:`solve_grid_system`, :data:`PAPER_DEFAULTS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optisr.errors import ConfigError, ShapeError

__all__ = [
    "CONFIDENCE_FLOOR",
    "PAPER_DEFAULTS",
    "BilateralGrid",
    "GridSolve",
    "bistochastize",
    "fast_bilateral_solve",
    "grid_coordinates",
    "guide_to_ycbcr",
    "solve_grid_system",
]

PAPER_DEFAULTS = {"sigma_spatial": 8.0, "sigma_luma": 4.0, "sigma_chroma": 4.0, "lam": 128.0}
"""The defaults of the paper's reference code: σ_xy = 8 px, σ_l = σ_uv = 4 grey levels, λ = 128
(with 25 PCG iterations, relative tolerance 1e-5 and a minimum diagonal of 1e-5)."""

CONFIDENCE_FLOOR = 1e-5
"""Every pixel with a finite target counts with at least this confidence, and every vertex with at
least this ``S c`` (the paper's ``A_diag_min``): a bilateral component without any confident pixel
then takes the mean of its finite targets (0 where it has none) instead of making the system
singular. It is far below the smoothness weights (``λ`` times vertex masses), so it does not
measurably change the result anywhere else."""

_MAX_KEY = 1 << 62  # the packed lattice keys must fit in int64


def guide_to_ycbcr(guide: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB or (H, W) / (H, W, 1) grey guide -> (H, W, 3) or (H, W, 1) float64 YCbCr in 0–255.

    Floats are read as [0, 1], uint8 as 0–255, uint16 as 0–65535. RGB uses the JPEG (full-range
    BT.601) transform ``Y = .299 R + .587 G + .114 B``, ``Cb = 128 + .564 (B − Y)``,
    ``Cr = 128 + .713 (R − Y)``; a grey guide gives the luma channel only.
    """
    g = np.asarray(guide)
    if g.dtype == np.uint8:
        g = g.astype(np.float64)
    elif g.dtype == np.uint16:
        g = g.astype(np.float64) / 257.0
    else:
        g = g.astype(np.float64) * 255.0
    if g.ndim == 2:
        g = g[:, :, None]
    if g.ndim != 3 or g.shape[2] not in (1, 3) or g.size == 0:
        raise ShapeError(f"guide must be a non-empty (H, W, 3) RGB or (H, W) grey image; got shape {np.shape(guide)}")
    if not np.all(np.isfinite(g)):
        raise ConfigError("guide contains NaN or inf values")
    if g.shape[2] == 1:
        return g
    r, gr, b = g[:, :, 0], g[:, :, 1], g[:, :, 2]
    y = 0.299 * r + 0.587 * gr + 0.114 * b
    cb = 128.0 - 0.168736 * r - 0.331264 * gr + 0.5 * b
    cr = 128.0 + 0.5 * r - 0.418688 * gr - 0.081312 * b
    return np.stack([y, cb, cr], axis=2)


def grid_coordinates(
    guide: np.ndarray, sigma_spatial: float, sigma_luma: float, sigma_chroma: float | None
) -> np.ndarray:
    """Integer lattice coordinates of every pixel: (H·W, D) int64, D = 5 (RGB guide) or 3 (grey / no chroma).

    Row-major pixel order; columns ``round(row/σ_xy), round(col/σ_xy), round(Y/σ_l)`` and, for an
    RGB guide with ``sigma_chroma`` not None, ``round(Cb/σ_uv), round(Cr/σ_uv)`` (YCbCr in 0–255,
    :func:`guide_to_ycbcr`); rounding is half-up (``floor(v + 0.5)``).
    """
    for name, value in (("sigma_spatial", sigma_spatial), ("sigma_luma", sigma_luma), ("sigma_chroma", sigma_chroma)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a positive number; got {value!r}")
    ycc = guide_to_ycbcr(guide)
    H, W, C = ycc.shape
    rows, cols = np.indices((H, W), dtype=np.float64)
    columns = [rows / sigma_spatial, cols / sigma_spatial, ycc[:, :, 0] / sigma_luma]
    if C == 3 and sigma_chroma is not None:
        columns += [ycc[:, :, 1] / sigma_chroma, ycc[:, :, 2] / sigma_chroma]
    return np.stack([np.floor(c.ravel() + 0.5) for c in columns], axis=1).astype(np.int64)


@dataclass(frozen=True)
class BilateralGrid:
    """A simplified bilateral grid: the occupied lattice vertices of one guide and their neighbours.

    Attributes:
        vertex_of: (N,) int64, the vertex of each pixel (row-major), in ``[0, n_vertices)``; ``S`` is
            the (n_vertices, N) 0/1 matrix with ``S[vertex_of[i], i] = 1``.
        neighbours: (2·D, n_vertices) int64: for each lattice axis and direction (−1, +1), the index
            of the neighbouring occupied vertex, or ``n_vertices`` where that vertex is not occupied.
        n_vertices: number of occupied vertices.
        shape: (H, W) of the guide.
    """

    vertex_of: np.ndarray
    neighbours: np.ndarray
    n_vertices: int
    shape: tuple[int, int]

    @classmethod
    def from_coordinates(cls, coords: np.ndarray, shape: tuple[int, int]) -> BilateralGrid:
        """Build the grid from (N, D) int64 lattice coordinates (:func:`grid_coordinates`) of an (H, W) image."""
        coords = np.asarray(coords, dtype=np.int64)
        if coords.ndim != 2 or coords.shape[0] != shape[0] * shape[1] or coords.shape[0] == 0:
            raise ShapeError(f"coordinates must be (H·W, D) for an image of shape {shape}; got {coords.shape}")
        lo = coords.min(axis=0)
        extent = coords.max(axis=0) - lo + 3  # one empty slot on each side, so ±1 never wraps
        strides = np.ones(coords.shape[1], dtype=np.int64)
        total = 1
        for d in range(coords.shape[1] - 1, -1, -1):
            strides[d] = total
            total *= int(extent[d])
        if total >= _MAX_KEY:
            raise ConfigError("the bilateral grid is too fine for 64-bit keys; use larger sigmas")
        keys = (coords - lo + 1) @ strides
        unique, vertex_of = np.unique(keys, return_inverse=True)
        m = unique.size
        neighbours = np.empty((2 * coords.shape[1], m), dtype=np.int64)
        for d, stride in enumerate(strides):
            for k, step in enumerate((-stride, stride)):
                wanted = unique + step
                pos = np.searchsorted(unique, wanted)
                found = unique[np.minimum(pos, m - 1)] == wanted
                neighbours[2 * d + k] = np.where(found, pos, m)
        return cls(vertex_of.reshape(-1).astype(np.int64), neighbours, int(m), (int(shape[0]), int(shape[1])))

    @classmethod
    def from_guide(
        cls,
        guide: np.ndarray,
        sigma_spatial: float = PAPER_DEFAULTS["sigma_spatial"],
        sigma_luma: float = PAPER_DEFAULTS["sigma_luma"],
        sigma_chroma: float | None = PAPER_DEFAULTS["sigma_chroma"],
    ) -> BilateralGrid:
        """The grid of a (H, W, 3) / (H, W) guide (see :func:`grid_coordinates`; ``sigma_chroma=None``: luma only)."""
        coords = grid_coordinates(guide, sigma_spatial, sigma_luma, sigma_chroma)
        g = np.asarray(guide)
        return cls.from_coordinates(coords, (g.shape[0], g.shape[1]))

    @property
    def dims(self) -> int:
        """D, the number of lattice axes."""
        return self.neighbours.shape[0] // 2

    def splat(self, values: np.ndarray) -> np.ndarray:
        """``S v``: (N,) or (H, W) pixel values -> (n_vertices,) float64 sums per vertex."""
        return np.bincount(self.vertex_of, weights=np.asarray(values, np.float64).ravel(), minlength=self.n_vertices)

    def slice(self, y: np.ndarray) -> np.ndarray:
        """``Sᵀ y``: (n_vertices,) vertex values -> (H, W) float64 pixel values."""
        return np.asarray(y, np.float64)[self.vertex_of].reshape(self.shape)

    def blur(self, y: np.ndarray) -> np.ndarray:
        """``B y``: [1 2 1] along every lattice axis, i.e. ``2D·y_v + Σ`` (occupied ±1 neighbours)."""
        padded = np.append(np.asarray(y, np.float64), 0.0)
        out = 2.0 * self.dims * padded[:-1]
        for row in self.neighbours:
            out += padded[row]
        return out


def bistochastize(grid: BilateralGrid, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Vertex scales ``n`` and masses ``m`` with ``m = n ⊙ (B n)``, after the paper's Sinkhorn-style iteration.

    ``m₀ = S 1`` (pixels per vertex), ``n ← sqrt(n ⊙ m₀ / (B n))`` ``iterations`` times from ``n = 1``,
    then ``m = n ⊙ (B n)`` exactly (so the smoothness operator annihilates constants however many
    iterations ran). Returns ``(n, m)``, both (n_vertices,) float64, positive.
    """
    if iterations < 0:
        raise ConfigError(f"bistochastisation iterations must be >= 0; got {iterations}")
    mass = grid.splat(np.ones(grid.vertex_of.size))
    n = np.ones(grid.n_vertices)
    for _ in range(int(iterations)):
        n = np.sqrt(n * mass / grid.blur(n))
    return n, n * grid.blur(n)


@dataclass(frozen=True)
class GridSolve:
    """The result of :func:`solve_grid_system`: vertex values ``y``, PCG iterations run, final relative residual."""

    y: np.ndarray
    iterations: int
    residual: float


def solve_grid_system(
    grid: BilateralGrid,
    n: np.ndarray,
    m: np.ndarray,
    conf_splat: np.ndarray,
    rhs: np.ndarray,
    lam: float,
    *,
    max_iter: int = 25,
    tol: float = 1e-5,
    y0: np.ndarray | None = None,
) -> GridSolve:
    """Solve ``(λ (D_m − D_n B D_n) + diag(conf_splat)) y = rhs`` by Jacobi-preconditioned CG.

    Args:
        grid, n, m: the grid and its bistochastisation (:func:`bistochastize`).
        conf_splat: (n_vertices,) ``S c``, positive.
        rhs: (n_vertices,) ``S (c ⊙ t)``.
        lam: smoothness weight λ >= 0.
        max_iter: PCG iterations at most (the paper: 25).
        tol: stop when ‖r‖ <= tol·‖rhs‖.
        y0: (n_vertices,) start (None: ``rhs / conf_splat``).
    Returns:
        :class:`GridSolve`.
    """

    def apply(v: np.ndarray) -> np.ndarray:
        return lam * (m * v - n * grid.blur(n * v)) + conf_splat * v

    # diag(B) = 2D, so the diagonal of the system is λ (m − 2D n²) + S c.
    diagonal = lam * (m - 2.0 * grid.dims * n * n) + conf_splat
    inv_diag = 1.0 / np.maximum(diagonal, 1e-12)
    y = rhs / conf_splat if y0 is None else np.array(y0, dtype=np.float64)
    r = rhs - apply(y)
    z = inv_diag * r
    p = z.copy()
    rz = float(r @ z)
    norm_b = float(np.linalg.norm(rhs)) or 1.0
    residual = float(np.linalg.norm(r)) / norm_b
    it = 0
    while it < max_iter and residual > tol:
        ap = apply(p)
        alpha = rz / float(p @ ap)
        y += alpha * p
        r -= alpha * ap
        it += 1
        residual = float(np.linalg.norm(r)) / norm_b
        z = inv_diag * r
        rz_new = float(r @ z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return GridSolve(y, it, residual)


def fast_bilateral_solve(
    target: np.ndarray,
    guide: np.ndarray,
    confidence: np.ndarray | None = None,
    *,
    sigma_spatial: float = PAPER_DEFAULTS["sigma_spatial"],
    sigma_luma: float = PAPER_DEFAULTS["sigma_luma"],
    sigma_chroma: float | None = PAPER_DEFAULTS["sigma_chroma"],
    lam: float = PAPER_DEFAULTS["lam"],
    max_iter: int = 25,
    tol: float = 1e-5,
    bistochastic_iterations: int = 10,
    grid: BilateralGrid | None = None,
) -> np.ndarray:
    """Edge-aware smoothing of ``target`` under ``guide`` with the fast bilateral solver.

    Args:
        target: (H, W) float map, any unit; non-finite pixels get confidence 0.
        guide: (H, W, 3) RGB or (H, W) grey, float in [0, 1] or uint8 (see :func:`guide_to_ycbcr`).
        confidence: (H, W) float >= 0 (None: 1 everywhere); non-finite values count as 0.
        sigma_spatial: lattice spacing in pixels (larger: smoother over longer distances).
        sigma_luma, sigma_chroma: lattice spacing in luma / chroma grey levels (0–255); smaller
            keeps more colour edges. ``sigma_chroma=None`` ignores chroma (3-D grid).
        lam: smoothness weight λ (the paper's defaults are :data:`PAPER_DEFAULTS`).
        max_iter, tol: PCG iterations at most and relative residual tolerance (the paper: 25, 1e-5).
        bistochastic_iterations: Sinkhorn iterations of :func:`bistochastize` (the paper: 10).
        grid: a prebuilt :class:`BilateralGrid` of ``guide`` (then the sigmas are not used).
    Returns:
        (H, W) float64 in the unit of ``target``.
    Raises:
        ShapeError: shapes that do not match. ConfigError: bad parameters, a guide with NaN, or no
            pixel with both a finite target and a positive confidence.
    """
    t = np.asarray(target, dtype=np.float64)
    if t.ndim != 2 or t.size == 0:
        raise ShapeError(f"target must be a non-empty (H, W) array; got shape {t.shape}")
    if np.shape(guide)[:2] != t.shape:
        raise ShapeError(f"guide {np.shape(guide)[:2]} and target {t.shape} must have the same height and width")
    if not (np.isfinite(lam) and lam >= 0):
        raise ConfigError(f"lam must be a finite number >= 0; got {lam!r}")
    if max_iter < 0 or not tol >= 0:
        raise ConfigError(f"need max_iter >= 0 and tol >= 0; got {max_iter}, {tol}")
    finite = np.isfinite(t)
    if not finite.any():
        raise ConfigError("target has no finite pixel")
    if confidence is None:
        c = np.ones_like(t)
    else:
        c = np.asarray(confidence, dtype=np.float64)
        if c.shape != t.shape:
            raise ShapeError(f"confidence {c.shape} must have the target's shape {t.shape}")
        c = np.where(np.isfinite(c), c, 0.0)
        if (c < 0).any():
            raise ConfigError("confidence must be >= 0")
    c = np.where(finite, c, 0.0)
    if not (c > 0).any():
        raise ConfigError("confidence is 0 at every pixel with a finite target; nothing to solve for")
    t = np.where(finite, t, 0.0)
    if grid is None:
        grid = BilateralGrid.from_guide(guide, sigma_spatial, sigma_luma, sigma_chroma)
    elif grid.shape != t.shape:
        raise ShapeError(f"grid of shape {grid.shape} does not match the target {t.shape}")
    n, m = bistochastize(grid, bistochastic_iterations)
    # Start from each vertex's confidence-weighted mean target, or the global one where it has no confidence.
    conf_real, rhs_real = grid.splat(c), grid.splat(c * t)
    start = np.full(grid.n_vertices, rhs_real.sum() / conf_real.sum())
    np.divide(rhs_real, conf_real, out=start, where=conf_real > 0)
    # The floor: every pixel with a finite target counts with at least CONFIDENCE_FLOOR.
    floored = np.where(finite, np.maximum(c, CONFIDENCE_FLOOR), 0.0)
    conf_splat = np.maximum(grid.splat(floored), CONFIDENCE_FLOOR)  # keeps the system positive definite
    rhs = grid.splat(floored * t)
    solved = solve_grid_system(grid, n, m, conf_splat, rhs, float(lam), max_iter=max_iter, tol=tol, y0=start)
    return grid.slice(solved.y)
