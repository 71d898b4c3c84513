"""The guide's noise estimate and its noise-scaled bilateral pre-filter (optisr.guided.guide_filter)."""

import numpy as np
import pytest

from optisr.errors import ConfigError
from optisr.guided.guide_filter import estimate_guide_noise, filter_guide


def _ramp_and_step(h=96, w=96):
    """A smooth ramp with a vertical colour step of 0.4 at column w // 2, 3 channels in [0.2, 0.8]."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    g = 0.2 + 0.2 * x + 0.1 * y
    g = g + 0.3 * (np.arange(w) >= w // 2)[None, :]
    return np.repeat(g[:, :, None], 3, axis=2).astype(np.float32)


def _bilateral_reference(g, sigma_r, sigma_s):
    """Brute-force bilateral filter (Gaussian range on the colour distance, Gaussian space, replicated border)."""
    r = int(np.ceil(2 * sigma_s))
    H, W, _ = g.shape
    p = np.pad(g.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="edge")
    num = np.zeros((H, W, g.shape[2]))
    den = np.zeros((H, W, 1))
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx > r * r:  # OpenCV's window is the disc of radius r
                continue
            q = p[r + dy : r + dy + H, r + dx : r + dx + W]
            dist = np.abs(q - g).sum(axis=2, keepdims=True)  # OpenCV: L1 colour distance for 3 channels
            wgt = np.exp(-(dy * dy + dx * dx) / (2 * sigma_s**2)) * np.exp(-(dist**2) / (2 * sigma_r**2))
            num += wgt * q
            den += wgt
    return num / den


def test_noise_estimate_on_known_sigma_and_on_a_clean_guide():
    g = _ramp_and_step(128, 128)
    assert estimate_guide_noise(g) < 2e-3
    rng = np.random.default_rng(0)
    for sigma in (0.01, 0.05):
        noisy = g + rng.normal(0, sigma, g.shape).astype(np.float32)
        assert estimate_guide_noise(noisy) == pytest.approx(sigma, rel=0.15)
    # 8-bit guides are scaled to [0, 1]; 2-D guides are one channel
    as8 = np.clip(np.round((g + rng.normal(0, 0.05, g.shape)) * 255), 0, 255).astype(np.uint8)
    assert estimate_guide_noise(as8) == pytest.approx(0.05, rel=0.15)
    assert estimate_guide_noise(as8[:, :, 0]) == pytest.approx(0.05, rel=0.2)
    with pytest.raises(ConfigError, match="guide"):
        estimate_guide_noise(np.zeros((2, 3, 4, 5)))


def test_filter_removes_noise_and_keeps_an_edge_well_above_it():
    g = _ramp_and_step()
    rng = np.random.default_rng(1)
    noisy = (g + rng.normal(0, 0.03, g.shape)).astype(np.float32)
    out = filter_guide(noisy, estimate_guide_noise(noisy))
    assert out.shape == g.shape and out.dtype == np.float32
    flat = (slice(8, -8), slice(8, 40))
    assert np.std(out[flat] - g[flat]) < 0.5 * np.std(noisy[flat] - g[flat])
    # the step (0.3 = 10σ) keeps its height: the mean of the two columns beside it, before and after
    step_in = np.mean(noisy[:, 48] - noisy[:, 47])
    step_out = np.mean(out[:, 48] - out[:, 47])
    assert step_out == pytest.approx(step_in, rel=0.05)
    # sigma 0: unchanged
    assert np.array_equal(filter_guide(g, 0.0), g)


def test_filter_matches_a_brute_force_bilateral():
    rng = np.random.default_rng(2)
    g = (_ramp_and_step(24, 20) + rng.normal(0, 0.02, (24, 20, 3))).astype(np.float32)
    out = filter_guide(g, 0.02, k=3.0, space=1.0)
    ref = _bilateral_reference(g, 0.06, 1.0)
    assert np.abs(out - ref).max() < 2e-3


def test_only_guides_whose_noise_is_a_visible_share_of_their_contrast_are_filtered():
    from optisr.guided.guide_filter import GUIDE_NOISE_GATE, guide_spread, noisy_guide_sigma

    g = _ramp_and_step(128, 128)
    assert 0.5 < guide_spread(g) < 0.6  # 0.2 … 0.8 less the 0.5 % tails
    rng = np.random.default_rng(4)
    assert noisy_guide_sigma(g) is None  # clean
    weak = g + rng.normal(0, 0.3 * GUIDE_NOISE_GATE * guide_spread(g), g.shape).astype(np.float32)
    assert noisy_guide_sigma(weak) is None  # noise well below the gate: left as it is
    strong = g + rng.normal(0, 3 * GUIDE_NOISE_GATE * guide_spread(g), g.shape).astype(np.float32)
    assert noisy_guide_sigma(strong) == pytest.approx(estimate_guide_noise(strong))
    assert noisy_guide_sigma(weak, always=True) == pytest.approx(estimate_guide_noise(weak))
    assert noisy_guide_sigma(np.zeros((64, 64, 3), np.float32), always=True) is None  # no noise seen: nothing to do
    # 8-bit: the same decision in [0, 1] units
    as8 = np.clip(np.round(strong * 255), 0, 255).astype(np.uint8)
    assert noisy_guide_sigma(as8) == pytest.approx(estimate_guide_noise(strong), rel=0.1)


def test_filter_channel_counts_and_bad_arguments():
    rng = np.random.default_rng(3)
    g4 = rng.random((16, 12, 4)).astype(np.float32)
    out = filter_guide(g4, 0.05)
    assert out.shape == g4.shape
    assert np.allclose(out[:, :, 3], filter_guide(g4[:, :, 3], 0.05))  # one channel at a time
    assert filter_guide(g4[:, :, 0], 0.05).shape == (16, 12)
    for bad in ({"sigma": -1.0}, {"sigma": float("nan")}, {"sigma": 0.1, "k": 0.0}, {"sigma": 0.1, "space": -1.0}):
        with pytest.raises(ConfigError, match="filter_guide"):
            filter_guide(g4, **bad)


def _dim_scene(seed=5, size=96):
    """A procedural scene with its guide re-exposed as a dim, noisy indoor capture; area LR ×4."""
    from optisr.data.synthetic import make_scene
    from optisr.degrade.low_light import DIM_INDOOR, degrade_guide

    sc = make_scene(size, size, seed=seed)
    guide = degrade_guide(sc.guide.astype(np.float32), np.random.default_rng(seed), DIM_INDOOR)
    depth = sc.depth_clean.astype(np.float64)
    lr = depth.reshape(size // 4, 4, size // 4, 4).mean(axis=(1, 3))
    return guide, depth, lr


def test_guided_upsample_filters_guide_graphs_only_and_reports_the_noise():
    import torch

    import optisr

    from optisr.data.synthetic import make_scene

    guide, depth, lr = _dim_scene()
    sigma = estimate_guide_noise(guide)
    assert sigma > 0.02  # a dim capture is noisy
    # the same scene's clean rendered guide is left alone: the same result as guide_filter=False
    clean = make_scene(96, 96, seed=5).guide.astype(np.float32)
    y, info_c = optisr.guided_upsample(lr, clean, 4, weights="color", return_info=True)
    assert info_c.guide_sigma is None
    assert np.array_equal(y, optisr.guided_upsample(lr, clean, 4, weights="color", guide_filter=False))
    x, info = optisr.guided_upsample(lr, guide, 4, weights="color", return_info=True)
    ref = optisr.guided_upsample(lr, filter_guide(guide, sigma), 4, weights="color", guide_filter=False)
    assert info.guide_sigma == pytest.approx(sigma) and np.allclose(x, ref, atol=1e-6 * np.ptp(depth))
    # it matters, and for the better on a dim guide: the noise no longer cuts the graph
    raw, info_raw = optisr.guided_upsample(lr, guide, 4, weights="color", guide_filter=False, return_info=True)
    assert info_raw.guide_sigma is None
    rmse = lambda y: float(np.sqrt(np.mean((y - depth) ** 2)))  # noqa: E731
    assert rmse(x) < 0.95 * rmse(raw)
    # a tensor guide (C, H, W) gives the same result as the numpy one
    xt = optisr.guided_upsample(torch.from_numpy(lr), torch.from_numpy(guide).permute(2, 0, 1), 4, weights="color")
    assert np.allclose(xt.numpy(), x, atol=1e-5 * np.ptp(depth))
    # explicit weights are solved as given: the guide is not used, nor filtered
    from optisr.guided.graph_weights import color_weights

    w = color_weights(torch.from_numpy(guide).permute(2, 0, 1)[None].double())[0].numpy()
    _, info_w = optisr.guided_upsample(lr, guide, 4, weights=w, return_info=True)
    assert info_w.guide_sigma is None
    # "always" filters the clean guide too
    z, info_a = optisr.guided_upsample(lr, clean, 4, weights="color", guide_filter="always", return_info=True)
    assert info_a.guide_sigma is not None and info_a.guide_sigma == pytest.approx(estimate_guide_noise(clean))
    assert np.allclose(
        z,
        optisr.guided_upsample(lr, filter_guide(clean, info_a.guide_sigma), 4, weights="color", guide_filter=False),
        atol=1e-6 * np.ptp(depth),
    )
    with pytest.raises(ConfigError, match="guide_filter"):
        optisr.guided_upsample(lr, guide, 4, guide_filter="yes")


def test_tiled_solves_filter_each_tile_like_the_whole_guide():
    import optisr

    guide, _, lr = _dim_scene(seed=6, size=192)
    whole = optisr.guided_upsample(lr, guide, 4, weights="color", fidelity="exact", tile_size=0)
    tiled, info = optisr.guided_upsample(
        lr, guide, 4, weights="color", fidelity="exact", tile_size=128, return_info=True
    )
    assert info.guide_sigma == pytest.approx(estimate_guide_noise(guide))
    rng = np.ptp(whole)
    assert np.sqrt(np.mean((tiled - whole) ** 2)) <= 0.01 * rng  # as close as tiling is without the filter
    assert np.abs(tiled.reshape(48, 4, 48, 4).mean(axis=(1, 3)) - lr).max() <= 1e-3 * rng  # still exact
