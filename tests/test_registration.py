"""Registration between source and guide: ``optisr.guided.registration`` and ``guided_upsample(register=)``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import optisr
from optisr.bench.guided_protocols import make_lr
from optisr.data.synthetic import disparity_255, make_scene
from optisr.errors import ConfigError, OptiSRError
from optisr.guided import api
from optisr.guided.registration import edge_shift, search_radius, shift_image, source_on_guide_grid
from optisr.ops.operators import make_operator, resampling_operator


@pytest.fixture(scope="module")
def scene():
    sc = make_scene(192, 240, seed=7001)
    return disparity_255(sc.depth_clean), sc.guide.astype(np.float32)


def _lr(hr: np.ndarray, scale: int) -> np.ndarray:
    return make_lr(hr, np.ones(hr.shape, bool), "area", scale)[0]


def _near(found: tuple[int, int], shift: tuple[int, int]) -> bool:
    """Within one pixel on each axis: the edge correlation's peak is that sharp on these small scenes."""
    return max(abs(f - s) for f, s in zip(found, shift)) <= 1


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - b) ** 2)))


def test_shift_image_moves_content_and_repeats_the_edges():
    a = np.arange(35, dtype=np.int16).reshape(5, 7)
    out = shift_image(a, (2, -1))
    assert out.dtype == a.dtype and out.shape == a.shape
    assert np.array_equal(out[2:, :-1], a[:-2, 1:])  # content moved 2 down, 1 left
    assert np.array_equal(out[:2, :-1], np.repeat(a[:1, 1:], 2, axis=0))  # top rows repeat the first
    assert np.array_equal(out[:, -1], out[:, -2])  # last column repeats
    rgb = np.random.default_rng(0).random((6, 8, 3))
    assert np.array_equal(shift_image(rgb, (1, 2))[1:, 2:], rgb[:-1, :-2])
    assert np.array_equal(shift_image(a, (0, 0)), a)


def test_search_radius_grows_with_the_image():
    assert search_radius((384, 512)) == 6 and search_radius((96, 128)) == 4 and search_radius((1024, 2048)) == 21


def test_source_on_guide_grid_follows_the_operators_geometry():
    src = np.full((6, 8), 3.0)
    src[0, 0] = np.nan
    up = source_on_guide_grid(src, make_operator("area", (22, 30), 4))  # 6×8 blocks of 4 overhang 22×30
    assert up.shape == (22, 30) and np.allclose(up, 3.0)
    ramp = np.tile(np.arange(8.0), (6, 1))
    # area: LR pixel j is the block [4j, 4j + 4), centred at HR 4j + 1.5, also in the overhanging grid
    up = source_on_guide_grid(ramp, make_operator("area", (22, 30), 4))
    mid = 0.5 * (up[:, 4 * np.arange(2, 6) + 1] + up[:, 4 * np.arange(2, 6) + 2])
    assert np.allclose(mid, np.arange(2.0, 6.0), atol=2e-3)
    # bicubic at a size 4 does not divide (PIL: the field of view, 30/8 HR px per LR px)
    up = source_on_guide_grid(ramp, make_operator("bicubic", (22, 30), 4))
    centres = (np.arange(8) + 0.5) * 30 / 8 - 0.5
    assert np.allclose(np.interp(centres[2:6], np.arange(30), up[3]), np.arange(2.0, 6.0), atol=1e-3)
    up = source_on_guide_grid(ramp, resampling_operator("area", (48, 64), (6, 8)), slice(4, 20), slice(8, 40))
    assert up.shape == (16, 32)  # a window of the guide's grid


@pytest.mark.parametrize("shift", [(0, 0), (3, -3), (-2, 1), (0, 4)])
def test_edge_shift_finds_a_known_offset(scene, shift):
    hr, guide = scene
    lr = _lr(shift_image(hr, shift), 4)
    found, gain = edge_shift(source_on_guide_grid(lr, make_operator("area", hr.shape, 4)), guide, 4)
    assert _near(found, shift)
    if shift != (0, 0):
        assert gain > 1.05


def test_register_moves_the_guide_onto_a_shifted_source_and_stays_exact(scene):
    hr, guide = scene
    truth = shift_image(hr, (3, -3))  # depth sensor off by (3, -3) px: truth and LR in its geometry
    lr = _lr(truth, 4)
    x, choice = optisr.guided_upsample(lr, guide, 4, return_info=True)
    assert choice.guide_shift is not None and _near(choice.guide_shift, (3, -3))
    same = optisr.guided_upsample(lr, shift_image(guide, choice.guide_shift), 4, register=False)
    assert np.array_equal(x, same)  # nothing else changes
    off = optisr.guided_upsample(lr, guide, 4, register=False)
    assert _rmse(x, truth) < 0.7 * _rmse(off, truth)
    op = make_operator("area", hr.shape, 4)
    assert np.abs(op.apply_strips(x, dtype=torch.float64).numpy() - lr).max() < 1e-3 * np.ptp(lr)


def test_register_leaves_a_registered_pair_alone(scene):
    hr, guide = scene
    lr = _lr(hr, 4)
    x, choice = optisr.guided_upsample(lr, guide, 4, return_info=True)
    assert choice.guide_shift is None
    assert np.array_equal(x, optisr.guided_upsample(lr, guide, 4, register=False))


