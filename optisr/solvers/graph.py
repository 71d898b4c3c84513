"""The two graph-regularised problems and their solvers (no autograd here).

Exact mode (hard consistency)::

    minimise  xᵀ L(w) x   subject to  (D x)_b = s_b  for every constrained LR pixel b.

Solved by projected preconditioned CG in the null space of ``D_c`` (the constrained rows of D),
started from the consistent point ``P_s(x_init)``; the result is projected once more at the end,
so ``D x = s`` holds to rounding error whatever the CG tolerance.

Soft mode (the original LGR energy, with optional per-LR-pixel confidence)::

    minimise  (D x − s)ᵀ C (D x − s) + xᵀ L(w) x     ⇔   (Dᵀ C D + L) x = Dᵀ C s,

with the diagonal data weights ``C = mask · confidence`` (``mask`` 0/1, ``confidence`` ≥ 0;
both default to 1), and where ``w`` already carries LGR's λ (``w = λ·w_graph``; λ⁻¹ on the data
term is the same problem scaled by λ). Solved by preconditioned CG.

Preconditioners (``SolverOptions.precond``): ``"jacobi"`` (the default; diagonal, and for area/sum
in exact mode the Jacobi constraint preconditioner), ``"multigrid"`` (the aggregation V-cycle of
:mod:`optisr.solvers.multigrid`: 4–8× fewer iterations on colour-graph weights -- exact mode at
1024² ×4/×8/×16: 15/24/26 for area/sum, 26/29/29 for bicubic/gaussian -- but each costs several
Laplacian products and the setup is a few of them per pixel; on a CPU it is slower in wall time
than Jacobi at 512²–1024² (``benchmarks/solver.py --precond jacobi multigrid``)), and
``"none"``.

The robust mode (a Huber / Tukey data term solved by IRLS) lives in :mod:`optisr.solvers.robust`
and is a sequence of soft solves.

Shapes: weights (B, 2, H, W); HR tensors (B, C, H, W); LR source (B, C, h, w); LR mask bool
(B, 1 or C, h, w), True = constrained; LR confidence floating (B or 1, 1 or C, h, w), ≥ 0, in
units of 1 / source² (it weighs squared residuals). Any floating dtype, any device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from optisr.errors import ConfigError
from optisr.ops.lattice import degree, laplacian_apply_
from optisr.ops.operators import DownsampleOperator
from optisr.solvers import fused
from optisr.solvers.cg import CGInfo, cg_solve, report_nonconvergence
from optisr.solvers.multigrid import Hierarchy

__all__ = [
    "MODES",
    "PRECONDITIONERS",
    "SolverOptions",
    "adjoint_exact",
    "check_precond",
    "adjoint_soft",
    "data_weights",
    "default_init",
    "fill_invalid",
    "solve_exact",
    "solve_soft",
]

MODES = ("exact", "soft", "robust")
# "jacobi": diagonal (exact mode, area/sum: the Jacobi constraint preconditioner); "multigrid": the
# aggregation V-cycle of optisr.solvers.multigrid; "none": plain CG.
PRECONDITIONERS = ("jacobi", "multigrid", "none")
BACKENDS = ("auto", "torch")
# Exact mode with multigrid: the V-cycle is built for the penalised system L + ρ Dᵀ C D with
# ρ = EXACT_PENALTY · f² · mean degree (the block-mean mode of Dᵀ D has eigenvalue ~1/f² for area).
EXACT_PENALTY = 0.03
# Block operators (area/sum) skip the penalty: the hierarchy keeps D x = 0 exactly on every level
# (Hierarchy(fine_data="constraint")); 1024² ×8: 24 CG iterations instead of 45. Off = the penalty.
CONSTRAINED_MULTIGRID = True


def check_precond(precond: str, what: str = "precond") -> None:
    """A one-line :class:`ConfigError` (a ValueError) unless ``precond`` is one of :data:`PRECONDITIONERS`;
    ``what`` names the option in the message (e.g. ``solver.precond`` in a config)."""
    if precond not in PRECONDITIONERS:
        raise ConfigError(f"{what} must be one of {', '.join(PRECONDITIONERS)}, got {precond!r}")


@dataclass(frozen=True, kw_only=True)
class SolverOptions:
    tol: float = 1e-5  # relative residual ‖r‖/‖r₀‖ per sample
    max_iter: int = 2000
    precond: str = "jacobi"  # one of PRECONDITIONERS
    on_nonconvergence: str = "warn"  # "warn" | "raise" | "ignore"
    # "auto": the fused Numba loops (optisr.solvers.fused) where they apply (area/sum, Jacobi,
    # float32/64 on the CPU, >= fused.MIN_PIXELS, Numba installed), else PyTorch; "torch": always PyTorch
    backend: str = "auto"

    def __post_init__(self):
        check_precond(self.precond)
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not self.tol > 0 or self.max_iter < 1:
            raise ValueError("tol must be > 0 and max_iter >= 1")


class _Laplacian:
    """L(w) with preallocated scratch buffers, for the solver loop."""

    def __init__(self, weights: Tensor, like: Tensor):
        B, C, H, W = like.shape
        self.w = weights
        self.tv = like.new_empty((B, C, H - 1, W))
        self.th = like.new_empty((B, C, H, W - 1))

    def __call__(self, x: Tensor) -> Tensor:
        return laplacian_apply_(self.w, x, torch.empty_like(x), self.tv, self.th)

    def reusing(self, like: Tensor):
        """``v -> L v`` written into one buffer of ``like``'s shape, overwritten by the next call (CG's matvec)."""
        out = torch.empty_like(like, memory_format=torch.contiguous_format)
        return lambda v: laplacian_apply_(self.w, v, out, self.tv, self.th)


def fill_invalid(source: Tensor, mask: Tensor | None) -> Tensor:
    """Replace unconstrained LR values by the per-sample mean of the constrained ones (for inits)."""
    if mask is None:
        return source
    m = mask.to(source.dtype).expand_as(source)
    mean = (source * m).sum((-2, -1), keepdim=True) / m.sum((-2, -1), keepdim=True).clamp_min(1)
    return torch.where(m > 0, source, mean)


def default_init(op: DownsampleOperator, source: Tensor, mask: Tensor | None) -> Tensor:
    """A smooth HR starting point: bicubic interpolation of the (hole-filled) source."""
    s = fill_invalid(source, mask)
    if op.kind == "sum":
        s = s / op.pixels_per_lr  # counts -> density per HR pixel
    return F.interpolate(s, size=op.hr_size, mode="bicubic", align_corners=False)


def _constraint_preconditioner(op: DownsampleOperator, weights: Tensor, mask: Tensor | None):
    """``G = M⁻¹ − M⁻¹D_cᵀ(D_c M⁻¹ D_cᵀ)⁻¹D_c M⁻¹`` with Jacobi ``M = diag(L)``, for area/sum.

    For block operators ``D_c M⁻¹ D_cᵀ`` is diagonal, so G costs one pooling and one expansion.
    G is symmetric, maps into null(D_c) and is positive definite there: the M-orthogonal
    projection of the Jacobi step (Gould, Hribar & Nocedal's constraint preconditioner). Using
    it, PCG needs one projection per iteration instead of two and no projected residual.
    """
    m = 1.0 / degree(weights).clamp_min(torch.finfo(weights.dtype).tiny)
    # S_b = Σ_p D_bp² m_p; D_bp is constant (= w_b) inside block b, so S = w ⊙ (D m).
    S = op.apply(m) * op.block_weights(m)
    inv_S = 1.0 / S.clamp_min(torch.finfo(S.dtype).tiny)
    if mask is not None:
        inv_S = inv_S * mask

    # Returned as (z, r⁺): the residual is replaced by r⁺ = r − D_cᵀ S⁻¹ D_c M⁻¹ r, which differs
    # from r only in range(D_cᵀ) (invisible to the iteration in exact arithmetic) and gives
    # z = G r = M⁻¹ r⁺ exactly. Without this "residual update" the range component of r grows,
    # and rᵀ G r loses all precision to cancellation (Gould, Hribar & Nocedal 2001, §6).
    # (B, 1, H, W) m against (B, C, H, W) residuals: the buffers are made at the first call
    buffers: list[Tensor] = []

    def apply(r: Tensor) -> tuple[Tensor, Tensor]:
        if not r.is_contiguous():
            r_plus = r - op.adjoint(op.apply(m * r) * inv_S)
            return m * r_plus, r_plus
        if not buffers or buffers[0].shape != r.shape or buffers[0].dtype != r.dtype:
            buffers[:] = [torch.empty_like(r), torch.empty_like(r)]
        t, z = buffers
        # r⁺ = r − Dᵀ S⁻¹ D (m r), in place in r (same values as the out-of-place form); z = m r⁺
        op.sub_adjoint_(r, op.apply(torch.mul(m, r, out=t)) * inv_S)
        return torch.mul(m, r, out=z), r

    return apply


def _try_fused(run, weights: Tensor, x0: Tensor, op: DownsampleOperator, options: SolverOptions):
    """``run()`` (a :mod:`optisr.solvers.fused` loop) when it applies to this solve, else None.

    It applies with the Jacobi preconditioner and ``backend="auto"`` where :func:`fused.eligible`
    says so; non-convergence is reported as the PyTorch loop reports it. None also when ``run``
    returns None (another thread is in the loops): the caller then takes the PyTorch loop.
    """
    if options.precond != "jacobi" or options.backend != "auto" or not fused.eligible(weights, x0, op):
        return None
    done = run()
    if done is not None:
        report_nonconvergence(done[1], options.tol, options.max_iter, options.on_nonconvergence, stacklevel=5)
    return done


def _null_space_cg(lap, op, weights, mask, residual, x0, options):
    """PCG for ``L x = b`` on the affine set ``x0 + null(D_c)``, given the residual ``b − L x0``.

    Block operators (area/sum) use the constraint preconditioner (one projection per
    iteration); the others project both the operator and the Jacobi step onto null(D_c).
    """
    common = dict(tol=options.tol, max_iter=options.max_iter, on_nonconvergence=options.on_nonconvergence)
    if options.precond == "multigrid":
        return _null_space_multigrid_cg(lap, op, weights, mask, residual, x0, common)
    if op.diagonal_gram and options.precond == "jacobi":
        done = _try_fused(
            lambda: fused.block_exact_pcg(weights, x0, residual, op, mask, tol=options.tol, max_iter=options.max_iter),
            weights, x0, op, options,
        )  # fmt: skip
        if done is not None:
            return done
        precond = _constraint_preconditioner(op, weights, mask)
        return cg_solve(lap.reusing(x0), residual, x0, precond=precond, norm="precond", **common)
    proj = lambda v: op.project_null(v, mask)  # noqa: E731
    precond = None
    if options.precond == "jacobi":
        inv_deg = 1.0 / degree(weights).clamp_min(torch.finfo(weights.dtype).tiny)
        precond = lambda r: proj(r * inv_deg)  # noqa: E731
    return cg_solve(lambda v: proj(lap(v)), proj(residual), x0, precond=precond, **common)


def exact_hierarchy(op: DownsampleOperator, weights: Tensor, mask: Tensor | None, channels: int) -> Hierarchy:
    """The V-cycle of exact mode: for area/sum the constrained hierarchy (``D x = 0`` kept on every level);
    for the other operators multigrid for the penalised ``L + ρ Dᵀ C D`` (C = mask, ρ see EXACT_PENALTY).

    Restricted to null(D_c) (``z = Π V r``), ``(L + ρ Dᵀ C D)⁻¹`` tends to the inverse of the constrained
    problem as ρ grows; a moderate ρ keeps the Jacobi smoother effective on the modes inside the blocks.
    """
    if op.diagonal_gram and CONSTRAINED_MULTIGRID:
        # block operators: the constraint itself on every level (no penalty), see Hierarchy
        c = torch.ones((), dtype=weights.dtype, device=weights.device) if mask is None else mask.to(weights.dtype)
        return Hierarchy(weights, op, c, channels, fine_data="constraint")
    deg = degree(weights).mean((-3, -2, -1), keepdim=True)  # (B, 1, 1, 1)
    gain = (op.axis_matrices()[0].sum(1).mean() * op.axis_matrices()[1].sum(1).mean()).item()  # row sum of D
    rho = EXACT_PENALTY * deg * op.pixels_per_lr / gain**2
    c = rho if mask is None else rho * mask.to(weights.dtype)
    return Hierarchy(weights, op, c, channels, fine_data="block")


def _null_space_multigrid_cg(lap, op, weights, mask, residual, x0, common):
    """PCG on ``x0 + null(D_c)`` preconditioned by ``z = Π V r`` (Π: orthogonal projector onto null(D_c)).

    The residuals stay in null(D_c), so ``Π V Π = Π V`` there: symmetric positive definite on null(D_c).
    """
    proj = lambda v: op.project_null(v, mask)  # noqa: E731
    mg = exact_hierarchy(op, weights, mask, x0.shape[1])
    return cg_solve(lambda v: proj(lap(v)), proj(residual), x0, precond=lambda r: proj(mg(r)), **common)


def solve_exact(
    weights: Tensor,
    source: Tensor,
    op: DownsampleOperator,
    *,
    mask: Tensor | None = None,
    init: Tensor | None = None,
    options: SolverOptions = SolverOptions(),
) -> tuple[Tensor, CGInfo]:
    """Minimise ``xᵀ L(w) x`` subject to ``D_c x = s_c``. Returns ``(x, info)``, x (B, C, H, W)."""
    with torch.no_grad():
        if init is None:
            init = default_init(op, source, mask)
        x0 = op.project(init, source, mask)
        lap = _Laplacian(weights, x0)
        x, info = _null_space_cg(lap, op, weights, mask, -lap(x0), x0, options)
        x = op.project(x, source, mask)  # remove rounding drift: D x = s to machine precision
    return x, info


def adjoint_exact(
    weights: Tensor,
    grad: Tensor,
    x: Tensor,
    op: DownsampleOperator,
    *,
    mask: Tensor | None = None,
    options: SolverOptions = SolverOptions(),
) -> tuple[Tensor, Tensor]:
    """Adjoint of :func:`solve_exact` at solution ``x`` for an upstream gradient ``grad`` = ∂ℓ/∂x.

    KKT system of the forward problem: ``[L Dᵀ; D 0][x; ν] = [0; s]``. Its adjoint
    ``[L Dᵀ; D 0][ĝ; η] = [g; 0]`` gives ``ĝ ∈ null(D_c)`` with ``P L ĝ = P g`` and
    ``η = (D_c D_cᵀ)⁻¹ D_c (g − L ĝ)``. Then ∂ℓ/∂s = η and ∂ℓ/∂w_pq = −(ĝ_p − ĝ_q)(x_p − x_q).

    Returns:
        ``(ĝ, η)``: (B, C, H, W) and (B, C, h, w).
    """
    with torch.no_grad():
        lap = _Laplacian(weights, grad)
        g_hat, _ = _null_space_cg(lap, op, weights, mask, grad.clone(), torch.zeros_like(grad), options)
        g_hat = op.project_null(g_hat, mask)
        rest = op.apply(grad - lap(g_hat))
        if mask is not None:
            rest = rest * mask
        eta = op.gram_solve(rest, mask)
    return g_hat, eta


def data_weights(mask: Tensor | None, confidence: Tensor | None, like: Tensor) -> Tensor:
    """The diagonal ``C = mask · confidence`` of the soft data term, an LR map of ``like``'s dtype.

    Args:
        mask: bool (B, 1|C, h, w) or None (every pixel constrained).
        confidence: floating (B|1, 1|C, h, w) ≥ 0 or None (all ones).
        like: a tensor whose dtype and device the result takes.
    Returns:
        (B|1, 1|C, h, w) floating; (1, 1, 1, 1) ones when both are None.
    """
    c = torch.ones((1, 1, 1, 1), dtype=like.dtype, device=like.device)
    if mask is not None:
        c = c * mask.to(like.dtype)
    if confidence is not None:
        c = c * confidence.to(like.dtype)
    return c


def _soft_matvec(weights: Tensor, op: DownsampleOperator, c: Tensor, like: Tensor):
    """``v -> A v = Dᵀ C D v + L v`` for LR data weights ``c`` (broadcastable)."""
    lap = _Laplacian(weights, like)
    return lambda v: op.adjoint(c * op.apply(v)) + lap(v)


def _soft_precond(weights: Tensor, op: DownsampleOperator, c: Tensor, like: Tensor, precond: str):
    """The preconditioner of ``A`` (:func:`_soft_matvec`) for the PyTorch loop.

    ``precond``: ``"jacobi"`` (diagonal), ``"multigrid"`` (V-cycle of :mod:`optisr.solvers.multigrid`)
    or ``"none"`` (None is returned). Negative entries of ``c`` (the indefinite Hessian of a Tukey
    term) are left out of the preconditioner, which must stay positive.
    """
    if precond == "none":
        return None
    if precond == "multigrid":
        return Hierarchy(weights, op, c.clamp_min(0), like.shape[1])
    c_full = c.clamp_min(0).expand(like.shape[0], -1, *op.lr_size)
    diag = op.diag_normal(c_full) + degree(weights)
    inv_diag = 1.0 / diag.clamp_min(torch.finfo(diag.dtype).tiny)
    return lambda r: r * inv_diag


def solve_soft(
    weights: Tensor,
    source: Tensor,
    op: DownsampleOperator,
    *,
    mask: Tensor | None = None,
    confidence: Tensor | None = None,
    init: Tensor | None = None,
    options: SolverOptions = SolverOptions(),
    extra: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, CGInfo]:
    """Solve ``(Dᵀ C D + L(w) + E) x = Dᵀ C s`` with ``C = mask · confidence``. Returns ``(x, info)``.

    ``extra``: an optional symmetric positive semi-definite operator ``E`` (``v -> E v`` on
    (B, C, H, W)), e.g. :func:`optisr.guided.nonlocal_term.bilateral_laplacian`; with it the
    PyTorch loop runs (not the fused one) and the preconditioner stays that of the lattice system.
    """
    with torch.no_grad():
        if init is None:
            init = default_init(op, source, mask)
        c = data_weights(mask, confidence, source)
        matvec = _soft_matvec(weights, op, c, init)
        if extra is not None:
            lattice, add = matvec, extra
            matvec = lambda v: lattice(v) + add(v)  # noqa: E731
        residual = op.adjoint(c * source) - matvec(init)
        done = None if extra is not None else _try_fused(
            lambda: fused.block_soft_pcg(weights, init, residual, op, c, tol=options.tol, max_iter=options.max_iter),
            weights, init, op, options,
        )  # fmt: skip
        if done is not None:
            return done
        return cg_solve(
            matvec,
            residual,
            init,
            precond=_soft_precond(weights, op, c, init, options.precond),
            tol=options.tol,
            max_iter=options.max_iter,
            on_nonconvergence=options.on_nonconvergence,
        )


def adjoint_soft(
    weights: Tensor,
    grad: Tensor,
    op: DownsampleOperator,
    *,
    mask: Tensor | None = None,
    confidence: Tensor | None = None,
    options: SolverOptions = SolverOptions(),
) -> tuple[Tensor, Tensor]:
    """Adjoint of :func:`solve_soft`: ``A ĝ = g`` (A symmetric); ∂ℓ/∂s = C D ĝ. Returns ``(ĝ, ∂ℓ/∂s)``.

    ``ĝ`` (B, C, H, W) also gives ∂ℓ/∂w_pq = −(ĝ_p − ĝ_q)(x_p − x_q) and ∂ℓ/∂C_b = −(D ĝ)_b (D x − s)_b
    (see :mod:`optisr.solvers.implicit`). ∂ℓ/∂s has the source's shape (B, C, h, w).
    """
    with torch.no_grad():
        c = data_weights(mask, confidence, grad)
        zero = torch.zeros_like(grad)
        done = _try_fused(
            lambda: fused.block_soft_pcg(weights, zero, grad, op, c, tol=options.tol, max_iter=options.max_iter),
            weights, grad, op, options,
        )  # fmt: skip
        if done is None:
            done = cg_solve(
                _soft_matvec(weights, op, c, grad),
                grad.clone(),
                zero,
                precond=_soft_precond(weights, op, c, grad, options.precond),
                tol=options.tol,
                max_iter=options.max_iter,
                on_nonconvergence=options.on_nonconvergence,
            )
        g_hat = done[0]
        return g_hat, c * op.apply(g_hat)
