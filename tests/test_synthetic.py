"""Tests for the procedural synthetic RGB-D scene generator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cv_digests import opencv_digest  # tests/ is on sys.path

from optisr.data.synthetic import SceneConfig, SyntheticScene, make_batch, make_scene, preview
from optisr.errors import ConfigError, ShapeError

CLEAN = SceneConfig(
    rgb_noise_std=(0.0, 0.0),
    blur_prob=0.0,
    jpeg_prob=0.0,
    depth_noise_prob=0.0,
    edge_hole_prob=0.0,
    dropout_prob=0.0,
)


def _arrays(scene: SyntheticScene):
    return [scene.guide, scene.depth, scene.mask, scene.depth_clean, scene.segments]


def test_deterministic_given_seed():
    a = make_scene(64, 80, seed=123)
    b = make_scene(64, 80, seed=123)
    for x, y in zip(_arrays(a), _arrays(b)):
        np.testing.assert_array_equal(x, y)
    assert a.focal_px == b.focal_px
    c = make_scene(64, 80, seed=np.random.default_rng(123))
    for x, y in zip(_arrays(a), _arrays(c)):
        np.testing.assert_array_equal(x, y)


def test_different_seeds_differ():
    a = make_scene(64, 64, seed=1)
    b = make_scene(64, 64, seed=2)
    assert not np.array_equal(a.guide, b.guide)
    assert not np.array_equal(a.depth_clean, b.depth_clean)


@pytest.mark.parametrize("hw", [(64, 64), (33, 47), (100, 37), (8, 8), (17, 130)])
def test_shapes_dtypes_ranges(hw):
    h, w = hw
    cfg = SceneConfig()
    zmin, zmax = cfg.depth_range_mm
    for seed in range(3):
        s = make_scene(h, w, seed=seed, config=cfg)
        assert s.guide.shape == (h, w, 3) and s.guide.dtype == np.float32
        assert s.depth.shape == (h, w) and s.depth.dtype == np.float32
        assert s.depth_clean.shape == (h, w) and s.depth_clean.dtype == np.float32
        assert s.mask.shape == (h, w) and s.mask.dtype == bool
        assert s.segments.shape == (h, w) and s.segments.dtype == np.int32
        assert np.all(np.isfinite(s.guide)) and s.guide.min() >= 0 and s.guide.max() <= 1
        assert np.all(np.isfinite(s.depth_clean))
        assert s.depth_clean.min() >= zmin and s.depth_clean.max() <= zmax
        assert np.all(s.depth[~s.mask] == 0)
        valid = s.depth[s.mask]
        assert np.all((valid >= zmin) & (valid <= zmax))
        assert isinstance(s.focal_px, float) and s.focal_px > 0


def test_mask_consistent_with_holes():
    holes = dataclasses.replace(SceneConfig(), edge_hole_prob=1.0, dropout_prob=1.0, dropout_rate=(0.02, 0.05))
    for seed in range(4):
        s = make_scene(96, 96, seed=seed, config=holes)
        assert (~s.mask).any()
        assert s.mask.mean() > 0.5
        np.testing.assert_array_equal(s.depth == 0, ~s.mask)
    s = make_scene(96, 96, seed=0, config=CLEAN)
    assert s.mask.all()
    np.testing.assert_array_equal(s.depth, s.depth_clean)


def test_depth_noise_grows_with_depth():
    cfg = dataclasses.replace(CLEAN, depth_noise_prob=1.0, depth_noise_mm_at_1m=(2.0, 2.0))
    s = make_scene(128, 128, seed=5, config=cfg)
    err = s.depth - s.depth_clean
    near = s.depth_clean < 1500
    far = s.depth_clean > 3000
    if near.sum() > 50 and far.sum() > 50:
        assert err[far].std() > err[near].std()
    assert 0 < np.abs(err).max() < 500


def test_depth_discontinuities_present():
    for seed in range(6):
        d = make_scene(96, 128, seed=seed).depth_clean
        jump = max(np.abs(np.diff(d, axis=0)).max(), np.abs(np.diff(d, axis=1)).max())
        assert jump > 200.0, f"seed {seed}: largest neighbour jump only {jump:.1f} mm"


def test_texture_edges_not_on_depth_edges():
    """Strong guide edges exist where the depth is locally smooth (the texture-copy trap)."""
    for seed in range(5):
        s = make_scene(128, 128, seed=seed, config=CLEAN)
        d, g = s.depth_clean, s.guide.mean(axis=2)
        d_jump = np.maximum(np.abs(np.diff(d, axis=1))[:-1], np.abs(np.diff(d, axis=0))[:, :-1])
        g_jump = np.maximum(np.abs(np.diff(g, axis=1))[:-1], np.abs(np.diff(g, axis=0))[:, :-1])
        flat = d_jump < 0.005 * d[:-1, :-1]
        assert np.count_nonzero(flat & (g_jump > 0.05)) >= 20, f"seed {seed}"


def test_weak_guide_edges_present():
    """Objects copying the colour behind them give depth jumps with little colour change."""
    cfg = dataclasses.replace(CLEAN, weak_edge_prob=1.0, num_marks=(0, 0), num_thin=(0, 0), ambient=(1.0, 1.0))
    found = 0
    for seed in range(5):
        s = make_scene(128, 128, seed=seed, config=cfg)
        d, g = s.depth_clean, s.guide
        d_jump = np.abs(np.diff(d, axis=1))
        g_jump = np.abs(np.diff(g, axis=1)).max(axis=2)
        found += np.count_nonzero((d_jump > 0.05 * d[:, 1:]) & (g_jump < 0.06)) > 0
    assert found >= 3


def test_thin_structures_present():
    cfg = dataclasses.replace(CLEAN, num_objects=(0, 0), num_thin=(2, 2), thin_width_px=(1, 1), wire_prob=0.0)
    hits = 0
    for seed in range(5):
        d = make_scene(96, 96, seed=seed, config=cfg).depth_clean
        centre, left, right = d[:, 1:-1], d[:, :-2], d[:, 2:]
        thin = (centre < 0.9 * left) & (centre < 0.9 * right)
        hits += np.count_nonzero(thin) >= 5
    assert hits >= 4


def test_make_batch_matches_make_scene():
    b = make_batch(3, 40, 56, seed=7)
    assert b.guide.shape == (3, 40, 56, 3) and b.guide.dtype == np.float32
    assert b.depth.shape == b.depth_clean.shape == b.mask.shape == b.segments.shape == (3, 40, 56)
    assert b.focal_px.shape == (3,)
    child = np.random.SeedSequence(7).spawn(3)[1]
    s = make_scene(40, 56, seed=child)
    np.testing.assert_array_equal(b.guide[1], s.guide)
    np.testing.assert_array_equal(b.depth[1], s.depth)
    b2 = make_batch(3, 40, 56, seed=7)
    np.testing.assert_array_equal(b.depth, b2.depth)


def test_preview():
    s = make_scene(48, 64, seed=0)
    p = preview(s)
    assert p.shape == (48, 128, 3) and p.dtype == np.uint8
    assert np.all(p[:, 64:][~s.mask] == 0)
    with pytest.raises(ShapeError):
        preview(make_batch(2, 16, 16, seed=0))


def test_config_accepts_lists_and_is_frozen():
    cfg = SceneConfig(num_objects=[1, 2], depth_range_mm=[400, 6000])
    assert cfg.num_objects == (1, 2) and cfg.depth_range_mm == (400.0, 6000.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.floor_prob = 0.5  # type: ignore[misc]
    with pytest.raises(TypeError):
        SceneConfig(0.5)  # type: ignore[misc]  # keyword-only


@pytest.mark.parametrize(
    "kwargs",
    [
        {"floor_prob": 1.5},
        {"floor_prob": -0.1},
        {"floor_prob": float("nan")},
        {"floor_prob": "0.5"},
        {"weak_edge_prob": True},
        {"num_objects": (5, 2)},
        {"num_objects": (1.5, 2)},
        {"num_objects": (1, 2, 3)},
        {"num_objects": 3},
        {"thin_width_px": (0, 2)},
        {"depth_range_mm": (0.0, 100.0)},
        {"depth_range_mm": (1000.0, 1000.0)},
        {"background_depth_mm": (3000.0, 9000.0)},
        {"background_depth_mm": (600.0, 4000.0)},
        {"jpeg_quality": (0, 90)},
        {"rgb_noise_std": (-0.1, 0.1)},
        {"wall_max_tilt_deg": 89.0},
    ],
)
def test_config_validation(kwargs):
    with pytest.raises(ConfigError):
        SceneConfig(**kwargs)
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    "call",
    [
        lambda: make_scene(4, 64),
        lambda: make_scene(64, 64.0),
        lambda: make_scene(64, 64, seed="abc"),
        lambda: make_scene(64, 64, config={"floor_prob": 0.5}),
        lambda: make_batch(0, 16, 16, seed=0),
        lambda: make_batch(2, 16, 16, seed=np.random.default_rng(0)),
    ],
)
def test_bad_arguments(call):
    with pytest.raises(ValueError):
        call()


def _digest(scene: SyntheticScene) -> str:
    import hashlib

    h = hashlib.sha256()
    for a in (*_arrays(scene), np.asarray(scene.focal_px)):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def test_scenes_unchanged_by_the_package_split():
    """SHA-256 of scenes rendered by the single-module generator before it became a package
    (same numpy / OpenCV builds): splitting the code must not change a single bit. Scenes with text
    carry one digest per OpenCV version (:mod:`cv_digests`)."""
    import hashlib

    assert _digest(make_scene(48, 64, seed=0)) == "61ff2207d59d5ea164099f3f049e93462699fcaf094ee5c402e5c42435f17dbe"
    assert _digest(make_scene(33, 47, seed=7)) == opencv_digest({
        "5.0": "d70c854f7ebba311acab2da84dafc15022809f68ed378416df65323c70dd46f5",
        "5.1": "adf5fb3681831b9bce1d9e2a1c37df89e217a032612836926e6083ed03d71ecc",
    })  # fmt: skip
    assert _digest(make_batch(2, 40, 40, seed=5)) == opencv_digest({
        "5.0": "1ebdced9efc50dbcae79c6903eeff8e390de5985d6e3686733649d6b33e9d73e",
        "5.1": "eaf96b56d4a5513448b88dce7a7c1cefc24c50d9e96cdcabf87b208e473b0706",
    })  # fmt: skip
    everything_on = SceneConfig(jpeg_prob=1.0, blur_prob=1.0, dropout_prob=1.0, edge_hole_prob=1.0, depth_noise_prob=1.0)
    assert (
        _digest(make_scene(40, 56, seed=3, config=everything_on))
        == opencv_digest({
            "5.0": "8ad56996e795f4b29dfaf121f78f38b102e8319d34880ef7a63b49c7ac269396",
            "5.1": "5b87f439fdda82fe843ffb930deed9603071d25511ebd72e3f5f53007a6a7320",
        })  # fmt: skip
    )
    panel = preview(make_scene(48, 64, seed=0))
    assert hashlib.sha256(panel.tobytes()).hexdigest() == "8efe20ed6732a94f88df8c00c85082c3a3ffb779be7682af3e1718e5192dc15f"


def test_package_modules_and_reexports():
    import optisr.data.synthetic as pkg
    from optisr.data.synthetic import appearance, config, geometry, scene, sensor

    assert pkg.SceneConfig is config.SceneConfig and pkg.make_scene is scene.make_scene
    assert sorted(pkg.__all__) == ["SceneConfig", "SyntheticScene", "disparity_255", "make_batch", "make_scene", "preview"]
    for mod in (appearance, config, geometry, scene, sensor):
        assert all(hasattr(mod, name) for name in mod.__all__)
