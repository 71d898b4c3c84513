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
(``pip install "optisr[fast]"``) and the tensors are float32 or float64 on the CPU (the loop itself is never
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
# one caller in the loops at a time: Numba's workqueue layer (where OpenMP and TBB are missing) must not
# be entered twice at once; a second caller takes the PyTorch loop instead
_LOCK = threading.Lock()


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


def _kernels() -> dict[str, Any]:
    """The loops of :mod:`optisr.solvers._fused_kernels` (Numba compiles them at their first call, or
    loads them from its disk cache), once per process: ``{"stencil_dot", "update", "soft_apply_dot",
    "soft_update", "xpay"}``."""
    if "xpay" in _KERNELS:
        return _KERNELS
    from optisr.solvers import _fused_kernels as k

    _KERNELS.update(
        stencil_dot=k.stencil_dot, update=k.update, soft_apply_dot=k.soft_apply_dot, soft_update=k.soft_update,
        xpay=k.xpay,
    )  # fmt: skip
    return _KERNELS


MIN_PIXELS = 512 * 512
"""HR pixels per image from which the fused loops are used. Below it the PyTorch loop is kept: each
parallel Numba loop costs a hand-off to its threads, three per iteration, which on 128² training
crops made a training step 3× slower than the PyTorch loop's, while at 1 MP the loops are 1.7–2.3×
faster. Numba's threading layer is its default (OpenMP here, as PyTorch's): forcing its
``workqueue`` layer made the 1024² ×8 solve 1.7× slower (0.23 s instead of 0.14 s, 2 threads)."""


def eligible(weights: Tensor, x0: Tensor, op: Any) -> bool:
    """Whether the fused loops take this solve: float32/64 CPU tensors, a block operator, ≥ :data:`MIN_PIXELS`, Numba."""
    return (
        op.diagonal_gram
        and x0.shape[-2] * x0.shape[-1] >= MIN_PIXELS
        and weights.device.type == "cpu"
        and x0.dtype in (torch.float32, torch.float64)
        and weights.dtype == x0.dtype
        and available()
    )


class _Problem:
    """The arrays of one (H, W) solve: x, r, q (z after each update) and the zero-bordered p, wv, wh."""

    def __init__(self, x0: np.ndarray, r0: np.ndarray, wv: np.ndarray, wh: np.ndarray) -> None:
        H, W = x0.shape
        dt = x0.dtype
        self.cast = dt.type  # the loops' scalars (α, β) in the arrays' dtype
        self.x = np.array(x0, dtype=dt, copy=True)
        self.r = np.array(r0, dtype=dt, copy=True)
        self.q = np.zeros_like(self.x)  # zeros, not garbage: the first update computes r − 0·q
        self.pp = np.zeros((H + 2, W + 2), dt)
        self.wvp = np.zeros((H + 1, W), dt)
        self.wvp[1:] = wv
        self.whp = np.zeros((H, W + 1), dt)
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
        xpay(prob.pp, prob.q, prob.cast(rz_new / rz if rz != 0 else 0.0))
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
        weights: (B, 2, H, W) float32/float64 edge weights (x0's dtype).
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
            rz = k["update"](prob.x, prob.r, prob.pp, prob.q, mm, prob.cast(alpha), s, iv)
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
        weights: (B, 2, H, W) float32/float64 edge weights (x0's dtype; λ already in them).
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
            lambda alpha: k["soft_update"](prob.x, prob.r, prob.pp, prob.q, iv, prob.cast(alpha)),
            tol,
            max_iter,
        )

    return _batched(x0, solve_one)
