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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from optisr.errors import ConfigError, ShapeError

__all__ = [
    "DENSE_MASKED_GRAM_MAX",
    "OPERATORS",
    "DownsampleOperator",
    "axis_matrix",
    "bicubic_matrix",
    "lr_size",
    "make_operator",
]

OPERATORS = ("area", "sum", "bicubic", "gaussian")

# Masked projections of non-diagonal operators (bicubic, gaussian) Cholesky-factorise the constrained block
# of D Dᵀ densely up to this many LR pixels (exact); larger grids use an inner PCG instead.
DENSE_MASKED_GRAM_MAX = 2048
_DENSE_MASKED_GRAM_MAX = DENSE_MASKED_GRAM_MAX  # former name, kept for existing callers


def lr_size(hr_size: tuple[int, int], scale: int) -> tuple[int, int]:
    """LR grid size for an HR size under the package's size policy: ``ceil(H / f), ceil(W / f)``."""
    return (-(-hr_size[0] // scale), -(-hr_size[1] // scale))


# ---------------------------------------------------------------------------------------------
# Per-axis matrices (numpy float64, built once and cached)
# ---------------------------------------------------------------------------------------------


def _pil_bicubic(t: np.ndarray) -> np.ndarray:
    """PIL's bicubic kernel (a = -0.5), support 2."""
    a = -0.5
    t = np.abs(t)
    out = np.zeros_like(t)
    near = t < 1.0
    far = (t >= 1.0) & (t < 2.0)
    tn = t[near]
    out[near] = ((a + 2.0) * tn - (a + 3.0)) * tn * tn + 1.0
    tf = t[far]
    out[far] = (((tf - 5.0) * tf + 8.0) * tf - 4.0) * a
    return out


def _resample_matrix(n_in: int, n_out: int, kernel, support: float) -> np.ndarray:
    """Dense (n_out, n_in) matrix of PIL's antialiased resampling with ``kernel``.

    Mirrors Pillow's ``precompute_coeffs``: the filter is stretched by the scale when
    downsampling, taps are ``int(center ± support + 0.5)`` clipped to the image, and each row
    is normalised to sum to one.
    """
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = support * filterscale
    mat = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        center = (i + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), n_in)
        xs = np.arange(xmin, xmax, dtype=np.float64)
        w = kernel((xs - center + 0.5) / filterscale)
        total = w.sum()
        if total != 0.0:
            w = w / total
        mat[i, xmin:xmax] = w
    return mat


def bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """PIL's antialiased bicubic resampling matrix (n_out × n_in, float64) for any length ratio."""
    return _resample_matrix(n_in, n_out, _pil_bicubic, 2.0)


@functools.lru_cache(maxsize=64)
def axis_matrix(kind: str, n_in: int, scale: int, sigma: float | None = None) -> np.ndarray:
    """The per-axis matrix ``A`` (n_out × n_in) of operator ``kind`` (float64, read-only).

    Args:
        kind: one of ``area``, ``sum``, ``bicubic``, ``gaussian``.
        n_in: HR length along the axis.
        scale: integer downsampling scale f >= 1.
        sigma: Gaussian standard deviation in HR pixels (``gaussian`` only; default ``f / 2``).
    """
    n_out = -(-n_in // scale)
    if kind in ("area", "sum"):
        mat = np.zeros((n_out, n_in))
        for i in range(n_out):
            lo, hi = scale * i, min(scale * (i + 1), n_in)
            mat[i, lo:hi] = 1.0 / (hi - lo) if kind == "area" else 1.0
    elif kind == "bicubic":
        mat = bicubic_matrix(n_in, n_out)
    elif kind == "gaussian":
        s = scale / 2.0 if sigma is None else float(sigma)
        step = n_in / n_out
        radius = max(1, int(math.ceil(3.0 * s)))
        mat = np.zeros((n_out, n_in))
        for i in range(n_out):
            c = (i + 0.5) * step - 0.5
            lo, hi = max(0, int(math.floor(c - radius))), min(n_in, int(math.ceil(c + radius)) + 1)
            xs = np.arange(lo, hi, dtype=np.float64)
            w = np.exp(-0.5 * ((xs - c) / s) ** 2)
            mat[i, lo:hi] = w / w.sum()
    else:  # pragma: no cover - guarded by make_operator
        raise ConfigError(f"unknown operator {kind!r}")
    mat.setflags(write=False)
    return mat


class _Banded:
    """A matrix whose rows have contiguous, roughly diagonal support, applied as a few dense blocks.

    Rows are cut into chunks; each chunk only touches the columns its rows reach, so a product
    costs O(n_out · chunk·f) per line instead of the O(n_out · n_in) of one dense product. This
    keeps the operator linear in the pixel count while each block is still a BLAS matmul, which
    on a CPU is much faster than a gather of individual taps.

    ``apply(x, dim)`` computes ``A @ x`` along ``dim`` (-1 or -2).
    """

    def __init__(self, mat: np.ndarray, chunk: int = 64):
        n_out, n_in = mat.shape
        self.shape = (n_out, n_in)
        nz = mat != 0
        blocks = []
        for lo in range(0, n_out, chunk):
            hi = min(lo + chunk, n_out)
            cols = np.flatnonzero(nz[lo:hi].any(0))
            c0, c1 = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 1)
            blocks.append((lo, hi, c0, c1, torch.from_numpy(mat[lo:hi, c0:c1].copy())))
        if n_in <= 2 * chunk:  # small: one dense block is cheapest
            blocks = [(0, n_out, 0, n_in, torch.from_numpy(mat.copy()))]
        self._blocks64 = blocks
        self._cache: dict = {}

    def blocks(self, like: Tensor) -> list[tuple[int, int, int, int, Tensor]]:
        """``(row lo, row hi, col lo, col hi, dense block)`` in ``like``'s dtype and device."""
        key = (like.dtype, like.device)
        if key not in self._cache:
            self._cache[key] = [(a, b, c, d, m.to(like.device, like.dtype)) for a, b, c, d, m in self._blocks64]
        return self._cache[key]

    def apply(self, x: Tensor, dim: int) -> Tensor:
        blocks = self.blocks(x)
        if dim == -1:
            parts = [x[..., c0:c1] @ m.T for _, _, c0, c1, m in blocks]
        else:
            parts = [m @ x[..., c0:c1, :] for _, _, c0, c1, m in blocks]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=dim)


