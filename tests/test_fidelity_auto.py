"""Noise estimation on the LR source and ``fidelity="auto"`` (optisr.guided.fidelity, guided_upsample)."""

import numpy as np
import pytest
import torch

import optisr
from optisr.data.synthetic import make_scene
from optisr.errors import ConfigError, ShapeError
from optisr.guided.baselines import bicubic
from optisr.guided.fidelity import (
    EXACT_BELOW,
    MIN_WINDOWS,
    FLOOR_STEPS,
    FidelityChoice,
    choose_fidelity,
    estimate_noise_sigma,
    rule_lambda,
    source_spread,
)
from optisr.ops.operators import make_operator


@pytest.fixture(scope="module")
def scenes():
    """Procedural RGB-D scenes, depth rescaled to 0–255: (guide (H, W, 3), hr (H, W) float64)."""
    out = []
    for seed in (11, 12, 13):
        sc = make_scene(192, 192, seed=seed)
        z = sc.depth_clean.astype(np.float64)
        out.append((sc.guide, (z - z.min()) / (z.max() - z.min()) * 255.0))
    return out


def _lr(hr: np.ndarray, f: int, kind: str = "area") -> np.ndarray:
    return make_operator(kind, hr.shape, f).apply(torch.from_numpy(hr)).numpy()


def _rmse(x, y) -> float:
    return float(np.sqrt(np.mean((np.asarray(x, np.float64) - y) ** 2)))


@pytest.mark.parametrize("f,kind", [(2, "area"), (4, "area"), (4, "bicubic")])
def test_estimator_recovers_known_sigma(f, kind):
    """Stated tolerance: LR grids ≥ 64² px; 20 % at σ = 1 % of the range, 15 % from 2.5 % up."""
    rng = np.random.default_rng(f)
    for seed in (2000, 2001, 2002):
        z = make_scene(256, 256, seed=seed).depth_clean.astype(np.float64)
        s = _lr((z - z.min()) / (z.max() - z.min()) * 255.0, f, kind)
        for sigma, tol in ((2.55, 0.2), (6.0, 0.15), (10.0, 0.15), (25.0, 0.15)):
            est = estimate_noise_sigma(s + rng.normal(0.0, sigma, s.shape))
            assert abs(est / sigma - 1) < tol, (seed, sigma, est)


def test_estimator_bias_on_small_lr_grids_is_upward_and_bounded(scenes):
    """24×24 LR grids of edge-dense scenes: edges comparable to σ bias σ̂ up (measured ≤ +65 %)."""
    rng = np.random.default_rng(8)
    for _, hr in scenes:
        s = _lr(hr, 8)
        est = estimate_noise_sigma(s + rng.normal(0.0, 6.0, s.shape))
        assert 0.9 * 6.0 < est < 1.7 * 6.0


def test_estimator_is_zero_on_clean_and_quantised_sources(scenes):
    for f in (2, 4, 8):
        for _, hr in scenes:
            s = _lr(hr, f)
            assert estimate_noise_sigma(s) < 0.25 * EXACT_BELOW * source_spread(s)
            assert estimate_noise_sigma(s.astype(np.float32)) < 0.25 * EXACT_BELOW * 255
            assert estimate_noise_sigma(np.round(s).astype(np.uint8)) < 0.5 * EXACT_BELOW * 255
            s16 = np.round(s / 255 * 65535).astype(np.uint16)
            assert estimate_noise_sigma(s16) < 0.25 * EXACT_BELOW * 65535
            # a quantised HR (8-bit disparity) block-averaged, as in protocol A
            assert estimate_noise_sigma(_lr(np.round(hr), f)) < 0.25 * EXACT_BELOW * 255
    # exactly planar and constant maps: exactly 0
    yy, xx = np.mgrid[:40, :50]
    assert estimate_noise_sigma(3.0 * xx - 2.0 * yy + 7.0) == pytest.approx(0.0, abs=1e-9)
    assert estimate_noise_sigma(np.full((40, 50), 5.0)) == 0.0


