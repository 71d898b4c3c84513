"""The Numba loops of :mod:`optisr.solvers.fused` (imported only when Numba is installed).

Module-level functions, so that Numba's disk cache (``cache=True``) finds them again in the next
process: loops defined inside a function were compiled anew in every process (≈ 3 s each time).
Layout: ``pp`` is p (H+2, W+2) with a zero border; ``wvp`` (H+1, W) holds in row i the weight
between rows i−1 and i (rows 0 and H zero), ``whp`` (H, W+1) likewise for columns; ``deg`` the
degree. All arrays of one float dtype (float32 or float64), C-contiguous; the scalars α, β come
in that dtype too (the callers cast them), so every product stays in it.
"""

import numba as nb
import numpy as np

__all__ = ["soft_apply_dot", "soft_update", "stencil_dot", "update", "xpay"]


@nb.njit(fastmath=True, cache=True, inline="always")
def stencil_row(pp, wvp, whp, deg, q, i, extra):
    # q[i] = (L p)[i] + extra (one value per column), returns p[i]ᵀ q[i]
    up, mid, down = pp[i], pp[i + 1], pp[i + 2]
    w_up, w_down, w_h, dg, qi = wvp[i], wvp[i + 1], whp[i], deg[i], q[i]
    acc = mid[0] * 0  # zero in the arrays' dtype (mid[0] is the zero border)
    for j in range(qi.shape[0]):
        v = mid[j + 1]
        s = (
            dg[j] * v
            - w_down[j] * down[j + 1]
            - w_up[j] * up[j + 1]
            - w_h[j + 1] * mid[j + 2]
            - w_h[j] * mid[j]
            + extra[j]
        )
        qi[j] = s
        acc += v * s
    return acc


@nb.njit(parallel=True, fastmath=True, cache=True)
def stencil_dot(pp, wvp, whp, deg, q):
    # q = L p; returns pᵀ q
    H = q.shape[0]
    part = np.zeros(H)
    none = np.zeros_like(q[0])
    for i in nb.prange(H):
        part[i] = stencil_row(pp, wvp, whp, deg, q, i, none)
    return part.sum()


@nb.njit(fastmath=True, cache=True, inline="always")
def spread_block_sums(t, factor, bi, scale):
    # t (one row) <- Σ of t over each block's columns × factor[bi, block], spread over those columns
    W = t.shape[0]
    for bj in range(factor.shape[1]):
        j1 = min(W, bj * scale + scale)
        c = t[0] * 0
        for j in range(bj * scale, j1):
            c += t[j]
        c *= factor[bi, bj]
        for j in range(bj * scale, j1):
            t[j] = c


@nb.njit(parallel=True, fastmath=True, cache=True)
def update(x, r, pp, q, m, alpha, scale, inv_msum):
    # exact mode: x += α p; r −= α q; r −= (Σ_b m r)·inv_msum_b; q <- z = m r; returns rᵀ z.
    # Whole rows in the inner loops (vectorisable); the block sums go through one row buffer.
    H, W = x.shape
    hb = inv_msum.shape[0]
    a = alpha
    part = np.zeros(hb)
    for bi in nb.prange(hb):
        i0 = bi * scale
        i1 = min(H, i0 + scale)
        t = np.zeros_like(pp[0, 1:-1])
        for i in range(i0, i1):
            xi, ri, pi, qi, mi = x[i], r[i], pp[i + 1], q[i], m[i]
            for j in range(W):
                xi[j] += a * pi[j + 1]
                rv = ri[j] - a * qi[j]
                ri[j] = rv
                t[j] += mi[j] * rv
        spread_block_sums(t, inv_msum, bi, scale)
        acc = pp[0, 0] * 0
        for i in range(i0, i1):
            ri, qi, mi = r[i], q[i], m[i]
            for j in range(W):
                rv = ri[j] - t[j]
                ri[j] = rv
                z = mi[j] * rv
                qi[j] = z
                acc += rv * z
        part[bi] = acc
    return part.sum()


@nb.njit(parallel=True, fastmath=True, cache=True)
def soft_apply_dot(pp, wvp, whp, deg, gb2c, scale, q):
    # q = (L + Dᵀ C D) p for a block operator: (Dᵀ C D p)_p = c_b D_b² Σ_b p (gb2c = c_b D_b²);
    # returns pᵀ q. One block row at a time: its block sums first, then the stencil.
    H, W = q.shape
    hb = gb2c.shape[0]
    part = np.zeros(hb)
    for bi in nb.prange(hb):
        i0 = bi * scale
        i1 = min(H, i0 + scale)
        t = np.zeros_like(pp[0, 1:-1])
        for i in range(i0, i1):
            mid = pp[i + 1]
            for j in range(W):
                t[j] += mid[j + 1]
        spread_block_sums(t, gb2c, bi, scale)
        acc = pp[0, 0] * 0
        for i in range(i0, i1):
            acc += stencil_row(pp, wvp, whp, deg, q, i, t)
        part[bi] = acc
    return part.sum()


@nb.njit(parallel=True, fastmath=True, cache=True)
def soft_update(x, r, pp, q, inv_diag, alpha):
    # soft mode: x += α p; r −= α q; q <- z = r / diag(A); returns (rᵀr, rᵀz)
    H, W = x.shape
    a = alpha
    part = np.zeros((H, 2))
    for i in nb.prange(H):
        xi, ri, pi, qi, di = x[i], r[i], pp[i + 1], q[i], inv_diag[i]
        rr = 0.0  # float64 row sums: the stopping test of an ill-conditioned soft solve rests on them
        rz = 0.0
        for j in range(W):
            xi[j] += a * pi[j + 1]
            rv = ri[j] - a * qi[j]
            ri[j] = rv
            z = di[j] * rv
            qi[j] = z
            rr += rv * rv
            rz += rv * z
        part[i, 0] = rr
        part[i, 1] = rz
    return part[:, 0].sum(), part[:, 1].sum()


@nb.njit(parallel=True, fastmath=True, cache=True)
def xpay(pp, z, beta):
    H, W = z.shape
    b = beta
    for i in nb.prange(H):
        for j in range(W):
            pp[i + 1, j + 1] = z[i, j] + b * pp[i + 1, j + 1]
