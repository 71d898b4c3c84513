import numpy as np
import torch

from optisr.ops.lattice import degree, edge_gradient, edge_weights, laplacian_apply, weights_from_edges
from optisr.solvers.direct import laplacian_matrix


def test_laplacian_matches_sparse_and_kills_constants():
    w = torch.rand(2, 2, 7, 9, dtype=torch.float64)
    w[:, 0, -1, :] = 0
    w[:, 1, :, -1] = 0
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    y = laplacian_apply(w, x)
    for b in range(2):
        L = laplacian_matrix(w[b].numpy())
        for c in range(3):
            ref = L @ x[b, c].numpy().ravel()
            assert abs(y[b, c].numpy().ravel() - ref).max() < 1e-12
        assert abs(L.diagonal() - degree(w)[b, 0].numpy().ravel()).max() < 1e-12
    assert float(laplacian_apply(w, torch.ones_like(x)).abs().max()) < 1e-12
    # symmetric positive semidefinite
    u = torch.randn_like(x)
    assert abs(float((laplacian_apply(w, x) * u).sum() - (x * laplacian_apply(w, u)).sum())) < 1e-9
    assert float((laplacian_apply(w, x) * x).sum()) >= 0


def test_edge_weights_formula_and_layout():
    f = torch.randn(1, 4, 5, 6, dtype=torch.float64)
    w = edge_weights(f, 0.7, floor=0.01)
    assert w.shape == (1, 2, 5, 6)
    assert float(w[:, 0, -1].abs().max()) == 0 and float(w[:, 1, :, -1].abs().max()) == 0
    d = ((f[0, :, 2, 3] - f[0, :, 3, 3]) ** 2).mean()
    assert torch.isclose(w[0, 0, 2, 3], 0.01 + 0.99 * torch.exp(-d / 0.49), rtol=1e-9)
    d = ((f[0, :, 2, 3] - f[0, :, 2, 4]) ** 2).mean()
    assert torch.isclose(w[0, 1, 2, 3], 0.01 + 0.99 * torch.exp(-d / 0.49), rtol=1e-9)
    assert float(w[:, 0, :-1].min()) >= 0.01


def test_weights_from_edges_and_edge_gradient():
    v, h = torch.rand(1, 1, 4, 5), torch.rand(1, 1, 5, 4)
    w = weights_from_edges(v, h)
    assert torch.equal(w[:, 0:1, :-1], v) and torch.equal(w[:, 1:2, :, :-1], h)
    # edge_gradient is the derivative of -g^T L(w) x with respect to each weight
    w = w.double().requires_grad_()
    g, x = torch.randn(1, 2, 5, 5, dtype=torch.float64), torch.randn(1, 2, 5, 5, dtype=torch.float64)
    (-(g * laplacian_apply(w, x)).sum()).backward()
    ref = w.grad.clone()
    ref[:, 0, -1] = 0
    ref[:, 1, :, -1] = 0
    assert torch.allclose(edge_gradient(g, x), ref, atol=1e-12)


# ------------------------------------------------------------------ connect_isolated


def _edges_of(i, j, H, W):
    """(channel, row, col) slots of pixel (i, j)'s edges in the order up, down, left, right."""
    out = []
    if i > 0:
        out.append((0, i - 1, j))
    if i < H - 1:
        out.append((0, i, j))
    if j > 0:
        out.append((1, i, j - 1))
    if j < W - 1:
        out.append((1, i, j))
    return out


