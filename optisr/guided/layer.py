"""The differentiable graph-regularisation layer of guided super-resolution.

Given an LR source ``s`` and edge weights ``w`` on the HR pixel lattice, return the smoothest HR
target under those weights that agrees with the source:

* ``mode="exact"``: ``argmin xᵀ L(w) x  s.t.  D x = s`` (to solver precision; our default);
* ``mode="soft"``:  ``argmin λ⁻¹ (D x − s)ᵀ C (D x − s) + xᵀ L(w) x`` (the original LGR energy;
  C = validity mask · optional per-LR-pixel ``confidence``);
* ``mode="robust"``: ``argmin λ⁻¹ Σ_b C_b 2σ² ρ((D x − s)_b / σ) + xᵀ L(w) x`` with a Huber or Tukey ρ
  (outliers such as flying pixels lose their pull), solved by IRLS (see :mod:`optisr.solvers.robust`).

Gradients reach the weights (hence features, μ), λ, the source and the confidence through implicit
differentiation (for ``robust``: at the IRLS fixed point, with σ held constant).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from optisr.errors import ConfigError, ShapeError
from optisr.ops.lattice import edge_weights
from optisr.ops.operators import DownsampleOperator, make_operator
from optisr.solvers.graph import MODES, SolverOptions, solve_soft
from optisr.solvers.implicit import graph_solve_autograd
from optisr.solvers.robust import ROBUST_LOSSES, RobustOptions

__all__ = [
    "GraphRegularisation",
    "graph_solve",
]


def graph_solve(
    source: Tensor,
    weights: Tensor,
    scale: int,
    *,
    operator: str | DownsampleOperator = "area",
    mode: str = "exact",
    lam: Tensor | float = 1.0,
    mask: Tensor | None = None,
    confidence: Tensor | None = None,
    init: Tensor | None = None,
    sigma: float | None = None,
    noise_sigma: float | Tensor | None = None,
    robust_loss: str = "huber",
    robust_delta: float | None = None,
    robust_tol: float = 1e-4,
    robust_max_iter: int = 20,
    tol: float = 1e-4,
    max_iter: int = 2000,
    backward_tol: float | None = None,
    precond: str = "jacobi",
    on_nonconvergence: str = "warn",
    floor: float = 1e-4,
    extra_smoothness: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Solve the graph-regularised upsampling problem (differentiable).

    Args:
        source: LR source ``s``, (B, C, h, w) floating (C is usually 1). NaN marks invalid pixels.
        weights: edge weights (B, 2, H, W) in (0, 1] (see :mod:`optisr.ops.lattice`).
        scale: integer scale f; the LR grid must be ``ceil(H/f) × ceil(W/f)``.
        operator: ``area`` | ``sum`` | ``bicubic`` | ``gaussian`` or a :class:`DownsampleOperator`.
        mode: ``exact``, ``soft`` or ``robust``.
        lam: λ of the soft and robust modes (float, or a scalar / (B,) tensor, differentiable);
            ignored by ``exact``, whose solution does not depend on a global scale of the weights.
        mask: bool (B, 1|C, h, w), True where the source is valid (combined with ``isfinite``).
        confidence: soft / robust only: per-LR-pixel data weights (B|1, 1|C, h, w), floating,
            finite, ≥ 0 (multiplied with the mask; 0 = unconstrained; they weigh squared
            residuals, so 1/σ_b² of a known per-pixel noise is the natural choice, up to λ).
            Differentiable.
        init: optional HR starting point (B, C, H, W) (warm start).
        sigma: PSF width for the ``gaussian`` operator.
        noise_sigma: robust only: scale σ of the residuals in source units (float or one value
            per sample); None estimates it by the normalised MAD of the residuals of a first
            soft solve (see :mod:`optisr.solvers.robust`). Not differentiated.
        robust_loss: robust only: ``huber`` (convex) or ``tukey`` (biweight, redescending).
        robust_delta: robust only: loss threshold in units of σ (None: 1.345 Huber, 4.685 Tukey).
        robust_tol, robust_max_iter: robust only: IRLS stops when the relative change of x is
            below ``robust_tol`` for every sample, or after ``robust_max_iter`` soft solves.
        tol, max_iter, precond, on_nonconvergence: CG settings (relative residual per sample);
            ``precond`` is ``jacobi``, ``multigrid`` or ``none`` (see :mod:`optisr.solvers.graph`).
        backward_tol: tolerance of the adjoint solve (default: ``tol``).
        floor: weights are clamped to at least ``floor`` (0 disables). Without a floor, weights
            near zero make the problem ill-posed: at ×16 an unfloored exact solve of a 0–255
            source was measured to overshoot to ±10⁴–10⁵; with 1e-6 it stays in range.
        extra_smoothness: soft mode only, without gradients: a symmetric positive semi-definite
            operator added to the system as it is (λ does not scale it), e.g.
            :func:`optisr.guided.nonlocal_term.bilateral_laplacian`.
    Returns:
        HR target (B, C, H, W), dtype/device of ``source``.
    """
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if confidence is not None and mode == "exact":
        raise ConfigError("confidence weights need mode 'soft' or 'robust' (exact mode has no data term to weigh)")
    robust = None
    if mode == "robust":
        if robust_loss not in ROBUST_LOSSES:
            raise ConfigError(f"robust_loss must be one of {', '.join(ROBUST_LOSSES)}, got {robust_loss!r}")
        robust = RobustOptions(
            loss=robust_loss,
            sigma=noise_sigma.detach() if isinstance(noise_sigma, Tensor) else noise_sigma,
            delta=robust_delta,
            tol=robust_tol,
            max_iter=robust_max_iter,
        )
    if source.dim() != 4 or weights.dim() != 4 or weights.shape[1] != 2:
        raise ShapeError(
            f"expected source (B, C, h, w) and weights (B, 2, H, W); got {tuple(source.shape)} and "
            f"{tuple(weights.shape)}"
        )
    if not source.is_floating_point():
        raise ShapeError(f"source must be floating point, got {source.dtype}")
    if weights.shape[0] != source.shape[0]:
        raise ShapeError(f"batch sizes differ: source {source.shape[0]}, weights {weights.shape[0]}")
    H, W = weights.shape[-2:]
    op = make_operator(operator, (H, W), scale, sigma=sigma)
    if tuple(source.shape[-2:]) != op.lr_size:
        raise ShapeError(
            f"source is {source.shape[-2]}×{source.shape[-1]} but an HR grid of {H}×{W} at ×{scale} needs "
            f"{op.lr_size[0]}×{op.lr_size[1]} (LR size = ceil(HR size / scale)); crop or pad the guide"
        )
    if confidence is not None:
        confidence = _check_confidence(confidence, source)
    weights = weights.to(source.dtype)
    if floor > 0:
        weights = _zero_border(weights.clamp_min(floor))
    finite = torch.isfinite(source)
    valid = finite if mask is None else (mask.to(device=source.device, dtype=torch.bool) & finite)
    solve_mask: Tensor | None = None  # None: every source pixel constrains the output
    if not bool(valid.all()):
        source = torch.where(finite, source, torch.zeros((), dtype=source.dtype, device=source.device))
        if valid.shape[1] != source.shape[1]:
            valid = valid.expand(-1, source.shape[1], -1, -1)
        if not bool(valid.flatten(1).any(1).all()):
            raise ShapeError("a sample has no valid source pixel: nothing constrains its output")
        solve_mask = valid
    if confidence is not None:
        constrained = valid & (confidence.detach() > 0)
        if not bool(constrained.flatten(1).any(1).all()):
            raise ShapeError("a sample has no source pixel with confidence > 0: nothing constrains its output")
    if mode != "exact":
        weights = weights * torch.as_tensor(lam, dtype=weights.dtype, device=weights.device).reshape(-1, 1, 1, 1)
    options = SolverOptions(tol=tol, max_iter=max_iter, precond=precond, on_nonconvergence=on_nonconvergence)
    if extra_smoothness is not None:
        if mode != "soft" or (torch.is_grad_enabled() and (weights.requires_grad or source.requires_grad)):
            raise ConfigError("extra_smoothness needs mode 'soft' and no gradients")
        x, _ = solve_soft(
            weights, source, op, mask=solve_mask, confidence=confidence, init=init, options=options,
            extra=extra_smoothness,
        )  # fmt: skip
        return x
    back = SolverOptions(
        tol=tol if backward_tol is None else backward_tol,
        max_iter=max_iter,
        precond=precond,
        on_nonconvergence=on_nonconvergence,
    )
    return graph_solve_autograd(
        weights,
        source,
        op,
        mode=mode,
        mask=solve_mask,
        init=init,
        options=options,
        backward_options=back,
        confidence=confidence,
        robust=robust,
    )


