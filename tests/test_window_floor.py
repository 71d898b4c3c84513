"""The floor of ``auto``'s clean exact solves, chosen on a small window (optisr.guided.api.window_floor)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import optisr
from optisr.bench.guided_protocols import make_lr
from optisr.data.synthetic import disparity_255, make_scene
from optisr.guided import api
from optisr.ops.operators import make_operator


def _textured(seed: int, size: tuple[int, int] = (192, 256)):
    """A procedural scene whose guide also carries a fine colour texture (2-px cells) that is no
    depth edge, as clothing is in RGB-D-D; and the scene's own guide."""
    sc = make_scene(*size, seed=seed)
    hr = disparity_255(sc.depth_clean)
    rng = np.random.default_rng(seed)
    cells = rng.choice([-1.0, 1.0], size=(size[0] // 2 + 1, size[1] // 2 + 1, 1))
    tex = np.kron(cells, np.ones((2, 2, 1)))[: size[0], : size[1]].astype(np.float32)
    guide = np.clip(sc.guide.astype(np.float32) + 0.25 * tex, 0.0, 1.0)
    return hr, guide, sc.guide.astype(np.float32)


def _rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - b) ** 2)))


def test_texture_that_is_no_depth_raises_the_floor_and_helps():
    errs = {"default": [], "own": []}
    for seed in (31, 32):
        hr, guide, _ = _textured(seed)
        lr = make_lr(hr, np.ones(hr.shape, bool), "area", 4)[0]
        assert api.window_floor(lr, guide, 4) in api.WINDOW_FLOORS[1:]
        x, choice = optisr.guided_upsample(lr, guide, 4, return_info=True, register=False)
        assert choice.fidelity == "exact" and choice.floor in api.WINDOW_FLOORS[1:]
        same = optisr.guided_upsample(lr, guide, 4, fidelity="exact", floor=choice.floor, register=False)
        assert np.array_equal(x, same)  # the floor is all that changes
        errs["default"].append(_rmse(x, hr))
        errs["own"].append(_rmse(optisr.guided_upsample(lr, guide, 4, fidelity="exact", register=False), hr))
    assert np.mean(errs["default"]) < 0.9 * np.mean(errs["own"]), errs


def test_a_guide_whose_edges_are_the_depths_keeps_its_own_floor():
    hr, _, guide = _textured(33)
    lr = make_lr(hr, np.ones(hr.shape, bool), "area", 4)[0]
    assert api.window_floor(lr, guide, 4) == 0.0
    x, choice = optisr.guided_upsample(lr, guide, 4, return_info=True)
    assert choice.floor is None
    assert np.array_equal(x, optisr.guided_upsample(lr, guide, 4, fidelity="exact"))


def test_where_it_does_not_run():
    hr, guide, _ = _textured(31)
    lr = make_lr(hr, np.ones(hr.shape, bool), "area", 4)[0]
    assert api.window_floor(torch.from_numpy(lr), guide, 4) is None  # tensors
    w = np.ones((2, *hr.shape), np.float32)
    assert api.window_floor(lr, guide, 4, weights=w) is None  # explicit weights
    lr8 = make_lr(hr, np.ones(hr.shape, bool), "area", 8)[0]
    assert api.window_floor(lr8, guide, 8) is None  # above WINDOW_FLOOR_MAX_SCALE
    assert api.window_floor(lr[:12, :12], guide[:48, :48], 4) is None  # too small
    assert api.window_floor(lr[:-1], guide, 4) is None  # sizes that do not fit: the solve reports them
    # explicit fidelity or floor: as asked
    _, exact = optisr.guided_upsample(lr, guide, 4, fidelity="exact", return_info=True, register=False)
    _, given = optisr.guided_upsample(lr, guide, 4, floor=0.0, return_info=True, register=False)
    assert exact.floor is None and given.floor == 0.0


@pytest.mark.parametrize("operator", ["bicubic", "gaussian"])
def test_other_operators_and_a_mask(operator: str):
    hr, guide, _ = _textured(34, (202, 250))  # 4 divides neither side
    op = make_operator(operator, hr.shape, 4)
    lr = op.apply_strips(hr, dtype=torch.float64).numpy()
    mask = np.ones(lr.shape, bool)
    mask[20:26, 30:40] = False
    x, choice = optisr.guided_upsample(lr, guide, 4, operator=operator, mask=mask, return_info=True, register=False)
    assert choice.guide_sigma is not None  # the texture reads as guide noise: the window is filtered as the call's
    f = api.window_floor(lr, guide, 4, operator=operator, mask=mask, guide_sigma=choice.guide_sigma)
    assert f in api.WINDOW_FLOORS and choice.floor == (None if f == 0.0 else f)
    pred = op.apply_strips(x, dtype=torch.float64).numpy()
    assert np.abs(pred - lr)[mask].max() < 1e-3 * np.ptp(lr)  # still exactly consistent
