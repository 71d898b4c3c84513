"""Linear downsampling operators D: HR (H, W) -> LR (h, w), with adjoint and exact projection.

Every operator acts on the last two dimensions of a tensor ``(..., H, W)`` and is *separable*:
``D x = A_y x A_xᵀ`` with small per-axis matrices ``A_y`` (h×H) and ``A_x`` (w×W). Separability
gives ``D Dᵀ = (A_y A_yᵀ) ⊗ (A_x A_xᵀ)``, so the orthogonal projection onto ``{x : D x = s}``

    P_s(x) = x + Dᵀ (D Dᵀ)⁻¹ (s − D x)

costs two operator applications and two tiny (h×h, w×w) matrix products.

Size policy (any H, W; they need not be multiples of the scale ``f``):
    the LR grid is ``h = ceil(H / f)``, ``w = ceil(W / f)``.

    * ``area`` / ``sum``: LR pixel ``i`` covers HR rows ``[f·i, min(f·(i+1), H))``; the last block
      may be partial and is averaged (``area``) or summed (``sum``) over the pixels it has.
    * ``bicubic`` / ``gaussian``: a resampling filter whose centres sit at
      ``(i + 0.5)·H/h − 0.5`` in HR pixel coordinates (PIL's geometry); weights are renormalised at
      the borders, exactly as ``PIL.Image.resize`` does. With ``H = f·h`` this is ordinary ×f.

Masks live on the LR grid: ``mask[..., i, j] = True`` means LR pixel ``(i, j)`` constrains the
output; ``False`` rows of ``D`` are dropped ("unconstrained blocks"). See :meth:`apply_masked`
for building an LR source from an HR image with invalid pixels (NaN-aware mean).
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np
import torch
from torch import Tensor

from optisr.errors import ConfigError, ShapeError
from optisr.ops._axes import (
    Axis,
    Banded,
    BlockPool,
    banded_axis,
    cached_axis,
    checked_gram,
    masked_gram_cg,
    restricted_matrix,
)
from optisr.ops.axis_matrices import axis_matrix, bicubic_matrix, resample_matrix

__all__ = [
    "DENSE_MASKED_GRAM_MAX",
    "OPERATORS",
    "DownsampleOperator",
    "axis_matrix",
    "is_resampling",
    "bicubic_matrix",
    "covered_hr",
    "lr_size",
    "make_operator",
    "nominal_scale",
    "resampling_operator",
    "scale_for_sizes",
]

OPERATORS = ("area", "sum", "bicubic", "gaussian")

# Masked projections of non-diagonal operators (bicubic, gaussian) Cholesky-factorise the constrained block
# of D Dᵀ densely up to this many LR pixels (exact); larger grids use an inner PCG instead.
DENSE_MASKED_GRAM_MAX = 2048


def lr_size(hr_size: tuple[int, int], scale: int) -> tuple[int, int]:
    """LR grid size for an HR size under the package's size policy: ``ceil(H / f), ceil(W / f)``."""
    return (-(-hr_size[0] // scale), -(-hr_size[1] // scale))


def covered_hr(lo: int, hi: int, f: int | Fraction, n_hr: int) -> tuple[int, int]:
    """The HR pixels that LR pixels ``lo … hi−1`` cover along one axis: ``[⌊f·lo⌋, min(n_hr, ⌈f·hi⌉))``.

    ``f``: HR px per LR px, the integer scale or, at a non-integer ratio, the exact ``Fraction(H, h)``
    (``Fraction`` rounds exactly); for an integer ``f`` this is ``[f·lo, min(n_hr, f·hi))``.
    Neighbouring windows share the HR pixels that straddle their common LR border.
    """
    return math.floor(f * lo), min(n_hr, math.ceil(f * hi))


# ---------------------------------------------------------------------------------------------
# The operator
# ---------------------------------------------------------------------------------------------


class DownsampleOperator:
    """A separable linear downsampling operator D for a fixed HR size.

    Args:
        kind: ``area`` (block mean), ``sum`` (block sum, for counts), ``bicubic`` (PIL-exact
            antialiased bicubic) or ``gaussian`` (Gaussian PSF + decimation).
        hr_size: (H, W) of the HR grid.
        scale: integer scale f in 1..64.
        sigma: Gaussian PSF standard deviation in HR pixels (``gaussian`` only; default f/2).

    Shapes: HR tensors are ``(..., H, W)``, LR tensors ``(..., h, w)`` with ``(h, w) = lr_size``;
    any leading dimensions, any floating dtype, any device. Masks are bool ``(..., h, w)``
    broadcastable to the LR tensor.

    Operators with explicit per-axis matrices (e.g. a window of a larger image) come from
    :meth:`from_axis_matrices` and :meth:`restrict`.
    """

    def __init__(self, kind: str, hr_size: tuple[int, int], scale: int, *, sigma: float | None = None):
        if kind not in OPERATORS:
            raise ConfigError(f"unknown operator {kind!r}; choose one of {', '.join(OPERATORS)}")
        if isinstance(scale, bool) or int(scale) != scale or not 1 <= scale <= 64:
            raise ConfigError(f"scale must be an integer in 1..64, got {scale!r}")
        if sigma is not None and (kind != "gaussian" or not sigma > 0):
            raise ConfigError("sigma is only for the gaussian operator and must be > 0")
        H, W = int(hr_size[0]), int(hr_size[1])
        if H < 1 or W < 1:
            raise ShapeError(f"HR size must be positive, got {H}×{W}")
        self.kind = kind
        self.scale = int(scale)
        self.sigma = sigma
        self.hr_size = (H, W)
        self.lr_size = lr_size((H, W), self.scale)
        self._ay = cached_axis(kind, H, self.scale, sigma)
        self._ax = cached_axis(kind, W, self.scale, sigma)
        self._ginv_cache: dict = {}
        self._windows: dict = {}
        # area/sum: D Dᵀ is diagonal, so the (masked) projection is closed-form.
        self.diagonal_gram = kind in ("area", "sum")
        self.ratio: tuple[float, float] | None = None  # set by resampling_operator at non-integer ratios
        self._grid: tuple[tuple[int, int], tuple[int, int]] | None = None  # (HR, LR) sizes of a whole ratio grid

    @classmethod
    def from_axis_matrices(
        cls, kind: str, scale: int, a_y: np.ndarray, a_x: np.ndarray, *, sigma: float | None = None
    ) -> DownsampleOperator:
        """An operator ``D x = A_y x A_xᵀ`` with explicit per-axis matrices.

        Args:
            kind: the operator family the matrices come from (reported, and ``sum`` scaling of the
                solvers); the matrices are used as given, through the banded (non-diagonal) path.
            scale: the integer scale f the matrices implement (1..64).
            a_y: (h, H) float64 row matrix; a_x: (w, W) float64 column matrix. Both must have
                full row rank (``A Aᵀ`` well conditioned), else a ConfigError.
            sigma: the Gaussian width the matrices were made with (reported only).
        """
        if kind not in OPERATORS:
            raise ConfigError(f"unknown operator {kind!r}; choose one of {', '.join(OPERATORS)}")
        axes = []
        for name, a in (("a_y", a_y), ("a_x", a_x)):
            a = np.array(a, dtype=np.float64, copy=True)
            if a.ndim != 2 or a.shape[0] < 1 or a.shape[0] > a.shape[1]:
                raise ShapeError(f"{name} must be an (n_out, n_in) matrix with 1 <= n_out <= n_in, got {a.shape}")
            a.setflags(write=False)
            gram = checked_gram(a, f"{kind!r} operator window", "use a larger window (tile overlap)")
            axes.append(banded_axis(a, gram))
        return cls._from_axes(kind, int(scale), axes[0], axes[1], sigma)

    @classmethod
    def _from_axes(cls, kind: str, scale: int, ay: Axis, ax: Axis, sigma: float | None) -> DownsampleOperator:
        op = cls.__new__(cls)
        op.kind, op.scale, op.sigma = kind, scale, sigma
        op.hr_size = (ay.mat.shape[1], ax.mat.shape[1])
        op.lr_size = (ay.mat.shape[0], ax.mat.shape[0])
        op._ay, op._ax = ay, ax
        op._ginv_cache = {}
        op._windows = {}
        op.diagonal_gram = False
        op.ratio = None
        op._grid = None
        return op

    def __repr__(self) -> str:
        extra = f", sigma={self.sigma}" if self.sigma is not None else ""
        if self.ratio is not None:
            return (
                f"DownsampleOperator({self.kind!r}, hr_size={self.hr_size}, lr_size={self.lr_size}, "
                f"ratio={self.ratio[0]:.4g}×{self.ratio[1]:.4g}{extra})"
            )
        return f"DownsampleOperator({self.kind!r}, hr_size={self.hr_size}, scale={self.scale}{extra})"

    @property
    def pixels_per_lr(self) -> float:
        """HR pixels per LR pixel: ``scale²``, or ``(H/h)·(W/w)`` at a non-integer ratio."""
        if self.ratio is not None:
            return self.ratio[0] * self.ratio[1]
        return float(self.scale**2)

    # -- structure -----------------------------------------------------------------------------
    def axis_matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """The per-axis matrices ``(A_y, A_x)``: (h, H) and (w, W) float64, read-only; D x = A_y x A_xᵀ."""
        return self._ay.mat, self._ax.mat

    def hr_window(self, lr_rows: tuple[int, int], lr_cols: tuple[int, int]) -> tuple[slice, slice]:
        """The HR rows/columns of an LR window: ``[f·i0, min(H, f·i1))`` × ``[f·j0, min(W, f·j1))``.

        At a non-integer ratio (:func:`resampling_operator`) with ``r = H/h`` per axis: every HR pixel
        that LR pixels ``i0 … i1−1`` cover, ``[⌊r·i0⌋, ⌈r·i1⌉)`` (:func:`covered_hr`, exact), so
        neighbouring windows share the HR pixels that straddle their common LR border.
        """
        fy: int | Fraction
        fx: int | Fraction
        if self.ratio is not None:
            if self._grid is None:
                raise ConfigError(f"{self!r} is a window of a resampling operator; restrict the whole operator")
            (H, W), (h, w) = self._grid
            fy, fx = Fraction(H, h), Fraction(W, w)
        else:
            (H, W), fy, fx = self.hr_size, self.scale, self.scale
        return slice(*covered_hr(*lr_rows, fy, H)), slice(*covered_hr(*lr_cols, fx, W))

    def restrict(self, lr_rows: tuple[int, int], lr_cols: tuple[int, int]) -> DownsampleOperator:
        """The operator of an LR window: LR pixels ``[i0, i1) × [j0, j1)``.

        Its HR grid is :meth:`hr_window` of the window. For ``area``/``sum`` at an integer scale
        (blocks never cross the window) this is the ordinary operator of the window's HR size.
        Otherwise (``bicubic`` / ``gaussian``, or any kind at a non-integer ratio) it holds the rows and columns of this operator's matrices for the window,
        each row renormalised to its full sum where the window truncates it (as PIL does at the
        image border), so a window follows this operator's geometry also when H or W is not a
        multiple of f. Per-axis pieces are cached on this operator. A window whose Gram matrix is
        singular raises ConfigError.
        """
        h, w = self.lr_size
        (i0, i1), (j0, j1) = (int(lr_rows[0]), int(lr_rows[1])), (int(lr_cols[0]), int(lr_cols[1]))
        if not (0 <= i0 < i1 <= h and 0 <= j0 < j1 <= w):
            raise ShapeError(f"LR window rows {i0}:{i1}, cols {j0}:{j1} is not inside the {h}×{w} LR grid of {self!r}")
        rows, cols = self.hr_window((i0, i1), (j0, j1))
        if self.diagonal_gram:
            return make_operator(self.kind, (rows.stop - rows.start, cols.stop - cols.start), self.scale)
        axes = []
        for dim, (lo, hi), hr in ((0, (i0, i1), rows), (1, (j0, j1), cols)):
            key = (dim, lo, hi)
            if key not in self._windows:
                glob = (self._ay, self._ax)[dim].mat
                mat = restricted_matrix(glob, lo, hi, hr.start, hr.stop)
                gram = checked_gram(mat, "tile operator", "use a larger overlap")
                self._windows[key] = banded_axis(mat, gram)
            axes.append(self._windows[key])
        sub = DownsampleOperator._from_axes(self.kind, self.scale, axes[0], axes[1], self.sigma)
        sub.ratio = self.ratio  # a window of a ratio grid keeps its HR px per LR px (pixels_per_lr)
        return sub

    # -- shape checks --------------------------------------------------------------------------
    def _check(self, t: Tensor, size: tuple[int, int], what: str) -> None:
        if t.dim() < 2 or tuple(t.shape[-2:]) != size:
            raise ShapeError(f"{what} must end in {size[0]}×{size[1]} for {self!r}, got shape {tuple(t.shape)}")

    # -- the linear maps -----------------------------------------------------------------------
    def apply(self, x: Tensor) -> Tensor:
        """D x: (..., H, W) -> (..., h, w)."""
        self._check(x, self.hr_size, "HR input")
        if self.diagonal_gram:
            return self._block_apply(x, self._ay.fwd, self._ax.fwd)
        return self._ay.fwd.apply(self._ax.fwd.apply(x, -1), -2)

    def adjoint(self, y: Tensor) -> Tensor:
        """Dᵀ y: (..., h, w) -> (..., H, W)."""
        self._check(y, self.lr_size, "LR input")
        if self.diagonal_gram:
            return self._block_adjoint(y, self._ay.adj, self._ax.adj)
        return self._ay.adj.apply(self._ax.adj.apply(y, -1), -2)

    def sub_adjoint_(self, x: Tensor, y: Tensor) -> Tensor:
        """In place ``x −= Dᵀ y``: x (..., H, W), y (..., h, w) of x's dtype/device; returns ``x``.

        For ``area``/``sum`` on a grid of whole blocks and a contiguous ``x`` the LR values are
        subtracted through a block view of ``x`` (no HR-sized temporary); otherwise
        ``x.sub_(self.adjoint(y))``. Same values as the out-of-place form.
        """
        self._check(y, self.lr_size, "LR input")
        (H, W), (h, w), f = self.hr_size, self.lr_size, self.scale
        if self.diagonal_gram and (H, W) == (h * f, w * f) and x.is_contiguous() and x.shape[:-2] == y.shape[:-2]:
            by, bx = self._ay.adj, self._ax.adj
            assert isinstance(by, BlockPool) and isinstance(bx, BlockPool)  # area/sum axes pool blocks
            yw = y * (by.weights(y)[:, None] * bx.weights(y)[None, :])
            # expand along the columns first (an (h, W) map), so the HR pass broadcasts whole rows
            rows = yw[..., None].expand(*yw.shape, f).reshape(*yw.shape[:-1], W)
            x.view(*x.shape[:-2], h, f, W).sub_(rows[..., :, None, :])
            return x
        return x.sub_(self.adjoint(y))

    def _strip_starts(self, rows: int) -> range:
        """Starts of LR-row strips holding about ``rows`` HR rows each (at least one LR row)."""
        return range(0, self.lr_size[0], max(1, rows // self.scale))

    def apply_strips(self, x: np.ndarray | Tensor, *, rows: int = 256, dtype: torch.dtype | None = None) -> Tensor:
        """D x for one large (H, W) image with O(rows · W + H · w) temporaries.

        Args:
            x: (H, W) numpy array or tensor (e.g. a float32 output raster); never copied whole.
            rows: about this many HR rows are converted and reduced at a time.
            dtype: computation dtype (default: ``x``'s, float64 for non-float numpy input).
        Returns:
            (h, w) tensor on the CPU (or ``x``'s device). One whole-image :meth:`apply` when the
            image fits in one strip. ``area``/``sum`` work on strips of whole LR rows (blocks never
            cross them), the others reduce the columns strip by strip, then the rows.
        """
        if tuple(x.shape) != self.hr_size:
            raise ShapeError(f"HR input must be {self.hr_size[0]}×{self.hr_size[1]} for {self!r}, got {tuple(x.shape)}")

        def strip(r0: int, r1: int) -> Tensor:
            t = torch.from_numpy(np.asarray(x[r0:r1])) if isinstance(x, np.ndarray) else x[r0:r1]
            if dtype is not None:
                return t.to(dtype)
            return t if t.is_floating_point() else t.to(torch.float64)

        H = self.hr_size[0]
        starts = self._strip_starts(rows)
        if len(starts) == 1:
            return self.apply(strip(0, H))
        f = self.scale
        if self.diagonal_gram:
            parts = []
            for i0 in starts:
                i1 = min(self.lr_size[0], i0 + starts.step)
                s = strip(f * i0, min(H, f * i1))
                parts.append(make_operator(self.kind, (s.shape[0], s.shape[1]), f).apply(s))
            return torch.cat(parts, dim=-2)
        step = starts.step * f
        t = torch.cat([self._ax.fwd.apply(strip(r, r + step), -1) for r in range(0, H, step)], dim=-2)  # (H, w)
        return self._ay.fwd.apply(t, -2)

    def add_adjoint_(self, x: Tensor, y: Tensor, *, rows: int = 256) -> Tensor:
        """In place ``x += Dᵀ y`` for one (H, W) image, without an HR-sized temporary.

        Args:
            x: (H, W) tensor, modified in place (e.g. ``torch.from_numpy`` of an output array).
            y: (h, w) tensor of ``x``'s dtype and device.
            rows: HR rows per strip (``area``/``sum``; the banded operators add blocks of 64 rows).
        Returns:
            ``x``.
        """
        self._check(y, self.lr_size, "LR input")
        if tuple(x.shape) != self.hr_size:
            raise ShapeError(f"HR input must be {self.hr_size[0]}×{self.hr_size[1]} for {self!r}, got {tuple(x.shape)}")
        H, f = self.hr_size[0], self.scale
        if self.diagonal_gram:
            starts = self._strip_starts(rows)
            for i0 in starts:
                i1 = min(self.lr_size[0], i0 + starts.step)
                r0, r1 = f * i0, min(H, f * i1)
                x[r0:r1] += make_operator(self.kind, (r1 - r0, self.hr_size[1]), f).adjoint(y[i0:i1])
            return x
        u = self._ax.adj.apply(y, -1)  # (h, W)
        assert isinstance(self._ay.adj, Banded)  # non-diagonal operators have banded axes
        for lo, hi, c0, c1, mat in self._ay.adj.blocks(u):
            x[lo:hi] += mat @ u[c0:c1]
        return x

    def diag_normal(self, weight: Tensor) -> Tensor:
        """diag(Dᵀ C D) as an HR map, for LR weights ``c`` of shape (..., h, w)."""
        self._check(weight, self.lr_size, "LR weight")
        if self.diagonal_gram:
            return self._block_adjoint(weight, self._ay.sq_adj, self._ax.sq_adj)
        return self._ay.sq_adj.apply(self._ax.sq_adj.apply(weight, -1), -2)

    def block_weights(self, like: Tensor) -> Tensor:
        """``area``/``sum`` only: the LR map of the constant value D_bp takes inside block b."""
        if not self.diagonal_gram:
            raise ConfigError(f"block_weights is only defined for area/sum, not {self.kind!r}")
        by, bx = self._ay.fwd, self._ax.fwd
        assert isinstance(by, BlockPool) and isinstance(bx, BlockPool)  # area/sum axes pool blocks
        return by.weights(like)[:, None] * bx.weights(like)[None, :]

    # area/sum fast path: pool / expand both axes at once (one reshape, no transposes)
    def _block_apply(self, x: Tensor, by: Banded | BlockPool, bx: Banded | BlockPool) -> Tensor:
        assert isinstance(by, BlockPool) and isinstance(bx, BlockPool)  # only called for area/sum
        (H, W), (h, w), f = self.hr_size, self.lr_size, self.scale
        if (H, W) != (h * f, w * f):
            x = torch.nn.functional.pad(x, (0, w * f - W, 0, h * f - H))
        # rows first: summing f whole rows runs along contiguous memory (2–3× faster than columns first)
        s = x.unflatten(-2, (h, f)).sum(-2).unflatten(-1, (w, f)).sum(-1)
        return s * (by.weights(x)[:, None] * bx.weights(x)[None, :])

    def _block_adjoint(self, y: Tensor, by: Banded | BlockPool, bx: Banded | BlockPool) -> Tensor:
        assert isinstance(by, BlockPool) and isinstance(bx, BlockPool)  # only called for area/sum
        (H, W), (h, w), f = self.hr_size, self.lr_size, self.scale
        y = y * (by.weights(y)[:, None] * bx.weights(y)[None, :])
        up = y[..., :, None, :, None].expand(*y.shape[:-2], h, f, w, f).reshape(*y.shape[:-2], h * f, w * f)
        return up[..., :H, :W] if (H, W) != (h * f, w * f) else up

    def _gram_inv(self, like: Tensor) -> tuple[Tensor, Tensor]:
        key = (like.dtype, like.device)
        if key not in self._ginv_cache:
            self._ginv_cache[key] = (
                torch.from_numpy(self._ay.gram_inv).to(like.device, like.dtype),
                torch.from_numpy(self._ax.gram_inv).to(like.device, like.dtype),
            )
        return self._ginv_cache[key]

    def gram_solve(self, r: Tensor, mask: Tensor | None = None, *, tol: float | None = None) -> Tensor:
        """Solve (C D Dᵀ C) z = C r on the constrained LR pixels (z = 0 elsewhere).

        Without a mask, or for ``area``/``sum`` (diagonal D Dᵀ), the solve is closed-form. With a
        mask and a non-diagonal D Dᵀ it is exact by Cholesky up to ``DENSE_MASKED_GRAM_MAX`` LR
        pixels, else a preconditioned CG on the LR grid (preconditioner: the unmasked Kronecker
        inverse; products with D Dᵀ = G_y z G_x on the LR grid only, no HR temporaries), run to
        ``tol`` (default: 100·machine epsilon relative).

        Args:
            r: LR tensor (..., h, w).
            mask: optional bool (..., h, w) broadcastable to ``r``; True = constrained.
        Returns:
            z, same shape/dtype/device as ``r``.
        """
        if self.diagonal_gram:
            d = self._gram_diag(r)
            z = r / d
            return z if mask is None else z * mask
        gy, gx = self._gram_inv(r)
        kron_inv = lambda v: gy @ v @ gx  # noqa: E731  (symmetric inverses)
        if mask is None:
            return kron_inv(r)
        m = mask.to(r.dtype)
        if bool((m == 1).all()):
            return kron_inv(r)
        n = self.lr_size[0] * self.lr_size[1]
        if n <= DENSE_MASKED_GRAM_MAX:
            return self._masked_gram_dense(r, mask)
        return masked_gram_cg(self.gram, r * m, m, kron_inv, tol)

    def _masked_gram_dense(self, r: Tensor, mask: Tensor) -> Tensor:
        """Exact masked solve by Cholesky of the constrained block of D Dᵀ (small LR grids).

        Factors are cached by mask pattern, so the two projections per CG iteration reuse them.
        """
        n = self.lr_size[0] * self.lr_size[1]
        mask = mask.expand(r.shape)
        flat_r = r.reshape(-1, n)
        flat_m = mask.reshape(-1, n)
        out = torch.zeros_like(flat_r)
        for i in range(flat_r.shape[0]):
            mi = flat_m[i]
            key = (mi.cpu().numpy().tobytes(), r.dtype, r.device)
            fac = self._ginv_cache.get(key)
            if fac is None:
                if len(self._ginv_cache) > 64:
                    self._ginv_cache = {k: v for k, v in self._ginv_cache.items() if not isinstance(k[0], bytes)}
                full = np.kron(self._ay.mat @ self._ay.mat.T, self._ax.mat @ self._ax.mat.T)
                idx_np = np.flatnonzero(mi.cpu().numpy())
                chol_np = np.linalg.cholesky(full[np.ix_(idx_np, idx_np)])
                fac = (torch.from_numpy(idx_np).to(r.device), torch.from_numpy(chol_np).to(r.device, r.dtype))
                self._ginv_cache[key] = fac
            idx, chol = fac
            out[i, idx] = torch.cholesky_solve(flat_r[i, idx, None], chol)[:, 0]
        return out.reshape(r.shape)

    def _gram_diag(self, like: Tensor) -> Tensor:
        key = ("diag", like.dtype, like.device)
        if key not in self._ginv_cache:
            ry = (self._ay.mat**2).sum(1)
            rx = (self._ax.mat**2).sum(1)
            self._ginv_cache[key] = torch.from_numpy(np.outer(ry, rx)).to(like.device, like.dtype)
        return self._ginv_cache[key]

    def gram(self, z: Tensor) -> Tensor:
        """D Dᵀ z on the LR grid, (..., h, w) -> (..., h, w), without HR temporaries."""
        self._check(z, self.lr_size, "LR input")
        if self.diagonal_gram:
            return z * self._gram_diag(z)
        assert self._ay.gram is not None and self._ax.gram is not None  # banded axes carry their Gram
        return self._ay.gram.apply(self._ax.gram.apply(z, -1), -2)

    # -- projections ---------------------------------------------------------------------------
    def project(self, x: Tensor, source: Tensor, mask: Tensor | None = None) -> Tensor:
        """Orthogonal projection of ``x`` onto ``{x : (D x)_b = s_b for every constrained b}``.

        Args:
            x: HR tensor (..., H, W).
            source: LR tensor s (..., h, w); values at unconstrained pixels are ignored.
            mask: optional bool (..., h, w), True where s constrains the output.
        Returns:
            The projected HR tensor, same shape/dtype/device as ``x``.
        """
        r = source - self.apply(x)
        if mask is not None:
            r = torch.where(mask, r, torch.zeros((), dtype=r.dtype, device=r.device))
        return x + self.adjoint(self.gram_solve(r, mask))

    def project_(self, x: Tensor, source: Tensor, mask: Tensor | None = None, *, rows: int = 256) -> Tensor:
        """In-place :meth:`project` of one large (H, W) image, with O(H·w) temporaries.

        ``x += Dᵀ (C D Dᵀ C)⁻¹ C (s − D x)``: ``D x`` by :meth:`apply_strips`, the Gram solve on
        the LR grid (:meth:`gram_solve`), ``Dᵀ z`` added by :meth:`add_adjoint_`.

        Args:
            x: (H, W) float tensor, modified in place (e.g. ``torch.from_numpy`` of an array).
            source: (h, w) LR values (any float dtype; cast to ``x``'s).
            mask: optional bool (h, w), True where the source constrains ``x``.
        Returns:
            ``x``.
        """
        dx = self.apply_strips(x, rows=rows)
        s = source.to(x.dtype)
        r = s - dx
        if mask is not None:
            r = torch.where(mask, r, torch.zeros((), dtype=x.dtype))
        return self.add_adjoint_(x, self.gram_solve(r, mask), rows=rows)

    def project_null(self, v: Tensor, mask: Tensor | None = None) -> Tensor:
        """Orthogonal projection of ``v`` onto the null space ``{v : (D v)_b = 0, b constrained}``."""
        r = self.apply(v)
        if mask is not None:
            r = r * mask
        return v - self.adjoint(self.gram_solve(r, mask))

    def apply_masked(self, x: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Make an LR source from an HR image with invalid pixels (NaN-aware ``D``).

        Each LR pixel is ``Σ_p D_bp v_p x_p / Σ_p D_bp v_p`` over the valid HR pixels ``v`` of its
        support (times the row sum of ``D`` for ``sum``, so counts stay extensive); LR pixels with
        no valid HR pixel are invalid.

        Args:
            x: HR tensor (..., H, W); NaN counts as invalid.
            valid: optional bool (..., H, W), True where ``x`` is valid.
        Returns:
            ``(source, mask)``: LR tensor with 0 at invalid pixels, and the bool LR validity mask.
        """
        v = torch.isfinite(x)
        if valid is not None:
            v = v & valid
        vf = v.to(x.dtype)
        xz = torch.where(v, x, torch.zeros((), dtype=x.dtype, device=x.device))
        num = self.apply(xz)
        den = self.apply(vf)
        full = self.apply(torch.ones_like(vf))
        ok = den > 1e-6 * full.abs().clamp_min(1e-30)
        # For area/bicubic/gaussian the rows sum to 1 (full == 1); for sum they sum to the block size.
        src = torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)) * full, torch.zeros_like(num))
        return src, ok


@functools.lru_cache(maxsize=32)
def _cached_operator(kind: str, hr_size: tuple[int, int], scale: int, sigma: float | None) -> DownsampleOperator:
    return DownsampleOperator(kind, hr_size, scale, sigma=sigma)


def make_operator(
    kind: str | DownsampleOperator, hr_size: tuple[int, int], scale: int, *, sigma: float | None = None
) -> DownsampleOperator:
    """Return the (cached) operator ``kind`` for an HR size and scale; operators pass through."""
    if isinstance(kind, DownsampleOperator):
        if kind.hr_size != tuple(hr_size) or kind.scale != scale:
            raise ShapeError(f"{kind!r} does not fit HR size {tuple(hr_size)} at ×{scale}")
        return kind
    if kind not in OPERATORS:
        raise ConfigError(f"unknown operator {kind!r}; choose one of {', '.join(OPERATORS)}")
    return _cached_operator(kind, (int(hr_size[0]), int(hr_size[1])), int(scale), sigma)


# ---------------------------------------------------------------------------------------------
# Sources on a grid that is not an integer fraction of the guide's
# ---------------------------------------------------------------------------------------------


def scale_for_sizes(hr_size: tuple[int, int], lr_size_: tuple[int, int]) -> int | None:
    """The integer scale f whose grid policy gives ``lr_size_`` from ``hr_size`` (``ceil(H/f) = h``,
    ``ceil(W/f) = w``), or None when no integer does. Where several do (tiny grids), the one with
    ``H = f·h`` if any, else the largest ratio's ceiling."""
    (H, W), (h, w) = (int(hr_size[0]), int(hr_size[1])), (int(lr_size_[0]), int(lr_size_[1]))
    if h < 1 or w < 1 or H < h or W < w:
        return None
    candidates = {-(-H // h), -(-W // w), H // h, W // w}
    fits = [f for f in sorted(candidates) if 1 <= f <= 64 and lr_size((H, W), f) == (h, w)]
    exact = [f for f in fits if (H, W) == (f * h, f * w)]
    if exact:
        return exact[-1]
    return fits[-1] if fits else None


def nominal_scale(hr_size: tuple[int, int], lr_size_: tuple[int, int]) -> int:
    """The integer nearest the mean length ratio ``(H/h + W/w)/2`` (at least 1): what a non-integer
    ratio stands in as where a code path needs one integer (a network's scale input, tile context)."""
    (H, W), (h, w) = hr_size, lr_size_
    return max(1, int(round((H / h + W / w) / 2.0)))


@functools.lru_cache(maxsize=16)
def _cached_resampling(
    kind: str, hr_size: tuple[int, int], lr: tuple[int, int], sigma: float | None
) -> DownsampleOperator:
    a_y = resample_matrix(kind, hr_size[0], lr[0], sigma)
    a_x = resample_matrix(kind, hr_size[1], lr[1], sigma)
    op = DownsampleOperator.from_axis_matrices(kind, nominal_scale(hr_size, lr), a_y, a_x, sigma=sigma)
    op.ratio = (hr_size[0] / lr[0], hr_size[1] / lr[1])
    op._grid = (hr_size, lr)
    return op


def resampling_operator(
    kind: str, hr_size: tuple[int, int], lr_size_: tuple[int, int], *, sigma: float | None = None
) -> DownsampleOperator:
    """The operator ``kind`` from an (H, W) grid to any (h, w) grid with ``h <= H``, ``w <= W``.

    Both grids span the same field of view; LR pixel ``(i, j)`` covers the HR rectangle
    ``[i·H/h, (i+1)·H/h) × [j·W/w, (j+1)·W/w)`` (:func:`optisr.ops.axis_matrices.resample_matrix`).
    When an integer scale f fits the sizes (:func:`scale_for_sizes`) this is the ordinary
    :func:`make_operator` at f (block pooling, the fused solver loops); otherwise a banded operator
    whose ``scale`` is :func:`nominal_scale` and whose ``ratio`` attribute holds ``(H/h, W/w)``.
    Their windows (:meth:`DownsampleOperator.restrict`, used by tile-wise solves) cover every HR
    pixel the window's LR pixels touch (:meth:`DownsampleOperator.hr_window`).
    """
    if kind not in OPERATORS:
        raise ConfigError(f"unknown operator {kind!r}; choose one of {', '.join(OPERATORS)}")
    hr = (int(hr_size[0]), int(hr_size[1]))
    lr = (int(lr_size_[0]), int(lr_size_[1]))
    if min(lr) < 1 or hr[0] < lr[0] or hr[1] < lr[1]:
        raise ShapeError(
            f"cannot downsample {hr[0]}×{hr[1]} to {lr[0]}×{lr[1]}: the source grid must not be finer than the guide's"
        )
    f = scale_for_sizes(hr, lr)
    if f is not None:
        return make_operator(kind, hr, f, sigma=sigma)
    if sigma is not None and (kind != "gaussian" or not sigma > 0):
        raise ConfigError("sigma is only for the gaussian operator and must be > 0")
    return _cached_resampling(kind, hr, lr, None if sigma is None else float(sigma))


def is_resampling(op: object) -> bool:
    """True for an operator from :func:`resampling_operator` at a non-integer ratio."""
    return isinstance(op, DownsampleOperator) and op.ratio is not None