def _connect_reference(w: np.ndarray, tau: float) -> np.ndarray:
    """Plain loops over pixels and pairs (the rule of connect_isolated, written the slow way)."""
    _, H, W = w.shape
    w = w.copy()
    w[0, -1, :] = 0
    w[1, :, -1] = 0
    raised = w.copy()
    for i in range(H):
        for j in range(W):
            es = _edges_of(i, j, H, W)
            vals = [w[e] for e in es]
            if es and max(vals) < tau:
                e = es[int(np.argmax(vals))]  # the first of exact ties
                raised[e] = max(raised[e], tau)
    w = raised
    out = w.copy()
    for ch, (di, dj) in ((0, (1, 0)), (1, (0, 1))):
        for i in range(H - di):
            for j in range(W - dj):
                internal = (ch, i, j)
                p_edges = [e for e in _edges_of(i, j, H, W) if e != internal]
                q_edges = [e for e in _edges_of(i + di, j + dj, H, W) if e != internal]
                if ch == 0:  # pair order: up_p, left_p, right_p, down_q, left_q, right_q
                    ext = [e for e in p_edges if not (e[0] == 0 and e[1] == i)] + [
                        e for e in q_edges if not (e[0] == 0 and e[1] == i)
                    ]
                else:  # up_p, down_p, left_p, up_q, down_q, right_q
                    ext = (
                        [e for e in p_edges if not (e[0] == 1 and e[2] == j)]
                        + [e for e in q_edges if e[0] == 0]
                        + [e for e in q_edges if e[0] == 1 and e[2] == j + 1]
                    )
                vals = [w[e] for e in ext]
                if ext and max(vals) < tau:
                    e = ext[int(np.argmax(vals))]
                    out[e] = max(out[e], tau)
    return out


def test_connect_isolated_matches_a_loop_reference():
    from optisr.ops.lattice import connect_isolated

    rng = np.random.default_rng(0)
    for t in range(60):
        H, W = (int(v) for v in rng.integers(2, 9, 2))
        w = np.maximum(rng.random((2, H, W)) ** 3, 1e-3)  # many weak edges
        tau = (0.02, 0.05, 0.1, 0.3)[t % 4]
        got = connect_isolated(torch.from_numpy(w)[None], tau)[0].numpy()
        np.testing.assert_array_equal(got, _connect_reference(w, tau), err_msg=f"{H}x{W} tau={tau}")


def test_connect_isolated_leaves_connected_pixels_and_passes_gradients():
    from optisr.ops.lattice import connect_isolated

    w = torch.full((1, 2, 6, 7), 0.5, dtype=torch.float64)
    w[0, 0, -1] = 0
    w[0, 1, :, -1] = 0
    assert torch.equal(connect_isolated(w, 0.3), w)  # every pixel has an edge ≥ tau
    assert connect_isolated(w, 0.0) is w
    w = w.clone().requires_grad_(True)
    speck = w.detach().clone()
    speck[0, 0, 1, 3] = speck[0, 0, 2, 3] = speck[0, 1, 2, 2] = speck[0, 1, 2, 3] = 0.01  # isolate (2, 3)
    x = speck.clone().requires_grad_(True)
    out = connect_isolated(x, 0.05)
    assert out[0, 0, 1, 3] == 0.05 and out[0, 0, 2, 3] == 0.01  # all tied: the first (up) is raised
    x.data[0, 0, 2, 3] = 0.02  # now "down" is the one strongest edge
    out = connect_isolated(x, 0.05)
    assert out[0, 0, 1, 3] == 0.01 and out[0, 0, 2, 3] == 0.05
    affinity = torch.zeros_like(speck)
    affinity[0, 1, 2, 2] = 1.0  # "left" is the most similar edge: it is raised although all weights tie
    out2 = connect_isolated(speck, 0.05, affinity)
    assert out2[0, 1, 2, 2] == 0.05 and out2[0, 0, 1, 3] == 0.01
    out.sum().backward()
    assert x.grad[0, 0, 1, 3] == 1 and x.grad[0, 0, 2, 3] == 0 and x.grad[0, 1, 0, 0] == 1  # raised: no gradient


