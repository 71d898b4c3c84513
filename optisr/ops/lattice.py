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
    return weights_from_energy(edge_energy(features, mu), floor)


def edge_slots(H: int, W: int, device: torch.device | str | None = None) -> Tensor:
    """(1, 2, H, W) bool, True in the slots that hold an edge (False in channel 0's last row and
    channel 1's last column); broadcasts over a batch of weights or energies."""
    used = torch.ones(1, 2, H, W, dtype=torch.bool, device=device)
    used[:, 0, -1, :] = False
    used[:, 1, :, -1] = False
    return used


def weights_from_energy(energy: Tensor, floor: float) -> Tensor:
    """``floor + (1 − floor)·exp(−energy)`` for (B, 2, H, W) energies, unused slots set to zero."""
    if torch.is_grad_enabled() and energy.requires_grad:
        w = floor + (1.0 - floor) * torch.exp(-energy)
    else:  # the same operations in place (no autograd to keep their inputs for)
        w = torch.neg(energy).exp_().mul_(1.0 - floor).add_(floor)
    w[:, 0, -1, :] = 0  # w is a fresh tensor whose producer keeps no copy: in place is differentiable
    w[:, 1, :, -1] = 0
    return w


def edge_energy(features: Tensor, mu: Tensor | float) -> Tensor:
    """Edge energies ``mean_k (F_kp − F_kq)² / μ²`` (B, 2, H, W) in the weight layout (unused slots 0).

    ``exp(−energy)`` is the affinity of :func:`edge_weights` before its floor; minus the energy
    ranks edges even where every weight sits at the floor (see :func:`connect_isolated`).
    """
    if features.dim() != 4:
        raise ShapeError(f"features must have shape (B, K, H, W), got {tuple(features.shape)}")
    mu = torch.as_tensor(mu, dtype=features.dtype, device=features.device)
    if mu.dim() == 1:
        mu = mu.view(-1, 1, 1, 1)
    inv = 1.0 / (mu * mu + 1e-12)
    B, _, H, W = features.shape
    out = features.new_zeros((B, 2, H, W), dtype=torch.result_type(features, inv))
    out[:, 0:1, :-1, :] = (features[:, :, 1:, :] - features[:, :, :-1, :]).pow(2).mean(1, keepdim=True) * inv
    out[:, 1:2, :, :-1] = (features[:, :, :, 1:] - features[:, :, :, :-1]).pow(2).mean(1, keepdim=True) * inv
    return out


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

    ``tmp_v`` and ``tmp_h`` are scratch buffers of shapes (B, C, H−1, W) and (B, C, H, W−1);
    ``out`` (B, C, H, W) must not overlap ``x``. Bit-identical to :func:`laplacian_apply` (the same
    roundings in the same order) with 21 passes over HR-sized memory and no allocation: the
    vertical fluxes are differenced straight into ``out`` (``f_up − f_down``, as ``0 + f_up − f_down``).
    """
    torch.sub(x[:, :, 1:, :], x[:, :, :-1, :], out=tmp_v)
    tmp_v.mul_(weights[:, 0:1, :-1, :])
    torch.sub(x[:, :, :, 1:], x[:, :, :, :-1], out=tmp_h)
    tmp_h.mul_(weights[:, 1:2, :, :-1])
    H = x.shape[-2]
    if H > 1:
        torch.sub(tmp_v[:, :, :-1, :], tmp_v[:, :, 1:, :], out=out[:, :, 1:-1, :])
        torch.neg(tmp_v[:, :, :1, :], out=out[:, :, :1, :])
        out[:, :, -1:, :].copy_(tmp_v[:, :, -1:, :])
    else:
        out.zero_()
    out[:, :, :, 1:].add_(tmp_h)
    out[:, :, :, :-1].sub_(tmp_h)
    return out


def raise_floor(weights: Tensor, floor: float) -> Tensor:
    """Edge weights with a higher floor: ``floor + (1 − floor)·w`` on every edge in use (``w > 0``).

    A weight near 0 cuts the graph; raising the floor caps how strongly any edge can cut, so the
    smoothness term can still average across weak cuts (what noisy sources need: see
    :data:`optisr.guided.fidelity.FLOOR_STEPS`). Unused slots (the last row / column, edges of
    invalid pixels: weight 0) stay 0. Differentiable in ``weights``.

    Args:
        weights: (B, 2, H, W) weights in [0, 1].
        floor: in [0, 1); 0 returns the weights unchanged.
    """
    _check_weights(weights)
    if not 0.0 <= floor < 1.0:
        raise ValueError(f"floor must be in [0, 1), got {floor!r}")
    if floor == 0.0:
        return weights
    return torch.where(weights > 0, floor + (1.0 - floor) * weights, torch.zeros_like(weights))


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


# ------------------------------------------------------------------ isolated pixels and pairs
#
# Weak pixels are a few percent of an image, so the choices are made on gathered neighbourhoods of
# the candidates only (dense stacks of every pixel's 4 or 6 edges cost ~10× the weights).
# Edge offsets (channel, row, col) are relative to the candidate pixel (i, j); channel 0 ("v") is
# the edge below a slot, channel 1 ("h") the edge to its right.

_PIXEL_EDGES = ((0, -1, 0), (0, 0, 0), (1, 0, -1), (1, 0, 0))  # up, down, left, right of p
_VPAIR_EDGES = ((0, -1, 0), (1, 0, -1), (1, 0, 0), (0, 1, 0), (1, 1, -1), (1, 1, 0))  # p=(i,j), q=(i+1,j)
_HPAIR_EDGES = ((0, -1, 0), (0, 0, 0), (1, 0, -1), (0, -1, 1), (0, 0, 1), (1, 0, 1))  # p=(i,j), q=(i,j+1)


def _count_strong(strong: Tensor) -> Tensor:
    """(B, H, W) uint8: how many of each pixel's edges are strong, from a (B, 2, H, W) uint8 0/1 map."""
    n = strong[:, 0] + strong[:, 1]  # down, right
    n[:, 1:].add_(strong[:, 0, :-1])  # up
    n[:, :, 1:].add_(strong[:, 1, :, :-1])  # left
    return n