def test_the_cross_validation_rejects_a_shift_the_data_do_not_support(scene, monkeypatch):
    """A proposal that moves the guide off a registered source predicts held-out pixels worse: refused."""
    hr, guide = scene
    lr = _lr(hr, 4)
    monkeypatch.setattr(api, "edge_shift", lambda *a, **k: ((2, 2), 1.5))
    assert api.registration_shift(lr, guide, 4) is None
    moved = _lr(shift_image(hr, (2, 2)), 4)  # the same proposal on a source that is off by it: kept
    assert api.registration_shift(moved, guide, 4) == (2, 2)


def test_register_at_a_non_integer_ratio(scene):
    hr, guide = scene
    H, W = hr.shape
    op = resampling_operator("bicubic", (H, W), (72, 90))  # 8/3
    truth = shift_image(hr, (2, -3))
    lr = op.apply_strips(truth, dtype=torch.float64).numpy()
    x, choice = optisr.guided_upsample(lr, guide, None, operator="bicubic", return_info=True)
    assert choice.guide_shift is not None and _near(choice.guide_shift, (2, -3))
    off = optisr.guided_upsample(lr, guide, None, operator="bicubic", register=False)
    assert _rmse(x, truth) < 0.7 * _rmse(off, truth)


def test_register_needs_numpy_and_a_guide_graph(scene):
    hr, guide = scene
    lr = _lr(shift_image(hr, (3, -3)), 4)
    src_t = torch.from_numpy(lr)[None, None]
    gt = torch.from_numpy(guide).permute(2, 0, 1)[None]
    _, choice = optisr.guided_upsample(src_t, gt, 4, return_info=True)
    assert choice.guide_shift is None  # tensors: used as given
    w = api.color_weights(gt.double())[0].numpy()
    _, choice = optisr.guided_upsample(lr, guide, 4, weights=w, return_info=True)
    assert choice.guide_shift is None  # explicit weights belong to the guide as given
    with pytest.raises(ConfigError, match="register"):
        optisr.guided_upsample(lr, guide, 4, register="yes")  # type: ignore[call-overload]


def test_register_with_a_masked_source_and_a_gaussian_operator(scene):
    hr, guide = scene
    truth = shift_image(hr, (-3, 2))
    op = make_operator("gaussian", hr.shape, 4)
    lr = op.apply_strips(truth, dtype=torch.float64).numpy()
    mask = np.ones(lr.shape, bool)
    mask[10:14, 20:30] = False
    lr[~mask] = np.nan
    _, choice = optisr.guided_upsample(lr, guide, 4, operator=op, mask=mask, return_info=True)
    assert choice.guide_shift is not None and _near(choice.guide_shift, (-3, 2))


def test_holes_are_filled_from_their_neighbours_not_a_constant():
    """A constant fill would draw an edge round every invalid pixel; the nearest valid value does not."""
    src = np.tile(np.linspace(10.0, 20.0, 24), (20, 1))
    src[5, 7] = src[12, 3:6] = np.nan
    up = source_on_guide_grid(src, make_operator("area", (80, 96), 4))
    filled = source_on_guide_grid(np.where(np.isfinite(src), src, np.roll(src, 1, axis=0)), make_operator("area", (80, 96), 4))
    assert np.isfinite(up).all() and np.abs(up - filled).max() < 0.5  # one column step of the ramp at most


def test_spikes_left_out_first_do_not_hide_a_shift(scene):
    """``exclude_outliers``: the spikes are found before the registration search and left out of it
    (their squared errors would swamp its held-out comparison), as ``optisr guided`` does."""
    hr, guide = scene
    truth = shift_image(hr, (3, -3))
    lr = _lr(truth, 4)
    rng = np.random.default_rng(3)
    lr.flat[rng.choice(lr.size, 40, replace=False)] += 0.8 * np.ptp(hr)
    x, choice = optisr.guided_upsample(lr, guide, 4, exclude_outliers=True, return_info=True)
    assert choice.outliers >= 30 and choice.guide_shift is not None and _near(choice.guide_shift, (3, -3))
    mask, _ = api.outlier_mask(lr, guide, None, 4, "area", choice.noise_sigma)
    again = optisr.guided_upsample(lr, shift_image(guide, choice.guide_shift), 4, mask=mask, register=False)
    assert np.array_equal(x, again)


def test_register_does_not_search_above_x8(monkeypatch):
    """×16: a few HR px are a fraction of a source pixel; no search, not even a proposal."""
    sc = make_scene(384, 480, seed=7001)
    hr = shift_image(sc.depth_clean.astype(np.float64), (3, -3))
    calls = []
    monkeypatch.setattr(api, "edge_shift", lambda *a, **k: calls.append(1) or ((3, -3), 2.0))
    assert api.registration_shift(_lr(hr, 16), sc.guide, 16) is None and not calls
    assert api.registration_shift(_lr(hr, 8), sc.guide, 8) is not None and calls


def test_bad_shapes_are_reported_by_the_solve_not_the_search(scene):
    hr, guide = scene
    lr = _lr(hr, 4)
    assert api.registration_shift(lr[:-1], guide, 4) is None  # the sizes do not fit ×4
    assert api.registration_shift(lr, guide, 4, mask=np.ones((3, 3), bool)) is None
    with pytest.raises(OptiSRError, match="mask"):
        optisr.guided_upsample(lr, guide, 4, mask=np.ones((3, 3), bool))
