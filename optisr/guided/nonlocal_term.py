"""A non-local smoothness term for soft solves: the bilateral grid's Laplacian beside the 4-connected lattice.

The lattice's smoothness ``xᵀ L(w) x`` links each pixel to its 4 neighbours. On a noisy source the
graph's cuts (guide edges, texture among them) leave regions that average the noise of only a few
LR samples. The term added here, ``κ·xᵀ (I − Ŵ) x``, links pixels of similar colour a few grid
cells apart, as the fast bilateral solver's smoothness does (:mod:`optisr.guided.fbs`):

* ``Ŵ`` is the symmetric pixel affinity of a simplified bilateral grid of the guide,
  ``a_ij = B_uv·q_u·q_v`` for the grid vertices ``u``, ``v`` of pixels ``i``, ``j``, with
  ``q = n / mass`` from the grid's bistochastisation (``n ⊙ B n = mass``), so every row of ``Ŵ``
  sums to 1 and ``I − Ŵ`` is a graph Laplacian (symmetric, positive semi-definite, constants in
  its null space).
* κ is absolute: the energy is ``‖D x − s‖²_C + xᵀ L(λ·w) x + κ·xᵀ (I − Ŵ) x`` (λ does not scale it).

Where it is used: the last solve of ``fidelity="auto"`` (of each tile, tile-wise) when it solves
softly with a learned graph, at the scales of :data:`NONLOCAL_KAPPA` (chosen on allowed noisy data
by the rule in ``benchmarks/noisy_nonlocal.py``). Applied as an extra operator in the PCG loop (no fused loop,
no gradients). Nothing here reads files.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from optisr.errors import ShapeError
from optisr.guided.fbs import BilateralGrid, bistochastize

__all__ = ["NONLOCAL_GRID", "NONLOCAL_KAPPA", "bilateral_laplacian", "nonlocal_kappa"]

NONLOCAL_GRID = (6.0, 16.0, 8.0)
"""Grid spacing (σ_xy in HR px, σ_luma, σ_chroma in 8-bit levels): our FBS baseline's defaults."""

NONLOCAL_KAPPA: dict[int, float] = {2: 0.0, 4: 0.003, 8: 0.03, 16: 0.03}
"""κ per measured scale, chosen by the rule in ``benchmarks/noisy_nonlocal.py`` (fixed before the
run) on 8 RGB-D-D test405 images (area LR + σ = 3 cm) and 8 procedural scenes (σ = 6 on 0–255),
the default graph and auto's λ, floor and refinement; mean RMSE ratio to the lattice alone,
RGB-D-D / procedural: ×2 every κ > 0 worse on RGB-D-D (1.0001 at κ = 0.003), so none; ×4 κ = 0.003
0.9999 / 0.9740 (0.01: 1.0001); ×8 κ = 0.03 0.9737 / 0.9309; ×16 κ = 0.03 0.9878 / 0.9512 (0.01:
0.9849 / 0.9553). Other scales take the nearest measured scale's κ in log scale (×3 that of ×4,
×6 that of ×8); none below ×2."""


def nonlocal_kappa(scale: float) -> float:
    """κ of the non-local term at ``scale``: :data:`NONLOCAL_KAPPA`'s nearest listed scale (in log
    scale), 0.0 below the smallest listed scale or when none is listed."""
    if not NONLOCAL_KAPPA or scale < min(NONLOCAL_KAPPA):
        return 0.0
    nearest = min(NONLOCAL_KAPPA, key=lambda s: abs(np.log(s) - np.log(scale)))
    return NONLOCAL_KAPPA[nearest]


def _affinity(guide_hwc: np.ndarray, grid_sigmas: tuple[float, float, float]) -> Callable[[np.ndarray], np.ndarray]:
    grid = BilateralGrid.from_guide(guide_hwc, *grid_sigmas)
    n, _ = bistochastize(grid)
    q = n / grid.splat(np.ones(grid.vertex_of.size))
    return lambda x: grid.slice(q * grid.blur(q * grid.splat(x)))


def bilateral_laplacian(
    guide: Tensor, kappa: float, grid_sigmas: tuple[float, float, float] = NONLOCAL_GRID
) -> Callable[[Tensor], Tensor]:
    """``v -> κ (v − Ŵ v)`` for (B, 1, H, W) tensors, one grid per sample of the guide.

    Args:
        guide: (B, C, H, W) float guide in [0, 1] (C = 3: luma and chroma; otherwise its first
            channel as grey).
        kappa: κ ≥ 0.
        grid_sigmas: σ_xy (HR px), σ_luma, σ_chroma (8-bit levels).
    Returns:
        The operator; it computes on the CPU in float64 (NumPy) and returns ``v``'s dtype/device.
    """
    if guide.dim() != 4:
        raise ShapeError(f"guide must be (B, C, H, W), got {tuple(guide.shape)}")
    g = guide.detach().to("cpu", torch.float64).numpy().transpose(0, 2, 3, 1)
    affinities = [_affinity(gi if gi.shape[2] == 3 else gi[:, :, 0], grid_sigmas) for gi in g]

    def apply(v: Tensor) -> Tensor:
        vn = v.detach().to("cpu", torch.float64).numpy()
        out = np.stack([[vb[c] - aff(vb[c]) for c in range(vb.shape[0])] for vb, aff in zip(vn, affinities)])
        return (kappa * torch.from_numpy(out)).to(dtype=v.dtype, device=v.device)

    return apply
