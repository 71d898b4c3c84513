"""The edge-weight floor of soft fidelity: raise_floor, floor_search, and auto's GCV choice of the floor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import optisr
import optisr.guided.api as guided_api
from optisr.errors import ConfigError
from optisr.guided.fidelity import FLOOR_STEPS, floor_search
from optisr.guided.graph_weights import color_weights
from optisr.ops.lattice import raise_floor
from optisr.ops.operators import make_operator
from tests.conftest import shared_data_dir


def _lr(hr: np.ndarray, f: int) -> np.ndarray:
    return make_operator("area", hr.shape, f).apply(torch.from_numpy(hr)).numpy()


def _rmse(x, y) -> float:
    return float(np.sqrt(np.mean((np.asarray(x, np.float64) - y) ** 2)))


def _texture_scene(n: int = 192, cell: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A guide whose colour edges are mostly texture (random cells), over depth with one real step.

    Returns ``(guide (n, n, 3) float32, hr (n, n) float64 on 0–255)``: a slanted plane with a step at
    column n/2; the guide is a random grey checker of ``cell``-px cells with the step's edge drawn in.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    hr = 60.0 + 0.4 * yy + 0.2 * xx + 80.0 * (xx >= n // 2)
    cells = rng.uniform(0.1, 0.9, (n // cell + 1, n // cell + 1))
    grey = np.kron(cells, np.ones((cell, cell)))[:n, :n]
    grey[:, n // 2 - 1 : n // 2 + 1] = 0.0
    return np.repeat(grey[:, :, None], 3, axis=2).astype(np.float32), hr


def test_raise_floor_lifts_used_edges_only_and_keeps_gradients():
    g = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    w = color_weights(g)
    w[0, 0, 3, 4] = 0.0  # an edge out of use (e.g. of an invalid pixel)
    out = raise_floor(w, 0.1)
    used = w > 0
    torch.testing.assert_close(out[used], 0.1 + 0.9 * w[used])
    assert float(out[~used].abs().max()) == 0.0  # unused slots, the last row / column included
    assert float(out[0, 0, -1].abs().max()) == 0.0 and float(out[0, 1, :, -1].abs().max()) == 0.0
    assert raise_floor(w, 0.0) is w
    with pytest.raises(ValueError):
        raise_floor(w, 1.0)
    wd = w.double().clamp_min(1e-3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: raise_floor(t, 0.03), (wd,))


def test_floor_search_walks_up_while_the_risk_falls():
    """Risk minimal at floor 0.03 (and log10 λ = −1 − floor index): found, and 0.3 never tried."""
    tried: list[tuple[float | None, float]] = []
    best_at = {None: 0, 0.01: 1, 0.03: 2, 0.1: 3, 0.3: 4}
    level = {None: 5.0, 0.01: 3.0, 0.03: 1.0, 0.1: 2.0, 0.3: 4.0}

    def evaluate(floor, lam):
        tried.append((floor, lam))
        return (floor, lam), level[floor] + (np.log10(lam) + 1.0 + 0.5 * best_at[floor]) ** 2

    floor, lam, x, evals = floor_search(evaluate, 0.1)
    assert floor == 0.03 and x == (0.03, lam)
    assert abs(np.log10(lam) + 2.0) < 0.05  # the parabola vertex of the exact quadratic
    assert evals == len(tried)
    assert {f for f, _ in tried} == {None, 0.01, 0.03, 0.1}  # stopped after 0.1 was worse
    # a fixed floor searches λ only
    floor, lam, _, _ = floor_search(evaluate, 0.1, (0.1,))
    assert floor == 0.1 and abs(np.log10(lam) + 2.5) < 0.05
    with pytest.raises(ConfigError):
        floor_search(evaluate, 0.1, ())


RGBDD = shared_data_dir() / "depth_rgbdd_test405"


@pytest.mark.skipif(not (RGBDD / "Depth").is_dir(), reason="needs ../shared/data/depth_rgbdd_test405")
def test_auto_raises_the_floor_on_real_rgbd_with_a_noisy_source():
    """RGB-D-D test405 (allowed for tuning), learned graph, area LR + σ = 3 cm at ×4: GCV raises the
    floor, and that beats the graph's own floor at GCV λ (measured 2.51 -> 1.92 cm on 8 images)."""
    from optisr.bench.guided_protocols import NoiseSpec, add_noise, make_lr
    from optisr.data.rgbdd import RGBDD as Loader

    ds = Loader(RGBDD)
    errs: dict[str, list[float]] = {"auto": [], "own": []}
    for i in (0, 100):
        smp = ds[i]
        hr = smp.depth.astype(np.float64) / 10.0  # cm
        lr, ok = make_lr(hr, smp.mask, "area", 4)
        lr = add_noise(lr, ok, NoiseSpec(sigma=3.0), i, 4)
        out, info = optisr.guided_upsample(lr, smp.guide, 4, return_info=True)
        assert info.fidelity == "soft" and info.floor is not None and info.floor >= 0.01, info
        own = optisr.guided_upsample(lr, smp.guide, 4, fidelity="soft", floor=0.0)  # λ by GCV, the own floor
        errs["auto"].append(_rmse(out[smp.mask], hr[smp.mask]))
        errs["own"].append(_rmse(own[smp.mask], hr[smp.mask]))
    assert np.mean(errs["auto"]) < 0.9 * np.mean(errs["own"]), errs