def test_estimator_masks_nan_torch_and_small_inputs():
    rng = np.random.default_rng(0)
    xx = np.mgrid[:64, :64][1]
    s = 0.5 * xx + rng.normal(0.0, 2.0, (64, 64))
    ref = estimate_noise_sigma(s)
    assert abs(ref / 2.0 - 1) < 0.1
    wild = s.copy()
    wild[10:20, 10:20] = 1e6  # junk in a masked-out block ...
    mask = np.ones_like(s, bool)
    mask[10:20, 10:20] = False
    assert estimate_noise_sigma(wild, mask) == pytest.approx(estimate_noise_sigma(np.where(mask, s, np.nan)))
    assert abs(estimate_noise_sigma(wild, mask) / 2.0 - 1) < 0.1
    assert estimate_noise_sigma(torch.from_numpy(s)[None, None]) == pytest.approx(ref)
    # fewer than MIN_WINDOWS complete 3×3 windows: no estimate (0), so auto stays exact
    side = int(np.sqrt(MIN_WINDOWS)) + 1
    assert estimate_noise_sigma(rng.normal(0.0, 5.0, (side, side))) == 0.0
    assert estimate_noise_sigma(rng.normal(0.0, 5.0, (side + 2, side + 2))) > 0.0
    with pytest.raises(ShapeError):
        estimate_noise_sigma([1.0, 2.0])


def test_auto_on_a_clean_source_is_bit_identical_to_exact(scenes):
    guide, hr = scenes[0]
    for f in (4, 8):
        s = _lr(hr, f).astype(np.float32)
        exact = optisr.guided_upsample(s, guide, f, weights="color", fidelity="exact")
        auto, info = optisr.guided_upsample(s, guide, f, weights="color", return_info=True)
        np.testing.assert_array_equal(auto, exact)
        assert info.requested == "auto" and info.fidelity == "exact" and info.lam is None
        assert info.sigma_estimated and info.noise_sigma < EXACT_BELOW * info.spread
        # the former API gives the same exact result
        np.testing.assert_array_equal(
            optisr.guided_upsample(s, guide, f, weights="color", mode="exact", lam=5.0), exact
        )
        # tile-wise: the same decision, so the same result as the tiled exact solve
        tiled = optisr.guided_upsample(s, guide, f, weights="color", tile_size=128)
        np.testing.assert_array_equal(
            tiled, optisr.guided_upsample(s, guide, f, weights="color", fidelity="exact", tile_size=128)
        )


