"""Batched preconditioned conjugate gradients over image-shaped tensors.

Every sample (leading dims ``(B, C)``) converges on its own: once a sample reaches its tolerance
its step length is set to zero, so its iterate no longer changes while the others continue.
All inner products reduce over the last two dimensions (H, W).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from optisr.errors import ConvergenceWarning


@dataclass
class CGInfo:
    """Per-sample outcome of a CG solve; every field has the leading shape of the problem (B, C)."""

    iterations: Tensor  # int64: iterations taken until this sample converged (or max_iter)
    residual: Tensor  # relative residual ‖r‖ / ‖r₀‖ at exit
    converged: Tensor  # bool

    def __repr__(self) -> str:
        return (
            f"CGInfo(iterations max={int(self.iterations.max())}, residual max={float(self.residual.max()):.2e}, "
            f"converged={int(self.converged.sum())}/{self.converged.numel()})"
        )


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample ``Σ_hw a·b``, shape (..., 1, 1): one batched BLAS dot for contiguous float inputs
    (two passes over memory, no temporary), else multiply and sum."""
    if a.shape == b.shape and a.dim() >= 2 and a.is_contiguous() and b.is_contiguous() and a.dtype == b.dtype:
        n = a.shape[-2] * a.shape[-1]
        return torch.bmm(a.reshape(-1, 1, n), b.reshape(-1, n, 1)).reshape(*a.shape[:-2], 1, 1)
    return (a * b).sum((-2, -1), keepdim=True)


def _axpy_(y: Tensor, alpha: Tensor, x: Tensor, sign: float = 1.0) -> Tensor:
    """In place ``y += sign·alpha·x`` for per-sample ``alpha`` (..., 1, 1), without a temporary."""
    if alpha.numel() == 1:
        return y.add_(x, alpha=sign * float(alpha))
    return y.addcmul_(alpha, x, value=sign)


def _xpay_(p: Tensor, beta: Tensor, z: Tensor) -> Tensor:
    """In place ``p = z + beta·p`` for per-sample ``beta`` (..., 1, 1), without a temporary."""
    if beta.numel() == 1:
        return torch.add(z, p, alpha=float(beta), out=p)
    return torch.addcmul(z, beta, p, out=p)


def _precondition(precond, r: Tensor) -> Tensor:
    """z = M⁻¹ r; a preconditioner returning (z, r⁺) also replaces r in place by r⁺."""
    if precond is None:
        return r
    out = precond(r)
    if isinstance(out, tuple):
        z, r_plus = out
        if r_plus is not r:
            r.copy_(r_plus)
        return z
    return out


