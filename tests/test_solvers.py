import math
import warnings

import pytest
import torch

from optisr.errors import ConvergenceWarning, ShapeError
from optisr.guided.layer import graph_solve
from optisr.ops.lattice import edge_weights
from optisr.ops.operators import OPERATORS, make_operator
from optisr.solvers.cg import cg_solve
from optisr.solvers.direct import solve_direct


def _problem(H, W, f, kind, *, dtype=torch.float64, near_zero=False, seed=0, batch=2):
    g = torch.Generator().manual_seed(seed)
    if near_zero:  # a noisy guide with a small μ: most weights ~1e-30 before the floor
        w = edge_weights(torch.rand(batch, 3, H, W, generator=g, dtype=dtype), 0.02, floor=0.0)
    else:
        w = torch.rand(batch, 2, H, W, generator=g, dtype=dtype) * 0.99 + 0.01
    op = make_operator(kind, (H, W), f)
    s = torch.rand(batch, 1, *op.lr_size, generator=g, dtype=dtype) * 255
    return w, s, op


@pytest.mark.parametrize("kind", OPERATORS)
@pytest.mark.parametrize("masked", [False, True])
def test_soft_matches_scipy_direct(kind, masked):
    w, s, op = _problem(13, 11, 3, kind)
    mask = (torch.rand(2, 1, *op.lr_size) > 0.25) if masked else None
    x = graph_solve(s, w, 3, operator=kind, mode="soft", lam=0.5, mask=mask, tol=1e-13, max_iter=10000, floor=0)
    ref = solve_direct(w * 0.5, s, op, mode="soft", mask=mask)
    assert float((x - ref).abs().max()) <= 1e-6 * 255


@pytest.mark.parametrize("kind", OPERATORS)
@pytest.mark.parametrize("masked", [False, True])
def test_exact_matches_scipy_kkt(kind, masked):
    w, s, op = _problem(14, 10, 4, kind)
    mask = (torch.rand(2, 1, *op.lr_size) > 0.25) if masked else None
    x = graph_solve(s, w, 4, operator=kind, mode="exact", mask=mask, tol=1e-12, max_iter=10000, floor=0)
    ref = solve_direct(w, s, op, mode="exact", mask=mask)
    assert float((x - ref).abs().max()) <= 1e-6 * 255


# exactness for every operator, odd / non-square sizes, scales 2..16, near-zero weights
CASES = [(31, 45, 2), (50, 37, 3), (44, 60, 4), (83, 61, 8), (100, 67, 16)]