class _Block:
    """Block pooling along one axis (``area``/``sum``): output i = weight_i · Σ of its f inputs.

    With ``adjoint=True`` it applies the transpose: each input of block i receives weight_i · y_i.
    Pooling by reshape is far cheaper than any matrix product.
    """

    def __init__(self, weights: np.ndarray, n_in: int, scale: int, adjoint: bool):
        self.w64 = torch.from_numpy(np.ascontiguousarray(weights))
        self.n_in, self.f, self.adjoint = n_in, scale, adjoint
        self._cache: dict = {}

    def weights(self, like: Tensor) -> Tensor:
        """The per-block weights (n_out,) in ``like``'s dtype and device."""
        key = (like.dtype, like.device)
        if key not in self._cache:
            self._cache[key] = self.w64.to(like.device, like.dtype)
        return self._cache[key]

    def apply(self, x: Tensor, dim: int) -> Tensor:
        w, f, n = self.weights(x), self.f, len(self.w64)
        if dim == -2:
            return self.apply(x.transpose(-1, -2), -1).transpose(-1, -2)
        if not self.adjoint:
            if x.shape[-1] != n * f:
                x = torch.nn.functional.pad(x, (0, n * f - x.shape[-1]))
            return x.unflatten(-1, (n, f)).sum(-1) * w
        y = (x * w).unsqueeze(-1).expand(*x.shape, f).flatten(-2)
        return y[..., : self.n_in] if y.shape[-1] != self.n_in else y


@dataclass(frozen=True)
class _Axis:
    mat: np.ndarray  # (n_out, n_in) float64
    fwd: _Banded | _Block  # A
    adj: _Banded | _Block  # Aᵀ
    sq_adj: _Banded | _Block  # (A ⊙ A)ᵀ, for diag(Dᵀ C D)
    gram: _Banded | None  # A Aᵀ (banded), None for block pooling (diagonal)
    gram_inv: np.ndarray  # (A Aᵀ)⁻¹


