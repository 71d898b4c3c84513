"""Soft solves at coarse scales blend the learned graph with the colour graph (SOFT_COLOUR_SHARE)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import optisr
from optisr.data.synthetic import make_scene
from optisr.errors import ConfigError
from optisr.guided.graph_weights import SOFT_BLEND_MIN_SCALE, color_weights, colour_blended, resolve_weights
from optisr.ops.operators import make_operator


def test_colour_blended_is_the_weighted_geometric_mean():
    g = torch.Generator().manual_seed(0)
    guide = torch.rand(1, 3, 24, 20, generator=g)
    w = torch.rand(1, 2, 24, 20, generator=g) * 0.9 + 0.05
    c = color_weights(guide)
    for share in (0.0, 0.25, 0.5, 1.0):
        out = colour_blended(lambda _g, _s: w, share)(guide, torch.zeros(1, 1, 6, 5))
        assert torch.allclose(out, w ** (1 - share) * c.clamp_min(1e-6) ** share, rtol=1e-5)
    with pytest.raises(ConfigError, match="colour share"):
        colour_blended(lambda _g, _s: w, 1.5)


def _noisy_case(scale: int, sigma: float):
    sc = make_scene(128, 128, seed=11)
    hr = (220.0 * sc.depth_clean.min() / sc.depth_clean).astype(np.float32)
    op = make_operator("area", hr.shape, scale)
    lr = op.apply(torch.from_numpy(hr)[None, None])[0, 0].numpy()
    lr = lr + np.random.default_rng(scale).normal(0.0, sigma, lr.shape).astype(np.float32)
    return np.ascontiguousarray(sc.guide, dtype=np.float32), lr


@pytest.mark.parametrize("scale", [4, SOFT_BLEND_MIN_SCALE])
def test_the_default_blends_only_soft_solves_from_the_blend_scale_on(scale):
    guide, noisy = _noisy_case(scale, 6.0)
    fn, learned = resolve_weights("default", scale, noisy)
    assert learned
    # σ given: this 128² scene's LR is too small at ×8 for a reliable estimate
    x, info = optisr.guided_upsample(noisy, guide, scale, noise_sigma=6.0, return_info=True)
    assert info.fidelity == "soft"
    kw = dict(noise_sigma=6.0, refine=info.refine)
    blended = optisr.guided_upsample(noisy, guide, scale, weights=colour_blended(fn), **kw)
    alone = optisr.guided_upsample(noisy, guide, scale, weights=fn, **kw)
    assert float(np.abs(blended - alone).max()) > 1e-3  # the two graphs do differ here
    expected = blended if scale >= SOFT_BLEND_MIN_SCALE else alone
    assert np.array_equal(x, expected)
    # a clean source is solved exactly, with the learned graph alone
    _, clean = _noisy_case(scale, 0.0)
    fn, _ = resolve_weights("default", scale, clean)
    y, info = optisr.guided_upsample(clean, guide, scale, return_info=True)
    assert info.fidelity == "exact"
    assert np.array_equal(y, optisr.guided_upsample(clean, guide, scale, weights=fn, refine=info.refine))
