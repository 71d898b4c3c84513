"""The 4-connected pixel-lattice graph: edge weights and matrix-free Laplacian products.

Edge weights are stored as one tensor ``(B, 2, H, W)``:

* channel 0 links pixel ``(i, j)`` to the pixel below, ``(i+1, j)``; its last row is zero;
* channel 1 links pixel ``(i, j)`` to the pixel on its right, ``(i, j+1)``; its last column is zero.

Each undirected edge is stored once. The weighted graph Laplacian is

    xᵀ L x = Σ_{(p,q)} w_pq (x_p − x_q)²,    (L x)_p = Σ_q w_pq (x_p − x_q).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from optisr.errors import ShapeError


def _check_weights(weights: Tensor) -> None:
    if weights.dim() != 4 or weights.shape[1] != 2:
        raise ShapeError(f"edge weights must have shape (B, 2, H, W), got {tuple(weights.shape)}")


def edge_weights(features: Tensor, mu: Tensor | float, *, floor: float = 1e-4) -> Tensor:
    """Edge weights ``w_pq = floor + (1 − floor)·exp(−mean_k (F_kp − F_kq)² / μ²)``.

    Args:
        features: (B, K, H, W) floating feature map (e.g. a guide image or a network output).
        mu: temperature μ > 0 (float or a 0-d/ (B,) tensor; differentiable).
        floor: minimum weight in [0, 1); keeps the problem well-posed when features jump.
    Returns:
        (B, 2, H, W) weights in [floor, 1], zero on the last row (ch 0) / last column (ch 1).
    """
    if features.dim() != 4:
        raise ShapeError(f"features must have shape (B, K, H, W), got {tuple(features.shape)}")
    mu = torch.as_tensor(mu, dtype=features.dtype, device=features.device)
    if mu.dim() == 1:
        mu = mu.view(-1, 1, 1, 1)
    inv = 1.0 / (mu * mu + 1e-12)
    dv = (features[:, :, 1:, :] - features[:, :, :-1, :]).pow(2).mean(1, keepdim=True)
    dh = (features[:, :, :, 1:] - features[:, :, :, :-1]).pow(2).mean(1, keepdim=True)
    wv = floor + (1.0 - floor) * torch.exp(-dv * inv)
    wh = floor + (1.0 - floor) * torch.exp(-dh * inv)
    return torch.cat([F.pad(wv, (0, 0, 0, 1)), F.pad(wh, (0, 1, 0, 0))], dim=1)


def weights_from_edges(vertical: Tensor, horizontal: Tensor) -> Tensor:
    """Pack explicit edge weights into the (B, 2, H, W) layout.

    Args:
        vertical: (B, 1, H−1, W) weights between vertically adjacent pixels.
        horizontal: (B, 1, H, W−1) weights between horizontally adjacent pixels.
    """
    if vertical.dim() != 4 or horizontal.dim() != 4:
        raise ShapeError("vertical and horizontal weights must be 4-D (B, 1, ·, ·)")
    H, W = horizontal.shape[-2], vertical.shape[-1]
    if vertical.shape[-2] != H - 1 or horizontal.shape[-1] != W - 1:
        raise ShapeError(
            f"vertical must be (B,1,H-1,W) and horizontal (B,1,H,W-1); got {tuple(vertical.shape)} and "
            f"{tuple(horizontal.shape)}"
        )
    return torch.cat([F.pad(vertical, (0, 0, 0, 1)), F.pad(horizontal, (0, 1, 0, 0))], dim=1)


def laplacian_apply(weights: Tensor, x: Tensor) -> Tensor:
    """Matrix-free ``L x`` for every channel of ``x``.

    Args:
        weights: (B, 2, H, W) edge weights (see module docstring).
        x: (B, C, H, W); the same graph is used for every channel.
    Returns:
        (B, C, H, W). Differentiable in both arguments (out-of-place ops only).
    """
    _check_weights(weights)
    wv = weights[:, 0:1, :-1, :]
    wh = weights[:, 1:2, :, :-1]
    fv = wv * (x[:, :, 1:, :] - x[:, :, :-1, :])  # flux along each vertical edge
    fh = wh * (x[:, :, :, 1:] - x[:, :, :, :-1])
    return F.pad(fv, (0, 0, 1, 0)) - F.pad(fv, (0, 0, 0, 1)) + F.pad(fh, (1, 0, 0, 0)) - F.pad(fh, (0, 1, 0, 0))


def laplacian_apply_(weights: Tensor, x: Tensor, out: Tensor, tmp_v: Tensor, tmp_h: Tensor) -> Tensor:
    """In-place variant of :func:`laplacian_apply` for the solver's inner loop (no autograd).

    ``tmp_v`` and ``tmp_h`` are scratch buffers of shapes (B, C, H−1, W) and (B, C, H, W−1).
    """
    torch.sub(x[:, :, 1:, :], x[:, :, :-1, :], out=tmp_v)
    tmp_v.mul_(weights[:, 0:1, :-1, :])
    torch.sub(x[:, :, :, 1:], x[:, :, :, :-1], out=tmp_h)
    tmp_h.mul_(weights[:, 1:2, :, :-1])
    out.zero_()
    out[:, :, 1:, :].add_(tmp_v)
    out[:, :, :-1, :].sub_(tmp_v)
    out[:, :, :, 1:].add_(tmp_h)
    out[:, :, :, :-1].sub_(tmp_h)
    return out


def degree(weights: Tensor) -> Tensor:
    """Weighted degree ``Σ_q w_pq`` of every pixel: (B, 1, H, W) (the diagonal of L)."""
    _check_weights(weights)
    wv = weights[:, 0:1]
    wh = weights[:, 1:2]
    return wv + F.pad(wv[:, :, :-1, :], (0, 0, 1, 0)) + wh + F.pad(wh[:, :, :, :-1], (1, 0, 0, 0))


def edge_gradient(g: Tensor, x: Tensor) -> Tensor:
    """Per-edge ``−Σ_c (g_p − g_q)(x_p − x_q)`` in the (B, 2, H, W) layout.

    This is ∂ℓ/∂w_pq for ``L(w) x = …`` given the adjoint solution ``g`` (implicit differentiation).

    Args:
        g, x: (B, C, H, W).
    """
    gv = -((g[:, :, 1:, :] - g[:, :, :-1, :]) * (x[:, :, 1:, :] - x[:, :, :-1, :])).sum(1, keepdim=True)
    gh = -((g[:, :, :, 1:] - g[:, :, :, :-1]) * (x[:, :, :, 1:] - x[:, :, :, :-1])).sum(1, keepdim=True)
    return torch.cat([F.pad(gv, (0, 0, 0, 1)), F.pad(gh, (0, 1, 0, 0))], dim=1)
