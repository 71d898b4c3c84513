"""Tile-wise guided solve (optisr.guided.tiling): agreement with the untiled solve, exact
consistency, masks, odd sizes, errors, progress and the CLI's --tile-size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import optisr
from optisr.cli.main import main
from optisr.data.synthetic import make_scene
from optisr.errors import ConfigError, ShapeError
from optisr.guided.api import color_weights
from optisr.guided.tiling import Span, check_tiling, tile_grid, tiled_guided_upsample
from optisr.io.rasters import read_raster, write_raster
from optisr.ops.operators import make_operator

# Observed (tol 1e-4, procedural scenes, ×4/×8, area/sum/bicubic/gaussian, 8 LR px of overlap
# and more): max |tiled − untiled| ≤ 4.5e-3 · range, RMS ≤ 3e-4 · range. Tested with margin.
MAX_DIFF = 1.5e-2
RMS_DIFF = 1.5e-3


@pytest.fixture(scope="module")
def scene():
    sc = make_scene(104, 96, seed=1)
    return np.round(sc.guide * 255).astype(np.uint8), sc.depth_clean.astype(np.float64)


def _lr(depth: np.ndarray, f: int, kind: str, dtype=np.float32) -> np.ndarray:
    return make_operator(kind, depth.shape, f).apply(torch.from_numpy(depth)).numpy().astype(dtype)


def _consistency(x: np.ndarray, s: np.ndarray, f: int, kind: str, valid=None) -> float:
    err = np.abs(_lr(x.astype(np.float64), f, kind, np.float64) - s)
    if valid is not None:
        err = err[valid]
    return float(err.max() / np.ptp(s[np.isfinite(s)]))


@pytest.mark.parametrize(
    "f,kind,size",
    [(4, "area", (104, 96)), (8, "area", (104, 96)), (4, "sum", (104, 96)), (8, "bicubic", (104, 96)),
     (8, "area", (99, 93)), (4, "bicubic", (101, 94))],
)  # fmt: skip
def test_tiled_matches_untiled_and_is_exactly_consistent(scene, f, kind, size):
    guide, depth = scene[0][: size[0], : size[1]], scene[1][: size[0], : size[1]]
    s = _lr(depth, f, kind)
    ref = optisr.guided_upsample(s, guide, f, operator=kind, weights="color", tile_size=0, refine=0, guide_filter=False)
    x = tiled_guided_upsample(s, guide, f, tile=8 * f, overlap=8 * f, operator=kind)
    assert len(tile_grid(depth.shape, f, 8 * f, 8 * f)[0]) > 1  # really tiled
    assert x.shape == depth.shape and x.dtype == np.float32
    rng = np.ptp(ref)
    assert np.abs(x - ref).max() <= MAX_DIFF * rng
    assert np.sqrt(np.mean((x - ref) ** 2)) <= RMS_DIFF * rng
    assert _consistency(x, s, f, kind) <= 1e-3  # the untiled solver's float32 tolerance


def test_float64_consistency_and_no_visible_seams(scene):
    guide, depth = scene
    f, tile = 4, 32
    guide, depth = guide[:72, :72], depth[:72, :72]
    s = _lr(depth, f, "area", np.float64)
    ref = optisr.guided_upsample(s, guide, f, weights="color", tile_size=0, refine=0, guide_filter=False)
    x = tiled_guided_upsample(s, guide, f, tile=tile)
    assert x.dtype == np.float64
    assert _consistency(x, s, f, "area") <= 1e-5
    # jumps of (tiled − untiled) across tile borders are no larger than elsewhere (× 3 margin)
    d = x - ref
    b = np.arange(tile, depth.shape[0], tile)
    jumps = np.abs(np.diff(d, axis=0))
    assert jumps[b - 1].mean() <= 3 * np.delete(jumps, b - 1, axis=0).mean() + 1e-9 * np.ptp(ref)


def test_tile_larger_than_image_is_the_untiled_solve(scene):
    guide, depth = scene[0][:64, :56], scene[1][:64, :56]
    for kind in ("area", "bicubic"):
        s = _lr(depth, 8, kind)
        ref = optisr.guided_upsample(s, guide, 8, operator=kind, weights="color", tile_size=0, refine=0, guide_filter=False)
        np.testing.assert_array_equal(tiled_guided_upsample(s, guide, 8, tile=4096, operator=kind), ref)


def test_nan_mask_and_tiles_without_a_valid_pixel(scene):
    guide, depth = scene[0][:64, :60], scene[1][:64, :60]
    f = 4
    s = _lr(depth, f, "area")
    s[2:10, 3:11] = np.nan  # 8×8 LR hole: tiles of 4 LR px + 1 of overlap inside it see nothing valid
    mask = np.ones(s.shape, bool)
    mask[12, 5] = False
    valid = np.isfinite(s) & mask
    x = tiled_guided_upsample(s, guide, f, tile=16, overlap=4, mask=mask)
    assert np.isfinite(x).all()
    assert _consistency(x, s, f, "area", valid) <= 1e-3
    ref = optisr.guided_upsample(s, guide, f, mask=mask, weights="color", tile_size=0, refine=0)
    assert np.median(np.abs(x - ref)) <= 1e-2 * np.ptp(ref)  # the hole is filled as by the untiled solve


def test_weights_array_callable_and_soft_mode(scene):
    guide, depth = scene[0][:64, :64], scene[1][:64, :64]
    s = _lr(depth, 4, "area")
    g = torch.from_numpy(guide.astype(np.float32) / 255).permute(2, 0, 1)[None]
    w = color_weights(g)[0].numpy()
    ref = optisr.guided_upsample(s, guide, 4, weights=w, tile_size=0, guide_filter=False)
    x = tiled_guided_upsample(s, guide, 4, tile=32, weights=w)
    assert np.abs(x - ref).max() <= MAX_DIFF * np.ptp(ref)
    seen = []

    def fn(gt, st):
        seen.append((tuple(gt.shape), tuple(st.shape)))
        return color_weights(gt)

    y = tiled_guided_upsample(s, guide, 4, tile=32, weights=fn)
    np.testing.assert_allclose(y, x, atol=1e-4 * np.ptp(ref))
    assert len(seen) == 4 and all(sg[-2:] == (ss[-2] * 4, ss[-1] * 4) for sg, ss in seen)
    soft_ref = optisr.guided_upsample(s, guide, 4, mode="soft", weights="color", tile_size=0, refine=0, guide_filter=False)
    soft = tiled_guided_upsample(s, guide, 4, tile=32, mode="soft")
    assert np.abs(soft - soft_ref).max() <= MAX_DIFF * np.ptp(soft_ref)


@pytest.fixture
def no_min_tile(monkeypatch):
    """Lift the public minimum tile size, so tile-wise dispatch can be tested on tiny images."""
    import optisr.guided.tiling as tiling

    monkeypatch.setattr(tiling, "MIN_TILE_HR", 1)
    monkeypatch.setattr(tiling, "MIN_TILE_LR", 1)


def test_api_dispatch_progress_and_errors(scene, monkeypatch, no_min_tile):
    guide, depth = scene[0][:64, :64], scene[1][:64, :64]
    s = _lr(depth, 8, "area")
    calls = []
    x = optisr.guided_upsample(s, guide, 8, tile_size=32, weights="color", refine=0, progress=lambda done, total: calls.append((done, total)), guide_filter=False)
    assert calls == [(i, 4) for i in range(1, 5)]
    np.testing.assert_array_equal(x, tiled_guided_upsample(s, guide, 8, tile=32))
    monkeypatch.setattr(optisr.guided.api, "AUTO_TILE_PIXELS", 1000)  # automatic tiling above the threshold
    np.testing.assert_array_equal(optisr.guided_upsample(s, guide, 8, weights="color", refine=0, guide_filter=False), tiled_guided_upsample(s, guide, 8))
    assert check_tiling(8, 30, 3) == (32, 8)  # rounded up to whole LR blocks
    for bad in (0, -8, 2.5, True, "512"):
        with pytest.raises(ConfigError, match="tile size must be a positive integer") as e:
            tiled_guided_upsample(s, guide, 8, tile=bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="overlap"):
        tiled_guided_upsample(s, guide, 8, tile=32, overlap=-1)
    with pytest.raises(ConfigError, match="tile_size"):
        optisr.guided_upsample(s, guide, 8, tile_size=-1, guide_filter=False)
    with pytest.raises(ConfigError, match="numpy"):
        optisr.guided_upsample(torch.from_numpy(s), torch.from_numpy(guide).permute(2, 0, 1).float() / 255, 8, tile_size=32, guide_filter=False)
    with pytest.raises(ConfigError, match="numpy source, guide and mask"):  # a torch mask was a misleading ShapeError
        optisr.guided_upsample(s, guide, 8, tile_size=32, mask=torch.ones(s.shape, dtype=torch.bool), guide_filter=False)


def test_default_overlap_is_the_solver_or_the_network_context(scene):
    """Exact solves 8 LR px, soft ones 16; a network on each tile at least NETWORK_CONTEXT_HR HR px."""
    from optisr.guided.tiling import NETWORK_CONTEXT_HR, default_overlap, solve_tiles_here

    assert NETWORK_CONTEXT_HR == 96
    assert [default_overlap(f) for f in (2, 4, 8, 16)] == [16, 32, 64, 128]
    assert [default_overlap(f, "soft") for f in (2, 4, 8, 16)] == [32, 64, 128, 256]
    assert [default_overlap(f, learned=True) for f in (2, 4, 8, 16)] == [96, 96, 96, 128]
    assert default_overlap(5, learned=True) == 100  # rounded up to whole LR blocks
    assert check_tiling(4, 64, None) == (64, 32) and check_tiling(4, 64, None, mode="soft") == (64, 64)
    # what the tiles are actually cut with: the padded spans' LR context on an interior side
    guide, depth = np.tile(scene[0], (2, 2, 1))[:192, :192], np.tile(scene[1], (2, 2))[:192, :192]
    s = _lr(depth, 2, "area")
    seen: dict[str, set] = {}

    def spy(name):
        def map_tiles(problems, weights_fn):
            for problem, sol in solve_tiles_here(problems, weights_fn):
                seen.setdefault(name, set()).add(problem.rows.c0 - problem.rows.p0)  # clipped at the image border
                yield problem, sol

        return map_tiles

    tiled_guided_upsample(s, guide, 2, tile=32, map_tiles=spy("exact"))
    tiled_guided_upsample(s, guide, 2, tile=32, mode="soft", map_tiles=spy("soft"))
    tiled_guided_upsample(s, guide, 2, tile=32, weights=lambda g, src: color_weights(g), map_tiles=spy("net"))
    assert {k: max(v) for k, v in seen.items()} == {"exact": 8, "soft": 16, "net": 48}


def test_learned_tiles_get_the_network_context():
    """The shipped network's weights depend on the guide ~100 HR px away: tiles with 64 HR px of context
    (the old default at ×4) gave max |tiled − untiled| 4.4e-3 · range on this scene (converged solves),
    the default 96 px gives 3.5e-4."""
    sc = make_scene(384, 384, seed=2)
    guide = np.round(sc.guide * 255).astype(np.uint8)
    s = _lr(sc.depth_clean.astype(np.float64), 4, "area", np.float64)
    ref = optisr.guided_upsample(s, guide, 4, weights="default", tile_size=0, refine=0, tol=1e-8, guide_filter=False)
    x = tiled_guided_upsample(s, guide, 4, tile=128, weights="default", tol=1e-8)
    rng = np.ptp(ref)
    assert np.abs(x - ref).max() <= 1.5e-3 * rng
    assert np.sqrt(np.mean((x - ref) ** 2)) <= 2.5e-5 * rng


def test_small_tile_size_is_raised_to_the_minimum(scene):
    """tile_size=1 used to run 24× slower than untiled; now it is raised to max(128, 32·scale), with a warning."""
    from optisr.guided.tiling import min_tile_size

    assert (min_tile_size(2), min_tile_size(4), min_tile_size(8)) == (128, 128, 256)
    guide, depth = np.tile(scene[0], (2, 2, 1))[:160, :160], np.tile(scene[1], (2, 2))[:160, :160]
    s = _lr(depth, 2, "area")
    calls = []
    with pytest.warns(UserWarning, match="tile_size 1 is below the minimum of 128 HR pixels at ×2"):
        x = optisr.guided_upsample(s, guide, 2, tile_size=1, weights="color", refine=0, progress=lambda d, t: calls.append(t), guide_filter=False)
    assert calls == [4] * 4  # 2×2 tiles of 128 HR px, not 80×80 tiles of 2
    np.testing.assert_array_equal(x, tiled_guided_upsample(s, guide, 2, tile=128))


def test_cli_tile_size(tmp_path, capsys, scene, no_min_tile):
    guide, depth = scene[0][:64, :64], scene[1][:64, :64]
    import cv2

    cv2.imwrite(str(tmp_path / "rgb.png"), np.ascontiguousarray(guide[..., ::-1]))
    s = _lr(depth, 4, "area", np.float64)
    write_raster(tmp_path / "d.tif", s.astype(np.float32))
    args = ["guided", "--guide", tmp_path / "rgb.png", "--source", tmp_path / "d.tif", "--scale", "4"]
    rc = main([*map(str, args), "-o", str(tmp_path / "hr.tif"), "--tile-size", "16", "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    hr = read_raster(tmp_path / "hr.tif").data
    assert _consistency(hr, s.astype(np.float32).astype(np.float64), 4, "area") <= 1e-3
    for extra, msg in ((["--tile-size", "-1"], "--tile-size must be >= 0"), (["--tile-size", "16", "--method", "jbu"], "graph methods")):
        assert main([*map(str, args), "-o", str(tmp_path / "x.tif"), *extra]) != 0
        assert msg in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["bicubic", "gaussian"])
def test_strip_wise_global_projection_equals_the_operator_projection(kind):
    from optisr.guided.tiling import project_global

    rng = np.random.default_rng(0)
    H, W, f = 203, 186, 4  # LR 51×47 > the dense masked-Gram limit: the LR-only PCG path
    op = make_operator(kind, (H, W), f)
    x = rng.random((H, W))
    s = rng.random(op.lr_size)
    valid = rng.random(op.lr_size) > 0.1
    ref = op.project(torch.from_numpy(x), torch.from_numpy(s), torch.from_numpy(valid)).numpy()
    out = x.copy()
    project_global(out, s, valid, op, strip=64)
    np.testing.assert_allclose(out, ref, atol=1e-8)
    assert np.abs(_lr(out, f, kind, np.float64) - s)[valid].max() <= 1e-9


def _noisy(scene, f):
    guide, depth = np.tile(scene[0], (2, 2, 1))[:192, :192], np.tile(scene[1], (2, 2))[:192, :192]
    s = _lr(depth, f, "area", np.float64)
    s = (s + np.random.default_rng(0).normal(0, 0.03 * np.ptp(s), s.shape)).astype(np.float32)
    return guide, s


def test_tiled_soft_solves_take_a_confidence_map(scene):
    """The per-LR-pixel confidence is cut into tiles like the source: tiled = untiled, and it matters."""
    guide, s = _noisy(scene, 4)
    conf = np.ones_like(s)
    conf[:, : s.shape[1] // 2] = 0.05  # trust the left half much less
    kw = dict(weights="color", fidelity="soft", lam=3.0, refine=0)
    ref = optisr.guided_upsample(s, guide, 4, tile_size=0, confidence=conf, **kw)
    x = optisr.guided_upsample(s, guide, 4, tile_size=128, confidence=conf, **kw)  # was a ConfigError
    plain = optisr.guided_upsample(s, guide, 4, tile_size=128, **kw)
    rng = np.ptp(ref)
    assert np.abs(x - ref).max() <= MAX_DIFF * rng and np.sqrt(np.mean((x - ref) ** 2)) <= RMS_DIFF * rng
    assert np.sqrt(np.mean((plain - ref) ** 2)) > 10 * RMS_DIFF * rng  # the confidence changed the result
    for bad, err, msg in (
        (conf[:-1], ShapeError, "confidence must be"),
        (-conf, ConfigError, ">= 0"),
        (np.zeros_like(conf), ShapeError, "positive confidence"),
    ):
        with pytest.raises(err, match=msg):
            tiled_guided_upsample(s, guide, 4, tile=64, mode="soft", confidence=bad)
    with pytest.raises(ConfigError, match="exact fidelity has none"):
        tiled_guided_upsample(s, guide, 4, tile=64, confidence=conf)


def test_tiled_robust_solves_use_the_whole_images_residual_scale(scene):
    """Robust (IRLS) tiles: one σ for every tile, estimated as the untiled solve does (MAD of a soft
    solve's residuals); per-tile σ estimates put the result 6-8 % of the range off the untiled one."""
    guide, s = _noisy(scene, 4)
    # noise of very different strength in the two halves: each half's tiles alone would see another σ
    s[:, :24] += np.random.default_rng(1).normal(0, 0.1 * np.ptp(s), s[:, :24].shape).astype(np.float32)
    s[10:12, 30:32] += 0.5 * np.ptp(s)  # outliers (flying pixels)
    ref = optisr.guided_upsample(s, guide, 4, weights="color", fidelity="robust", lam=3.0, tile_size=0)
    x = optisr.guided_upsample(s, guide, 4, weights="color", fidelity="robust", lam=3.0, tile_size=128)
    rng = np.ptp(ref)
    assert np.abs(x - ref).max() <= MAX_DIFF * rng and np.sqrt(np.mean((x - ref) ** 2)) <= RMS_DIFF * rng
    own = tiled_guided_upsample(s, guide, 4, tile=64, weights="color", mode="robust", lam=3.0, robust_sigma=1e3)
    assert np.sqrt(np.mean((own - ref) ** 2)) > 3 * RMS_DIFF * rng  # a different σ is a different result


def test_a_hole_across_tiles_is_solved_whole(scene):
    """Inside a hole the solution is filled from the hole's whole border: a tile that cut it (a free
    border where the data is) put the fill up to 6 % of the range off (3.8e-3 here); tiles now take such
    holes in whole."""
    guide, depth = np.tile(scene[0], (2, 2, 1))[:192, :192], np.tile(scene[1], (2, 2))[:192, :192]
    s = _lr(depth, 4, "area", np.float64)
    s[26:38, 26:38] = np.nan  # 12² LR px across the corner of four 32-px tiles
    kw = dict(tol=1e-9, max_iter=20000)
    ref = optisr.guided_upsample(s, guide, 4, weights="color", tile_size=0, refine=0, fidelity="exact", **kw, guide_filter=False)
    x = tiled_guided_upsample(s, guide, 4, tile=128, **kw)
    assert np.abs(x - ref).max() <= 1e-4 * np.ptp(ref)


def test_padded_spans_and_operator_windows_share_one_covering_rule():
    """Span.hr's padded range and DownsampleOperator.hr_window are the same rule (covered_hr), at
    integer and non-integer ratios: every HR pixel the LR pixels cover, floor of the start, ceil of the end."""
    from fractions import Fraction

    from optisr.ops.operators import covered_hr, resampling_operator

    for (H, h) in ((97, 31), (120, 40), (64, 9)):
        f = Fraction(H, h) if H % h else H // h
        for lo, hi in ((0, 1), (3, 7), (h - 2, h), (0, h)):
            a, b = covered_hr(lo, hi, f, H)
            assert a == (lo * H) // h and b == min(H, -((-hi * H) // h))
            span = Span(lo, hi, lo, hi, lo == 0, hi == h)
            assert span.hr(f, H)[2:] == (a, b)
        if H % h:
            op = resampling_operator("area", (H, H), (h, h))
            rows, cols = op.hr_window((3, 7), (0, h))
            assert (rows.start, rows.stop) == covered_hr(3, 7, f, H) and (cols.start, cols.stop) == (0, H)
