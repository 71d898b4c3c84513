"""Aggregation multigrid for the graph-regularised systems: a symmetric V-cycle preconditioner.

The finest level is the pixel lattice with ``A₀ = L(w) + Dᵀ C D`` (soft mode), or the penalised
``L(w) + ρ Bᵀ C B`` with ``B`` the LR block mean (exact mode: restricted to null(D), the inverse of a
penalised system approximates the inverse of the constrained one). Coarser levels are graphs
built algebraically from the weights, so cut (weak) edges of a high-contrast graph are respected:

* **aggregation** -- two rounds of pairwise matching (Notay's "double pairwise" aggregation, here
  by vectorised handshaking): a node proposes to its strongest free neighbour (edge weight, ties
  broken by a fixed hash of the edge), mutual proposals become pairs. Only edges that are strong
  for one of their ends (``w ≥ θ_s · max weight at that node``) and that stay inside one LR block
  pair up, so aggregates (≤ 4 nodes per level) follow the strongly linked segments of the guide
  and never straddle an LR block. Nodes without a partner stay single.
* **prolongation** ``P`` copies an aggregate's value to its members (piecewise constant),
  restriction is ``Pᵀ`` (a sum); the Galerkin Laplacian ``Pᵀ L P`` is again a graph Laplacian
  whose edge weights are the sums of the fine edges between two aggregates (edge list, merged);
* **data term** on coarse levels: the block form ``(B P)ᵀ C (B P)`` with B the LR block mean
  (sum for ``sum``): aggregates lie in one block, so it stays one rank-1 term per LR block, with
  node weights ``d_a = Σ_{p ∈ a} B_bp``. For ``area``/``sum`` this is the exact Galerkin product;
  for ``bicubic``/``gaussian`` (soft mode) it approximates their data term at block scale.

**Exact mode with a block operator** (area/sum) keeps the constraint itself instead of a penalty
(``fine_data="constraint"``): since every aggregate lies in one LR block, ``D P`` is again a block
operator (row b holds the weights ``d_a = Σ_{p ∈ a} D_bp`` of the aggregates in block b), so every
level has a Laplacian ``Pᵀ L P`` with the constraint ``D_k z = 0``, and its smoother is the Jacobi
step projected M-orthogonally onto that constraint, ``m ⊙ (r − D_kᵀ S⁻¹ D_k (m ⊙ r))`` with
``S = D_k diag(m) D_kᵀ`` diagonal (one node, one block) -- the constraint preconditioner of
:func:`optisr.solvers.graph._constraint_preconditioner` on every level. ``P`` maps null(D_k) into
null(D_{k−1}), so the V-cycle maps into null(D), ignores range(Dᵀ) and is SPD on null(D). Measured
(``benchmarks/solver.py``, 1024², ×8, tol 1e-4): 24 CG iterations against 45 with the penalty.

The smoother (other modes) is Jacobi with ``d = θ·deg(L) + (l1 row sums of the data term)``, θ = 4/3, which is
``≻ A/2``; one sweep before and after each coarse correction and a few on the coarsest level make
the V-cycle symmetric positive definite (it preconditions CG).

Shapes: weights (B, 2, H, W); fine vectors (B, C, H, W); coarse vectors (n_k, C) over the nodes
of all samples; LR data weights broadcastable to (B, C, h, w). Any floating dtype, any device;
no autograd.
"""

from __future__ import annotations

import functools
import math
import warnings

import torch
from torch import Tensor

from optisr.errors import ConfigError
from optisr.ops.lattice import degree, laplacian_apply_
from optisr.ops.operators import DownsampleOperator, make_operator

__all__ = ["Hierarchy", "THETA", "lattice_pairs", "pairwise_aggregates"]

THETA = 4.0 / 3.0  # Jacobi smoother: d = THETA·deg(L) + l1 rows of the data term
STRONG = 0.25  # an edge may pair its ends if w ≥ STRONG · (largest weight at one of them)
ROUNDS = 3  # handshaking rounds per matching
MIN_REDUCTION = 0.8  # stop coarsening when a level keeps more than this fraction of the nodes


def _edge_keys(w: Tensor) -> Tensor:
    """Distinct float64 proposal keys: the weight, with ties broken by a fixed hash of the edge index."""
    e = torch.arange(w.numel(), dtype=torch.float64, device=w.device)
    return w.to(torch.float64) * (1.0 + 1e-7 * torch.frac(e * 0.6180339887498949))


