"""Tests for the fast bilateral solver (optisr.guided.fbs) against a dense, obvious reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from optisr.errors import ConfigError, ShapeError
from optisr.guided.fbs import BilateralGrid, bistochastize, fast_bilateral_solve, grid_coordinates


def _dense_reference(target, guide, conf, sigma_spatial, sigma_luma, sigma_chroma, lam):
    """The FBS solution built the slow way: a python dict of vertices, dense S, B and a direct solve."""
    H, W = target.shape
    rgb = guide.astype(np.float64) * 255.0
    coords = []
    for i in range(H):
        for j in range(W):
            r, g, b = rgb[i, j]
            y = 0.299 * r + 0.587 * g + 0.114 * b
            cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
            cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
            values = (i / sigma_spatial, j / sigma_spatial, y / sigma_luma, cb / sigma_chroma, cr / sigma_chroma)
            coords.append(tuple(int(np.floor(v + 0.5)) for v in values))
    vertices = {}
    for c in coords:
        vertices.setdefault(c, len(vertices))
    m = len(vertices)
    S = np.zeros((m, H * W))
    for p, c in enumerate(coords):
        S[vertices[c], p] = 1.0
    dims = 5
    B = 2.0 * dims * np.eye(m)
    for c, a in vertices.items():
        for d in range(dims):
            for step in (-1, 1):
                nb = list(c)
                nb[d] += step
                if tuple(nb) in vertices:
                    B[a, vertices[tuple(nb)]] += 1.0
    mass = S @ np.ones(H * W)
    n = np.ones(m)
    for _ in range(10):
        n = np.sqrt(n * mass / (B @ n))
    mass = n * (B @ n)
    cflat = np.maximum(conf.ravel(), 1e-5)  # optisr's confidence floor
    A = lam * (np.diag(mass) - np.diag(n) @ B @ np.diag(n)) + np.diag(np.maximum(S @ cflat, 1e-5))
    y = np.linalg.solve(A, S @ (cflat * target.ravel()))
    return (S.T @ y).reshape(H, W), m


def test_matches_dense_reference_on_a_tiny_image():
    rng = np.random.default_rng(3)
    H, W = 9, 11
    guide = np.zeros((H, W, 3))
    guide[:, : W // 2] = [0.2, 0.3, 0.1]
    guide[:, W // 2 :] = [0.8, 0.6, 0.9]
    guide += rng.normal(0, 0.02, guide.shape)
    guide = np.clip(guide, 0, 1)
    target = rng.normal(size=(H, W)) + 3 * (np.arange(W) >= W // 2)
    conf = rng.uniform(0.0, 1.0, (H, W))
    conf[2:4, 1:3] = 0.0
    params = {"sigma_spatial": 3.0, "sigma_luma": 8.0, "sigma_chroma": 8.0, "lam": 5.0}
    expected, m = _dense_reference(target, guide, conf, **params)
    assert 4 < m < H * W  # a real grid: several vertices, fewer than pixels
    got = fast_bilateral_solve(target, guide, conf, **params, max_iter=500, tol=1e-13)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_grid_blur_matches_a_dense_neighbour_matrix():
    rng = np.random.default_rng(0)
    guide = rng.random((6, 7, 3))
    coords = grid_coordinates(guide, 2.0, 40.0, 60.0)
    grid = BilateralGrid.from_coordinates(coords, (6, 7))
    keys = {tuple(c) for c in coords.tolist()}
    assert grid.n_vertices == len(keys)
    # the vertex of each pixel is one vertex per distinct coordinate
    index = {}
    for c, v in zip(map(tuple, coords.tolist()), grid.vertex_of, strict=True):
        assert index.setdefault(c, v) == v
    inv = {v: c for c, v in index.items()}
    y = rng.normal(size=grid.n_vertices)
    for v in range(grid.n_vertices):
        want = 10.0 * y[v]
        for d in range(5):
            for step in (-1, 1):
                nb = list(inv[v])
                nb[d] += step
                if tuple(nb) in index:
                    want += y[index[tuple(nb)]]
        assert grid.blur(y)[v] == pytest.approx(want)
    n, m = bistochastize(grid, 30)
    np.testing.assert_allclose(n * grid.blur(n), m)
    np.testing.assert_allclose(m, grid.splat(np.ones(42)), rtol=1e-3)  # converged Sinkhorn: masses kept


def test_constant_target_is_a_fixed_point():
    rng = np.random.default_rng(1)
    guide = rng.random((40, 50, 3))
    conf = rng.random((40, 50))
    out = fast_bilateral_solve(np.full((40, 50), 7.5), guide, conf)
    np.testing.assert_allclose(out, 7.5, atol=1e-9)


def test_zero_confidence_pixels_are_filled_from_their_segment():
    H, W = 48, 64
    guide = np.zeros((H, W, 3))
    guide[:, W // 2 :] = 1.0
    target = np.where(np.arange(W)[None, :] < W // 2, 10.0, 50.0) * np.ones((H, 1))
    conf = np.ones((H, W))
    conf[10:30, 5:25] = 0.0  # a hole in the left segment
    conf[20:40, 40:60] = 0.0  # and one in the right segment
    garbage = target.copy()
    garbage[conf == 0] = 1e4  # the target there must not matter
    garbage[15, 10] = np.nan
    out = fast_bilateral_solve(garbage, guide, conf, lam=128.0)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[10:30, 5:25], 10.0, atol=0.05)
    np.testing.assert_allclose(out[20:40, 40:60], 50.0, atol=0.05)


def test_noisy_step_is_recovered_better_than_gaussian_smoothing():
    rng = np.random.default_rng(7)
    H, W = 64, 96
    truth = np.where(np.arange(W)[None, :] < 40, 20.0, 80.0) * np.ones((H, 1))
    guide = np.where(truth[:, :, None] < 50, 0.25, 0.75) * np.ones((1, 1, 3))
    noisy = truth + rng.normal(0, 6.0, truth.shape)
    fbs_err = np.sqrt(np.mean((fast_bilateral_solve(noisy, guide) - truth) ** 2))
    gauss_err = min(np.sqrt(np.mean((ndimage.gaussian_filter(noisy, s) - truth) ** 2)) for s in (1.0, 2.0, 4.0))
    assert fbs_err < 0.5 * gauss_err and fbs_err < 1.5, (fbs_err, gauss_err)


def test_grey_guide_and_luma_only_grid():
    rng = np.random.default_rng(2)
    grey = rng.random((20, 30))
    assert grid_coordinates(grey, 4.0, 8.0, 8.0).shape == (600, 3)
    assert grid_coordinates(np.dstack([grey] * 3), 4.0, 8.0, None).shape == (600, 3)
    out = fast_bilateral_solve(rng.normal(size=(20, 30)), grey)
    assert out.shape == (20, 30) and out.dtype == np.float64


def test_bad_inputs_raise_one_line_errors():
    guide = np.zeros((8, 8, 3))
    with pytest.raises(ShapeError):
        fast_bilateral_solve(np.zeros((8, 9)), guide)
    with pytest.raises(ConfigError):
        fast_bilateral_solve(np.full((8, 8), np.nan), guide)
    with pytest.raises(ConfigError):
        fast_bilateral_solve(np.zeros((8, 8)), guide, -np.ones((8, 8)))
    with pytest.raises(ConfigError):
        fast_bilateral_solve(np.zeros((8, 8)), guide, sigma_luma=0.0)
    with pytest.raises(ConfigError):
        fast_bilateral_solve(np.zeros((8, 8)), np.full((8, 8, 3), np.nan))
