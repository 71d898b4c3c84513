"""The aggregation multigrid preconditioner (optisr.solvers.multigrid) and the solvers that use it."""

import math

import pytest
import torch
from torch.autograd import gradcheck

from optisr.data.synthetic import make_scene
from optisr.errors import ConfigError
from optisr.guided.api import color_weights
from optisr.guided.layer import graph_solve
from optisr.ops.lattice import edge_weights, laplacian_apply
from optisr.ops.operators import OPERATORS, make_operator
from optisr.solvers.direct import solve_direct
from optisr.solvers.graph import SolverOptions, exact_hierarchy, solve_exact, solve_soft
from optisr.solvers.multigrid import Hierarchy


def _weights(H, W, *, near_floor, seed=0, batch=1):
    g = torch.Generator().manual_seed(seed)
    if near_floor:  # a noisy guide with a small μ: most weights at the 1e-3 floor
        return edge_weights(torch.rand(batch, 3, H, W, generator=g, dtype=torch.float64), 0.05, floor=1e-3)
    return torch.rand(batch, 2, H, W, generator=g, dtype=torch.float64) * 0.99 + 0.01


def _dense(fn, shape):
    """The matrix of a linear map on (1, 1, H, W) tensors, float64."""
    n = shape[-2] * shape[-1]
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 1, 1, *shape[-2:])
    return torch.stack([fn(e).reshape(-1) for e in eye], 1)


