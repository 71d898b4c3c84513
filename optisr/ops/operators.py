"""Linear downsampling operators D: HR (H, W) -> LR (h, w), with adjoint and exact projection.

Every operator acts on the last two dimensions of a tensor ``(..., H, W)`` and is *separable*:
``D x = A_y x A_xᵀ`` with small per-axis matrices ``A_y`` (h×H) and ``A_x`` (w×W). Separability
gives ``D Dᵀ = (A_y A_yᵀ) ⊗ (A_x A_xᵀ)``, so the orthogonal projection onto ``{x : D x = s}``

    P_s(x) = x + Dᵀ (D Dᵀ)⁻¹ (s − D x)

costs two operator applications and two tiny (h×h, w×w) matrix products.

Size policy (any H, W; they need not be multiples of the factor ``f``):
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
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from optisr.errors import ConfigError, ShapeError

OPERATORS = ("area", "sum", "bicubic", "gaussian")

# Masked projections of non-diagonal operators (bicubic, gaussian) factor the constrained block
# of D Dᵀ densely up to this many LR pixels (exact); larger grids use an inner PCG instead.
_DENSE_MASKED_GRAM_MAX = 2048


def lr_size(hr_size: tuple[int, int], factor: int) -> tuple[int, int]:
    """LR grid size for an HR size under the package's size policy: ``ceil(H / f), ceil(W / f)``."""
    return (-(-hr_size[0] // factor), -(-hr_size[1] // factor))


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
def axis_matrix(kind: str, n_in: int, factor: int, sigma: float | None = None) -> np.ndarray:
    """The per-axis matrix ``A`` (n_out × n_in) of operator ``kind`` (float64, read-only).

    Args:
        kind: one of ``area``, ``sum``, ``bicubic``, ``gaussian``.
        n_in: HR length along the axis.
        factor: integer downsampling factor f >= 1.
        sigma: Gaussian standard deviation in HR pixels (``gaussian`` only; default ``f / 2``).
    """
    n_out = -(-n_in // factor)
    if kind in ("area", "sum"):
        mat = np.zeros((n_out, n_in))
        for i in range(n_out):
            lo, hi = factor * i, min(factor * (i + 1), n_in)
            mat[i, lo:hi] = 1.0 / (hi - lo) if kind == "area" else 1.0
    elif kind == "bicubic":
        mat = bicubic_matrix(n_in, n_out)
    elif kind == "gaussian":
        s = factor / 2.0 if sigma is None else float(sigma)
        scale = n_in / n_out
        radius = max(1, int(math.ceil(3.0 * s)))
        mat = np.zeros((n_out, n_in))
        for i in range(n_out):
            c = (i + 0.5) * scale - 0.5
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

    def _blocks(self, like: Tensor):
        key = (like.dtype, like.device)
        if key not in self._cache:
            self._cache[key] = [(a, b, c, d, m.to(like.device, like.dtype)) for a, b, c, d, m in self._blocks64]
        return self._cache[key]

    def apply(self, x: Tensor, dim: int) -> Tensor:
        blocks = self._blocks(x)
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

    def __init__(self, weights: np.ndarray, n_in: int, factor: int, adjoint: bool):
        self.w64 = torch.from_numpy(np.ascontiguousarray(weights))
        self.n_in, self.f, self.adjoint = n_in, factor, adjoint
        self._cache: dict = {}

    def _w(self, like: Tensor) -> Tensor:
        key = (like.dtype, like.device)
        if key not in self._cache:
            self._cache[key] = self.w64.to(like.device, like.dtype)
        return self._cache[key]

    def apply(self, x: Tensor, dim: int) -> Tensor:
        w, f, n = self._w(x), self.f, len(self.w64)
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
    gram_inv: np.ndarray  # (A Aᵀ)⁻¹


@functools.lru_cache(maxsize=64)
def _axis(kind: str, n_in: int, factor: int, sigma: float | None) -> _Axis:
    mat = axis_matrix(kind, n_in, factor, sigma)
    gram = mat @ mat.T
    cond = np.linalg.cond(gram)
    if not np.isfinite(cond) or cond > 1e10:
        raise ConfigError(
            f"operator {kind!r} at factor {factor} is numerically rank-deficient (cond(D Dᵀ) = {cond:.2g}); "
            "use a smaller sigma"
        )
    if kind in ("area", "sum"):
        w = mat.max(1)  # the per-block weight (1/count or 1)
        return _Axis(
            mat,
            _Block(w, n_in, factor, adjoint=False),
            _Block(w, n_in, factor, adjoint=True),
            _Block(w * w, n_in, factor, adjoint=True),
            np.diag(1.0 / np.diag(gram)),
        )
    return _Axis(mat, _Banded(mat), _Banded(mat.T.copy()), _Banded((mat * mat).T.copy()), np.linalg.inv(gram))


# ---------------------------------------------------------------------------------------------
# The operator
# ---------------------------------------------------------------------------------------------


class DownsampleOperator:
    """A separable linear downsampling operator D for a fixed HR size.

    Args:
        kind: ``area`` (block mean), ``sum`` (block sum, for counts), ``bicubic`` (PIL-exact
            antialiased bicubic) or ``gaussian`` (Gaussian PSF + decimation).
        hr_size: (H, W) of the HR grid.
        factor: integer scale f in 1..64.
        sigma: Gaussian PSF standard deviation in HR pixels (``gaussian`` only; default f/2).

    Shapes: HR tensors are ``(..., H, W)``, LR tensors ``(..., h, w)`` with ``(h, w) = lr_size``;
    any leading dimensions, any floating dtype, any device. Masks are bool ``(..., h, w)``
    broadcastable to the LR tensor.
    """

    def __init__(self, kind: str, hr_size: tuple[int, int], factor: int, *, sigma: float | None = None):
        if kind not in OPERATORS:
            raise ConfigError(f"unknown operator {kind!r}; choose one of {', '.join(OPERATORS)}")
        if int(factor) != factor or not 1 <= factor <= 64:
            raise ConfigError(f"factor must be an integer in 1..64, got {factor!r}")
        if sigma is not None and (kind != "gaussian" or not sigma > 0):
            raise ConfigError("sigma is only for the gaussian operator and must be > 0")
        H, W = int(hr_size[0]), int(hr_size[1])
        if H < 1 or W < 1:
            raise ShapeError(f"HR size must be positive, got {H}×{W}")
        self.kind = kind
        self.factor = int(factor)
        self.sigma = sigma
        self.hr_size = (H, W)
        self.lr_size = lr_size((H, W), self.factor)
        self._ay = _axis(kind, H, self.factor, sigma)
        self._ax = _axis(kind, W, self.factor, sigma)
        self._ginv_cache: dict = {}
        # area/sum: D Dᵀ is diagonal, so the (masked) projection is closed-form.
        self.diagonal_gram = kind in ("area", "sum")

    def __repr__(self) -> str:
        extra = f", sigma={self.sigma}" if self.sigma is not None else ""
        return f"DownsampleOperator({self.kind!r}, hr_size={self.hr_size}, factor={self.factor}{extra})"

    # -- shape checks --------------------------------------------------------------------------
    def _check(self, t: Tensor, size: tuple[int, int], what: str) -> None:
        if t.dim() < 2 or tuple(t.shape[-2:]) != size:
            raise ShapeError(
                f"{what} must end in {size[0]}×{size[1]} for {self!r}, got shape {tuple(t.shape)}"
            )

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
        return by._w(like)[:, None] * bx._w(like)[None, :]

    # area/sum fast path: pool / expand both axes at once (one reshape, no transposes)
    def _block_apply(self, x: Tensor, by: _Block, bx: _Block) -> Tensor:
        (H, W), (h, w), f = self.hr_size, self.lr_size, self.factor
        if (H, W) != (h * f, w * f):
            x = torch.nn.functional.pad(x, (0, w * f - W, 0, h * f - H))
        s = x.unflatten(-1, (w, f)).sum(-1).unflatten(-2, (h, f)).sum(-2)
        return s * (by._w(x)[:, None] * bx._w(x)[None, :])

    def _block_adjoint(self, y: Tensor, by: _Block, bx: _Block) -> Tensor:
        (H, W), (h, w), f = self.hr_size, self.lr_size, self.factor
        y = y * (by._w(y)[:, None] * bx._w(y)[None, :])
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
        mask and a non-diagonal D Dᵀ it is a preconditioned CG on the LR grid (preconditioner:
        the unmasked Kronecker inverse), run to ``tol`` (default: 100·machine epsilon relative).
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
        if n <= _DENSE_MASKED_GRAM_MAX:
            return self._masked_gram_dense(r, mask)
        return _masked_gram_cg(self, r * m, m, kron_inv, tol)

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
        """D Dᵀ z on the LR grid (for tests and the masked solve)."""
        return self.apply(self.adjoint(z))

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


def _masked_gram_cg(op: DownsampleOperator, rhs: Tensor, m: Tensor, kron_inv, tol: float | None) -> Tensor:
    """PCG for (C M C) z = rhs on the constrained set, M = D Dᵀ, preconditioned by C M⁻¹ C."""
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
        q = op.gram(p) * m
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
def _cached_operator(kind: str, hr_size: tuple[int, int], factor: int, sigma: float | None) -> DownsampleOperator:
    return DownsampleOperator(kind, hr_size, factor, sigma=sigma)


def make_operator(
    kind: str | DownsampleOperator, hr_size: tuple[int, int], factor: int, *, sigma: float | None = None
) -> DownsampleOperator:
    """Return the (cached) operator ``kind`` for an HR size and factor; operators pass through."""
    if isinstance(kind, DownsampleOperator):
        if kind.hr_size != tuple(hr_size) or kind.factor != factor:
            raise ShapeError(f"{kind!r} does not fit HR size {tuple(hr_size)} at factor {factor}")
        return kind
    if kind not in OPERATORS:
        raise ConfigError(f"unknown operator {kind!r}; choose one of {', '.join(OPERATORS)}")
    return _cached_operator(kind, (int(hr_size[0]), int(hr_size[1])), int(factor), sigma)