def cg_solve(
    matvec: Callable[[Tensor], Tensor],
    rhs_residual: Tensor,
    x0: Tensor,
    *,
    precond: Callable[[Tensor], Tensor] | None = None,
    tol: float = 1e-5,
    atol: float = 0.0,
    max_iter: int = 1000,
    on_nonconvergence: str = "warn",
    norm: str = "residual",
) -> tuple[Tensor, CGInfo]:
    """Solve ``A x = b`` by preconditioned CG, starting from ``x0`` with residual ``r₀ = b − A x0``.

    The caller passes the initial residual rather than ``b``, which lets projected (null-space)
    solves hand in an already-projected residual.

    Args:
        matvec: ``v -> A v`` for (B, C, H, W) tensors; ``A`` symmetric positive (semi)definite on
            the subspace the iterates live in.
        rhs_residual: ``r₀ = b − A x0``, (B, C, H, W).
        x0: starting point, (B, C, H, W).
        precond: ``r -> M⁻¹ r``, symmetric positive definite on that subspace (None: identity).
            It may return ``(z, r⁺)`` to also replace the residual by an equivalent one
            (residual update of constraint preconditioners); ``r⁺`` may be ``r`` itself, updated
            in place. ``matvec``'s and ``precond``'s results are used only until their next call,
            so both may write into buffers of their own.
        tol: stop a sample when ``‖r‖ ≤ max(tol·‖r₀‖, atol)``.
        atol: absolute floor of the stopping test.
        max_iter: iteration cap.
        on_nonconvergence: ``"warn"`` (ConvergenceWarning), ``"raise"`` or ``"ignore"``.
        norm: what the stopping test measures: ``"residual"`` (‖r‖) or ``"precond"``
            (√(rᵀ M⁻¹ r)). Use ``"precond"`` with a singular, projecting preconditioner (a
            constraint preconditioner), where ``r`` keeps a component the iteration cannot and
            need not remove.
    Returns:
        ``(x, info)``.
    """
    if on_nonconvergence not in ("warn", "raise", "ignore"):
        raise ValueError(f"on_nonconvergence must be 'warn', 'raise' or 'ignore', got {on_nonconvergence!r}")
    with torch.no_grad():
        x = x0.clone(memory_format=torch.contiguous_format)
        r = rhs_residual.clone(memory_format=torch.contiguous_format)
        lead = r.shape[:-2]
        r0 = r.norm(dim=(-2, -1), keepdim=True)
        thresh = torch.maximum(tol * r0, torch.full_like(r0, atol))
        z = _precondition(precond, r)
        p = z.clone(memory_format=torch.contiguous_format)  # updated in place: never an alias of z
        rz = _dot(r, z)
        if norm == "precond":
            r0 = rz.clamp_min(0).sqrt()
            thresh = torch.maximum(tol * r0, torch.full_like(r0, atol))
        rnorm = r0.clone()
        done = rnorm <= thresh
        iters = torch.zeros(lead, dtype=torch.int64, device=r.device)
        one = torch.ones((), dtype=r.dtype, device=r.device)
        zero = torch.zeros((), dtype=r.dtype, device=r.device)
        for _ in range(max_iter):
            if bool(done.all()):
                break
            q = matvec(p)
            pq = _dot(p, q)
            ok = (~done) & (pq > 0)
            alpha = torch.where(ok, rz / torch.where(ok, pq, one), zero)
            _axpy_(x, alpha, p)
            _axpy_(r, alpha, q, -1.0)
            iters += (~done).reshape(lead).to(torch.int64)
            if norm == "precond":
                z = _precondition(precond, r)
                rz_new = _dot(r, z)
                rnorm = torch.where(done, rnorm, rz_new.clamp_min(0).sqrt())
            else:
                rnorm = torch.where(done, rnorm, r.norm(dim=(-2, -1), keepdim=True))
            done = done | (rnorm <= thresh) | ~(pq > 0)
            if bool(done.all()):
                break
            if norm != "precond":
                z = _precondition(precond, r)
                rz_new = _dot(r, z)
            beta = torch.where(done, zero, rz_new / torch.where(rz != 0, rz, one))
            _xpay_(p, beta, z)
            rz = rz_new
        rel = (rnorm / torch.where(r0 > 0, r0, one)).reshape(lead)
        converged = (rnorm <= thresh).reshape(lead)
        info = CGInfo(iterations=iters, residual=rel, converged=converged)
    report_nonconvergence(info, tol, max_iter, on_nonconvergence, stacklevel=4)
    return x, info


def report_nonconvergence(info: CGInfo, tol: float, max_iter: int, on_nonconvergence: str, stacklevel: int = 3) -> None:
    """Warn (ConvergenceWarning) or raise (RuntimeError) when a sample of ``info`` did not converge."""
    converged = info.converged
    if bool(converged.all()) or on_nonconvergence == "ignore":
        return
    msg = (
        f"CG stopped after {max_iter} iterations with relative residual up to {float(info.residual.max()):.2e} "
        f"(tolerance {tol:g}) on {int((~converged).sum())} of {converged.numel()} samples"
    )
    if on_nonconvergence == "raise":
        raise RuntimeError(msg)
    warnings.warn(msg, ConvergenceWarning, stacklevel=stacklevel)