def _check_confidence(confidence: Tensor, source: Tensor) -> Tensor:
    """Validate the confidence map against the source (B, C, h, w); return it in the source's dtype/device."""
    B, C, h, w = source.shape
    if not isinstance(confidence, Tensor) or confidence.dim() != 4:
        got = tuple(confidence.shape) if isinstance(confidence, Tensor) else type(confidence).__name__
        raise ShapeError(f"confidence must be a (B|1, 1|C, h, w) tensor, got {got}")
    cb, cc, ch, cw = confidence.shape
    if cb not in (1, B) or cc not in (1, C) or (ch, cw) != (h, w):
        raise ShapeError(f"confidence is {tuple(confidence.shape)} but the source is {tuple(source.shape)}")
    if not confidence.is_floating_point():
        raise ShapeError(f"confidence must be floating point, got {confidence.dtype}")
    confidence = confidence.to(device=source.device, dtype=source.dtype)
    if not bool(torch.isfinite(confidence).all()) or bool((confidence < 0).any()):
        raise ConfigError("confidence must be finite and >= 0 everywhere")
    return confidence


def _zero_border(weights: Tensor) -> Tensor:
    """Zero the slots that hold no edge (last row of ch 0, last column of ch 1) of a fresh tensor, in place.

    ``weights`` must be a result no autograd node keeps (here the output of ``clamp_min``, whose
    backward uses its input), so the in-place write stays differentiable (zero gradient there).
    """
    weights[:, 0, -1, :] = 0
    weights[:, 1, :, -1] = 0
    return weights


