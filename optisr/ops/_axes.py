"""Per-axis building blocks of :class:`optisr.ops.operators.DownsampleOperator` (package-private).

* :class:`Banded` -- a banded matrix applied as a few dense BLAS blocks;
* :class:`BlockPool` -- block pooling (``area``/``sum``) by reshape;
* :class:`Axis` -- one axis of an operator: A, Aᵀ, (A ⊙ A)ᵀ, A Aᵀ and (A Aᵀ)⁻¹;
* :func:`masked_gram_cg` -- the preconditioned CG of the masked Gram solve.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from optisr.errors import ConfigError
from optisr.ops.axis_matrices import axis_matrix

__all__ = [
    "Axis",
    "Banded",
    "BlockPool",
    "banded_axis",
    "cached_axis",
    "checked_gram",
    "masked_gram_cg",
    "restricted_matrix",
]


class Banded:
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


class BlockPool:
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
class Axis:
    mat: np.ndarray  # (n_out, n_in) float64
    fwd: Banded | BlockPool  # A
    adj: Banded | BlockPool  # Aᵀ
    sq_adj: Banded | BlockPool  # (A ⊙ A)ᵀ, for diag(Dᵀ C D)
    gram: Banded | None  # A Aᵀ (banded), None for block pooling (diagonal)
    gram_inv: np.ndarray  # (A Aᵀ)⁻¹


def checked_gram(mat: np.ndarray, what: str, fix: str) -> np.ndarray:
    """``A Aᵀ`` of an axis matrix, or a ConfigError when it is numerically singular."""
    gram = mat @ mat.T
    cond = np.linalg.cond(gram)
    if not np.isfinite(cond) or cond > 1e10:
        raise ConfigError(f"{what} is numerically rank-deficient (cond(D Dᵀ) = {cond:.2g}); {fix}")
    return gram


def banded_axis(mat: np.ndarray, gram: np.ndarray) -> Axis:
    return Axis(
        mat, Banded(mat), Banded(mat.T.copy()), Banded((mat * mat).T.copy()), Banded(gram), np.linalg.inv(gram)
    )


@functools.lru_cache(maxsize=64)
def cached_axis(kind: str, n_in: int, scale: int, sigma: float | None) -> Axis:
    mat = axis_matrix(kind, n_in, scale, sigma)
    gram = checked_gram(mat, f"operator {kind!r} at scale {scale}", "use a smaller sigma")
    if kind in ("area", "sum"):
        w = mat.max(1)  # the per-block weight (1/count or 1)
        return Axis(
            mat,
            BlockPool(w, n_in, scale, adjoint=False),
            BlockPool(w, n_in, scale, adjoint=True),
            BlockPool(w * w, n_in, scale, adjoint=True),
            None,
            np.diag(1.0 / np.diag(gram)),
        )
    return banded_axis(mat, gram)


def restricted_matrix(glob: np.ndarray, lo: int, hi: int, r0: int, r1: int) -> np.ndarray:
    """Rows ``lo:hi`` and columns ``r0:r1`` of an axis matrix, rows renormalised to their full sum."""
    mat = np.array(glob[lo:hi, r0:r1], dtype=np.float64)
    full = glob[lo:hi].sum(1)
    part = mat.sum(1)
    ok = np.abs(part) > 1e-12
    mat[ok] *= (full[ok] / part[ok])[:, None]
    mat.setflags(write=False)
    return mat


def masked_gram_cg(
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
