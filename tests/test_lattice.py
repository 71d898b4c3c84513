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
