"""Direct sparse solves with SciPy: the slow, obvious reference for the matrix-free CG solvers.

Builds ``L(w)`` and ``D`` as explicit sparse matrices (pixels flattened row-major) and solves

* soft:  ``(Dᵀ C D + L) x = Dᵀ C s`` with ``C = mask · confidence``;
* exact: the KKT system ``[L D_cᵀ; D_c 0] [x; ν] = [0; s_c]``;
* robust: IRLS to convergence, each iteration a sparse LU of the soft system with weights
  ``C ψ(t)/t`` (:func:`solve_robust_direct`; losses as in :mod:`optisr.solvers.robust`, written
  out again here in NumPy).

Intended for small problems (tests, debugging) and as an always-available fallback; matrix
assembly makes it slow for megapixel images (see ``anchors.md`` §3.8 for faster direct solvers).
No autograd.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import Tensor

from optisr.ops.operators import DownsampleOperator

__all__ = ["laplacian_matrix", "operator_matrix", "solve_direct", "solve_robust_direct"]


def laplacian_matrix(weights: np.ndarray) -> sp.csr_matrix:
    """Sparse graph Laplacian (N×N, N = H·W) from one sample's weights (2, H, W)."""
    _, H, W = weights.shape
    idx = np.arange(H * W).reshape(H, W)
    p = np.concatenate([idx[:-1, :].ravel(), idx[:, :-1].ravel()])
    q = np.concatenate([idx[1:, :].ravel(), idx[:, 1:].ravel()])
    w = np.concatenate([weights[0, :-1, :].ravel(), weights[1, :, :-1].ravel()]).astype(np.float64)
    adj = sp.coo_matrix((np.concatenate([w, w]), (np.concatenate([p, q]), np.concatenate([q, p]))), shape=(H * W,) * 2)
    deg = np.asarray(adj.sum(1)).ravel()
    return (sp.diags(deg) - adj).tocsr()


def operator_matrix(op: DownsampleOperator) -> sp.csr_matrix:
    """Sparse ``D`` (n×N) of a separable operator: ``kron(A_y, A_x)`` for row-major flattening."""
    a_y, a_x = op.axis_matrices()
    return sp.kron(sp.csr_matrix(a_y), sp.csr_matrix(a_x), format="csr")


def _data_weights_np(source: Tensor, mask: Tensor | None, confidence: Tensor | None) -> np.ndarray:
    """``C = mask · confidence`` as float64 NumPy (B, C, h, w)."""
    c = np.ones(tuple(source.shape))
    if mask is not None:
        c = c * mask.detach().cpu().double().numpy()
    if confidence is not None:
        c = c * confidence.detach().cpu().double().numpy()
    return c


def _problems(
    weights: Tensor, source: Tensor, op: DownsampleOperator, mask: Tensor | None, confidence: Tensor | None
) -> Iterator[tuple[int, int, sp.csr_matrix, sp.csr_matrix, np.ndarray, np.ndarray]]:
    """Every (sample b, channel c) problem as ``(b, c, D, L, s, cw)``: sparse D and L, flat float64 s and C."""
    D = operator_matrix(op)
    w_np = weights.detach().cpu().double().numpy()
    s_np = source.detach().cpu().double().numpy()
    c_np = _data_weights_np(source, mask, confidence)
    for b in range(source.shape[0]):
        L = laplacian_matrix(w_np[b])
        for c in range(source.shape[1]):
            yield b, c, D, L, s_np[b, c].ravel(), c_np[b, c].ravel()


def solve_direct(
    weights: Tensor,
    source: Tensor,
    op: DownsampleOperator,
    *,
    mode: str,
    mask: Tensor | None = None,
    confidence: Tensor | None = None,
) -> Tensor:
    """Solve every (sample, channel) problem with a sparse LU; returns (B, C, H, W) in float64.

    Args:
        weights: (B, 2, H, W) effective weights (λ already applied for ``soft``).
        source: (B, C, h, w).
        op: the downsampling operator.
        mode: ``exact`` or ``soft``.
        mask: optional bool (B, 1|C, h, w) of constrained LR pixels.
        confidence: ``soft`` only: optional LR data weights (B|1, 1|C, h, w) ≥ 0.
    """
    H, W = op.hr_size
    out = np.zeros((*source.shape[:2], H, W))
    for b, c, D, L, s, cw in _problems(weights, source, op, mask, confidence):
        if mode == "soft":
            A = (D.T @ sp.diags(cw) @ D + L).tocsc()
            x = spla.spsolve(A, D.T @ (cw * s))
        else:
            keep = cw > 0
            Dc = D[np.flatnonzero(keep)]
            K = sp.bmat([[L, Dc.T], [Dc, None]], format="csc")
            rhs = np.concatenate([np.zeros(H * W), s[keep]])
            x = spla.spsolve(K, rhs)[: H * W]
        out[b, c] = x.reshape(H, W)
    return torch.from_numpy(out)


def _irls_weight_np(t: np.ndarray, loss: str, delta: float) -> np.ndarray:
    """``ψ(t)/t``: Huber ``min(1, δ/|t|)``, Tukey ``(1 − (t/δ)²)²₊``."""
    if loss == "huber":
        return np.minimum(1.0, delta / np.maximum(np.abs(t), np.finfo(np.float64).tiny))
    return np.clip(1 - (t / delta) ** 2, 0, None) ** 2


def solve_robust_direct(
    weights: Tensor,
    source: Tensor,
    op: DownsampleOperator,
    *,
    sigma: float,
    loss: str = "huber",
    delta: float = 1.345,
    mask: Tensor | None = None,
    confidence: Tensor | None = None,
    tol: float = 1e-13,
    max_iter: int = 10000,
) -> Tensor:
    """Robust mode by IRLS with sparse LU solves, from the soft solution, until the relative change < tol.

    Args:
        weights, source, op, mask, confidence: as in :func:`solve_direct`.
        sigma: residual scale (source units), one value for every sample.
        loss, delta: ``huber`` | ``tukey`` and the threshold in units of sigma.
        tol, max_iter: stop on ``‖x_k − x_{k−1}‖ / ‖x_k‖ < tol``; raise RuntimeError after max_iter.
    Returns:
        (B, C, H, W) float64.
    """
    H, W = op.hr_size
    out = np.zeros((*source.shape[:2], H, W))
    for b, c, D, L, s, cw in _problems(weights, source, op, mask, confidence):
        x = spla.spsolve((D.T @ sp.diags(cw) @ D + L).tocsc(), D.T @ (cw * s))
        for _ in range(max_iter):
            u = cw * _irls_weight_np((D @ x - s) / sigma, loss, delta)
            x_new = spla.spsolve((D.T @ sp.diags(u) @ D + L).tocsc(), D.T @ (u * s))
            step = np.linalg.norm(x_new - x) / max(np.linalg.norm(x_new), np.finfo(np.float64).tiny)
            x = x_new
            if step < tol:
                break
        else:
            raise RuntimeError(f"reference IRLS did not converge in {max_iter} iterations")
        out[b, c] = x.reshape(H, W)
    return torch.from_numpy(out)
