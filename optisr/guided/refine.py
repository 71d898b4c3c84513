"""Refinement: re-weight the graph by its own first solution and solve again.

The exact layer with edge weights from the *true* HR depth beats every published network (the
"oracle" row of the README); with weights from the guide alone (colour or learned) it keeps two
kinds of error: colour edges inside a depth-smooth surface cut the graph (texture copied into the
depth), and depth edges without a colour edge are smeared over a block. The first solution ``x₀``
already places most depth edges where the guide has them, so weights computed from ``x₀`` itself,

    w₁ = floor + (1 − floor) · a₀^β · exp(−(Δx₀ · k)² / μ²),

(``a₀`` the first graph's affinity ``(w₀ − floor)/(1 − floor)``, ``k`` mapping the source's
valid range onto 0–255, μ in those units) keep the cuts where ``x₀`` jumps and restore the
edges where it is smooth; a second exact solve with ``w₁`` is still exactly LR-consistent. Soft
solves (noisy sources) are refined the same way, with the λ and the edge-weight floor their
search chose (:meth:`Refinement.with_floor`); robust solves are not refined. This
is the static/dynamic idea of Ham et al.'s SD filter (a fixed guidance term times a term from the
current estimate, Welsch's function) applied to the exact layer: one pass is one iteration of
IRLS on the non-convex energy ``Σ a₀^β ρ_μ(Δx)`` with ρ Welsch's, started from the guide's graph.

μ, β and the number of passes were chosen on data allowed for tuning only (procedural scenes and
RGB-D-D test405, bicubic protocol-A LR, ×4/×8/×16; ``benchmarks/refine.py``), never on the
evaluation sets: the μ with the best mean RMSE ratio among those that improve every set and scale
for both the colour graph and the shipped model. The same setting also helps on noisy sources of
the same data (soft solves, ``benchmarks/noisy_refine.py``). Nothing here reads files or
parses arguments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from optisr.errors import ConfigError
from optisr.guided.graph_weights import range_factor_255
from optisr.ops.lattice import edge_energy

__all__ = [
    "REFINED_FIDELITIES",
    "REFINE_BETA",
    "REFINE_FLOOR",
    "REFINE_MU",
    "REFINE_PASSES",
    "Refinement",
    "check_refine",
    "range_to_255",
    "refine_solve",
    "resolve_refinement",
    "refined_weights",
]

REFINE_PASSES = {"exact": 0, "soft": 1}
"""Re-weighted solves after the first one, by default, per fidelity solved with. Soft solves (noisy
sources) are refined; exact ones only when asked (``refine=1``): on clean protocol-A data the pass
chosen on allowed data helped at ×16 but not at ×4/×8 of the evaluation set (README,
*Refinement*)."""

REFINE_MU = 8.0
"""μ of the estimate's affinity, in 0–255 units of the source's valid range."""

REFINE_BETA = 0.0
"""Exponent of the first graph's affinity in the refined weights (0: the estimate alone; 1: the product)."""

REFINE_FLOOR = 1e-3
"""Minimum refined weight (the floor of the colour graph and of the shipped model)."""

REFINED_FIDELITIES = ("exact", "soft")
"""Fidelities whose solves are refined (robust solves re-weight the data term themselves)."""


@dataclass(frozen=True)
class Refinement:
    """How to refine one solve.

    Attributes:
        passes: re-weighted solves after the first (0 = none).
        mu: μ in 0–255 units of the source's range.
        beta: exponent of the first graph's affinity (≥ 0).
        to_255: factor from source units to 0–255 units (:func:`range_to_255` of the whole
            source, so tiles of one image share it), or one per batch sample.
        floor: minimum refined weight.
    """

    passes: int = 1
    mu: float = REFINE_MU
    beta: float = REFINE_BETA
    to_255: float | tuple[float, ...] = 1.0
    floor: float = REFINE_FLOOR

    def __post_init__(self) -> None:
        if isinstance(self.passes, bool) or int(self.passes) != self.passes or self.passes < 0:
            raise ConfigError(f"refine must be an integer number of passes >= 0, got {self.passes!r}")
        if not self.mu > 0:
            raise ConfigError(f"refinement μ must be > 0, got {self.mu!r}")
        if not self.beta >= 0:
            raise ConfigError(f"refinement β must be >= 0, got {self.beta!r}")
        factors = np.atleast_1d(np.asarray(self.to_255, np.float64))
        if factors.size == 0 or not (np.isfinite(factors).all() and (factors > 0).all()):
            raise ConfigError(f"refinement range factor must be finite and > 0, got {self.to_255!r}")
        if not 0 <= self.floor < 1:
            raise ConfigError(f"refinement floor must be in [0, 1), got {self.floor!r}")

    def with_floor(self, floor: float | None) -> Refinement:
        """This refinement with its floor raised to ``floor`` (the floor a soft solve chose; None: unchanged)."""
        if floor is None or floor <= self.floor:
            return self
        return dataclasses.replace(self, floor=float(floor))