class GraphRegularisation(nn.Module):
    """Module twin of :func:`graph_solve` with learnable μ (feature temperature) and λ (soft / robust).

    ``forward(source, features)`` turns features (B, K, H, W) into edge weights
    ``exp(−mean_k ΔF² / μ²)`` (with ``floor``) and solves. μ and λ are stored as logs.

    Args:
        scale: integer scale.
        operator, mode, floor: see :func:`graph_solve` (mode ``exact``, ``soft`` or ``robust``) and :func:`optisr.ops.lattice.edge_weights`.
        mu_init, lam_init: initial μ and λ (LGR: 0.1 and 1.0).
        learn_mu, learn_lam: whether they are trainable parameters.
        solver_kwargs: extra keyword arguments for :func:`graph_solve` (tol, max_iter, ...).
    """

    def __init__(
        self,
        scale: int,
        *,
        operator: str = "area",
        mode: str = "exact",
        floor: float = 1e-4,
        mu_init: float = 0.1,
        lam_init: float = 1.0,
        learn_mu: bool = True,
        learn_lam: bool = True,
        **solver_kwargs,
    ):
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.scale, self.operator, self.mode, self.floor = scale, operator, mode, floor
        self.solver_kwargs = solver_kwargs
        log_mu = torch.tensor(float(mu_init)).log()
        log_lam = torch.tensor(float(lam_init)).log()
        self.log_mu = nn.Parameter(log_mu, requires_grad=learn_mu)
        self.log_lam = nn.Parameter(log_lam, requires_grad=learn_lam)

    @property
    def mu(self) -> Tensor:
        return self.log_mu.exp()

    @property
    def lam(self) -> Tensor:
        return self.log_lam.exp()

    def extra_repr(self) -> str:
        return (
            f"scale={self.scale}, operator={self.operator!r}, mode={self.mode!r}, floor={self.floor}, "
            f"mu={float(self.mu):.4g}, lam={float(self.lam):.4g}"
        )

    def forward(
        self,
        source: Tensor,
        features: Tensor,
        *,
        mask: Tensor | None = None,
        confidence: Tensor | None = None,
        init: Tensor | None = None,
    ) -> Tensor:
        w = edge_weights(features.to(source.dtype), self.mu.to(source.dtype), floor=self.floor)
        return graph_solve(
            source,
            w,
            self.scale,
            operator=self.operator,
            mode=self.mode,
            lam=self.lam.to(source.dtype),
            mask=mask,
            confidence=confidence,
            init=init,
            **self.solver_kwargs,
        )