def _match(u: Tensor, v: Tensor, key: Tensor, n: int) -> Tensor:
    """Pairs by handshaking on the candidate edges ``(u, v)`` (int64, E; keys −inf = not a candidate).

    Returns partner (n,) int64, −1 = none. Each round, every node proposes along its best free edge
    (largest key); an edge proposed by both ends becomes a pair.
    """
    partner = torch.full((n,), -1, dtype=torch.int64, device=u.device)
    ends = torch.cat([u, v])
    ninf = torch.tensor(-math.inf, dtype=key.dtype, device=key.device)
    for _ in range(ROUNDS):
        k = torch.where((partner.index_select(0, u) < 0) & (partner.index_select(0, v) < 0), key, ninf)
        best = torch.full((n,), -math.inf, dtype=key.dtype, device=key.device)
        best.scatter_reduce_(0, ends, torch.cat([k, k]), "amax")
        mutual = (k > -math.inf) & (k == best.index_select(0, u)) & (k == best.index_select(0, v))
        e = mutual.nonzero().squeeze(1)
        if e.numel() == 0:
            break
        mu, mv = u.index_select(0, e), v.index_select(0, e)
        partner.index_copy_(0, mu, mv).index_copy_(0, mv, mu)
    return partner


def _ids_from_partner(partner: Tensor) -> tuple[Tensor, int]:
    """Coarse ids (n,) numbered in node order (a pair takes the id of its smaller node), and their count."""
    n = partner.numel()
    idx = torch.arange(n, device=partner.device)
    rep = torch.where((partner >= 0) & (partner < idx), partner, idx)  # representative of each node
    is_rep = rep == idx
    number = torch.cumsum(is_rep.to(torch.int64), 0) - 1
    return number.index_select(0, rep), int(number[-1]) + 1


def _pair_once(u: Tensor, v: Tensor, w: Tensor, n: int, blk: Tensor) -> tuple[Tensor, int]:
    """One pairwise matching of a (multi)graph with edges ``(u, v, w)``: coarse ids (n,) and count."""
    maxw = torch.zeros((n,), dtype=w.dtype, device=w.device)
    maxw.scatter_reduce_(0, torch.cat([u, v]), torch.cat([w, w]), "amax")
    mu, mv = maxw.index_select(0, u), maxw.index_select(0, v)
    ok = (blk.index_select(0, u) == blk.index_select(0, v)) & (w >= STRONG * torch.minimum(mu, mv))
    key = torch.where(ok, _edge_keys(w), torch.tensor(-math.inf, dtype=torch.float64, device=w.device))
    return _ids_from_partner(_match(u, v, key, n))