def test_connect_isolated_stops_a_speck_from_absorbing_its_block():
    """A lone pixel with weak links inside one LR block overshoots without the link, not with it."""
    from optisr.guided.layer import graph_solve
    from optisr.ops.lattice import connect_isolated, edge_weights
    from optisr.ops.operators import make_operator

    H = W = 16
    guide = torch.full((1, 3, H, W), 0.5, dtype=torch.float64)
    guide[..., 5, 6] = 1.0  # a texture speck, not a depth edge
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    depth = (100.0 + 2.0 * yy + 3.0 * (xx >= 8)).to(torch.float64)[None, None]
    op = make_operator("area", (H, W), 8)
    src = op.apply(depth)
    w = edge_weights(guide, 0.02, floor=1e-3)
    plain = graph_solve(src, w, 8, operator=op, tol=1e-10, max_iter=5000, floor=1e-3)
    linked = graph_solve(src, connect_isolated(w, 0.05), 8, operator=op, tol=1e-10, max_iter=5000, floor=1e-3)
    lo, hi = float(depth.min()), float(depth.max())
    assert float(plain[0, 0, 5, 6]) < lo - 50  # the speck absorbs its block's slack: 20 for data ≥ 100
    assert float(linked.min()) > lo - 5 and float(linked.max()) < hi + 1
    rmse = lambda x: float((x - depth).pow(2).mean().sqrt())  # noqa: E731
    assert rmse(linked) < rmse(plain) / 2
    assert torch.allclose(op.apply(linked), src, atol=1e-9)  # still exactly consistent


# ------------------------------------------------------------------ the solver-loop fast paths


def test_in_place_laplacian_equals_laplacian_apply():
    from optisr.ops.lattice import laplacian_apply_

    torch.manual_seed(0)
    for B, C, H, W in ((1, 1, 1, 6), (2, 1, 2, 3), (1, 3, 7, 9), (2, 2, 33, 17), (1, 1, 5, 1)):
        w = torch.rand(B, 2, H, W, dtype=torch.float64)
        x = torch.randn(B, C, H, W, dtype=torch.float64)
        out = torch.full_like(x, float("nan"))  # every entry must be written
        got = laplacian_apply_(w, x, out, x.new_empty(B, C, H - 1, W), x.new_empty(B, C, H, W - 1))
        assert got is out
        assert float((got - laplacian_apply(w, x)).abs().max()) <= 1e-12, (B, C, H, W)


def _connect_previous(weights, tau, affinity=None):
    """connect_isolated as it was before the gather-only rewrite (padded stacks, dense selections)."""
    import torch.nn.functional as F

    edges_p = ((0, -1, 0), (0, 0, 0), (1, 0, -1), (1, 0, 0))
    edges_v = ((0, -1, 0), (1, 0, -1), (1, 0, 0), (0, 1, 0), (1, 1, -1), (1, 1, 0))
    edges_h = ((0, -1, 0), (0, 0, 0), (1, 0, -1), (0, -1, 1), (0, 0, 1), (1, 0, 1))

    def count(w):
        s = (w >= tau).to(torch.uint8)
        return s[:, 0] + F.pad(s[:, 0, :-1], (0, 0, 1, 0)) + s[:, 1] + F.pad(s[:, 1, :, :-1], (1, 0))

    def choose(w_pad, a_pad, b, i, j, edges):
        ch, di, dj = (torch.tensor([e[k] for e in edges]) for k in range(3))
        bb, rr, cc = b[:, None].expand(-1, len(edges)), i[:, None] + 1 + di, j[:, None] + 1 + dj
        wg, ag = w_pad[bb, ch.expand_as(bb), rr, cc], a_pad[bb, ch.expand_as(bb), rr, cc]
        k = ag.argmax(1)
        take = (wg.amax(1) < tau) & torch.isfinite(ag.amax(1))
        n = torch.arange(len(b))[take]
        k = k[take]
        return ch[k], b[take], rr[n, k] - 1, cc[n, k] - 1

    _, _, H, W = weights.shape
    zero = torch.zeros((), dtype=weights.dtype)
    has_v, has_h = torch.arange(H).view(H, 1) < H - 1, torch.arange(W).view(1, W) < W - 1
    w = torch.stack([torch.where(has_v, weights[:, 0], zero), torch.where(has_h, weights[:, 1], zero)], 1)
    with torch.no_grad():
        a = (weights if affinity is None else affinity).detach()
        ninf = torch.tensor(float("-inf"), dtype=a.dtype)
        a_pad = torch.stack([torch.where(has_v, a[:, 0], ninf), torch.where(has_h, a[:, 1], ninf)], 1)
        a_pad = F.pad(a_pad, (1, 1, 1, 1), value=float("-inf"))
        sel = torch.zeros_like(w, dtype=torch.bool)
        b, i, j = (count(w) == 0).nonzero(as_tuple=True)
        if len(b):
            c, bb, r, q = choose(F.pad(w, (1, 1, 1, 1)), a_pad, b, i, j, edges_p)
            sel[bb, c, r, q] = True
    w = torch.where(sel, w.clamp_min(tau), w)
    with torch.no_grad():
        few = count(w) <= 1
        sel = torch.zeros_like(w, dtype=torch.bool)
        w_pad = F.pad(w.detach(), (1, 1, 1, 1))
        for cand, edges in zip(((few[:, :-1] & few[:, 1:]), (few[:, :, :-1] & few[:, :, 1:])), (edges_v, edges_h)):
            b, i, j = cand.nonzero(as_tuple=True)
            if len(b):
                c, bb, r, q = choose(w_pad, a_pad, b, i, j, edges)
                sel[bb, c, r, q] = True
    return torch.where(sel, w.clamp_min(tau), w)