@pytest.mark.parametrize("kind", OPERATORS)
@pytest.mark.parametrize("H,W,f", CASES)
@pytest.mark.parametrize("dtype,rel", [(torch.float64, 1e-5), (torch.float32, 1e-3)])
def test_exact_consistency(kind, H, W, f, dtype, rel):
    w, s, op = _problem(H, W, f, kind, dtype=dtype, near_zero=(f >= 8), batch=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        x = graph_solve(s, w, f, operator=kind, tol=1e-4, max_iter=300)
    rng = float(s.max() - s.min())
    assert x.dtype == dtype
    assert float((op.apply(x) - s).abs().max()) <= rel * rng


@pytest.mark.parametrize("kind", OPERATORS)
@pytest.mark.parametrize("f", [8, 16])
def test_stable_with_near_zero_weights(kind, f):
    """A smooth 0-255 source must not blow up whatever the weights (the floor keeps it well-posed)."""
    H = W = 64
    g = torch.Generator().manual_seed(1)
    w = edge_weights(torch.rand(1, 3, H, W, generator=g, dtype=torch.float64), 0.02, floor=0.0)
    depth = torch.nn.functional.interpolate(
        torch.rand(1, 1, 4, 4, generator=g, dtype=torch.float64) * 255, (H, W), mode="bilinear"
    )
    op = make_operator(kind, (H, W), f)
    s = op.apply(depth)
    x = graph_solve(s, w, f, operator=kind, tol=1e-5, max_iter=3000)
    assert float(x.min()) > -60 and float(x.max()) < 255 + 60
    assert float((x - depth).pow(2).mean().sqrt()) < 15


def test_masked_blocks_are_unconstrained_and_filled_smoothly():
    H = W = 32
    w = torch.ones(1, 2, H, W, dtype=torch.float64)
    op = make_operator("area", (H, W), 4)
    s = torch.full((1, 1, 8, 8), 10.0, dtype=torch.float64)
    s[..., 3:5, 3:5] = float("nan")  # a hole in the source
    x = graph_solve(s, w, 4)
    assert torch.allclose(x, torch.full_like(x, 10.0), atol=1e-6)
    s2 = torch.full((1, 1, 8, 8), 10.0, dtype=torch.float64)
    s2[..., 3:5, 3:5] = 1000.0
    m = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    m[..., 3:5, 3:5] = False
    x2 = graph_solve(s2, w, 4, mask=m)
    assert torch.allclose(x2, x, atol=1e-6)  # masked values have no influence
    with pytest.raises(ShapeError, match="no valid source pixel"):
        graph_solve(s, w, 4, mask=torch.zeros(1, 1, 8, 8, dtype=torch.bool))


def test_exact_solution_is_linear_and_translation_equivariant():
    w, s, op = _problem(24, 24, 4, "bicubic", batch=1)
    x = graph_solve(s, w, 4, operator="bicubic", tol=1e-11, max_iter=5000)
    x2 = graph_solve(3 * s + 7, w, 4, operator="bicubic", tol=1e-11, max_iter=5000)
    assert torch.allclose(x2, 3 * x + 7, atol=1e-6)


def test_batch_equals_per_sample():
    w, s, op = _problem(20, 28, 4, "area", batch=3)
    xb = graph_solve(s, w, 4, tol=1e-10)
    for i in range(3):
        xi = graph_solve(s[i : i + 1], w[i : i + 1], 4, tol=1e-10)
        assert torch.allclose(xb[i : i + 1], xi, atol=1e-7)


def test_cg_reports_nonconvergence():
    A = torch.diag(torch.logspace(0, 4, 50, dtype=torch.float64))
    b = torch.randn(1, 1, 50, 1, dtype=torch.float64)
    mv = lambda v: (A @ v[0, 0])[None, None]  # noqa: E731
    with pytest.warns(ConvergenceWarning, match="CG stopped"):
        _, info = cg_solve(mv, b, torch.zeros_like(b), tol=1e-12, max_iter=5)
    assert not bool(info.converged.all()) and int(info.iterations.max()) == 5
    with pytest.raises(RuntimeError):
        cg_solve(mv, b, torch.zeros_like(b), tol=1e-12, max_iter=5, on_nonconvergence="raise")
    x, info = cg_solve(mv, b, torch.zeros_like(b), tol=1e-10, max_iter=500)
    assert bool(info.converged.all())
    assert torch.allclose(A @ x[0, 0], b[0, 0], atol=1e-6)


def test_shape_errors():
    w = torch.ones(1, 2, 16, 16)
    with pytest.raises(ShapeError, match="needs 4×4"):
        graph_solve(torch.zeros(1, 1, 5, 4), w, 4)
    with pytest.raises(ShapeError):
        graph_solve(torch.zeros(1, 5, 4), w, 4)


@pytest.mark.parametrize("kind", ["area", "sum", "bicubic"])
@pytest.mark.parametrize("H,W", [(24, 32), (21, 30)])
def test_sub_adjoint_in_place_equals_out_of_place(kind, H, W):
    op = make_operator(kind, (H, W), 4)
    x = torch.randn(2, 3, H, W, dtype=torch.float64)
    y = torch.randn(2, 3, *op.lr_size, dtype=torch.float64)
    ref = x - op.adjoint(y)
    got = op.sub_adjoint_(x, y)
    assert got is x
    assert float((got - ref).abs().max()) <= 1e-12