def _checked_gram(mat: np.ndarray, what: str, fix: str) -> np.ndarray:
    """``A Aᵀ`` of an axis matrix, or a ConfigError when it is numerically singular."""
    gram = mat @ mat.T
    cond = np.linalg.cond(gram)
    if not np.isfinite(cond) or cond > 1e10:
        raise ConfigError(f"{what} is numerically rank-deficient (cond(D Dᵀ) = {cond:.2g}); {fix}")
    return gram


def _banded_axis(mat: np.ndarray, gram: np.ndarray) -> _Axis:
    return _Axis(
        mat, _Banded(mat), _Banded(mat.T.copy()), _Banded((mat * mat).T.copy()), _Banded(gram), np.linalg.inv(gram)
    )


@functools.lru_cache(maxsize=64)
def _axis(kind: str, n_in: int, scale: int, sigma: float | None) -> _Axis:
    mat = axis_matrix(kind, n_in, scale, sigma)
    gram = _checked_gram(mat, f"operator {kind!r} at scale {scale}", "use a smaller sigma")
    if kind in ("area", "sum"):
        w = mat.max(1)  # the per-block weight (1/count or 1)
        return _Axis(
            mat,
            _Block(w, n_in, scale, adjoint=False),
            _Block(w, n_in, scale, adjoint=True),
            _Block(w * w, n_in, scale, adjoint=True),
            None,
            np.diag(1.0 / np.diag(gram)),
        )
    return _banded_axis(mat, gram)