def _choose(strong: Tensor, a: Tensor, b: Tensor, i: Tensor, j: Tensor, edges):
    """For candidates (b, i, j): the edge slots (channel, b, row, col) to raise, one per weak candidate.

    ``strong`` (B, 2, H, W) uint8: 1 where an edge is ≥ tau; ``a`` (B, 2, H, W) the affinity. Edges
    outside the grid and unused slots take no part (affinity −∞, never strong). A candidate is weak
    when none of its edges is strong; its edge of largest affinity is chosen (the first of exact ties).
    """
    _, _, H, W = strong.shape
    ch = torch.tensor([e[0] for e in edges], device=b.device)
    di = torch.tensor([e[1] for e in edges], device=b.device)
    dj = torch.tensor([e[2] for e in edges], device=b.device)
    bb, rr, cc = b[:, None].expand(-1, len(edges)), i[:, None] + di, j[:, None] + dj
    chh = ch.expand_as(bb)
    inside = (rr >= 0) & (cc >= 0) & (rr < H - 1 + ch) & (cc < W - ch)  # ch 0: rows < H−1; ch 1: cols < W−1
    rr_c, cc_c = rr.clamp(0, H - 1), cc.clamp(0, W - 1)
    s = strong[bb, chh, rr_c, cc_c].bool() & inside
    av = torch.where(inside, a[bb, chh, rr_c, cc_c], torch.tensor(float("-inf"), dtype=a.dtype, device=a.device))
    k = av.argmax(1)  # the first of exact ties
    take = ~s.any(1) & torch.isfinite(av.amax(1))
    n = torch.arange(len(b), device=b.device)[take]
    k = k[take]
    return ch[k], b[take], rr[n, k], cc[n, k]


def connect_isolated(weights: Tensor, tau: float, affinity: Tensor | None = None) -> Tensor:
    """Link pixels (and 2-pixel clusters) that the weights cut off from everything, at weight ``tau``.

    In exact mode a pixel whose every edge is weak is nearly free: it absorbs its LR block's
    constraint slack and overshoots (texture specks and sensor noise in the guide make such
    pixels common). Two steps, each raising a few edges to ``tau`` and leaving the rest as is:

    1. every pixel whose edges are all below ``tau`` gets its most similar edge raised to ``tau``;
    2. every adjacent pair whose six outside edges are all below ``tau`` gets the most similar of
       them raised to ``tau``.

    Pixels with one edge ≥ ``tau`` (anything on either side of a real depth edge) are untouched.
    On procedural validation scenes ``tau = 0.02`` (the package default) lowered the exact-mode
    normalised RMSE by 1–4 % at ×4–×16 and cut the worst excursions outside the depth range by
    2–3× at ×4/×8 (colour and learned weights, area and bicubic operators;
    ``benchmarks/connect.py``); it does not remove all overshoot (larger weakly linked regions
    remain). Linking a speck to all its neighbours instead cost accuracy: specks often sit on
    depth edges.

    Args:
        weights: (B, 2, H, W) in the layout of this module (unused slots may hold anything).
        tau: target weight of the added links; ``0`` returns ``weights`` unchanged.
        affinity: (B, 2, H, W) similarity used to choose "most similar" (larger = more similar),
            e.g. minus the edge energy before the floor, which still ranks edges that all sit at
            the floor and ranks them alike in float32 and float64. Default: the weights (exact
            ties go to the first in the order up, down, left, right; for pairs, as listed above).
    Returns:
        (B, 2, H, W) weights, differentiable w.r.t. ``weights`` (zero gradient on raised edges),
        unused slots zero.
    """
    _check_weights(weights)
    if tau <= 0:
        return weights
    w = weights.clone()  # unused slots zeroed in the copy (zero gradient there)
    w[:, 0, -1, :] = 0
    w[:, 1, :, -1] = 0
    with torch.no_grad():
        a = (weights if affinity is None else affinity).detach()
        strong = (w.detach() >= tau).view(torch.uint8)  # unused slots hold 0 < tau
        # 1. single pixels: raise the most similar edge of each weak pixel
        b, i, j = (_count_strong(strong) == 0).nonzero(as_tuple=True)
        raised = [_choose(strong, a, b, i, j, _PIXEL_EDGES)] if len(b) else []
        for c, bb, r, q in raised:
            strong[bb, c, r, q] = 1
        # 2. pairs: both pixels have at most one strong edge (their shared one) after step 1
        few = _count_strong(strong) <= 1
        pairs = ((few[:, :-1] & few[:, 1:]), (few[:, :, :-1] & few[:, :, 1:]))
        for cand, edges in zip(pairs, (_VPAIR_EDGES, _HPAIR_EDGES)):
            b, i, j = cand.nonzero(as_tuple=True)
            if len(b):
                raised.append(_choose(strong, a, b, i, j, edges))
    if not raised:
        return w
    # every raised edge was below tau: it is set to tau with no gradient (as clamp_min(tau) would)
    c, bb, r, q = (torch.cat(parts) for parts in zip(*raised))
    return w.index_put((bb, c, r, q), torch.tensor(tau, dtype=w.dtype, device=w.device))
