"""The non-local smoothness term (optisr.guided.nonlocal_term): its operator, the solve with it, and auto's use of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import optisr
from optisr.data.synthetic import disparity_255, make_scene
from optisr.errors import ConfigError
from optisr.guided.layer import graph_solve
from optisr.guided.nonlocal_term import NONLOCAL_KAPPA, bilateral_laplacian, nonlocal_kappa
from optisr.ops.operators import make_operator
from optisr.solvers.direct import laplacian_matrix, operator_matrix
from optisr.solvers.graph import solve_soft


def _guide(h: int = 24, w: int = 20, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    g = np.zeros((3, h, w))
    g[:, :, w // 2 :] = 0.8
    g += rng.uniform(0, 0.02, g.shape)
    return torch.from_numpy(g)[None]


def _dense(op, n: int) -> np.ndarray:
    """The operator as a dense (n, n) matrix, column by column."""
    cols = []
    for k in range(n):
        e = torch.zeros(n, dtype=torch.float64)
        e[k] = 1.0
        cols.append(op(e.reshape(1, 1, 24, 20)).reshape(-1).numpy())
    return np.stack(cols, axis=1)


def test_the_term_is_a_symmetric_psd_laplacian_that_annihilates_constants():
    E = _dense(bilateral_laplacian(_guide(), 0.5), 24 * 20)
    np.testing.assert_allclose(E, E.T, atol=1e-12)
    np.testing.assert_allclose(E.sum(axis=1), 0.0, atol=1e-3)  # rows of Ŵ sum to 1 (10 Sinkhorn steps)
    assert np.linalg.eigvalsh(0.5 * (E + E.T)).min() > -1e-3
    # it links pixels of similar colour, not across the colour edge
    left, right = 0, 19  # first row: a pixel of each half
    assert E[left, right] == 0.0 and E[left, 1] < 0


def test_soft_solve_with_the_term_matches_a_dense_direct_solve():
    rng = np.random.default_rng(1)
    H, W, f = 24, 20, 4
    op = make_operator("area", (H, W), f)
    w = torch.from_numpy(rng.uniform(0.05, 1.0, (1, 2, H, W)))
    w[:, 0, -1, :] = 0
    w[:, 1, :, -1] = 0
    src = torch.from_numpy(rng.normal(size=(1, 1, H // f, W // f)))
    extra = bilateral_laplacian(_guide(), 0.3)
    x, info = solve_soft(w, src, op, extra=extra)
    D = operator_matrix(op).toarray()
    A = D.T @ D + laplacian_matrix(w[0].numpy()).toarray() + _dense(extra, H * W)
    ref = np.linalg.solve(A, D.T @ src.reshape(-1).numpy())
    np.testing.assert_allclose(x.reshape(-1).numpy(), ref, atol=1e-3 * np.abs(ref).max())


def test_graph_solve_takes_the_term_in_soft_mode_only_and_without_gradients():
    w = torch.full((1, 2, 24, 20), 0.5, dtype=torch.float64)
    src = torch.zeros((1, 1, 6, 5), dtype=torch.float64)
    extra = bilateral_laplacian(_guide(), 0.1)
    with pytest.raises(ConfigError, match="soft"):
        graph_solve(src, w, 4, mode="exact", extra_smoothness=extra)
    with pytest.raises(ConfigError, match="gradients"):
        graph_solve(src, w.requires_grad_(), 4, mode="soft", extra_smoothness=extra)


def test_kappa_by_scale_takes_the_nearest_listed_scale():
    assert NONLOCAL_KAPPA, "the shipped table is empty"
    low = min(NONLOCAL_KAPPA)
    assert nonlocal_kappa(low / 2) == 0.0
    for s, k in NONLOCAL_KAPPA.items():
        assert nonlocal_kappa(s) == k
    assert nonlocal_kappa(64) == NONLOCAL_KAPPA[max(NONLOCAL_KAPPA)]


def _noisy_case(scale: int = 8, sigma: float = 6.0, seed: int = 3):
    sc = make_scene(192, 240, seed=seed)
    hr = disparity_255(sc.depth_clean)
    lr = hr.reshape(hr.shape[0] // scale, scale, hr.shape[1] // scale, scale).mean(axis=(1, 3))
    lr = lr + np.random.default_rng(seed).normal(0, sigma, lr.shape)
    return hr, lr, sc.guide.astype(np.float32)


def test_auto_adds_the_term_to_a_noisy_soft_solve_and_reports_kappa():
    hr, lr, guide = _noisy_case()
    x, info = optisr.guided_upsample(lr, guide, 8, return_info=True)
    x0, info0 = optisr.guided_upsample(lr, guide, 8, return_info=True, nonlocal_smoothness=False)
    assert info.fidelity == "soft" and info.nonlocal_kappa == nonlocal_kappa(8) > 0
    assert info0.nonlocal_kappa is None and info.lam == info0.lam and info.floor == info0.floor
    assert info.solves == info0.solves  # the term rides on the refinement pass: no extra solve
    assert not np.allclose(x, x0)


def test_the_term_is_left_out_where_it_was_not_measured():
    hr, lr, guide = _noisy_case()
    for kwargs in ({"weights": "color"}, {"fidelity": "soft", "lam": 0.3}):
        _, info = optisr.guided_upsample(lr, guide, 8, return_info=True, **kwargs)
        assert info.nonlocal_kappa is None, kwargs
    clean = hr.reshape(24, 8, 30, 8).mean(axis=(1, 3))
    _, info = optisr.guided_upsample(clean, guide, 8, return_info=True)
    assert info.fidelity == "exact" and info.nonlocal_kappa is None
    with pytest.raises(ConfigError, match="nonlocal_smoothness"):
        optisr.guided_upsample(lr, guide, 8, nonlocal_smoothness="yes")


def test_tiled_solves_add_the_term_in_each_tile():
    hr, lr, guide = _noisy_case(scale=4)  # 192×240 at ×4 in 128-px tiles: 2 × 2 tiles
    x, info = optisr.guided_upsample(lr, guide, 4, return_info=True)
    xt, info_t = optisr.guided_upsample(lr, guide, 4, return_info=True, tile_size=128)
    x0 = optisr.guided_upsample(lr, guide, 4, tile_size=128, nonlocal_smoothness=False)
    assert info_t.nonlocal_kappa == info.nonlocal_kappa == nonlocal_kappa(4) > 0

    def rmse(a):
        return float(np.sqrt(np.mean((a - hr) ** 2)))

    assert abs(rmse(xt) - rmse(x)) < 0.02 * rmse(x)
    assert not np.allclose(xt, x0)