@pytest.mark.parametrize("f", [4, 8])
def test_auto_on_a_noisy_source_beats_exact_and_bicubic(scenes, f):
    rng = np.random.default_rng(100 + f)
    errs = {"auto": [], "exact": [], "bicubic": []}
    for guide, hr in scenes:
        s = (_lr(hr, f) + rng.normal(0.0, 8.0, (192 // f, 192 // f))).astype(np.float32)
        out, info = optisr.guided_upsample(s, guide, f, weights="color", return_info=True)
        assert info.fidelity == "soft" and info.sigma_estimated
        assert 0.9 < info.noise_sigma / 8.0 < 1.5
        # GCV: solve + probe per (floor, λ), at most 5 λ per floor
        assert (info.solves - info.refine) % 2 == 0 and 4 <= info.solves <= 10 * (1 + len(FLOOR_STEPS)) and info.lam > 0
        assert info.floor is None or info.floor in FLOOR_STEPS
        # the same λ and floor, solved from a cold start (unrefined: the search's own solution)
        first = optisr.guided_upsample(s, guide, f, weights="color", refine=0)
        again = optisr.guided_upsample(
            s, guide, f, weights="color", fidelity="soft", lam=info.lam, floor=info.floor, refine=0
        )
        assert np.abs(first - again).max() < 1e-2 * np.ptp(hr)
        errs["auto"].append(_rmse(out, hr))
        errs["exact"].append(_rmse(optisr.guided_upsample(s, guide, f, weights="color", fidelity="exact"), hr))
        errs["bicubic"].append(_rmse(bicubic(s, guide, f), hr))
    m = {k: np.mean(v) for k, v in errs.items()}
    assert m["auto"] < 0.95 * m["exact"] and m["auto"] < 0.95 * m["bicubic"], m


def test_given_noise_sigma_and_tiling_use_one_global_lambda(scenes):
    guide, hr = scenes[1]
    rng = np.random.default_rng(5)
    s = (_lr(hr, 4) + rng.normal(0.0, 6.0, (48, 48))).astype(np.float32)
    _, given = optisr.guided_upsample(s, guide, 4, weights="color", noise_sigma=6.0, return_info=True, guide_filter=False)
    assert given.noise_sigma == 6.0 and not given.sigma_estimated and given.fidelity == "soft"
    assert given.solves >= 1 and given.lam > 0
    assert given.lam != pytest.approx(rule_lambda(6.0, source_spread(s), 4)) or given.solves == 1
    _, clean = optisr.guided_upsample(s, guide, 4, weights="color", noise_sigma=0.0, return_info=True, guide_filter=False)
    assert clean.fidelity == "exact"
    tiled, info = optisr.guided_upsample(s, guide, 4, weights="color", tile_size=128, return_info=True, guide_filter=False)
    assert info.fidelity == "soft"
    from optisr.guided.tiling import tiled_guided_upsample

    from optisr.guided.refine import Refinement, range_to_255

    refinement = Refinement(to_255=range_to_255(s)).with_floor(info.floor)  # what the call refines with
    np.testing.assert_array_equal(
        tiled, tiled_guided_upsample(s, guide, 4, tile=128, mode="soft", lam=info.lam, refinement=refinement)
    )
    # soft without lam takes λ from the rule; mode="soft" (the former API) keeps λ = 1
    _, soft = optisr.guided_upsample(s, guide, 4, weights="color", fidelity="soft", return_info=True, guide_filter=False)
    _, auto = optisr.guided_upsample(s, guide, 4, weights="color", return_info=True, guide_filter=False)
    assert soft.lam == auto.lam and soft.fidelity == "soft" and auto.fidelity == "soft"
    _, legacy = optisr.guided_upsample(s, guide, 4, weights="color", mode="soft", return_info=True, guide_filter=False)
    assert legacy == FidelityChoice("soft", "soft", lam=1.0, solves=2, refine=1)  # one refinement pass


def test_bad_arguments_are_one_line_config_errors(scenes):
    guide, hr = scenes[0]
    s = _lr(hr, 8).astype(np.float32)
    bad = [
        dict(fidelity="approximate"),
        dict(fidelity="auto", lam=2.0),
        dict(fidelity="exact", lam=2.0),
        dict(fidelity="soft", lam=-1.0),
        dict(fidelity="soft", lam=float("nan")),
        dict(noise_sigma=-1.0),
        dict(noise_sigma="loud"),
        dict(noise_sigma=float("inf")),
        dict(mode="soft", fidelity="exact"),
        dict(mode="approximate"),
        dict(return_info="yes"),
        dict(fidelity="soft", noise_sigma=0.0),  # no λ and σ = 0: nothing to choose λ from
    ]
    for kwargs in bad:
        with pytest.raises(ConfigError) as e:
            optisr.guided_upsample(s, guide, 8, weights="color", **kwargs)
        assert "\n" not in str(e.value), kwargs
    with pytest.raises(ConfigError, match="fidelity must be one of"):
        choose_fidelity(s, 8, fidelity="Auto")


def test_confidence_weights_the_soft_data_term_through_the_api():
    """A wild LR pixel given zero confidence has no pull on the soft solution; exact takes none."""
    import numpy as np

    from optisr import guided_upsample
    from optisr.errors import ConfigError

    rng = np.random.default_rng(0)
    guide = rng.random((32, 32, 3)).astype(np.float32)
    source = np.full((8, 8), 10.0)
    wild = source.copy()
    wild[3, 4] = 500.0  # a flying pixel
    conf = np.ones_like(source)
    conf[3, 4] = 0.0
    kw = dict(weights="color", fidelity="soft", lam=1.0, dtype=torch.float64, tol=1e-10, max_iter=5000)
    trusted = guided_upsample(wild, guide, 4, confidence=conf, **kw)
    clean = guided_upsample(source, guide, 4, **kw)
    np.testing.assert_allclose(trusted, clean, atol=1e-6)
    assert np.abs(guided_upsample(wild, guide, 4, **kw) - clean).max() > 1.0  # without it the pixel pulls
    with pytest.raises(ConfigError, match="exact fidelity has none"):
        guided_upsample(wild, guide, 4, confidence=conf, fidelity="exact")
    # tile-wise solves take it too (one tile here: the same solve)
    tiled = guided_upsample(wild, guide, 4, confidence=conf, tile_size=128, **kw)
    np.testing.assert_allclose(tiled, clean, atol=1e-6)
