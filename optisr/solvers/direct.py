"""Direct sparse solves with SciPy: the slow, obvious reference for the matrix-free CG solvers.

Builds ``L(w)`` and ``D`` as explicit sparse matrices (pixels flattened row-major) and solves

* soft:  ``(Dᵀ C D + L) x = Dᵀ C s``;
* exact: the KKT system ``[L D_cᵀ; D_c 0] [x; ν] = [0; s_c]``.

Intended for small problems (tests, debugging) and as an always-available fallback; matrix
assembly makes it slow for megapixel images (see ``anchors.md`` §3.8 for faster direct solvers).
No autograd.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import Tensor

from optisr.ops.operators import DownsampleOperator

__all__ = ["laplacian_matrix", "operator_matrix", "solve_direct"]


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


def solve_direct(
    weights: Tensor, source: Tensor, op: DownsampleOperator, *, mode: str, mask: Tensor | None = None
) -> Tensor:
    """Solve every (sample, channel) problem with a sparse LU; returns (B, C, H, W) in float64.

    Args:
        weights: (B, 2, H, W) effective weights (λ already applied for ``soft``).
        source: (B, C, h, w).
        op: the downsampling operator.
        mode: ``exact`` or ``soft``.
        mask: optional bool (B, 1|C, h, w) of constrained LR pixels.
    """
    B, C = source.shape[:2]
    H, W = op.hr_size
    D = operator_matrix(op)
    out = np.zeros((B, C, H, W))
    w_np = weights.detach().cpu().double().numpy()
    s_np = source.detach().cpu().double().numpy()
    m_np = None if mask is None else mask.detach().cpu().expand(B, C, -1, -1).numpy()
    for b in range(B):
        L = laplacian_matrix(w_np[b])
        for c in range(C):
            s = s_np[b, c].ravel()
            keep = np.ones(s.size, bool) if m_np is None else m_np[b, c].ravel()
            if mode == "soft":
                Cd = sp.diags(keep.astype(np.float64))
                A = (D.T @ Cd @ D + L).tocsc()
                x = spla.spsolve(A, D.T @ (keep * s))
            else:
                Dc = D[np.flatnonzero(keep)]
                K = sp.bmat([[L, Dc.T], [Dc, None]], format="csc")
                rhs = np.concatenate([np.zeros(H * W), s[keep]])
                x = spla.spsolve(K, rhs)[: H * W]
            out[b, c] = x.reshape(H, W)
    return torch.from_numpy(out)
