"""Tests for the classic guided-upsampling baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optisr.errors import ConfigError, ShapeError
from optisr.guided.baselines import BASELINES, box_mean, get_baseline

AVAILABLE = list(BASELINES)


def _step_scene(scale: int, h: int = 12, w: int = 12):
    """A vertical depth step at an LR-pixel boundary and the matching colour edge."""
    H, W = h * scale, w * scale
    edge = W // 2 + scale // 2  # HR column where both depth and colour change
    depth_hr = np.where(np.arange(W)[None, :] < edge, 1000.0, 2000.0) * np.ones((H, 1))
    guide = np.zeros((H, W, 3))
    guide[:, edge:] = [0.9, 0.8, 0.7]
    guide[:, :edge] = [0.1, 0.2, 0.3]
    lr = depth_hr.reshape(h, scale, w, scale).mean(axis=(1, 3))
    return lr, guide, depth_hr


@pytest.mark.parametrize("name", AVAILABLE)
@pytest.mark.parametrize("scale", [1, 3, 4])
def test_shapes_and_constant_input(name, scale):
    rng = np.random.default_rng(0)
    guide = rng.random((5 * scale, 7 * scale, 3))
    source = np.full((5, 7), 3.25)
    out = BASELINES[name](source, guide, scale)
    assert out.shape == (5 * scale, 7 * scale) and out.dtype == np.float64
    np.testing.assert_allclose(out, 3.25, atol=1e-6 if name != "fbs" else 1e-3)


@pytest.mark.parametrize("name", AVAILABLE)
def test_input_not_mutated_and_mask_respected(name):
    rng = np.random.default_rng(1)
    guide = rng.random((32, 32, 3))
    source = np.full((8, 8), 5.0)
    source[2, 3] = 1e6  # a masked-out outlier must not leak into the output
    mask = np.ones((8, 8), bool)
    mask[2, 3] = False
    before = source.copy()
    out = BASELINES[name](source, guide, 4, mask)
    np.testing.assert_array_equal(source, before)
    assert np.all(np.isfinite(out)) and np.abs(out - 5.0).max() < 1e-3
    nan_src = before.copy()
    nan_src[2, 3] = np.nan  # NaN is invalid without a mask, too
    assert np.abs(BASELINES[name](nan_src, guide, 4) - 5.0).max() < 1e-3


@pytest.mark.parametrize("name", [n for n in AVAILABLE if n != "bicubic"])
def test_edge_preservation_beats_bicubic(name):
    lr, guide, truth = _step_scene(8)
    err = {n: np.sqrt(np.mean((BASELINES[n](lr, guide, 8) - truth) ** 2)) for n in ("bicubic", name)}
    # The guided filter only re-shapes the bicubic ramp within its window, so it gains less.
    ratio = {"guided-filter": 0.9}.get(name, 0.5)
    assert err[name] < ratio * err["bicubic"], err


def test_bicubic_methods_and_grey_guide():
    lr = np.arange(20.0).reshape(4, 5)
    pil = BASELINES["bicubic"](lr, np.zeros((8, 10)), 2)
    cv = BASELINES["bicubic"](lr, np.zeros((8, 10, 3)), 2, method="opencv")
    assert pil.shape == cv.shape == (8, 10)
    assert np.abs(pil - cv).max() < 1.0


def test_box_mean_truncated_windows():
    x = np.arange(20.0).reshape(4, 5)
    out = box_mean(x, 1)
    assert out[0, 0] == pytest.approx(np.mean(x[:2, :2]))
    assert out[2, 2] == pytest.approx(np.mean(x[1:4, 1:4]))
    assert out[3, 4] == pytest.approx(np.mean(x[2:, 3:]))


@pytest.mark.parametrize("name", list(BASELINES))
def test_invalid_inputs(name):
    f = BASELINES[name]
    guide = np.zeros((8, 8, 3))
    with pytest.raises(ShapeError, match="source_lr"):
        f(np.ones((2, 2, 2)), guide, 2)
    with pytest.raises(ShapeError, match="guide must be 8x8"):
        f(np.ones((4, 4)), np.zeros((9, 8, 3)), 2)
    with pytest.raises(ShapeError, match="guide"):
        f(np.ones((4, 4)), np.zeros((8, 8, 2)), 2)
    with pytest.raises(ConfigError, match="scale"):
        f(np.ones((4, 4)), guide, 2.5)
    with pytest.raises(ConfigError, match="scale"):
        f(np.ones((4, 4)), guide, 0)
    with pytest.raises(ConfigError, match="no valid pixel"):
        f(np.full((4, 4), np.nan), guide, 2)
    with pytest.raises(ShapeError, match="mask_lr"):
        f(np.ones((4, 4)), guide, 2, np.ones((2, 2), bool))


def test_registry_lookup():
    assert get_baseline("Guided_Filter") is BASELINES["guided-filter"]
    with pytest.raises(ConfigError, match="did you mean 'jbu'"):
        get_baseline("jbuu")


def test_fbs_is_always_available_and_rejects_bad_confidence():
    lr, guide, truth = _step_scene(4)
    assert np.sqrt(np.mean((BASELINES["fbs"](lr, guide, 4, confidence="bump") - truth) ** 2)) < 100.0
    with pytest.raises(ConfigError, match="confidence"):
        BASELINES["fbs"](lr, guide, 4, confidence="gaussian")


def test_method_registry_runs_baselines_and_graph_variants():
    from optisr.guided import guided_upsample
    from optisr.guided.methods import METHODS, REGISTRY, VARIANTS, get_method, is_graph_method, upsample_with

    assert set(METHODS) | set(VARIANTS) == set(REGISTRY) and not set(METHODS) & set(VARIANTS)
    lr, guide, _ = _step_scene(4, h=6, w=6)
    np.testing.assert_array_equal(upsample_with("fbs", lr, guide, 4), BASELINES["fbs"](lr, guide, 4))
    assert is_graph_method("color-soft") and not is_graph_method("fbs") and is_graph_method("x.safetensors")
    soft = upsample_with("color-soft", lr, guide, 4, operator="area")
    ref = guided_upsample(lr, guide, 4, operator="area", weights="color", mode="soft", lam=1.0)
    np.testing.assert_array_equal(soft, ref)
    assert not np.allclose(soft, upsample_with("color", lr, guide, 4, operator="area"))
    with pytest.raises(ConfigError, match="fixed by this method variant"):
        upsample_with("color-soft", lr, guide, 4, lam=10.0)
    with pytest.raises(ConfigError, match="apply to the graph methods"):
        upsample_with("jbu", lr, guide, 4, operator="area")
    with pytest.raises(ConfigError, match="did you mean 'color-soft'"):
        get_method("colour-soft")


def test_exact_variants_stay_exact_where_the_default_trusts_a_noisy_source_less():
    """``color`` follows guided_upsample's default (auto fidelity); ``color-exact`` is always exact."""
    from optisr.data.synthetic import make_scene
    from optisr.guided.methods import upsample_with
    from optisr.ops.operators import make_operator

    sc = make_scene(128, 128, seed=7)
    op = make_operator("area", sc.depth_clean.shape, 4)
    clean = op.apply(torch.from_numpy(sc.depth_clean)[None, None].double())[0, 0].numpy()
    noisy = clean + np.random.default_rng(0).normal(0, 0.05 * float(np.ptp(clean)), clean.shape)
    exact = upsample_with("color-exact", noisy, sc.guide, 4, operator="area")
    auto = upsample_with("color", noisy, sc.guide, 4, operator="area")
    lr_err = lambda x: float(np.abs(op.apply(torch.from_numpy(x)[None, None])[0, 0].numpy() - noisy).max())  # noqa: E731
    assert lr_err(exact) < 1e-6 * np.ptp(noisy)
    assert lr_err(auto) > 1e-3 * np.ptp(noisy)  # auto gave the noisy source less trust than exact
