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
                    ext = [e for e in p_edges if not (e[0] == 0 and e[1] == i)] + \
                          [e for e in q_edges if not (e[0] == 0 and e[1] == i)]
                else:  # up_p, down_p, left_p, up_q, down_q, right_q
                    ext = [e for e in p_edges if not (e[0] == 1 and e[2] == j)] + \
                          [e for e in q_edges if e[0] == 0] + [e for e in q_edges if e[0] == 1 and e[2] == j + 1]
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