def lattice_pairs(weights: Tensor, scale: int) -> tuple[Tensor, int]:
    """:func:`_pair_once` for the pixel lattice, by shifts instead of edge lists (the big first step).

    Args:
        weights: (B, 2, H, W) lattice weights (layout of :mod:`optisr.ops.lattice`).
        scale: LR block size f; pairs stay inside one f×f block.
    Returns:
        coarse ids (B·H·W,) int64 of the pixels in row-major order over the batch, and their count.
    """
    B, _, H, W = weights.shape
    dev = weights.device
    n = B * H * W
    wv = weights[:, 0].to(torch.float64)  # edge (i, j)–(i+1, j)
    wh = weights[:, 1].to(torch.float64)  # edge (i, j)–(i, j+1)
    ninf = torch.tensor(-math.inf, dtype=torch.float64, device=dev)
    rows = torch.arange(H, device=dev)
    cols = torch.arange(W, device=dev)
    has_v = ((rows < H - 1) & ((rows // scale) == ((rows + 1) // scale)))[:, None]  # (H, 1): edge below, same block
    has_h = ((cols < W - 1) & ((cols // scale) == ((cols + 1) // scale)))[None, :]

    def pad_up(t: Tensor) -> Tensor:  # value of the edge above each pixel
        return torch.cat([torch.full_like(t[:, :1], -math.inf), t[:, :-1]], 1)

    def pad_left(t: Tensor) -> Tensor:
        return torch.cat([torch.full_like(t[:, :, :1], -math.inf), t[:, :, :-1]], 2)

    z = torch.zeros((), dtype=torch.float64, device=dev)
    maxw = torch.stack(
        [
            torch.where(has_v, wv, z),
            torch.where(has_h, wh, z),
            pad_up(torch.where(has_v, wv, z)).clamp_min(0),
            pad_left(torch.where(has_h, wh, z)).clamp_min(0),
        ]
    ).amax(0)  # (B, H, W): largest weight at each pixel (only edges that may pair)
    max_down = torch.cat([maxw[:, 1:], maxw[:, -1:]], 1)
    max_right = torch.cat([maxw[:, :, 1:], maxw[:, :, -1:]], 2)
    e = torch.arange(n, dtype=torch.float64, device=dev).reshape(B, H, W)
    kv = torch.where(
        has_v & (wv >= STRONG * torch.minimum(maxw, max_down)),
        wv * (1 + 1e-7 * torch.frac(e * 0.6180339887498949)),
        ninf,
    )
    kh = torch.where(
        has_h & (wh >= STRONG * torch.minimum(maxw, max_right)),
        wh * (1 + 1e-7 * torch.frac((e + n) * 0.6180339887498949)),
        ninf,
    )
    up = torch.zeros((B, H, W), dtype=torch.bool, device=dev)  # pixel is paired with the one above
    left = torch.zeros_like(up)
    matched = torch.zeros_like(up)
    for _ in range(ROUNDS):
        k_up, k_left = pad_up(kv), pad_left(kh)
        best = torch.maximum(torch.maximum(kv, k_up), torch.maximum(kh, k_left))
        ok = best > -math.inf
        # keys of different edges differ, so each pixel with a candidate proposes along exactly one edge
        new_v = (ok & (kv == best))[:, :-1] & (ok & (k_up == best))[:, 1:]  # (B, H−1, W): mutual vertical
        new_h = (ok & (kh == best))[:, :, :-1] & (ok & (k_left == best))[:, :, 1:]
        if not (bool(new_v.any()) or bool(new_h.any())):
            break
        up[:, 1:] |= new_v
        left[:, :, 1:] |= new_h
        matched[:, :-1] |= new_v
        matched[:, 1:] |= new_v
        matched[:, :, :-1] |= new_h
        matched[:, :, 1:] |= new_h
        free_v = ~(matched | torch.cat([matched[:, 1:], matched[:, -1:]], 1))
        free_h = ~(matched | torch.cat([matched[:, :, 1:], matched[:, :, -1:]], 2))
        kv = torch.where(free_v, kv, ninf)
        kh = torch.where(free_h, kh, ninf)
    idx = torch.arange(n, device=dev).reshape(B, H, W)
    rep = (idx - W * up.to(torch.int64) - left.to(torch.int64)).reshape(-1)
    is_rep = ~(up | left).reshape(-1)
    number = torch.cumsum(is_rep.to(torch.int64), 0) - 1
    return number[rep], int(is_rep.sum())


def pairwise_aggregates(
    u: Tensor, v: Tensor, w: Tensor, n: int, blk: Tensor, first: tuple[Tensor, int] | None = None
) -> tuple[Tensor, int]:
    """Double pairwise aggregation: coarse ids (n,) int64 (aggregates of ≤ 4 nodes) and their count.

    Args:
        u, v: (E,) int64 edge ends, ``u ≠ v``; w: (E,) positive weights (duplicate edges allowed).
        n: number of nodes; blk: (n,) int64 LR block of each node (aggregates stay inside one).
        first: the first matching if already known (``(ids, count)`` of :func:`lattice_pairs`).
    """
    ids1, n1 = _pair_once(u, v, w, n, blk) if first is None else first
    u1, v1 = ids1.index_select(0, u), ids1.index_select(0, v)
    keep = (u1 != v1).nonzero().squeeze(1)
    blk1 = torch.empty((n1,), dtype=blk.dtype, device=blk.device).scatter_(0, ids1, blk)
    ids2, n2 = _pair_once(u1.index_select(0, keep), v1.index_select(0, keep), w.index_select(0, keep), n1, blk1)
    return ids2.index_select(0, ids1), n2


def _galerkin_edges(u: Tensor, v: Tensor, w: Tensor, ids: Tensor, n_c: int) -> tuple[Tensor, Tensor, Tensor]:
    """Edges of ``Pᵀ L P``: fine edges between different aggregates, duplicates merged (weights summed)."""
    a, b = ids.index_select(0, u), ids.index_select(0, v)
    keep = (a != b).nonzero().squeeze(1)
    a, b, w = a.index_select(0, keep), b.index_select(0, keep), w.index_select(0, keep)
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    key, inverse = torch.unique(lo * n_c + hi, return_inverse=True)
    wc = torch.zeros((key.numel(),), dtype=w.dtype, device=w.device).index_add_(0, inverse, w)
    return key // n_c, key % n_c, wc


def _upper_csr(u: Tensor, v: Tensor, w: Tensor, n: int) -> Tensor:
    """The strictly upper adjacency (n, n) as a sparse CSR tensor, from merged edges ``u < v`` sorted by u."""
    crow = torch.zeros((n + 1,), dtype=torch.int64, device=u.device)
    crow[1:] = torch.cumsum(torch.bincount(u, minlength=n), 0)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": matrix-vector products are all we use
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, v, w, (n, n), check_invariants=False)


class _Coarse:
    """One coarse level: a graph Laplacian plus the block data term and the Jacobi smoother.

    ``ids`` (n_fine,) maps the finer level's nodes to this level's; ``upper`` is the (n, n) CSR
    upper adjacency of the merged Galerkin edges ``u < v`` (``lo``, ``hi``, ``w``: the same as
    lists); ``blk`` (n,) the global LR block of each node; ``d`` (n, 1) its block weight
    ``Σ_{p ∈ a} B_bp``; ``c`` (n_blocks, C) the data weights per block.
    """

    def __init__(self, ids, n, u, v, w, blk, d, c, n_blocks, constrained=False):
        self.ids, self.n = ids, n
        self.constrained = constrained
        self.upper = _upper_csr(u, v, w, n)
        self.lo, self.hi, self.w = u, v, w[:, None]  # (E,), (E,), (E, 1)
        self.blk, self.d, self.n_blocks = blk, d[:, None], n_blocks
        deg = torch.zeros((n,), dtype=w.dtype, device=w.device)
        deg.index_add_(0, u, w).index_add_(0, v, w)
        self.deg = deg[:, None]
        if constrained:
            # no data term (matvec is L alone); the smoother keeps Σ_{a ∈ b} d_a z_a = 0 in the
            # constrained blocks (c_b > 0)
            diag = THETA * self.deg
            self.inv_d = 1.0 / diag.clamp_min(torch.finfo(w.dtype).eps * float(diag.max().clamp_min(1.0)))
            s_blk = torch.zeros((n_blocks, 1), dtype=w.dtype, device=w.device)
            s_blk.index_add_(0, blk, self.d * self.d * self.inv_d)
            self.inv_s = (c > 0).to(w.dtype) / s_blk.clamp_min(torch.finfo(w.dtype).tiny)  # (n_blocks, C)
            return
        dsum = torch.zeros((n_blocks, 1), dtype=w.dtype, device=w.device).index_add_(0, blk, self.d)
        # l1 row sum of the rank-1 block term: c_b d_a Σ_{a' ∈ b} d_a'
        self.c_nodes = c[blk] * self.d  # (n, C): c_b d_a
        diag = THETA * self.deg + self.c_nodes.clamp_min(0) * dsum[blk]
        self.inv_d = 1.0 / diag.clamp_min(torch.finfo(diag.dtype).tiny)

    def smooth(self, r: Tensor) -> Tensor:
        """One smoothing step ``M⁻¹ r`` (n, C): Jacobi, projected M-orthogonally onto the constraint in
        constraint mode (``m (r − D_cᵀ S⁻¹ D_c m r)``, S = D_c m D_cᵀ diagonal: one node is in one block)."""
        z = r * self.inv_d
        if not self.constrained:
            return z
        t = torch.zeros((self.n_blocks, r.shape[1]), dtype=r.dtype, device=r.device)
        t.index_add_(0, self.blk, self.d * z)
        return z.sub_(self.inv_d * self.d * (t * self.inv_s).index_select(0, self.blk))

    def matvec(self, x: Tensor) -> Tensor:
        # −(adjacency)·x: rows u by the upper CSR, rows v by a scatter (index_add_ with alpha is slow on 2-D)
        out = (self.upper @ x).sub_(self.deg * x)
        out.index_add_(0, self.hi, self.w * x.index_select(0, self.lo)).neg_()
        if self.constrained:
            return out
        t = torch.zeros((self.n_blocks, x.shape[1]), dtype=x.dtype, device=x.device)
        t.index_add_(0, self.blk, self.d * x)
        return out.addcmul_(self.c_nodes, t.index_select(0, self.blk))


@functools.lru_cache(maxsize=16)
def _abs_operator(op: DownsampleOperator) -> DownsampleOperator:
    """``|D|`` (entrywise), for the l1 smoother: ``op`` itself when its entries are ≥ 0 (area, sum, gaussian)."""
    a_y, a_x = op.axis_matrices()
    if (a_y >= 0).all() and (a_x >= 0).all():
        return op
    return DownsampleOperator.from_axis_matrices(op.kind, op.scale, abs(a_y), abs(a_x), sigma=op.sigma)


class Hierarchy:
    """A V-cycle ``z = V r ≈ A⁻¹ r``, symmetric positive definite; call it on (B, C, H, W) residuals.

    Args:
        weights: (B, 2, H, W) lattice weights (λ already applied).
        op: the downsampling operator D; its LR blocks bound the aggregates.
        c: LR data weights broadcastable to (B, C, h, w), ≥ 0 (mask · confidence, times ρ in exact mode).
        channels: C, the number of channels of the vectors it will be applied to.
        fine_data: ``"operator"``: the fine level's data term is ``Dᵀ C D`` (soft mode); ``"block"``:
            it is ``Bᵀ C B`` with B the LR block mean (exact mode's penalty); ``"constraint"`` (exact
            mode, area/sum only): no data term, the constraint ``D x = 0`` on the blocks where
            ``c > 0`` is kept exactly on every level (see the module docstring).
        levels: at most this many levels (1 = Jacobi only).
        coarse_sweeps: Jacobi sweeps on the coarsest level.
    """

    def __init__(
        self,
        weights: Tensor,
        op: DownsampleOperator,
        c: Tensor,
        channels: int,
        *,
        fine_data: str = "operator",
        levels: int = 12,
        coarse_sweeps: int = 4,
    ):
        if fine_data not in ("operator", "block", "constraint") or coarse_sweeps < 1 or levels < 1:
            raise ConfigError("fine_data must be 'operator', 'block' or 'constraint', coarse_sweeps and levels >= 1")
        if fine_data == "constraint" and not op.diagonal_gram:
            raise ConfigError(f"fine_data='constraint' needs a block operator (area/sum), not {op.kind!r}")
        B, _, H, W = weights.shape
        h, w_lr = op.lr_size
        dtype, dev = weights.dtype, weights.device
        self.weights = weights.contiguous()
        self.coarse_sweeps = coarse_sweeps
        self.tv = weights.new_empty((B, channels, H - 1, W))
        self.th = weights.new_empty((B, channels, H, W - 1))
        block_op = make_operator("sum" if op.kind == "sum" else "area", (H, W), op.scale)
        self.data_op = op if fine_data in ("operator", "constraint") else block_op
        self.c = c.to(dtype).expand(B, channels, h, w_lr).contiguous()
        self.constrained = fine_data == "constraint"
        ones = torch.ones((1, 1, H, W), dtype=dtype, device=dev)
        if self.constrained:
            # constraint mode: the data "weights" only say which blocks are constrained (c > 0)
            self.c = (self.c > 0).to(dtype)
            diag = THETA * degree(self.weights)
            diag = diag.clamp_min(torch.finfo(dtype).eps * float(diag.max().clamp_min(1.0)))
            self.inv_d = (1.0 / diag).contiguous()
            # S_b = Σ_p D_bp² m_p (D_bp is constant inside block b), as in the Jacobi constraint preconditioner
            s_blk = op.apply(self.inv_d) * op.block_weights(self.inv_d)
            self.inv_s = self.c / s_blk.clamp_min(torch.finfo(dtype).tiny)
        else:
            # fine smoother: THETA·deg + l1 rows of the data term (|D|ᵀ C |D| 1)
            diag = THETA * degree(self.weights)
            abs_op = block_op if fine_data == "block" else _abs_operator(op)
            diag = diag + abs_op.adjoint(self.c.clamp_min(0) * abs_op.apply(ones))
            self.inv_d = (1.0 / diag.clamp_min(torch.finfo(dtype).tiny)).contiguous()

        # the fine lattice as an edge list over all samples (node = b·H·W + i·W + j)
        idx = torch.arange(B * H * W, device=dev).reshape(B, H, W)
        u = torch.cat([idx[:, :-1, :].reshape(-1), idx[:, :, :-1].reshape(-1)])
        v = torch.cat([idx[:, 1:, :].reshape(-1), idx[:, :, 1:].reshape(-1)])
        ew = torch.cat([self.weights[:, 0, :-1, :].reshape(-1), self.weights[:, 1, :, :-1].reshape(-1)])
        rows = torch.arange(H, device=dev) // op.scale
        cols = torch.arange(W, device=dev) // op.scale
        blk = (torch.arange(B, device=dev)[:, None, None] * (h * w_lr) + rows[:, None] * w_lr + cols[None, :]).reshape(
            -1
        )
        d = block_op.block_weights(ones)  # (h, w): B_bp inside block b
        d = d[rows][:, cols].expand(B, H, W).reshape(-1)
        c_blk = self.c.permute(0, 2, 3, 1).reshape(B * h * w_lr, channels)
        n = B * H * W
        self.coarse: list[_Coarse] = []
        for k in range(levels - 1):
            ids, n_c = pairwise_aggregates(u, v, ew, n, blk, lattice_pairs(self.weights, op.scale) if k == 0 else None)
            if n_c > MIN_REDUCTION * n:
                break
            u, v, ew = _galerkin_edges(u, v, ew, ids, n_c)
            blk = torch.empty((n_c,), dtype=blk.dtype, device=dev).scatter_(0, ids, blk)
            d = torch.zeros((n_c,), dtype=dtype, device=dev).index_add_(0, ids, d)
            self.coarse.append(_Coarse(ids, n_c, u, v, ew, blk, d, c_blk, B * h * w_lr, constrained=self.constrained))
            n = n_c

    @property
    def n_levels(self) -> int:
        return 1 + len(self.coarse)

    def _fine_matvec(self, x: Tensor) -> Tensor:
        out = laplacian_apply_(self.weights, x, torch.empty_like(x), self.tv, self.th)
        if self.constrained:
            return out
        return out.add_(self.data_op.adjoint(self.c * self.data_op.apply(x)))

    def _fine_smooth(self, r: Tensor) -> Tensor:
        """``M⁻¹ r`` on the pixel lattice (constraint mode: Jacobi projected M-orthogonally onto null(D))."""
        z = r * self.inv_d
        if self.constrained:
            z.sub_(self.inv_d * self.data_op.adjoint(self.data_op.apply(z) * self.inv_s))
        return z

    def __call__(self, r: Tensor) -> Tensor:
        """``V r`` for a fine residual (B, C, H, W)."""
        z = self._fine_smooth(r)
        if not self.coarse:
            return z
        B, C, H, W = r.shape
        res = (r - self._fine_matvec(z)).permute(0, 2, 3, 1).reshape(B * H * W, C)
        zc = self._cycle(0, res)
        z.add_(zc.index_select(0, self.coarse[0].ids).reshape(B, H, W, C).permute(0, 3, 1, 2))
        z.add_(self._fine_smooth(r - self._fine_matvec(z)))
        return z

    def _cycle(self, k: int, r_fine: Tensor) -> Tensor:
        """V-cycle on coarse level k for a residual of the level above (n_{k−1}, C); returns (n_k, C)."""
        lv = self.coarse[k]
        r = torch.zeros((lv.n, r_fine.shape[1]), dtype=r_fine.dtype, device=r_fine.device)
        r.index_add_(0, lv.ids, r_fine)  # restriction Pᵀ
        z = lv.smooth(r)
        if k == len(self.coarse) - 1:
            for _ in range(self.coarse_sweeps - 1):
                z.add_(lv.smooth(r - lv.matvec(z)))
            return z
        zc = self._cycle(k + 1, r - lv.matvec(z))
        z.add_(zc.index_select(0, self.coarse[k + 1].ids))  # prolongation P
        z.add_(lv.smooth(r - lv.matvec(z)))
        return z
