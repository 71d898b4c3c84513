import math

import pytest
import torch
from torch.autograd import gradcheck

from optisr.guided.layer import GraphRegularisation, graph_solve
from optisr.ops.operators import OPERATORS


@pytest.mark.parametrize("mode", ["exact", "soft"])
@pytest.mark.parametrize("kind", OPERATORS)
def test_gradcheck(mode, kind):
    H, W, f = 9, 11, 3
    h, w = math.ceil(H / f), math.ceil(W / f)
    wts = (torch.rand(2, 2, H, W, dtype=torch.float64) * 0.9 + 0.1).requires_grad_()
    s = torch.randn(2, 1, h, w, dtype=torch.float64).requires_grad_()
    lam = torch.tensor(0.7, dtype=torch.float64, requires_grad=(mode == "soft"))
    mask = torch.rand(2, 1, h, w) > 0.2

    def fn(wts, s, lam):
        return graph_solve(s, wts, f, operator=kind, mode=mode, lam=lam, mask=mask, tol=1e-13, max_iter=5000, floor=0)

    assert gradcheck(fn, (wts, s, lam), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("mode", ["exact", "soft"])
@pytest.mark.parametrize("kind", ["area", "bicubic"])
def test_gradcheck_full_jacobian(mode, kind):
    """Every entry of the Jacobian (not only random projections) on a tiny masked problem."""
    H, W, f = 6, 7, 2
    wts = (torch.rand(1, 2, H, W, dtype=torch.float64) * 0.9 + 0.1).requires_grad_()
    s = torch.randn(1, 1, 3, 4, dtype=torch.float64).requires_grad_()
    mask = torch.ones(1, 1, 3, 4, dtype=torch.bool)
    mask[..., 1, 2] = False

    def fn(wts, s):
        return graph_solve(s, wts, f, operator=kind, mode=mode, lam=0.5, mask=mask, tol=1e-13, max_iter=5000, floor=0)

    assert gradcheck(fn, (wts, s), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradients_reach_features_mu_and_lambda():
    layer = GraphRegularisation(2, mode="soft", tol=1e-10, max_iter=2000).double()
    feats = torch.randn(1, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    s = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    out = layer(s, feats)
    out.square().sum().backward()
    assert feats.grad is not None and float(feats.grad.abs().sum()) > 0
    assert float(layer.log_mu.grad.abs()) > 0 and float(layer.log_lam.grad.abs()) > 0


def test_implicit_gradient_matches_dense_solve():
    """The adjoint gradient equals autograd through a dense torch.linalg.solve of the KKT system."""
    from optisr.ops.lattice import laplacian_apply
    from optisr.ops.operators import make_operator

    H, W, f = 6, 6, 2
    op = make_operator("bicubic", (H, W), f)
    wts = (torch.rand(1, 2, H, W, dtype=torch.float64) * 0.9 + 0.1).requires_grad_()
    s = torch.randn(1, 1, 3, 3, dtype=torch.float64)
    target = torch.randn(1, 1, H, W, dtype=torch.float64)
    x = graph_solve(s, wts, f, operator="bicubic", tol=1e-13, max_iter=5000, floor=0)
    ((x - target) ** 2).sum().backward()
    g_impl = wts.grad.clone()

    wts2 = wts.detach().clone().requires_grad_()
    N = H * W
    eye = torch.eye(N, dtype=torch.float64).reshape(N, 1, H, W)
    L = laplacian_apply(wts2.expand(N, -1, -1, -1), eye).reshape(N, N)
    D = op.apply(eye).reshape(N, -1).T
    n = D.shape[0]
    K = torch.cat([torch.cat([L, D.T], 1), torch.cat([D, torch.zeros(n, n, dtype=torch.float64)], 1)], 0)
    rhs = torch.cat([torch.zeros(N, dtype=torch.float64), s.flatten()])
    x2 = torch.linalg.solve(K, rhs)[:N].reshape(1, 1, H, W)
    assert torch.allclose(x2, x.detach(), atol=1e-9)
    ((x2 - target) ** 2).sum().backward()
    g_ref = wts2.grad.clone()
    g_ref[:, 0, -1] = 0
    g_ref[:, 1, :, -1] = 0
    assert torch.allclose(g_impl, g_ref, atol=1e-7)