def _restricted_matrix(glob: np.ndarray, lo: int, hi: int, r0: int, r1: int) -> np.ndarray:
    """Rows ``lo:hi`` and columns ``r0:r1`` of an axis matrix, rows renormalised to their full sum."""
    mat = np.array(glob[lo:hi, r0:r1], dtype=np.float64)
    full = glob[lo:hi].sum(1)
    part = mat.sum(1)
    ok = np.abs(part) > 1e-12
    mat[ok] *= (full[ok] / part[ok])[:, None]
    mat.setflags(write=False)
    return mat


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
        self._ay = _axis(kind, H, self.scale, sigma)
        self._ax = _axis(kind, W, self.scale, sigma)
        self._ginv_cache: dict = {}
        self._windows: dict = {}
        # area/sum: D Dᵀ is diagonal, so the (masked) projection is closed-form.
        self.diagonal_gram = kind in ("area", "sum")

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
            gram = _checked_gram(a, f"{kind!r} operator window", "use a larger window (tile overlap)")
            axes.append(_banded_axis(a, gram))
        return cls._from_axes(kind, int(scale), axes[0], axes[1], sigma)

    @classmethod
    def _from_axes(cls, kind: str, scale: int, ay: _Axis, ax: _Axis, sigma: float | None) -> DownsampleOperator:
        op = cls.__new__(cls)
        op.kind, op.scale, op.sigma = kind, scale, sigma
        op.hr_size = (ay.mat.shape[1], ax.mat.shape[1])
        op.lr_size = (ay.mat.shape[0], ax.mat.shape[0])
        op._ay, op._ax = ay, ax
        op._ginv_cache = {}
        op._windows = {}
        op.diagonal_gram = False
        return op

    def __repr__(self) -> str:
        extra = f", sigma={self.sigma}" if self.sigma is not None else ""
        return f"DownsampleOperator({self.kind!r}, hr_size={self.hr_size}, scale={self.scale}{extra})"

    # -- structure -----------------------------------------------------------------------------
    def axis_matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """The per-axis matrices ``(A_y, A_x)``: (h, H) and (w, W) float64, read-only; D x = A_y x A_xᵀ."""
        return self._ay.mat, self._ax.mat

    def hr_window(self, lr_rows: tuple[int, int], lr_cols: tuple[int, int]) -> tuple[slice, slice]:
        """The HR rows/columns of an LR window: ``[f·i0, min(H, f·i1))`` × ``[f·j0, min(W, f·j1))``."""
        f, (H, W) = self.scale, self.hr_size
        return slice(f * lr_rows[0], min(H, f * lr_rows[1])), slice(f * lr_cols[0], min(W, f * lr_cols[1]))

    def restrict(self, lr_rows: tuple[int, int], lr_cols: tuple[int, int]) -> DownsampleOperator:
        """The operator of an LR-block-aligned window: LR pixels ``[i0, i1) × [j0, j1)``.

        Its HR grid is :meth:`hr_window` of the window. For ``area``/``sum`` (blocks never cross
        the window) this is the ordinary operator of the window's HR size. For ``bicubic`` /
        ``gaussian`` it holds the rows and columns of this operator's matrices for the window,
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
                mat = _restricted_matrix(glob, lo, hi, hr.start, hr.stop)
                gram = _checked_gram(mat, "tile operator", "use a larger overlap")
                self._windows[key] = _banded_axis(mat, gram)
            axes.append(self._windows[key])
        return DownsampleOperator._from_axes(self.kind, self.scale, axes[0], axes[1], self.sigma)

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
                parts.append(make_operator(self.kind, tuple(s.shape), f).apply(s))
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
        return by.weights(like)[:, None] * bx.weights(like)[None, :]

    # area/sum fast path: pool / expand both axes at once (one reshape, no transposes)
    def _block_apply(self, x: Tensor, by: _Block, bx: _Block) -> Tensor:
        (H, W), (h, w), f = self.hr_size, self.lr_size, self.scale
        if (H, W) != (h * f, w * f):
            x = torch.nn.functional.pad(x, (0, w * f - W, 0, h * f - H))
        s = x.unflatten(-1, (w, f)).sum(-1).unflatten(-2, (h, f)).sum(-2)
        return s * (by.weights(x)[:, None] * bx.weights(x)[None, :])

    def _block_adjoint(self, y: Tensor, by: _Block, bx: _Block) -> Tensor:
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
        return _masked_gram_cg(self.gram, r * m, m, kron_inv, tol)

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
                idx = np.flatnonzero(mi.cpu().numpy())
                chol = np.linalg.cholesky(full[np.ix_(idx, idx)])
                fac = (torch.from_numpy(idx).to(r.device), torch.from_numpy(chol).to(r.device, r.dtype))
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


def _masked_gram_cg(
    gram: Callable[[Tensor], Tensor], rhs: Tensor, m: Tensor, kron_inv: Callable[[Tensor], Tensor], tol: float | None
) -> Tensor:
    """PCG for (C M C) z = rhs on the constrained set, M = D Dᵀ (``gram``), preconditioned by C M⁻¹ C."""
    # float64: 1e-12, float32: ~1.2e-5 (relative); below that the iteration stagnates on rounding
    tol = max(100 * torch.finfo(rhs.dtype).eps, 1e-12) if tol is None else tol
    z = torch.zeros_like(rhs)
    r = rhs.clone()
    y = kron_inv(r) * m
    p = y.clone()
    ry = (r * y).sum((-2, -1), keepdim=True)
    r0 = r.norm(dim=(-2, -1), keepdim=True).clamp_min(torch.finfo(rhs.dtype).tiny)
    n = int(m.shape[-1] * m.shape[-2])
    for _ in range(min(500, max(50, 4 * int(math.sqrt(n))))):
        q = gram(p) * m
        pq = (p * q).sum((-2, -1), keepdim=True)
        alpha = torch.where(pq != 0, ry / torch.where(pq != 0, pq, torch.ones_like(pq)), torch.zeros_like(pq))
        z = z + alpha * p
        r = r - alpha * q
        if bool((r.norm(dim=(-2, -1), keepdim=True) <= tol * r0).all()):
            break
        y = kron_inv(r) * m
        ry_new = (r * y).sum((-2, -1), keepdim=True)
        beta = torch.where(ry != 0, ry_new / torch.where(ry != 0, ry, torch.ones_like(ry)), torch.zeros_like(ry))
        p = y + beta * p
        ry = ry_new
    return z


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