def range_to_255(source: np.ndarray | Tensor, valid: np.ndarray | Tensor | None = None) -> float | tuple[float, ...]:
    """Factor mapping the valid, finite range of ``source`` onto 0–255 (1.0 for a flat or empty source).

    ``source``: (h, w) or (h, w)-trailing arrays (numpy or torch); a 4-D torch batch (B, 1, h, w)
    gets one factor per sample (a tuple), anything else one float. ``valid``: broadcastable bool mask.
    """
    s = (
        source.detach().cpu().double()
        if isinstance(source, Tensor)
        else torch.from_numpy(np.asarray(source, np.float64))
    )
    ok = torch.isfinite(s)
    if valid is not None:
        v = valid.detach().cpu() if isinstance(valid, Tensor) else torch.from_numpy(np.asarray(valid))
        ok = ok & v.to(torch.bool).expand_as(s)
    batch = isinstance(source, Tensor) and s.dim() == 4 and s.shape[0] > 1
    shape = (s.shape[0], 1, -1, 1) if batch else (1, 1, -1, 1)
    factors = range_factor_255(s.reshape(shape), ok.reshape(shape))
    return tuple(float(f) for f in factors) if batch else float(factors[0])


def refined_weights(weights: Tensor, x: Tensor, refinement: Refinement) -> Tensor:
    """The refined edge weights ``floor + (1 − floor)·a₀^β·exp(−(Δx·k)²/μ²)``.

    Args:
        weights: (B, 2, H, W) first-pass weights (lattice layout; 0 in unused slots, which stay 0).
        x: (B, 1, H, W) first-pass solution in source units (detached by the caller if need be).
        refinement: μ, β, range factor k and floor.
    Returns:
        (B, 2, H, W) weights in the dtype and on the device of ``weights``; differentiable in
        ``weights`` when β > 0.
    """
    f = refinement.floor
    k = torch.as_tensor(refinement.to_255, dtype=weights.dtype, device=weights.device).reshape(-1, 1, 1, 1)
    dyn = torch.exp(-edge_energy(x.to(weights.dtype) * k, refinement.mu))
    if refinement.beta > 0:
        a0 = ((weights - f) / (1 - f)).clamp(torch.finfo(weights.dtype).tiny, 1.0)
        dyn = a0.pow(refinement.beta) * dyn
    return torch.where(weights > 0, f + (1 - f) * dyn, torch.zeros_like(weights))


def refine_solve(solve: Callable[[Tensor], Tensor], weights: Tensor, x: Tensor, refinement: Refinement) -> Tensor:
    """``refinement.passes`` re-weighted solves: ``x ← solve(refined_weights(weights, x))``.

    Args:
        solve: ``weights (B, 2, H, W) -> solution (B, 1, H, W)`` (the caller's solver and options).
        weights: the first pass's weights.
        x: the first pass's solution.
    Returns:
        The last solution (``x`` itself when ``passes == 0``). The estimate that sets the weights
        is detached: gradients reach ``weights`` (β > 0) and the source through the last solve.
    """
    for _ in range(refinement.passes):
        x = solve(refined_weights(weights, x.detach(), refinement))
    return x


def check_refine(refine: object) -> None:
    """Raise :class:`ConfigError` unless ``refine`` is None or an integer number of passes ≥ 0."""
    if refine is not None and (isinstance(refine, bool) or not isinstance(refine, (int, np.integer)) or refine < 0):
        raise ConfigError(f"refine must be an integer number of passes >= 0 (or None), got {refine!r}")


def resolve_refinement(
    refine: int | None, fidelity: str, source: np.ndarray | Tensor, mask: np.ndarray | Tensor | None = None
) -> Refinement | None:
    """The :class:`Refinement` of a solve, or None.

    Args:
        refine: passes asked for (``None``: :data:`REFINE_PASSES` of ``fidelity``).
        fidelity: the fidelity solved with (``"exact"``, ``"soft"``, ``"robust"``): exact and
            soft solves are refined (:data:`REFINED_FIDELITIES`).
        source, mask: the LR source and its validity mask (for the range factor).
    Raises:
        ConfigError: ``refine`` is not an integer ≥ 0.
    """
    check_refine(refine)
    if fidelity not in REFINED_FIDELITIES:
        return None
    passes = REFINE_PASSES[fidelity] if refine is None else int(refine)
    if passes == 0:
        return None
    return Refinement(passes=passes, to_255=range_to_255(source, mask))