def test_auto_keeps_the_own_floor_where_colour_edges_are_depth_edges():
    """Piecewise-constant depth drawn in the guide (each region its own colour): no reason to raise the floor."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:192, 0:192]
    labels = (yy // 48) * 4 + (xx // 48)
    hr = rng.uniform(20.0, 235.0, 16)[labels]
    guide = rng.uniform(0.0, 1.0, (16, 3))[labels].astype(np.float32)
    s = (_lr(hr, 4) + rng.normal(0.0, 6.0, (48, 48))).astype(np.float32)
    _, info = optisr.guided_upsample(s, guide, 4, weights="color", return_info=True)
    assert info.fidelity == "soft" and info.floor is None, info


def test_explicit_floor_is_the_raised_graph():
    guide, hr = _texture_scene(96)
    s = (_lr(hr, 4) + np.random.default_rng(1).normal(0.0, 6.0, (24, 24))).astype(np.float32)
    out, info = optisr.guided_upsample(
        s, guide, 4, weights="color", fidelity="soft", lam=0.5, floor=0.1, refine=0, return_info=True
    )
    assert info.floor == 0.1 and info.lam == 0.5
    w = raise_floor(color_weights(torch.from_numpy(guide).permute(2, 0, 1)[None]), 0.1)[0].numpy()
    ref = optisr.guided_upsample(s, guide, 4, weights=w, fidelity="soft", lam=0.5)
    np.testing.assert_allclose(out, ref, atol=1e-4 * np.ptp(hr))
    # soft without lam: λ by GCV at the given floor
    _, info = optisr.guided_upsample(s, guide, 4, weights="color", fidelity="soft", floor=0.01, return_info=True)
    assert info.floor == 0.01 and info.lam > 0
    for bad in (1.0, -0.1, "x", True):
        with pytest.raises(ConfigError, match="floor"):
            optisr.guided_upsample(s, guide, 4, floor=bad)


def _spy_searches(monkeypatch) -> list[tuple[tuple[int, ...], tuple]]:
    """Record (source shape, floors) of every GCV search of guided_upsample."""
    calls: list[tuple[tuple[int, ...], tuple]] = []
    real = guided_api._gcv_search

    def spy(src, w, scale, **kw):
        calls.append((tuple(src.shape[-2:]), kw["floors"]))
        return real(src, w, scale, **kw)

    monkeypatch.setattr(guided_api, "_gcv_search", spy)
    return calls


def test_large_images_choose_the_floor_on_a_crop(monkeypatch):
    """Above FLOOR_CROP_HR² px the floor comes from a central crop; λ is searched again on the whole image."""
    guide, hr = _texture_scene(192)
    s = (_lr(hr, 4) + np.random.default_rng(2).normal(0.0, 6.0, (48, 48))).astype(np.float32)
    monkeypatch.setattr(guided_api, "FLOOR_CROP_HR", 96)
    calls = _spy_searches(monkeypatch)
    out, info = optisr.guided_upsample(s, guide, 4, weights="color", return_info=True)
    assert calls == [((24, 24), (None, *FLOOR_STEPS)), ((48, 48), (info.floor,))]
    again = optisr.guided_upsample(
        s, guide, 4, weights="color", fidelity="soft", lam=info.lam, floor=0.0 if info.floor is None else info.floor
    )
    np.testing.assert_allclose(out, again, atol=1e-2 * np.ptp(hr))


def test_tiled_soft_searches_on_a_crop_and_solves_tiles_with_that_floor(monkeypatch):
    guide, hr = _texture_scene(256)
    s = (_lr(hr, 4) + np.random.default_rng(3).normal(0.0, 6.0, (64, 64))).astype(np.float32)
    calls = _spy_searches(monkeypatch)
    _, info = optisr.guided_upsample(s, guide, 4, weights="color", tile_size=128, return_info=True)
    assert info.fidelity == "soft" and calls == [((64, 64), (None, *FLOOR_STEPS))]  # the ≤ 1024² crop: all of it
    # a given floor: λ searched at that floor, tiles solved with it
    out, info = optisr.guided_upsample(
        s, guide, 4, weights="color", fidelity="soft", floor=0.1, tile_size=128, return_info=True
    )
    assert info.floor == 0.1 and calls[-1] == ((64, 64), (0.1,))
    ref = optisr.guided_upsample(s, guide, 4, weights="color", fidelity="soft", lam=info.lam, floor=0.1, tile_size=128)
    np.testing.assert_allclose(out, ref, atol=1e-5 * np.ptp(hr))
    own = optisr.guided_upsample(s, guide, 4, weights="color", fidelity="soft", lam=info.lam, floor=0.0, tile_size=128)
    assert np.abs(out - own).max() > 1e-2 * np.ptp(hr)  # the floor did reach the tiles
