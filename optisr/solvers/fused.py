"""A fused CPU kernel for the most common solve: exact mode, block operator (area/sum), Jacobi constraint preconditioner.

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

Shapes: weights (B, 2, H, W); x0, residual (B, C, H, W); m = 1/degree (B, 1, H, W); LR validity
(B, 1|C, h, w). Units: those of the problem (the kernels are unit-free).
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


def _kernels() -> tuple[Any, Any, Any]:
    """Compile (or load from Numba's cache) the three loops; returns ``(stencil_dot, update, xpay)``."""
    if "stencil_dot" in _KERNELS:
        return _KERNELS["stencil_dot"], _KERNELS["update"], _KERNELS["xpay"]
    import numba as nb

    _use_workqueue(nb)

    @nb.njit(parallel=True, fastmath=True, cache=True)
    def stencil_dot(pp, wvp, whp, deg, q):  # pragma: no cover - compiled
        # pp: (H+2, W+2) p with a zero border; wvp (H+1, W): wvp[i] = weight between rows i-1 and i
        # (row 0 and H zero); whp (H, W+1) likewise for columns. Returns pᵀ q with q = L p.
        H, W = q.shape
        part = np.zeros(H)
        for i in nb.prange(H):
            acc = np.float32(0.0)
            up, mid, down = pp[i], pp[i + 1], pp[i + 2]
            w_up, w_down, w_h, dg, qi = wvp[i], wvp[i + 1], whp[i], deg[i], q[i]
            for j in range(W):
                v = mid[j + 1]
                s = (
                    dg[j] * v
                    - w_down[j] * down[j + 1]
                    - w_up[j] * up[j + 1]
                    - w_h[j + 1] * mid[j + 2]
                    - w_h[j] * mid[j]
                )
                qi[j] = s
                acc += v * s
            part[i] = acc
        return part.sum()

    @nb.njit(parallel=True, fastmath=True, cache=True)
    def update(x, r, pp, q, m, alpha, scale, inv_msum):  # pragma: no cover - compiled
        # x += α p; r −= α q; r −= (Σ_b m r)·inv_msum_b; q <- z = m r; returns rᵀ z. Whole rows in
        # the inner loops (vectorisable); the per-block sums go through one row buffer.
        H, W = x.shape
        hb, wb = inv_msum.shape
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
            for bj in range(wb):  # t <- the block's correction Σ_b m r / Σ_b m, spread over its columns
                j1 = min(W, bj * scale + scale)
                c = np.float32(0.0)
                for j in range(bj * scale, j1):
                    c += t[j]
                c *= inv_msum[bi, bj]
                for j in range(bj * scale, j1):
                    t[j] = c
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
    def xpay(pp, z, beta):  # pragma: no cover - compiled
        H, W = z.shape
        b = np.float32(beta)
        for i in nb.prange(H):
            for j in range(W):
                pp[i + 1, j + 1] = z[i, j] + b * pp[i + 1, j + 1]

    _KERNELS.update(stencil_dot=stencil_dot, update=update, xpay=xpay)
    return stencil_dot, update, xpay


def _soft_kernels() -> tuple[Any, Any]:
    """The soft-mode loops: ``(apply_dot, update)`` (``xpay`` is shared with exact mode)."""
    if "soft_apply_dot" in _KERNELS:
        return _KERNELS["soft_apply_dot"], _KERNELS["soft_update"]
    import numba as nb

    @nb.njit(parallel=True, fastmath=True, cache=True)
    def soft_apply_dot(pp, wvp, whp, deg, gb2c, scale, q):  # pragma: no cover - compiled
        # q = (L + Dᵀ C D) p for a block operator: (Dᵀ C D p)_p = c_b D_b² Σ_b p (gb2c = c_b D_b²);
        # returns pᵀ q. One block row at a time: its block sums first, then the stencil.
        H, W = q.shape
        hb, wb = gb2c.shape
        part = np.zeros(hb)
        for bi in nb.prange(hb):
            i0 = bi * scale
            i1 = min(H, i0 + scale)
            t = np.zeros(W, dtype=np.float32)
            for i in range(i0, i1):
                mid = pp[i + 1]
                for j in range(W):
                    t[j] += mid[j + 1]
            for bj in range(wb):
                j1 = min(W, bj * scale + scale)
                c = np.float32(0.0)
                for j in range(bj * scale, j1):
                    c += t[j]
                c *= gb2c[bi, bj]
                for j in range(bj * scale, j1):
                    t[j] = c
            acc = np.float32(0.0)
            for i in range(i0, i1):
                up, mid, down = pp[i], pp[i + 1], pp[i + 2]
                w_up, w_down, w_h, dg, qi = wvp[i], wvp[i + 1], whp[i], deg[i], q[i]
                for j in range(W):
                    v = mid[j + 1]
                    s = (
                        dg[j] * v
                        - w_down[j] * down[j + 1]
                        - w_up[j] * up[j + 1]
                        - w_h[j + 1] * mid[j + 2]
                        - w_h[j] * mid[j]
                        + t[j]
                    )
                    qi[j] = s
                    acc += v * s
            part[bi] = acc
        return part.sum()

    @nb.njit(parallel=True, fastmath=True, cache=True)
    def soft_update(x, r, pp, q, inv_diag, alpha):  # pragma: no cover - compiled
        # x += α p; r −= α q; q <- z = r / diag(A); returns (rᵀr, rᵀz)
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

    _KERNELS.update(soft_apply_dot=soft_apply_dot, soft_update=soft_update)
    return soft_apply_dot, soft_update


def _one_soft(
    x0: np.ndarray,
    r0: np.ndarray,
    wv: np.ndarray,
    wh: np.ndarray,
    deg: np.ndarray,
    gb2c: np.ndarray,
    inv_diag: np.ndarray,
    scale: int,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, int, float, bool]:
    """Jacobi PCG of soft mode on one (H, W) problem; the stopping test on ‖r‖ as the PyTorch loop's."""
    _, _, xpay = _kernels()
    apply_dot, update = _soft_kernels()
    H, W = x0.shape
    x = np.array(x0, dtype=np.float32, copy=True)
    r = np.array(r0, dtype=np.float32, copy=True)
    q = np.zeros_like(x)  # zeros: the first update computes r − 0·q
    pp = np.zeros((H + 2, W + 2), np.float32)
    wvp = np.zeros((H + 1, W), np.float32)
    wvp[1:] = wv
    whp = np.zeros((H, W + 1), np.float32)
    whp[:, 1:] = wh
    rr, rz = update(x, r, pp, q, inv_diag, 0.0)  # z = M⁻¹ r₀ into q
    pp[1:-1, 1:-1] = q
    r0n = float(np.sqrt(max(rr, 0.0)))
    thresh = tol * r0n
    rn, iters = r0n, 0
    while rn > thresh and iters < max_iter:
        pq = apply_dot(pp, wvp, whp, deg, gb2c, scale, q)
        if not pq > 0:
            break
        rr, rz_new = update(x, r, pp, q, inv_diag, rz / pq)
        iters += 1
        rn = float(np.sqrt(max(rr, 0.0)))
        if rn <= thresh:
            break
        xpay(pp, q, rz_new / rz if rz != 0 else 0.0)
        rz = rz_new
    rel = rn / r0n if r0n > 0 else 0.0
    return x, iters, rel, rn <= thresh


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

    if not _LOCK.acquire(blocking=False):
        return None
    weights, x0, residual, c = weights.detach(), x0.detach(), residual.detach(), c.detach()
    try:
        import numba as nb

        nb.set_num_threads(max(1, min(torch.get_num_threads(), nb.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
        B, C = x0.shape[:2]
        h, w = op.lr_size
        deg = degree(weights)
        c_full = c.to(x0.dtype).expand(B, C, h, w)
        gb2c = c_full * op.block_weights(x0).square()
        diag = op.diag_normal(c_full.clamp_min(0)) + deg
        inv_diag = 1.0 / diag.clamp_min(torch.finfo(diag.dtype).tiny)
        out = torch.empty_like(x0, memory_format=torch.contiguous_format)
        its = torch.zeros((B, C), dtype=torch.int64)
        rels = torch.zeros((B, C), dtype=x0.dtype)
        conv = torch.zeros((B, C), dtype=torch.bool)
        wv_all, wh_all = weights[:, 0].contiguous().numpy(), weights[:, 1].contiguous().numpy()
        deg_np = deg[:, 0].contiguous().numpy()
        for b in range(B):
            for k in range(C):
                x, n, rel, ok = _one_soft(
                    x0[b, k].contiguous().numpy(), residual[b, k].contiguous().numpy(), wv_all[b], wh_all[b],
                    deg_np[b], gb2c[b, k].contiguous().numpy(), inv_diag[b, k].contiguous().numpy(), op.scale,
                    tol, max_iter,
                )  # fmt: skip
                out[b, k] = torch.from_numpy(x)
                its[b, k], rels[b, k], conv[b, k] = n, rel, ok
        lead = x0.shape[:-2]
        return out, CGInfo(iterations=its.reshape(lead), residual=rels.reshape(lead), converged=conv.reshape(lead))
    finally:
        _LOCK.release()


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


def _one(
    x0: np.ndarray,
    r0: np.ndarray,
    wv: np.ndarray,
    wh: np.ndarray,
    deg: np.ndarray,
    m: np.ndarray,
    inv_msum: np.ndarray,
    scale: int,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, int, float, bool]:
    """PCG on one (H, W) problem: returns ``(x, iterations, relative preconditioned residual, converged)``."""
    stencil_dot, update, xpay = _kernels()
    H, W = x0.shape
    x = np.array(x0, dtype=np.float32, copy=True)
    r = np.array(r0, dtype=np.float32, copy=True)
    q = np.zeros_like(x)  # zeros, not garbage: the first update computes r − 0·q
    pp = np.zeros((H + 2, W + 2), np.float32)
    wvp = np.zeros((H + 1, W), np.float32)
    wvp[1:] = wv
    whp = np.zeros((H, W + 1), np.float32)
    whp[:, 1:] = wh
    rz = update(x, r, pp, q, m, 0.0, scale, inv_msum)  # the first residual update and z = m r⁺
    pp[1:-1, 1:-1] = q
    r0n = float(np.sqrt(max(rz, 0.0)))
    thresh = tol * r0n
    rn, iters = r0n, 0
    while rn > thresh and iters < max_iter:
        pq = stencil_dot(pp, wvp, whp, deg, q)
        if not pq > 0:
            break
        rz_new = update(x, r, pp, q, m, rz / pq, scale, inv_msum)
        iters += 1
        rn = float(np.sqrt(max(rz_new, 0.0)))
        if rn <= thresh:
            break
        xpay(pp, q, rz_new / rz)
        rz = rz_new
    rel = rn / r0n if r0n > 0 else 0.0
    return x, iters, rel, rn <= thresh


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

    if not _LOCK.acquire(blocking=False):
        return None
    weights, x0, residual = weights.detach(), x0.detach(), residual.detach()
    try:
        import numba as nb

        nb.set_num_threads(max(1, min(torch.get_num_threads(), nb.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
        B, C = x0.shape[:2]
        h, w = op.lr_size
        s = op.scale
        deg = degree(weights)
        m = 1.0 / deg.clamp_min(torch.finfo(weights.dtype).tiny)
        # Σ_b m per LR block (ceil blocks at the right/bottom edge hold fewer pixels)
        msum = torch.nn.functional.avg_pool2d(m, s, s, ceil_mode=True, divisor_override=1)
        inv = 1.0 / msum.clamp_min(torch.finfo(msum.dtype).tiny)
        if tuple(inv.shape[-2:]) != (h, w):
            return None
        out = torch.empty_like(x0, memory_format=torch.contiguous_format)
        its = torch.zeros((B, C), dtype=torch.int64)
        rels = torch.zeros((B, C), dtype=x0.dtype)
        conv = torch.zeros((B, C), dtype=torch.bool)
        wv_all, wh_all = weights[:, 0].contiguous().numpy(), weights[:, 1].contiguous().numpy()
        deg_np, m_np = deg[:, 0].contiguous().numpy(), m[:, 0].contiguous().numpy()
        for b in range(B):
            for c in range(C):
                valid = inv[b, 0]
                if mask is not None:
                    valid = valid * mask[b, min(c, mask.shape[1] - 1)].to(valid.dtype)
                x, k, rel, ok = _one(
                    x0[b, c].contiguous().numpy(), residual[b, c].contiguous().numpy(), wv_all[b], wh_all[b],
                    deg_np[b], m_np[b], valid.contiguous().numpy(), s, tol, max_iter,
                )  # fmt: skip
                out[b, c] = torch.from_numpy(x)
                its[b, c], rels[b, c], conv[b, c] = k, rel, ok
        lead = x0.shape[:-2]
        return out, CGInfo(iterations=its.reshape(lead), residual=rels.reshape(lead), converged=conv.reshape(lead))
    finally:
        _LOCK.release()
