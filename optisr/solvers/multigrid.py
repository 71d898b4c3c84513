"""Aggregation multigrid for the graph-regularised systems: a symmetric V-cycle preconditioner.

The operator on the finest level is ``A = L(w) + Dᵀ C D`` (soft mode; exact mode uses it as the
penalised system ``L + ρ Dᵀ C D`` whose inverse, restricted to null(D), tends to the inverse of the
constrained problem as ρ grows). Level ``k + 1`` aggregates 2×2 pixels of level ``k``:

* prolongation ``P`` copies a coarse pixel into its 2×2 aggregate (piecewise constant; the last
  aggregate of an odd side is 1 pixel wide), restriction is ``Pᵀ`` (sum over the aggregate);
* the Galerkin Laplacian ``Pᵀ L P`` is again a 4-connected lattice Laplacian: the weight of a
  coarse edge is the sum of the fine edges that cross between the two aggregates, so the same
  matrix-free product (:func:`optisr.ops.lattice.laplacian_apply_`) works on every level and
  weak (cut) edges stay weak on coarse levels;
* the Galerkin data term ``(D P)ᵀ C (D P)`` keeps the LR grid: ``D P`` is again separable, with
  per-axis matrices ``A_y P_y`` and ``A_x P_x`` (an ``area`` operator at ×f becomes ``area`` at
  ×f/2 when the blocks nest).

Levels stop at the LR grid (level ``k`` has ``ceil(H / 2^k)`` rows and at least the ``h`` of the
LR grid), where the data term makes the system well conditioned. The smoother is Jacobi with
``d = θ·deg(L_k) + |D_k|ᵀ C |D_k| 1`` (θ = 4/3 with the l1 row sums of the data term), which
satisfies ``d ≻ A_k / 2``: each sweep converges and the V-cycle (one sweep before and after the
coarse correction, a few sweeps on the coarsest level) is symmetric positive definite, so it
preconditions CG.

Shapes: weights (B, 2, H, W); vectors (B, C, H, W); LR data weights broadcastable to
(B, C, h, w). Any floating dtype, any device; no autograd.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from optisr.errors import ConfigError
from optisr.ops.lattice import degree, laplacian_apply_
from optisr.ops.operators import DownsampleOperator, make_operator

__all__ = ["Hierarchy", "coarsen_weights", "prolong", "restrict", "build_hierarchy"]

THETA = 4.0 / 3.0  # Jacobi smoother: d = THETA·deg(L) + l1 rows of the data term


def coarsen_weights(weights: Tensor) -> Tensor:
    """Galerkin ``Pᵀ L P`` of 2×2 aggregation as lattice weights: (B, 2, H, W) -> (B, 2, ⌈H/2⌉, ⌈W/2⌉).

    Coarse vertical edge (I, J)–(I+1, J) = fine vertical edges at row 2I+1, columns 2J and 2J+1;
    coarse horizontal edge (I, J)–(I, J+1) = fine horizontal edges at column 2J+1, rows 2I, 2I+1.
    Edges inside an aggregate drop out. Unused slots (last row / column) stay zero.
    """
    H, W = weights.shape[-2:]
    w = F.pad(weights, (0, W % 2, 0, H % 2))
    wv = w[:, 0, 1::2, :]  # (B, H2, 2·W2)
    wh = w[:, 1, :, 1::2]  # (B, 2·H2, W2)
    cv = wv[..., 0::2] + wv[..., 1::2]
    ch = wh[:, 0::2, :] + wh[:, 1::2, :]
    return torch.stack([cv, ch], dim=1).contiguous()


def restrict(r: Tensor) -> Tensor:
    """``Pᵀ r``: sums over 2×2 aggregates, (..., H, W) -> (..., ⌈H/2⌉, ⌈W/2⌉)."""
    H, W = r.shape[-2:]
    r = F.pad(r, (0, W % 2, 0, H % 2))
    return r[..., 0::2, :].add(r[..., 1::2, :]).unflatten(-1, (-1, 2)).sum(-1)


def prolong(e: Tensor, size: tuple[int, int]) -> Tensor:
    """``P e``: copies each coarse pixel into its aggregate, (..., h2, w2) -> (..., H, W) = ``size``."""
    h2, w2 = e.shape[-2:]
    up = e[..., :, None, :, None].expand(*e.shape[:-2], h2, 2, w2, 2).reshape(*e.shape[:-2], 2 * h2, 2 * w2)
    return up[..., : size[0], : size[1]]


def _aggregate_columns(a: np.ndarray) -> np.ndarray:
    """``A P`` for a per-axis matrix (n, N): sums column pairs, (n, N) -> (n, ⌈N/2⌉)."""
    if a.shape[1] % 2:
        a = np.concatenate([a, np.zeros((a.shape[0], 1))], axis=1)
    return a[:, 0::2] + a[:, 1::2]


@dataclass(frozen=True)
class _DataLevel:
    """The data operator of one level: ``D_k = gain · op`` and ``|D_k| = gain · abs_op``."""

    op: DownsampleOperator
    abs_op: DownsampleOperator
    gain: float


@functools.lru_cache(maxsize=16)
def _data_levels(op: DownsampleOperator, n_levels: int) -> tuple[_DataLevel, ...]:
    """``D P_1 ⋯ P_k`` for k = 0..n_levels−1 (cached per operator; depends on no weights)."""
    a_y, a_x = op.axis_matrices()
    nonneg = bool((a_y >= 0).all() and (a_x >= 0).all())
    levels = [_DataLevel(op, op if nonneg else _explicit(op, np.abs(a_y), np.abs(a_x)), 1.0)]
    for k in range(1, n_levels):
        a_y, a_x = _aggregate_columns(a_y), _aggregate_columns(a_x)
        levels.append(_level_operator(op, k, a_y, a_x))
    return tuple(levels)


def _explicit(op: DownsampleOperator, a_y: np.ndarray, a_x: np.ndarray) -> DownsampleOperator:
    return DownsampleOperator.from_axis_matrices(op.kind, op.scale, a_y, a_x, sigma=op.sigma)


def _level_operator(op: DownsampleOperator, k: int, a_y: np.ndarray, a_x: np.ndarray) -> _DataLevel:
    """The operator with per-axis matrices ``(a_y, a_x)``; a (scaled) block operator when they are one."""
    if op.diagonal_gram and op.scale % (1 << k) == 0:
        block = make_operator(op.kind, (a_y.shape[1], a_x.shape[1]), op.scale >> k)
        b_y, b_x = block.axis_matrices()
        if b_y.shape == a_y.shape and b_x.shape == a_x.shape:
            gain = float(a_y[0, 0] * a_x[0, 0] / (b_y[0, 0] * b_x[0, 0]))
            if np.allclose(a_y * a_x[0, 0], b_y * gain * b_x[0, 0], rtol=1e-12, atol=0) and np.allclose(
                a_x * a_y[0, 0], b_x * gain * b_y[0, 0], rtol=1e-12, atol=0
            ):
                return _DataLevel(block, block, gain)
    exp = _explicit(op, a_y, a_x)
    nonneg = bool((a_y >= 0).all() and (a_x >= 0).all())
    return _DataLevel(exp, exp if nonneg else _explicit(op, np.abs(a_y), np.abs(a_x)), 1.0)


def max_levels(op: DownsampleOperator) -> int:
    """Number of levels whose grids are at least as fine as the LR grid (≥ 1)."""
    (H, W), (h, w) = op.hr_size, op.lr_size
    n = 1
    while math.ceil(H / 2**n) >= h and math.ceil(W / 2**n) >= w and min(H, W) >= 2 ** (n + 1):
        n += 1
    return n


class _Level:
    """One grid: weights (B, 2, H_k, W_k), data term ``gain²·opᵀ C op`` and the Jacobi smoother."""

    def __init__(self, weights: Tensor, data: _DataLevel | None, c: Tensor | None, channels: int):
        self.w = weights
        self.data = data
        self.c = None if c is None or data is None else c * data.gain**2
        B, _, H, W = weights.shape
        self.size = (H, W)
        like = weights.new_empty((B, channels, H, W))
        self.tv = like.new_empty((B, channels, H - 1, W))
        self.th = like.new_empty((B, channels, H, W - 1))
        d = THETA * degree(weights)
        if self.c is not None:
            cp = self.c.clamp_min(0)
            ones = torch.ones((1, 1, H, W), dtype=weights.dtype, device=weights.device)
            d = d + data.abs_op.adjoint(cp * data.abs_op.apply(ones))
        self.inv_d = (1.0 / d.clamp_min(torch.finfo(d.dtype).tiny)).contiguous()

    def matvec(self, v: Tensor) -> Tensor:
        out = laplacian_apply_(self.w, v, torch.empty_like(v), self.tv, self.th)
        if self.c is not None:
            out.add_(self.data.op.adjoint(self.c * self.data.op.apply(v)))
        return out


class Hierarchy:
    """A V-cycle ``z = V r ≈ A⁻¹ r`` for ``A = L(w) + Dᵀ C D``; symmetric positive definite.

    Args:
        weights: (B, 2, H, W) lattice weights (λ already applied).
        op: the downsampling operator D (its LR grid bounds the coarsest level).
        c: LR data weights broadcastable to (B, C, h, w) (mask · confidence · ρ), or None (pure L;
            then the V-cycle is SPD only if every level's Laplacian has no constant null vector in
            the range the smoother does not reach: use with a projection onto null(D)).
        channels: C, the number of channels of the vectors it will be applied to.
        levels: number of grids (1 = Jacobi only); default: down to the LR grid.
        coarse_sweeps: Jacobi sweeps on the coarsest grid.
    """

    def __init__(
        self,
        weights: Tensor,
        op: DownsampleOperator,
        c: Tensor | None,
        channels: int,
        *,
        levels: int | None = None,
        coarse_sweeps: int = 4,
        alpha: float = 1.0,
    ):
        top = max_levels(op)
        n = top if levels is None else max(1, min(int(levels), top))
        if coarse_sweeps < 1:
            raise ConfigError("coarse_sweeps must be >= 1")
        data = _data_levels(op, n) if c is not None else (None,) * n
        self.levels: list[_Level] = []
        w = weights.contiguous()
        for k in range(n):
            if k:
                w = coarsen_weights(w)
            self.levels.append(_Level(w, data[k], c, channels))
        self.coarse_sweeps = coarse_sweeps
        self.alpha = alpha

    def __call__(self, r: Tensor) -> Tensor:
        return self._cycle(0, r)

    def _cycle(self, k: int, r: Tensor) -> Tensor:
        lv = self.levels[k]
        z = r * lv.inv_d
        if k == len(self.levels) - 1:
            for _ in range(self.coarse_sweeps - 1):
                z.addcmul_(r - lv.matvec(z), lv.inv_d)
            return z
        zc = self._cycle(k + 1, restrict(r - lv.matvec(z)))
        z.add_(prolong(zc, lv.size), alpha=self.alpha)
        z.addcmul_(r - lv.matvec(z), lv.inv_d)
        return z


def build_hierarchy(weights: Tensor, op: DownsampleOperator, c: Tensor | None, channels: int, **kw) -> Hierarchy:
    """Shorthand for :class:`Hierarchy`."""
    return Hierarchy(weights, op, c, channels, **kw)