def test_connect_isolated_equals_the_previous_implementation_with_gradients():
    from optisr.ops.lattice import connect_isolated

    gen = torch.Generator().manual_seed(1)
    for t in range(80):
        B, H, W = (
            1 + t % 3,
            1 + int(torch.randint(0, 24, (), generator=gen)),
            1 + int(torch.randint(0, 24, (), generator=gen)),
        )
        dtype = torch.float64 if t % 2 else torch.float32
        w = torch.rand(B, 2, H, W, dtype=dtype, generator=gen) ** 3
        if t % 5 == 0:
            w = w.round(decimals=1)  # many exact ties
        w = w.clamp_min(1e-3)
        affinity = None if t % 3 == 0 else torch.randn(B, 2, H, W, dtype=dtype, generator=gen)
        tau = (0.02, 0.05, 0.1, 0.3)[t % 4]
        w1, w2 = w.clone().requires_grad_(), w.clone().requires_grad_()
        new, old = connect_isolated(w1, tau, affinity), _connect_previous(w2, tau, affinity)
        assert torch.equal(new, old), (t, B, H, W)
        g = torch.randn(new.shape, dtype=dtype, generator=gen)
        new.backward(g)
        old.backward(g)
        assert torch.equal(w1.grad, w2.grad), (t, B, H, W)
        with torch.no_grad():
            assert torch.equal(connect_isolated(w, tau, affinity), old)


def test_colour_weight_pieces_agree_with_and_without_autograd():
    from optisr.ops.lattice import edge_energy, weights_from_energy

    f = torch.rand(2, 3, 9, 11, dtype=torch.float64)
    mu = torch.tensor([0.2, 0.5], dtype=torch.float64, requires_grad=True)
    e = edge_energy(f, mu)
    w = weights_from_energy(e, 1e-3)
    assert float(e[:, 0, -1].abs().max()) == 0 and float(e[:, 1, :, -1].abs().max()) == 0
    ref = 1e-3 + (1 - 1e-3) * torch.exp(-e.detach())
    ref[:, 0, -1] = 0
    ref[:, 1, :, -1] = 0
    assert torch.equal(w.detach(), ref)
    with torch.no_grad():
        assert torch.equal(weights_from_energy(edge_energy(f, mu), 1e-3), w.detach())
    w.sum().backward()
    assert mu.grad is not None and bool(torch.isfinite(mu.grad).all())
