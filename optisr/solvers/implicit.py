"""Differentiable graph-regularised solve: a custom autograd Function with an implicit backward.

The forward pass runs the CG solvers of :mod:`optisr.solvers.graph` without building an
autograd graph; the backward pass solves one adjoint system with the same operator.
"""

from __future__ import annotations

import torch
from torch import Tensor

from optisr.ops.lattice import edge_gradient
from optisr.ops.operators import DownsampleOperator
from optisr.solvers.graph import SolverOptions, adjoint_exact, adjoint_soft, solve_exact, solve_soft


class _GraphSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weights, source, mask, init, op, mode, options, backward_options):
        solve = solve_exact if mode == "exact" else solve_soft
        x, info = solve(weights, source, op, mask=mask, init=init, options=options)
        ctx.save_for_backward(weights, x)
        ctx.op, ctx.mode, ctx.mask, ctx.options = op, mode, mask, backward_options
        ctx.info = info
        return x

    # Backward (implicit differentiation). Let ℓ be the loss and g = ∂ℓ/∂x.
    #
    # soft:  A(w) x = Dᵀ C s with A = Dᵀ C D + L(w) symmetric. Differentiating,
    #        A dx = Dᵀ C ds − dL x, so with ĝ = A⁻¹ g (the adjoint solve):
    #        ∂ℓ/∂s = C D ĝ and ∂ℓ/∂w_pq = −ĝᵀ (∂L/∂w_pq) x = −(ĝ_p − ĝ_q)(x_p − x_q).
    # exact: the KKT system K(w) [x; ν] = [0; s], K = [L Dᵀ; D 0] (symmetric). With
    #        [ĝ; η] = K⁻¹ [g; 0]: ĝ lies in null(D), solves P L ĝ = P g, and
    #        ∂ℓ/∂s = η, ∂ℓ/∂w_pq = −(ĝ_p − ĝ_q)(x_p − x_q) (only the L block depends on w).
    # Masked LR pixels drop their rows of D, so they receive zero gradient.
    @staticmethod
    def backward(ctx, grad_x):
        weights, x = ctx.saved_tensors
        op, mask, options = ctx.op, ctx.mask, ctx.options
        grad_x = grad_x.contiguous()
        if ctx.mode == "exact":
            g_hat, grad_s = adjoint_exact(weights, grad_x, x, op, mask=mask, options=options)
        else:
            g_hat, grad_s = adjoint_soft(weights, grad_x, op, mask=mask, options=options)
        grad_w = edge_gradient(g_hat, x) if ctx.needs_input_grad[0] else None
        if grad_w is not None:
            # the last row / column of each channel holds no edge
            grad_w[:, 0, -1, :] = 0
            grad_w[:, 1, :, -1] = 0
        return grad_w, (grad_s if ctx.needs_input_grad[1] else None), None, None, None, None, None, None


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
) -> Tensor:
    """Apply the Function (inputs validated by the caller)."""
    return _GraphSolve.apply(weights, source, mask, init, op, mode, options, backward_options)
