"""Fused CPU loops for the CG of the block operators (area/sum): exact and soft mode, Jacobi preconditioning.

The PyTorch loop of :func:`optisr.solvers.cg.cg_solve` with the constraint preconditioner of
:func:`optisr.solvers.graph._constraint_preconditioner` makes about 45 passes over memory per
iteration (every elementwise op is its own kernel with its own temporaries). Here one CG
iteration is three Numba-compiled, thread-parallel loops with the same arithmetic:

1. ``q = L p`` (the 4-connected stencil) and ``pᵀq`` in one pass;
2. ``x += α p``, ``r −= α q``, the residual update of the constraint preconditioner
   ``r⁺ = r − Dᵀ S⁻¹ D (m r)`` — for a block operator ``(Dᵀ S⁻¹ D (m r))_p = Σ_b m r / Σ_b m`` on
   the block ``b`` of ``p`` (0 on unconstrained blocks), whatever the block weight, since
   ``D_bp`` is constant inside a block — then ``z = m r⁺`` and ``rᵀz``, block row by block row
   (a block row stays in cache between its two sweeps);
3. ``p = z + β p``.

That is about 16 passes over memory instead of 45, with no temporaries; Numba rather than a C++
extension because it compiles at first use without a compiler toolchain at install time (the
kernels are cached on disk, ``cache=True``). Used automatically by the exact solves
(:func:`optisr.solvers.graph.solve_exact` and the implicit backward) when Numba is installed
(``pip install "optisr[fast]"``) and the tensors are float32 on the CPU (the loop itself is never
differentiated: gradients come from the implicit adjoint solve, which takes this path too);
``SolverOptions(backend="torch")`` turns it off. Iterates, stopping
rule (the preconditioned residual norm) and iteration counts match the PyTorch loop: results
agree to the CG tolerance (float32 summation order differs).

Soft mode, ``(Dᵀ C D + L) x = b`` with the Jacobi preconditioner, is the same three loops with
``q = (L + Dᵀ C D) p`` (block sums of ``p``, then the stencil, block row by block row) and
``z = r / diag``; its stopping test is on ``‖r‖``, as the PyTorch loop's.

Shapes: weights (B, 2, H, W); x0, residual (B, C, H, W); m = 1/degree (B, 1, H, W); LR validity
and data weights (B, 1|C, h, w). Units: those of the problem (the kernels are unit-free).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch
from torch import Tensor

from optisr.solvers.cg import CGInfo

__all__ = ["MIN_PIXELS", "available", "block_exact_pcg", "block_soft_pcg", "eligible"]

_KERNELS: dict[str, Any] = {}
_LOCK = threading.Lock()  # Numba's default (workqueue) threading layer must not be entered twice at once


def available() -> bool:
    """Whether Numba can be imported (the fused kernels compile at their first use)."""
    if "ok" not in _KERNELS:
        try:
            import numba  # noqa: F401
        except ImportError:
            _KERNELS["ok"] = False
        else:
            _KERNELS["ok"] = True
    return bool(_KERNELS["ok"])


def _use_workqueue(nb: Any) -> None:
    """Run the parallel loops on Numba's own ``workqueue`` threads unless ``NUMBA_THREADING_LAYER`` says otherwise.

    Numba picks the OpenMP layer when it can; its threads then spin-wait after every loop beside
    PyTorch's own OpenMP pool, and on 2 cores that made small solves (training crops) several times
    slower. The workqueue layer sleeps between loops; it must not be entered from two threads at
    once, which :data:`_LOCK` prevents.
    """
    import os

    if "NUMBA_THREADING_LAYER" not in os.environ:
        nb.config.THREADING_LAYER = "workqueue"


def _kernels() -> dict[str, Any]:
    """Compile (or load from Numba's disk cache) the loops, once per process.

    Returns ``{"stencil_dot", "update", "soft_apply_dot", "soft_update", "xpay"}``. Layout: ``pp``
    is p (H+2, W+2) with a zero border; ``wvp`` (H+1, W) holds in row i the weight between rows
    i−1 and i (rows 0 and H zero), ``whp`` (H, W+1) likewise for columns; ``deg`` the degree.
    """
    if "xpay" in _KERNELS:
        return _KERNELS
    import numba as nb

    _use_workqueue(nb)

    @nb.njit(fastmath=True, cache=True, inline="always")
    def stencil_row(pp, wvp, whp, deg, q, i, extra):  # pragma: no cover - compiled
        # q[i] = (L p)[i] + extra (one value per column), returns p[i]ᵀ q[i]
        up, mid, down = pp[i], pp[i + 1], pp[i + 2]
        w_up, w_down, w_h, dg, qi = wvp[i], wvp[i + 1], whp[i], deg[i], q[i]
        acc = np.float32(0.0)
        for j in range(qi.shape[0]):
            v = mid[j + 1]
            s = (
                dg[j] * v
                - w_down[j] * down[j + 1]
                - w_up[j] * up[j + 1]
                - w_h[j + 1] * mid[j + 2]
                - w_h[j] * mid[j]
                + extra[j]
            )
            qi[j] = s
            acc += v * s
        return acc

    @nb.njit(parallel=True, fastmath=True, cache=True)
    def stencil_dot(pp, wvp, whp, deg, q):  # pragma: no cover - compiled
        # q = L p; returns pᵀ q
        H, W = q.shape
        part = np.zeros(H)
        none = np.zeros(W, dtype=np.float32)
        for i in nb.prange(H):
            part[i] = stencil_row(pp, wvp, whp, deg, q, i, none)
        return part.sum()

    @nb.njit(fastmath=True, cache=True, inline="always")
    def spread_block_sums(t, factor, bi, scale):  # pragma: no cover - compiled
        # t (one row) <- Σ of t over each block's columns × factor[bi, block], spread over those columns
        W = t.shape[0]
        for bj in range(factor.shape[1]):
            j1 = min(W, bj * scale + scale)
            c = np.float32(0.0)
            for j in range(bj * scale, j1):
                c += t[j]
            c *= factor[bi, bj]
            for j in range(bj * scale, j1):
                t[j] = c

    @nb.njit(parallel=True, fastmath=True, cache=True)
    def update(x, r, pp, q, m, alpha, scale, inv_msum):  # pragma: no cover - compiled
        # exact mode: x += α p; r −= α q; r −= (Σ_b m r)·inv_msum_b; q <- z = m r; returns rᵀ z.
        # Whole rows in the inner loops (vectorisable); the block sums go through one row buffer.
        H, W = x.shape
        hb = inv_msum.shape[0]
        a = np.float32(alpha)
        part = np.zeros(hb)
        for bi in nb.prange(hb):
            i0 = bi * scale
            i1 = min(H, i0 + scale)
            t = np.zeros(W, dtype=np.float32)
            for i in range(i0, i1):
                xi, ri, pi, qi, mi = x[i], r[i], pp[i + 1], q[i], m[i]
                for j in range(W):
                    xi[j] += a * pi[j + 1]
                    rv = ri[j] - a * qi[j]
                    ri[j] = rv
                    t[j] += mi[j] * rv
            spread_block_sums(t, inv_msum, bi, scale)
            acc = np.float32(0.0)
            for i in range(i0, i1):
                ri, qi, mi = r[i], q[i], m[i]
                for j in range(W):
                    rv = ri[j] - t[j]
                    ri[j] = rv
                    z = mi[j] * rv
                    qi[j] = z
                    acc += rv * z
            part[bi] = acc
        return part.sum()

    @nb.njit(parallel=True, fastmath=True, cache=True)
    def soft_apply_dot(pp, wvp, whp, deg, gb2c, scale, q):  # pragma: no cover - compiled
        # q = (L + Dᵀ C D) p for a block operator: (Dᵀ C D p)_p = c_b D_b² Σ_b p (gb2c = c_b D_b²);
        # returns pᵀ q. One block row at a time: its block sums first, then the stencil.
        H, W = q.shape
        hb = gb2c.shape[0]
        part = np.zeros(hb)
        for bi in nb.prange(hb):
            i0 = bi * scale
            i1 = min(H, i0 + scale)
            t = np.zeros(W, dtype=np.float32)
            for i in range(i0, i1):
                mid = pp[i + 1]
                for j in range(W):
                    t[j] += mid[j + 1]
            spread_block_sums(t, gb2c, bi, scale)
            acc = np.float32(0.0)
            for i in range(i0, i1):
                acc += stencil_row(pp, wvp, whp, deg, q, i, t)
            part[bi] = acc
        return part.sum()

    @nb.njit(parallel=True, fastmath=True, cache=True)
    def soft_update(x, r, pp, q, inv_diag, alpha):  # pragma: no cover - compiled
        # soft mode: x += α p; r −= α q; q <- z = r / diag(A); returns (rᵀr, rᵀz)
        H, W = x.shape
        a = np.float32(alpha)
        part = np.zeros((H, 2))
        for i in nb.prange(H):
            xi, ri, pi, qi, di = x[i], r[i], pp[i + 1], q[i], inv_diag[i]
            rr = 0.0  # float64 row sums: the stopping test of an ill-conditioned soft solve rests on them
            rz = 0.0
            for j in range(W):
                xi[j] += a * pi[j + 1]
                rv = ri[j] - a * qi[j]
                ri[j] = rv
                z = di[j] * rv
                qi[j] = z
                rr += rv * rv
                rz += rv * z
            part[i, 0] = rr
            part[i, 1] = rz
        return part[:, 0].sum(), part[:, 1].sum()

    @nb.njit(parallel=True, fastmath=True, cache=True)
    def xpay(pp, z, beta):  # pragma: no cover - compiled
        H, W = z.shape
        b = np.float32(beta)
        for i in nb.prange(H):
            for j in range(W):
                pp[i + 1, j + 1] = z[i, j] + b * pp[i + 1, j + 1]

    _KERNELS.update(
        stencil_dot=stencil_dot, update=update, soft_apply_dot=soft_apply_dot, soft_update=soft_update, xpay=xpay
    )
    return _KERNELS


MIN_PIXELS = 512 * 512
"""HR pixels per image from which the fused loops are used. Below it the PyTorch loop is kept: each
parallel Numba loop costs a hand-off to its worker threads (tens of µs on a quiet machine, up to
milliseconds when the cores are busy), three per iteration, which on 128² training crops made a
training step 3× slower than the PyTorch loop's, while at 1 MP the loops are 2–3× faster."""


def eligible(weights: Tensor, x0: Tensor, op: Any) -> bool:
    """Whether the fused loops take this solve: float32 CPU tensors, a block operator, ≥ :data:`MIN_PIXELS`, Numba."""
    return (
        op.diagonal_gram
        and x0.shape[-2] * x0.shape[-1] >= MIN_PIXELS
        and weights.device.type == "cpu"
        and weights.dtype == torch.float32
        and x0.dtype == torch.float32
        and available()
    )


class _Problem:
    """The arrays of one (H, W) solve: x, r, q (z after each update) and the zero-bordered p, wv, wh."""

    def __init__(self, x0: np.ndarray, r0: np.ndarray, wv: np.ndarray, wh: np.ndarray) -> None:
        H, W = x0.shape
        self.x = np.array(x0, dtype=np.float32, copy=True)
        self.r = np.array(r0, dtype=np.float32, copy=True)
        self.q = np.zeros_like(self.x)  # zeros, not garbage: the first update computes r − 0·q
        self.pp = np.zeros((H + 2, W + 2), np.float32)
        self.wvp = np.zeros((H + 1, W), np.float32)
        self.wvp[1:] = wv
        self.whp = np.zeros((H, W + 1), np.float32)
        self.whp[:, 1:] = wh


def _pcg(prob: _Problem, apply: Any, update: Any, tol: float, max_iter: int) -> tuple[np.ndarray, int, float, bool]:
    """The CG iteration over the fused loops.

    ``apply()`` writes ``q = A p`` and returns ``pᵀq``; ``update(α)`` does ``x += α p``, ``r −= α q``,
    writes ``z = M⁻¹ r`` into ``q`` and returns ``(‖r‖²_stop, rᵀz)`` (the squared norm the stopping
    test uses). Returns ``(x, iterations, relative residual, converged)``.
    """
    n2, rz = update(0.0)
    prob.pp[1:-1, 1:-1] = prob.q
    r0n = float(np.sqrt(max(n2, 0.0)))
    thresh = tol * r0n
    rn, iters = r0n, 0
    xpay = _kernels()["xpay"]
    while rn > thresh and iters < max_iter:
        pq = apply()
        if not pq > 0:
            break
        n2, rz_new = update(rz / pq)
        iters += 1
        rn = float(np.sqrt(max(n2, 0.0)))
        if rn <= thresh:
            break
        xpay(prob.pp, prob.q, rz_new / rz if rz != 0 else 0.0)
        rz = rz_new
    return prob.x, iters, (rn / r0n if r0n > 0 else 0.0), rn <= thresh


def _batched(x0: Tensor, solve_one: Any) -> tuple[Tensor, CGInfo] | None:
    """Run ``solve_one(b, c) -> (x, iterations, rel, converged)`` for every (sample, channel), under :data:`_LOCK`.

    Returns ``(x (B, C, H, W), CGInfo)``, or None when another thread holds the kernels (the caller
    then takes the PyTorch loop).
    """
    if not _LOCK.acquire(blocking=False):
        return None
    try:
        import numba as nb

        nb.set_num_threads(max(1, min(torch.get_num_threads(), nb.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
        B, C = x0.shape[:2]
        out = torch.empty_like(x0, memory_format=torch.contiguous_format)
        its = torch.zeros((B, C), dtype=torch.int64)
        rels = torch.zeros((B, C), dtype=x0.dtype)
        conv = torch.zeros((B, C), dtype=torch.bool)
        for b in range(B):
            for c in range(C):
                x, n, rel, ok = solve_one(b, c)
                out[b, c] = torch.from_numpy(x)
                its[b, c], rels[b, c], conv[b, c] = n, rel, ok
        lead = x0.shape[:-2]
        return out, CGInfo(iterations=its.reshape(lead), residual=rels.reshape(lead), converged=conv.reshape(lead))
    finally:
        _LOCK.release()


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def block_exact_pcg(
    weights: Tensor,
    x0: Tensor,
    residual: Tensor,
    op: Any,
    mask: Tensor | None,
    *,
    tol: float,
    max_iter: int,
) -> tuple[Tensor, CGInfo] | None:
    """The constraint-preconditioned CG of exact mode for area/sum operators, fused (see the module doc).

    Args:
        weights: (B, 2, H, W) float32 edge weights.
        x0: (B, C, H, W) consistent starting point.
        residual: (B, C, H, W) ``−L x0`` (or the right-hand side of the adjoint solve).
        op: the block operator (``op.diagonal_gram``).
        mask: (B, 1|C, h, w) bool LR validity, or None.
        tol, max_iter: as :func:`optisr.solvers.cg.cg_solve` with ``norm="precond"``.
    Returns:
        ``(x, info)`` as the PyTorch loop returns them, or None when another thread is inside the
        kernels (the caller then takes the PyTorch loop).
    """
    from optisr.ops.lattice import degree

    weights, x0 = weights.detach(), x0.detach()
    k = _kernels()
    s = op.scale
    deg = degree(weights)
    m = 1.0 / deg.clamp_min(torch.finfo(weights.dtype).tiny)
    # Σ_b m per LR block (ceil blocks at the right/bottom edge hold fewer pixels)
    msum = torch.nn.functional.avg_pool2d(m, s, s, ceil_mode=True, divisor_override=1)
    inv = 1.0 / msum.clamp_min(torch.finfo(msum.dtype).tiny)
    if tuple(inv.shape[-2:]) != tuple(op.lr_size):
        return None

    def solve_one(b: int, c: int) -> tuple[np.ndarray, int, float, bool]:
        valid = inv[b, 0] if mask is None else inv[b, 0] * mask[b, min(c, mask.shape[1] - 1)].to(inv.dtype)
        prob = _Problem(_np(x0[b, c]), _np(residual[b, c]), _np(weights[b, 0]), _np(weights[b, 1]))
        d, mm, iv = _np(deg[b, 0]), _np(m[b, 0]), _np(valid)

        def update(alpha: float) -> tuple[float, float]:
            rz = k["update"](prob.x, prob.r, prob.pp, prob.q, mm, alpha, s, iv)
            return rz, rz  # exact mode stops on the preconditioned norm √(rᵀz)

        return _pcg(prob, lambda: k["stencil_dot"](prob.pp, prob.wvp, prob.whp, d, prob.q), update, tol, max_iter)

    return _batched(x0, solve_one)


def block_soft_pcg(
    weights: Tensor,
    x0: Tensor,
    residual: Tensor,
    op: Any,
    c: Tensor,
    *,
    tol: float,
    max_iter: int,
) -> tuple[Tensor, CGInfo] | None:
    """The Jacobi PCG of soft mode, ``(Dᵀ C D + L) x = b``, for area/sum operators, fused.

    Args:
        weights: (B, 2, H, W) float32 edge weights (λ already in them).
        x0: (B, C, H, W) starting point; residual: (B, C, H, W) ``b − A x0``.
        op: the block operator (``op.diagonal_gram``).
        c: LR data weights ``C`` broadcastable to (B, C, h, w) (negative entries, a Tukey term's,
            enter the product but not the preconditioner, as in the PyTorch loop).
        tol, max_iter: as :func:`optisr.solvers.cg.cg_solve` with ``norm="residual"``.
    Returns:
        ``(x, info)``, or None when another thread is inside the kernels.
    """
    from optisr.ops.lattice import degree

    weights, x0 = weights.detach(), x0.detach()
    k = _kernels()
    B, C = x0.shape[:2]
    deg = degree(weights)
    c_full = c.detach().to(x0.dtype).expand(B, C, *op.lr_size)
    gb2c = c_full * op.block_weights(x0).square()
    diag = op.diag_normal(c_full.clamp_min(0)) + deg
    inv_diag = 1.0 / diag.clamp_min(torch.finfo(diag.dtype).tiny)

    def solve_one(b: int, ch: int) -> tuple[np.ndarray, int, float, bool]:
        prob = _Problem(_np(x0[b, ch]), _np(residual[b, ch]), _np(weights[b, 0]), _np(weights[b, 1]))
        d, g, iv = _np(deg[b, 0]), _np(gb2c[b, ch]), _np(inv_diag[b, ch])
        return _pcg(
            prob,
            lambda: k["soft_apply_dot"](prob.pp, prob.wvp, prob.whp, d, g, op.scale, prob.q),
            lambda alpha: k["soft_update"](prob.x, prob.r, prob.pp, prob.q, iv, alpha),
            tol,
            max_iter,
        )

    return _batched(x0, solve_one)
