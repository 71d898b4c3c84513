"""Noise correlated over a few source pixels: the block-level check of ``fidelity="auto"``
(optisr.guided.fidelity.estimate_correlated_sigma, CORRELATED_ABOVE / CORRELATED_TAU)."""

import numpy as np
import pytest
import torch
from scipy import ndimage

import optisr
from optisr.data.synthetic import make_scene
from optisr.guided.api import _block_means
from optisr.guided.fidelity import (
    CORRELATED_ABOVE,
    CORRELATED_POOL,
    CORRELATED_TAU,
    EXACT_BELOW,
    choose_fidelity,
    estimate_correlated_sigma,
    estimate_noise_sigma,
    pool_blocks,
    source_spread,
)
from optisr.ops.operators import make_operator


def _scene(seed: int, size: int = 384):
    sc = make_scene(size, size, seed=seed)
    z = sc.depth_clean.astype(np.float64)
    return sc.guide, 50.0 + (z - z.min()) / (z.max() - z.min()) * 200.0


def _lr(hr: np.ndarray, f: int) -> np.ndarray:
    return make_operator("area", hr.shape, f).apply(torch.from_numpy(hr)).numpy()


def _correlated(shape, corr: float, seed: int) -> np.ndarray:
    n = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), corr)
    return n / n.std()


def _rmse(x, y) -> float:
    return float(np.sqrt(np.mean((np.asarray(x, np.float64) - y) ** 2)))


def test_pool_blocks_against_a_loop():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 10, 13))
    a[0, 1, 1] = np.nan
    mask = np.ones_like(a, bool)
    mask[1, 9, 3] = False  # in no whole block: rows 8-9 are dropped at block 4
    mask[1, 5, 6] = False
    got = pool_blocks(a, 4, mask)
    assert got.shape == (2, 2, 3)
    for n in range(2):
        for i in range(2):
            for j in range(3):
                blk, ok = a[n, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4], mask[n, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4]
                want = blk.mean() if ok.all() and np.isfinite(blk).all() else np.nan
                np.testing.assert_allclose(got[n, i, j], want, rtol=1e-12)
    assert np.isnan(got[0, 0, 0]) and np.isnan(got[1, 1, 1]) and np.isfinite(got[1, 0, 0])
    # the solver's residual pooling agrees
    r = torch.from_numpy(np.nan_to_num(a)[:, None])
    valid = torch.from_numpy(mask & np.isfinite(a))[:, None]
    np.testing.assert_allclose(_block_means(r, valid, 4)[:, 0].numpy(), got, rtol=1e-12)


def test_block_sigma_sees_correlated_noise_and_not_white_or_clean():
    _, hr = _scene(2100)
    s = _lr(hr, 2)  # 192² LR
    spread = source_spread(s)
    assert estimate_correlated_sigma(s) < 1e-3 * spread  # piecewise smooth: block means are too
    white = 3.0 * np.random.default_rng(1).normal(size=s.shape)
    est = estimate_correlated_sigma(s + white)
    assert abs(est / (3.0 / CORRELATED_POOL) - 1) < 0.2, est  # white: σ / block
    assert abs(estimate_noise_sigma(s + white) / 3.0 - 1) < 0.15
    corr = 8.0 * _correlated(s.shape, 2.0, 2)
    fine, block = estimate_noise_sigma(s + corr), estimate_correlated_sigma(s + corr)
    assert fine < EXACT_BELOW * spread <= CORRELATED_ABOVE * spread <= block, (fine, block, spread)
    # masks and tensors as estimate_noise_sigma takes them
    t = torch.from_numpy(s + corr)
    assert estimate_correlated_sigma(t) == pytest.approx(block)
    mask = np.ones(s.shape, bool)
    mask[:40, :40] = False
    assert estimate_correlated_sigma(s + corr, mask) == pytest.approx(block, rel=0.25)
    assert estimate_correlated_sigma(s[:60, :60] + corr[:60, :60]) == 0.0  # too few blocks


def test_auto_takes_the_correlated_branch_only_when_estimated():
    _, hr = _scene(2101)
    s = _lr(hr, 2)
    noisy = s + 8.0 * _correlated(s.shape, 2.0, 3)
    choice, lam = choose_fidelity(noisy, 2)
    assert choice.fidelity == "soft" and choice.correlated and choice.sigma_estimated and lam == choice.lam > 0
    assert choice.noise_sigma == pytest.approx(estimate_correlated_sigma(noisy))
    clean, _ = choose_fidelity(s, 2)
    assert clean.fidelity == "exact" and not clean.correlated
    given, _ = choose_fidelity(noisy, 2, noise_sigma=0.0)  # the user's σ: no second guess
    assert given.fidelity == "exact" and not given.correlated
    white, _ = choose_fidelity(s + 6.0 * np.random.default_rng(4).normal(size=s.shape), 2)
    assert white.fidelity == "soft" and not white.correlated  # seen at full resolution already
    for fidelity in ("exact", "soft"):
        assert not choose_fidelity(noisy, 2, fidelity=fidelity, noise_sigma=1.0)[0].correlated


def test_auto_on_correlated_noise_matches_the_block_discrepancy_and_beats_exact():
    errs = {"auto": [], "exact": []}
    for seed in (2102, 2103):
        guide, hr = _scene(seed)
        f = 2
        s = _lr(hr, f)
        noisy = s + 10.0 * _correlated(s.shape, 2.0, seed)
        out, info = optisr.guided_upsample(noisy, guide, f, weights="color", return_info=True)
        assert info.correlated and info.fidelity == "soft" and info.floor is None and 1 <= info.solves
        # λ solves the discrepancy equation on block means (within the search's tolerance), unrefined
        x = optisr.guided_upsample(noisy, guide, f, weights="color", fidelity="soft", lam=info.lam, refine=0)
        r = make_operator("area", hr.shape, f).apply(torch.from_numpy(x)).numpy() - noisy
        blocks = pool_blocks(r, CORRELATED_POOL)
        ratio = np.sqrt(np.nanmean(blocks**2)) / info.noise_sigma
        assert abs(ratio / CORRELATED_TAU - 1) < 0.1, ratio
        errs["auto"].append(_rmse(out, hr))
        errs["exact"].append(_rmse(optisr.guided_upsample(noisy, guide, f, weights="color", fidelity="exact"), hr))
    assert np.mean(errs["auto"]) < 0.9 * np.mean(errs["exact"]), errs


def test_tiled_auto_takes_the_same_branch():
    guide, hr = _scene(2104)
    s = _lr(hr, 2)
    noisy = s + 10.0 * _correlated(s.shape, 2.0, 5)
    _, whole = optisr.guided_upsample(noisy, guide, 2, weights="color", return_info=True)
    tiled, info = optisr.guided_upsample(noisy, guide, 2, weights="color", tile_size=256, return_info=True)
    assert info.correlated and whole.correlated and info.lam > 0
    assert 0.2 < info.lam / whole.lam < 5  # the λ of a central crop, the same order
    assert _rmse(tiled, hr) < _rmse(optisr.guided_upsample(noisy, guide, 2, weights="color", fidelity="exact"), hr)
