"""Differentiable graph-regularised solve: a custom autograd Function with an implicit backward.

The forward pass runs the solvers of :mod:`optisr.solvers.graph` (exact, soft) and
:mod:`optisr.solvers.robust` (robust, IRLS) without building an autograd graph; the backward pass
solves one adjoint system with the same PCG machinery.
"""

from __future__ import annotations

import torch
from torch import Tensor

from optisr.ops.lattice import edge_gradient
from optisr.ops.operators import DownsampleOperator
from optisr.solvers.cg import CGInfo
from optisr.solvers.graph import SolverOptions, adjoint_exact, adjoint_soft, solve_exact, solve_soft
from optisr.solvers.robust import RobustInfo, RobustOptions, adjoint_robust, solve_robust


def _sum_to(t: Tensor, shape: torch.Size) -> Tensor:
    """Sum ``t`` over the dimensions that were broadcast from ``shape`` (same number of dims)."""
    dims = tuple(i for i, (a, b) in enumerate(zip(t.shape, shape, strict=True)) if b == 1 and a != 1)
    return t.sum(dims, keepdim=True) if dims else t


class _GraphSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weights, source, confidence, mask, init, op, mode, options, backward_options, robust):
        info: CGInfo | RobustInfo
        sigma: Tensor | None = None
        if mode == "exact":
            x, info = solve_exact(weights, source, op, mask=mask, init=init, options=options)
        elif mode == "soft":
            x, info = solve_soft(weights, source, op, mask=mask, confidence=confidence, init=init, options=options)
        else:
            x, robust_info = solve_robust(
                weights, source, op, mask=mask, confidence=confidence, init=init, options=options, robust=robust
            )
            info, sigma = robust_info, robust_info.sigma
        ctx.save_for_backward(weights, x, source, confidence, sigma)
        ctx.op, ctx.mode, ctx.mask, ctx.options, ctx.robust = op, mode, mask, backward_options, robust
        ctx.info = info
        return x

    # Backward (implicit differentiation). Let ℓ be the loss and g = ∂ℓ/∂x.
    #
    # soft:  A(w, C) x = Dᵀ C s with A = Dᵀ C D + L(w) symmetric, C = mask·confidence diagonal.
    #        Differentiating, A dx = Dᵀ C ds − dL x + Dᵀ dC (s − D x), so with ĝ = A⁻¹ g (the
    #        adjoint solve): ∂ℓ/∂s = C D ĝ, ∂ℓ/∂w_pq = −ĝᵀ (∂L/∂w_pq) x = −(ĝ_p − ĝ_q)(x_p − x_q),
    #        ∂ℓ/∂C_b = −(D ĝ)_b (D x − s)_b.
    # robust: the fixed point F = Dᵀ(C σ ψ(t)) + L x = 0, t = (D x − s)/σ; ∂F/∂x = Dᵀ C ψ'(t) D + L
    #        is a soft operator with data weights C ψ'(t): the same formulas with C → C ψ'(t) for s
    #        and (D x − s) → σ ψ(t) for C (see optisr.solvers.robust).
    # exact: the KKT system K(w) [x; ν] = [0; s], K = [L Dᵀ; D 0] (symmetric). With
    #        [ĝ; η] = K⁻¹ [g; 0]: ĝ lies in null(D), solves P L ĝ = P g, and
    #        ∂ℓ/∂s = η, ∂ℓ/∂w_pq = −(ĝ_p − ĝ_q)(x_p − x_q) (only the L block depends on w).
    # Masked LR pixels drop their rows of D, so they receive zero gradient; the gradient w.r.t.
    # confidence is mask ⊙ ∂ℓ/∂C, summed over the dimensions it was broadcast along.
    @staticmethod
    def backward(ctx, grad_x):
        weights, x, source, confidence, sigma = ctx.saved_tensors
        op, mask, options = ctx.op, ctx.mask, ctx.options
        grad_x = grad_x.contiguous()
        grad_c = None
        if ctx.mode == "exact":
            g_hat, grad_s = adjoint_exact(weights, grad_x, x, op, mask=mask, options=options)
        elif ctx.mode == "soft":
            g_hat, grad_s = adjoint_soft(weights, grad_x, op, mask=mask, confidence=confidence, options=options)
            if ctx.needs_input_grad[2]:
                grad_c = -op.apply(g_hat) * (op.apply(x) - source)
        else:
            g_hat, grad_s, grad_c = adjoint_robust(
                weights,
                grad_x,
                x,
                source,
                op,
                sigma,
                mask=mask,
                confidence=confidence,
                options=options,
                robust=ctx.robust,
            )
        grad_w = edge_gradient(g_hat, x) if ctx.needs_input_grad[0] else None
        if grad_w is not None:
            # the last row / column of each channel holds no edge
            grad_w[:, 0, -1, :] = 0
            grad_w[:, 1, :, -1] = 0
        grad_conf = None
        if ctx.needs_input_grad[2] and grad_c is not None:
            if mask is not None:
                grad_c = grad_c * mask.to(grad_c.dtype)
            grad_conf = _sum_to(grad_c, confidence.shape)
        return (
            grad_w,
            (grad_s if ctx.needs_input_grad[1] else None),
            grad_conf,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )


def graph_solve_autograd(
    weights: Tensor,
    source: Tensor,
    op: DownsampleOperator,
    *,
    mode: str,
    mask: Tensor | None,
    init: Tensor | None,
    options: SolverOptions,
    backward_options: SolverOptions,
    confidence: Tensor | None = None,
    robust: RobustOptions | None = None,
) -> Tensor:
    """Apply the Function (inputs validated by the caller).

    Args:
        confidence: soft / robust only: LR data weights (B|1, 1|C, h, w) ≥ 0, combined with
            ``mask``; differentiable.
        robust: robust mode only: loss and IRLS settings (default :class:`RobustOptions`).
    """
    if mode == "robust" and robust is None:
        robust = RobustOptions()
    return _GraphSolve.apply(weights, source, confidence, mask, init, op, mode, options, backward_options, robust)