@pytest.mark.parametrize("kind", ["area", "sum"])
def test_coarse_levels_are_galerkin_products_on_aggregates_inside_blocks(kind):
    """Level 1 is Pᵀ (L + Bᵀ C B) P for piecewise-constant P; aggregates hold ≤ 4 pixels of one LR block."""
    H, W, f = 13, 18, 4
    w = _weights(H, W, near_floor=True, batch=2)
    op = make_operator(kind, (H, W), f)
    c = torch.rand(2, 1, *op.lr_size, dtype=torch.float64) * (torch.rand(2, 1, *op.lr_size) > 0.3)
    mg = Hierarchy(w, op, c, 1)
    assert mg.n_levels >= 3
    lv = mg.coarse[0]
    n_f = 2 * H * W
    P = torch.zeros(n_f, lv.n, dtype=torch.float64)
    P[torch.arange(n_f), lv.ids] = 1.0
    sizes = P.sum(0)
    assert int(sizes.min()) >= 1 and int(sizes.max()) <= 4 and lv.n < 0.4 * n_f
    rows, cols = torch.meshgrid(torch.arange(H) // f, torch.arange(W) // f, indexing="ij")
    block = (torch.arange(2)[:, None, None] * 1000 + rows * 100 + cols).reshape(-1).to(torch.float64)
    members_max = (P * block[:, None] - 1e9 * (1 - P)).amax(0)
    members_min = (P * block[:, None] + 1e9 * (1 - P)).amin(0)
    assert torch.equal(members_max, members_min)  # every aggregate lies in one LR block

    def fine(v):  # (n_f, k) -> (n_f, k): (L + Dᵀ C D) on every column
        x = v.T.reshape(-1, 2, 1, H, W).transpose(0, 1).reshape(2, -1, H, W)
        y = laplacian_apply(w, x) + op.adjoint(c * op.apply(x))
        return y.reshape(2, -1, 1, H * W).transpose(0, 1).reshape(-1, n_f).T

    A = fine(torch.eye(n_f, dtype=torch.float64))
    Ac = lv.matvec(torch.eye(lv.n, dtype=torch.float64))
    assert torch.allclose(P.T @ A @ P, Ac, atol=1e-12)


@pytest.mark.parametrize("kind", OPERATORS)
@pytest.mark.parametrize("H,W,f", [(13, 11, 2), (19, 17, 4), (33, 26, 8)])
@pytest.mark.parametrize("masked", [False, True])
def test_vcycle_is_symmetric_positive_definite(kind, H, W, f, masked):
    w = _weights(H, W, near_floor=True)
    op = make_operator(kind, (H, W), f)
    g = torch.Generator().manual_seed(3)
    c = torch.rand(1, 1, *op.lr_size, generator=g, dtype=torch.float64)
    if masked:
        c = c * (torch.rand(1, 1, *op.lr_size, generator=g) > 0.3)
    mg = Hierarchy(w, op, c, 1)
    assert mg.n_levels > 1
    M = _dense(mg, (H, W))
    assert torch.allclose(M, M.T, atol=1e-12 * float(M.abs().max()))
    assert float(torch.linalg.eigvalsh((M + M.T) / 2).min()) > 0
    # inner products on random vectors (the property CG relies on)
    u, v = torch.randn(2, 1, 1, H, W, generator=g, dtype=torch.float64)
    assert math.isclose(float((u * mg(v)).sum()), float((mg(u) * v).sum()), rel_tol=1e-10)
    assert float((u * mg(u)).sum()) > 0
    # the exact-mode preconditioner Π V Π is positive definite on null(D_c)
    mask = (c > 0) if masked else None
    mg_exact = exact_hierarchy(op, w, mask, 1)
    Me = _dense(lambda e: op.project_null(mg_exact(op.project_null(e, mask)), mask), (H, W))
    Z = torch.linalg.svd(_dense(lambda e: op.project_null(e, mask), (H, W)))[0]
    rank = H * W - int(mask.sum()) if masked else H * W - op.lr_size[0] * op.lr_size[1]
    Z = Z[:, :rank]  # orthonormal basis of null(D_c)
    assert torch.allclose(Me, Me.T, atol=1e-10 * float(Me.abs().max()))
    assert float(torch.linalg.eigvalsh(Z.T @ Me @ Z).min()) > 0


@pytest.mark.parametrize("kind", OPERATORS)
@pytest.mark.parametrize("H,W,f", [(27, 35, 2), (37, 29, 4), (45, 53, 8)])
@pytest.mark.parametrize("mode", ["exact", "soft"])
def test_multigrid_solutions_match_the_direct_solver(kind, H, W, f, mode):
    w = _weights(H, W, near_floor=(f == 8), seed=f)
    op = make_operator(kind, (H, W), f)
    g = torch.Generator().manual_seed(5)
    s = torch.rand(1, 1, *op.lr_size, generator=g, dtype=torch.float64) * 255
    mask = torch.rand(1, 1, *op.lr_size, generator=g) > 0.25 if f != 4 else None
    lam = 0.5 if mode == "soft" else 1.0
    x = graph_solve(
        s, w, f, operator=kind, mode=mode, lam=lam, mask=mask, tol=1e-13, max_iter=5000, floor=0, precond="multigrid"
    )
    ref = solve_direct(w * lam, s, op, mode=mode, mask=mask)
    assert float((x - ref).abs().max()) <= 1e-6 * 255


def _scene(n, f, kind):
    sc = make_scene(n, n, seed=7)
    depth = torch.from_numpy(sc.depth_clean)[None, None]
    w = color_weights(torch.from_numpy(sc.guide.transpose(2, 0, 1).copy())[None])
    op = make_operator(kind, (n, n), f)
    return w, op.apply(depth), op


@pytest.mark.parametrize("kind", ["area", "bicubic"])
def test_multigrid_needs_far_fewer_iterations_than_jacobi(kind):
    """On a procedural colour-graph scene at ×8, multigrid needs at most a third of Jacobi's iterations."""
    w, s, op = _scene(192, 8, kind)
    w = w.clamp_min(1e-3)
    for solve in (solve_soft, solve_exact):
        its = {}
        for pre in ("jacobi", "multigrid"):
            _x, info = solve(w, s, op, options=SolverOptions(tol=1e-6, max_iter=3000, precond=pre))
            its[pre] = int(info.iterations.max())
            assert bool(info.converged.all())
        assert its["multigrid"] <= its["jacobi"] / 3, (solve.__name__, its)


@pytest.mark.parametrize("mode", ["exact", "soft"])
@pytest.mark.parametrize("kind", ["area", "bicubic"])
def test_gradcheck_with_multigrid(mode, kind):
    H, W, f = 12, 11, 2
    h, w = math.ceil(H / f), math.ceil(W / f)
    wts = (torch.rand(2, 2, H, W, dtype=torch.float64) * 0.9 + 0.1).requires_grad_()
    s = torch.randn(2, 1, h, w, dtype=torch.float64).requires_grad_()
    mask = torch.rand(2, 1, h, w) > 0.2

    def fn(wts, s):
        return graph_solve(
            s,
            wts,
            f,
            operator=kind,
            mode=mode,
            lam=0.7,
            mask=mask,
            tol=1e-13,
            max_iter=5000,
            floor=0,
            precond="multigrid",
        )

    assert gradcheck(fn, (wts, s), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_unknown_preconditioner_is_rejected():
    with pytest.raises(ValueError, match="precond"):
        SolverOptions(precond="ilu")


@pytest.mark.parametrize("kind", ["area", "sum"])
@pytest.mark.parametrize("masked", [False, True])
def test_constrained_hierarchy_keeps_the_constraint_on_every_level(kind, masked):
    """Exact mode, block operators: each level is the Galerkin Laplacian Pᵀ L P, its smoother keeps
    D_k z = 0 with D_k = D P (one row per LR block), and V maps into null(D) and ignores range(Dᵀ)."""
    H, W, f = 21, 26, 4  # partial blocks on both axes
    w = _weights(H, W, near_floor=True, batch=2)
    op = make_operator(kind, (H, W), f)
    g = torch.Generator().manual_seed(4)
    c = (torch.rand(2, 1, *op.lr_size, generator=g) > 0.3).to(torch.float64) if masked else torch.ones(())
    mg = Hierarchy(w, op, c, 1, fine_data="constraint")
    assert mg.n_levels >= 3
    on = c.expand(2, 1, *op.lr_size) > 0  # constrained blocks
    n_f = 2 * H * W

    def to_img(v):  # (n_f, k) -> (k, 2, 1, H, W) -> batch of images
        return v.T.reshape(-1, 2, 1, H, W)

    P = torch.eye(n_f, dtype=torch.float64)
    for lv in mg.coarse:
        Pk = torch.zeros(P.shape[1], lv.n, dtype=torch.float64)
        Pk[torch.arange(P.shape[1]), lv.ids] = 1.0
        P = P @ Pk  # fine -> level k prolongation
        cols = to_img(P)  # (n_k, 2, 1, H, W)
        L_k = torch.stack([laplacian_apply(w, x).reshape(-1) for x in cols], 1)
        assert torch.allclose(P.T @ L_k, lv.matvec(torch.eye(lv.n, dtype=torch.float64)), atol=1e-12)
        DP = torch.stack([op.apply(x).reshape(-1) for x in cols], 1)  # (2·h·w, n_k): D P
        Dk = torch.zeros_like(DP)
        Dk[lv.blk, torch.arange(lv.n)] = lv.d[:, 0]
        assert torch.allclose(DP, Dk, atol=1e-14)
        r = torch.randn(lv.n, 1, generator=g, dtype=torch.float64)
        z = lv.smooth(r)  # (zero where a block holds one node: nothing is free there)
        assert float((Dk @ z)[on.reshape(-1)].abs().max()) < 1e-12 * float((lv.inv_d * r).abs().max())
    r = torch.randn(2, 1, H, W, generator=g, dtype=torch.float64)
    z = mg(r)
    assert float(op.apply(z)[on].abs().max()) < 1e-12 * float(z.abs().max())
    y = torch.randn(2, 1, *op.lr_size, generator=g, dtype=torch.float64) * on
    assert float(mg(op.adjoint(y)).abs().max()) < 1e-10 * float(op.adjoint(y).abs().max())


def test_constrained_multigrid_needs_fewer_iterations_than_the_penalty(monkeypatch):
    """1024² ×8 (benchmarks/solver.py): 24 CG iterations against 45; here on a 256² scene."""
    from optisr.solvers import graph

    w, s, op = _scene(256, 8, "area")
    its = {}
    for constrained in (True, False):
        monkeypatch.setattr(graph, "CONSTRAINED_MULTIGRID", constrained)
        _x, info = solve_exact(w, s, op, options=SolverOptions(tol=1e-6, max_iter=500, precond="multigrid"))
        assert bool(info.converged.all())
        its[constrained] = int(info.iterations.max())
    assert its[True] <= 0.75 * its[False], its


def test_constraint_mode_needs_a_block_operator():
    w = _weights(16, 16, near_floor=False)
    with pytest.raises(ConfigError, match="block operator"):
        Hierarchy(w, make_operator("bicubic", (16, 16), 4), torch.ones(()), 1, fine_data="constraint")


def test_public_api_and_cli_take_the_preconditioner(tmp_path, monkeypatch):
    """guided_upsample / tiled solves / optisr guided --precond multigrid: the V-cycle is built, same result."""
    import numpy as np

    from optisr.solvers import multigrid

    built = []
    real_init = multigrid.Hierarchy.__init__

    def counting_init(self, *args, **kwargs):
        built.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(multigrid.Hierarchy, "__init__", counting_init)

    def uses_multigrid(fn):
        built.clear()
        out = fn()
        return out, bool(built)

    import optisr
    from optisr.cli.main import main
    from optisr.guided.tiling import tiled_guided_upsample
    from optisr.io.images import write_image

    sc = make_scene(128, 160, seed=3)
    guide = np.ascontiguousarray(sc.guide, dtype=np.float32)
    op = make_operator("area", guide.shape[:2], 8)
    src = op.apply(torch.from_numpy(sc.depth_clean.astype(np.float32))[None, None])[0, 0].numpy()
    rng = float(src.max() - src.min())
    noisy = src + np.random.default_rng(0).normal(0, 0.02 * rng, src.shape).astype(np.float32)
    for s in (src, noisy):  # exact, and auto -> soft with its λ search
        a, used_a = uses_multigrid(lambda s=s: optisr.guided_upsample(s, guide, 8, weights="color", tol=1e-6))
        b, used_b = uses_multigrid(
            lambda s=s: optisr.guided_upsample(s, guide, 8, weights="color", tol=1e-6, precond="multigrid")
        )
        assert (used_a, used_b) == (False, True)
        assert float(np.abs(a - b).max()) < 1e-3 * rng
    a = tiled_guided_upsample(src, guide, 8, tile=64, tol=1e-6)
    b, used = uses_multigrid(lambda: tiled_guided_upsample(src, guide, 8, tile=64, tol=1e-6, precond="multigrid"))
    assert used and float(np.abs(a - b).max()) < 1e-3 * rng
    with pytest.raises(ConfigError, match="precond must be one of"):
        optisr.guided_upsample(src, guide, 8, precond="ilu")
    with pytest.raises(ConfigError, match="precond must be one of"):
        tiled_guided_upsample(src, guide, 8, tile=64, precond="ilu")
    write_image(tmp_path / "rgb.png", (guide * 255).round().astype(np.uint8))
    np.save(tmp_path / "lr.npy", src)
    common = ["guided", "--guide", str(tmp_path / "rgb.png"), "--source", str(tmp_path / "lr.npy"), "--scale", "8",
              "--method", "color", "--quiet", "--tol", "1e-6"]  # fmt: skip
    assert main([*common, "-o", str(tmp_path / "j.npy")]) == 0
    rc, used = uses_multigrid(lambda: main([*common, "-o", str(tmp_path / "m.npy"), "--precond", "multigrid"]))
    assert rc == 0 and used
    j, m = np.load(tmp_path / "j.npy"), np.load(tmp_path / "m.npy")
    assert float(np.abs(j - m).max()) < 1e-3 * rng
