"""Sources at a non-integer ratio to the guide (e.g. a 180×240 ToF map beside a 480×640 image).

The per-axis matrices at any ratio (against the integer-scale operators, OpenCV's INTER_AREA and
Pillow's BICUBIC), the operator factory, ``guided_upsample(scale=None)`` (exact consistency, a SciPy
direct reference, gradients, errors), tile-wise solves at a ratio (against the untiled solve) and
``optisr guided`` without ``--scale``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import optisr
from optisr.cli.main import main as optisr_main
from optisr.data.synthetic import make_scene
from optisr.errors import ConfigError, ShapeError
from optisr.guided.graph_weights import color_weights
from optisr.guided.tiling import Span, axis_spans, tile_grid, tiled_guided_upsample
from optisr.io.rasters import geo_for_upsampled
from optisr.ops.axis_matrices import axis_matrix, resample_matrix
from optisr.ops.operators import (
    OPERATORS,
    is_resampling,
    make_operator,
    nominal_scale,
    resampling_operator,
    scale_for_sizes,
)
from optisr.solvers.direct import solve_direct

H, W, h, w = 48, 64, 18, 24  # ratio 8/3 on both axes, as RGB-D-D's 384×512 / 144×192


def _step_guide(col: int) -> np.ndarray:
    g = np.zeros((H, W, 3), np.float32)
    g[:, col:] = 1.0
    return g


@pytest.mark.parametrize("kind", OPERATORS)
@pytest.mark.parametrize(("n_in", "f"), [(64, 4), (96, 8), (30, 3), (7, 7)])
def test_resample_matrix_equals_the_integer_operator(kind: str, n_in: int, f: int) -> None:
    assert np.array_equal(resample_matrix(kind, n_in, n_in // f), axis_matrix(kind, n_in, f))


def test_area_is_the_exact_box_integral() -> None:
    a = resample_matrix("area", 8, 3)  # cells [0, 8/3), [8/3, 16/3), [16/3, 8)
    expected = np.array(
        [
            [3, 3, 2, 0, 0, 0, 0, 0],
            [0, 0, 1, 3, 3, 1, 0, 0],
            [0, 0, 0, 0, 0, 2, 3, 3],
        ]
    ) / 8.0
    assert np.allclose(a, expected, atol=1e-15)
    s = resample_matrix("sum", 50, 17)
    assert np.allclose(s.sum(0), 1.0)  # every HR pixel's mass is split over the cells, none lost
    assert np.allclose(resample_matrix("area", 50, 17).sum(1), 1.0)


def test_area_operator_matches_opencv_inter_area() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((H, W)).astype(np.float32)
    op = resampling_operator("area", (H, W), (h, w))
    ours = op.apply(torch.from_numpy(x.astype(np.float64))).numpy()
    ref = cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA)
    assert np.abs(ours - ref).max() < 1e-5


def test_bicubic_operator_matches_pillow() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((H, W)).astype(np.float32)
    op = resampling_operator("bicubic", (H, W), (h, w))
    ours = op.apply(torch.from_numpy(x.astype(np.float64))).numpy()
    ref = np.asarray(Image.fromarray(x, mode="F").resize((w, h), Image.BICUBIC), np.float64)
    assert np.abs(ours - ref).max() < 1e-5


def test_scale_for_sizes_and_the_operator_factory() -> None:
    assert scale_for_sizes((384, 512), (96, 128)) == 4
    assert scale_for_sizes((385, 510), (97, 128)) == 4  # partial last blocks (ceil policy)
    assert scale_for_sizes((8, 8), (1, 1)) == 8
    assert scale_for_sizes((384, 512), (144, 192)) is None
    assert scale_for_sizes((10, 10), (20, 20)) is None
    assert nominal_scale((384, 512), (144, 192)) == 3
    integer = resampling_operator("area", (96, 128), (24, 32))
    assert integer is make_operator("area", (96, 128), 4) and not is_resampling(integer)
    ratio = resampling_operator("area", (H, W), (h, w))
    assert is_resampling(ratio) and ratio.lr_size == (h, w) and ratio.ratio == (H / h, W / w)
    assert ratio.pixels_per_lr == pytest.approx((H / h) * (W / w))
    window = ratio.restrict((0, 4), (1, 5))  # LR rows 0-3 cover HR rows [0, 32/3) -> 0..10
    assert ratio.hr_window((0, 4), (1, 5)) == (slice(0, 11), slice(2, 14))
    assert window.hr_size == (11, 12) and window.lr_size == (4, 4) and window.pixels_per_lr == ratio.pixels_per_lr
    a_y, _ = window.axis_matrices()
    assert np.array_equal(a_y, resample_matrix("area", H, h)[0:4, 0:11])  # whole cells: nothing renormalised
    with pytest.raises(ShapeError, match="must not be finer"):
        resampling_operator("area", (10, 10), (20, 5))


@pytest.mark.parametrize("kind", ["area", "bicubic", "gaussian", "sum"])
def test_exact_solve_at_a_ratio_is_consistent_and_matches_scipy(kind: str) -> None:
    rng = np.random.default_rng(2)
    hh, ww, lh, lw = 16, 24, 6, 9  # 8/3
    guide = rng.random((hh, ww, 3))
    source = rng.random((lh, lw)) * 10
    x = optisr.guided_upsample(source, guide, operator=kind, weights="color", fidelity="exact", tol=1e-12)
    op = resampling_operator(kind, (hh, ww), (lh, lw))
    assert np.abs(op.apply(torch.from_numpy(x)).numpy() - source).max() < 1e-8
    wts = color_weights(torch.from_numpy(guide.transpose(2, 0, 1))[None])
    ref = solve_direct(wts.double(), torch.from_numpy(source)[None, None], op, mode="exact")[0, 0].numpy()
    assert np.abs(x - ref).max() < 1e-6 * np.ptp(ref)


def test_a_step_at_a_ratio_lands_on_the_guides_edge() -> None:
    hr = np.where(np.arange(W)[None, :] >= 32, 1500.0, 1000.0) * np.ones((H, 1))
    op = resampling_operator("area", (H, W), (h, w))
    lr = op.apply(torch.from_numpy(hr)).numpy()
    out = optisr.guided_upsample(lr, _step_guide(32), weights="color")
    assert np.abs(out - hr).max() < 1.0  # 0.2 % of the step (the old integer-only path refused these sizes)
    model = optisr.guided_upsample(lr.astype(np.float32), _step_guide(32))  # the shipped network, too
    assert model.shape == (H, W)
    assert np.abs(op.apply(torch.from_numpy(model.astype(np.float64))).numpy() - lr).max() < 1e-2


def test_noisy_source_at_a_ratio_goes_soft_and_robust_runs() -> None:
    rng = np.random.default_rng(3)
    hh, ww, lh, lw = 192, 256, 72, 96  # the noise estimator wants >= 64² LR pixels
    hr = np.where(np.arange(ww)[None, :] >= 128, 150.0, 100.0) * np.ones((hh, 1))
    lr = resampling_operator("area", (hh, ww), (lh, lw)).apply(torch.from_numpy(hr)).numpy()
    noisy = lr + rng.normal(0, 3, lr.shape)
    guide = np.zeros((hh, ww, 3), np.float32)
    guide[:, 128:] = 1.0
    out, info = optisr.guided_upsample(noisy, guide, weights="color", return_info=True)
    assert info.fidelity == "soft" and info.lam is not None
    exact = optisr.guided_upsample(noisy, guide, weights="color", fidelity="exact")
    assert np.sqrt(np.mean((out - hr) ** 2)) < 0.5 * np.sqrt(np.mean((exact - hr) ** 2))  # denoises
    rob = optisr.guided_upsample(noisy, guide, weights="color", fidelity="robust", lam=1.0)
    assert rob.shape == (hh, ww) and np.isfinite(rob).all()


def test_gradients_at_a_ratio() -> None:
    rng = np.random.default_rng(4)
    hh, ww, lh, lw = 8, 10, 3, 4
    guide = torch.from_numpy(rng.random((3, hh, ww)))
    src = torch.from_numpy(rng.random((1, 1, lh, lw))).requires_grad_(True)

    def f(s: torch.Tensor) -> torch.Tensor:
        return optisr.guided_upsample(s, guide, weights="color", fidelity="exact", tol=1e-12, max_iter=5000)

    assert torch.autograd.gradcheck(f, (src,), eps=1e-6, atol=1e-5)


def test_errors_name_the_fix() -> None:
    lr = np.ones((h, w))
    with pytest.raises(ShapeError, match=r"at ×3 the source must be"):
        optisr.guided_upsample(lr, _step_guide(32), 3)
    with pytest.raises(ConfigError, match="scale=None"):
        optisr.guided_upsample(lr, _step_guide(32), 2.5)
    hand_built = resampling_operator("area", (H, W), (h, w))
    with pytest.raises(ShapeError, match="maps 48×64 onto 18×24, but the guide is 40×64"):
        tiled_guided_upsample(lr, _step_guide(32)[:40], 3, operator=hand_built)
    with pytest.raises(ConfigError, match="restrict the whole operator"):
        hand_built.restrict((0, 9), (0, 12)).hr_window((0, 2), (0, 2))
    with pytest.raises(ShapeError, match="must not be finer"):
        optisr.guided_upsample(np.ones((60, 70)), _step_guide(32))


def test_geo_for_upsampled_per_axis() -> None:
    from affine import Affine

    geo = {"crs": None, "transform": Affine(30.0, 0, 500.0, 0, -30.0, 900.0), "profile": {"width": 24, "height": 18}}
    out = geo_for_upsampled(geo, (H / h, W / w))
    assert out["profile"]["width"] == W and out["profile"]["height"] == H
    assert out["transform"].a == pytest.approx(30.0 * w / W) and out["transform"].e == pytest.approx(-30.0 * h / H)


def _files(tmp_path: Path) -> tuple[Path, Path]:
    g = np.zeros((H, W, 3), np.uint8)
    g[:, 32:] = 200
    guide = tmp_path / "rgb.png"
    assert cv2.imwrite(str(guide), g)
    hr = np.where(np.arange(W)[None, :] >= 32, 1500.0, 1000.0) * np.ones((H, 1))
    lr = resampling_operator("area", (H, W), (h, w)).apply(torch.from_numpy(hr)).numpy()
    source = tmp_path / "lr.png"
    assert cv2.imwrite(str(source), np.round(lr).astype(np.uint16))
    return guide, source


def test_cli_takes_the_ratio_from_the_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    guide, source = _files(tmp_path)
    out = tmp_path / "hr.tif"
    assert optisr_main(["guided", "--guide", str(guide), "--source", str(source), "-o", str(out), "--method", "color"]) == 0
    cap = capsys.readouterr()
    assert "scale 2.667×2.667 from the sizes (18×24 -> 48×64)" in cap.err
    assert "fidelity auto: exact" in cap.out
    err = float(cap.out.split("max|Dx-s| ")[1].split()[0])
    assert err < 1e-2
    x = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert x.shape == (H, W) and abs(float(x[:, :30].mean()) - 1000) < 2 and abs(float(x[:, 34:].mean()) - 1500) < 2
    png = tmp_path / "hr.png"  # integer output: rounded and clipped (consistent rounding needs whole blocks)
    assert optisr_main(["guided", "--guide", str(guide), "--source", str(source), "-o", str(png), "--method", "color", "--scale", "auto"]) == 0
    assert cv2.imread(str(png), cv2.IMREAD_UNCHANGED).dtype == np.uint16


@pytest.mark.parametrize("name", ["bicubic", "guided-filter", "jbu", "fbs"])
def test_baselines_at_any_ratio(name: str) -> None:
    from optisr.guided.baselines import get_baseline

    f = get_baseline(name)
    rng = np.random.default_rng(3)
    src = rng.random((12, 16)) * 1000
    g4 = rng.random((48, 64, 3))
    assert np.array_equal(f(src, g4, None), f(src, g4, 4))  # an integer ratio: the integer path, bit for bit
    g = rng.random((H, W, 3))  # 8/3 the 18×24 source
    lr = rng.random((h, w)) * 1000
    out = f(lr, g, None)
    assert out.shape == (H, W) and np.isfinite(out).all()
    assert np.allclose(f(np.full((h, w), 750.0), g, None), 750.0)  # a constant stays constant
    if name == "bicubic":  # Pillow's bicubic resize to the guide's size
        want = np.asarray(Image.fromarray(lr.astype(np.float32), mode="F").resize((W, H), Image.BICUBIC), np.float64)
        assert np.array_equal(out, want)
    with pytest.raises(ShapeError, match="at least as large"):
        f(lr, g[:10], None)


def test_cli_baseline_at_a_ratio(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    guide, source = _files(tmp_path)
    out = tmp_path / "jbu.tif"
    assert optisr_main(["guided", "--guide", str(guide), "--source", str(source), "-o", str(out), "--method", "jbu"]) == 0
    assert "scale 2.667×2.667 from the sizes (18×24 -> 48×64)" in capsys.readouterr().err
    x = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert x.shape == (H, W) and abs(float(x[:, :28].mean()) - 1000) < 5 and abs(float(x[:, 36:].mean()) - 1500) < 5


def test_cli_ratio_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    guide, source = _files(tmp_path)
    base = ["guided", "--guide", str(guide), "--source", str(source), "-o", str(tmp_path / "o.tif")]
    small = tmp_path / "small.png"
    assert cv2.imwrite(str(small), np.zeros((10, 12, 3), np.uint8))
    for method in ("jbu", "color"):
        args = ["guided", "--guide", str(small), "--source", str(source), "-o", str(tmp_path / "x.tif"), "--method", method]
        assert optisr_main(args) == 1
        assert "the guide must be at least as large as the source" in capsys.readouterr().err
    assert optisr_main([*base, "--crop"]) == 1
    assert "add --scale N" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        optisr_main([*base, "--scale", "x"])
    assert usage.value.code == 2 and "expected an integer or auto" in capsys.readouterr().err
    assert not (tmp_path / "o.tif").exists()


def test_cli_auto_scale_equals_the_explicit_integer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = np.zeros((H, W, 3), np.uint8)
    g[:, 20:] = 200
    assert cv2.imwrite(str(tmp_path / "g.png"), g)
    lr = np.full((H // 4, W // 4), 1000, np.uint16)
    lr[:, 5:] = 1400
    assert cv2.imwrite(str(tmp_path / "s.png"), lr)
    outs = []
    for i, extra in enumerate(([], ["--scale", "4"])):
        out = tmp_path / f"o{i}.tif"
        argv = ["guided", "--guide", str(tmp_path / "g.png"), "--source", str(tmp_path / "s.png"), "-o", str(out)]
        assert optisr_main([*argv, "--method", "color", *extra]) == 0
        outs.append(cv2.imread(str(out), cv2.IMREAD_UNCHANGED))
    assert "from the sizes" not in capsys.readouterr().err  # an integer fits: nothing to say
    assert np.array_equal(outs[0], outs[1])


def test_sum_at_a_ratio_keeps_the_total() -> None:
    """Counts (population) on a 7×9 grid beside a 20×25 guide: the upsampled raster sums to the same total."""
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 500, (7, 9)).astype(np.float64)
    guide = rng.random((20, 25, 3))
    x = optisr.guided_upsample(counts, guide, operator="sum", weights="color", fidelity="exact", tol=1e-12)
    assert x.sum() == pytest.approx(counts.sum(), rel=1e-9)
    op = resampling_operator("sum", (20, 25), (7, 9))
    assert np.abs(op.apply(torch.from_numpy(x)).numpy() - counts).max() < 1e-6


# ----------------------------------------------------------------------- tile-wise at a ratio


@pytest.mark.parametrize(("n_hr", "n_lr"), [(384, 144), (100, 37), (50, 19)])
def test_tile_spans_at_a_ratio_partition_the_hr_axis_and_cover_their_lr_pixels(n_hr: int, n_lr: int) -> None:
    from fractions import Fraction

    f = Fraction(n_hr, n_lr)
    op = resampling_operator("area", (n_hr, n_hr), (n_lr, n_lr))
    assert is_resampling(op)  # no integer scale fits these sizes
    box = resample_matrix("area", n_hr, n_lr)
    spans = axis_spans(n_lr, 7, 3)
    cores = [sp.hr(f, n_hr)[:2] for sp in spans]
    assert cores[0][0] == 0 and cores[-1][1] == n_hr
    assert all(a[1] == b[0] and a[0] < a[1] for a, b in itertools.pairwise(cores))  # a partition, in order
    for sp in spans:
        _, _, p0, p1 = sp.hr(f, n_hr)
        window = op.hr_window((sp.p0, sp.p1), (0, 1))[0]
        assert (p0, p1) == (window.start, window.stop)
        covered = np.nonzero(box[sp.p0 : sp.p1].sum(0))[0]
        assert (covered.min(), covered.max() + 1) == (p0, p1)  # exactly the HR pixels its LR pixels cover
    assert Span(2, 5, 1, 6, False, False).hr(4, 100) == (8, 20, 4, 24)  # integer factors: f·c as before


@pytest.mark.parametrize(
    ("kind", "hr", "lr"),
    [("area", (96, 128), (36, 48)), ("bicubic", (96, 128), (36, 48)), ("area", (101, 131), (37, 50)),
     ("gaussian", (101, 131), (37, 50)), ("sum", (96, 128), (36, 48))],
)  # fmt: skip
def test_tiled_at_a_ratio_matches_the_untiled_solve_and_is_exactly_consistent(
    kind: str, hr: tuple[int, int], lr: tuple[int, int]
) -> None:
    sc = make_scene(*hr, seed=2)
    guide = np.round(sc.guide * 255).astype(np.uint8)
    op = resampling_operator(kind, hr, lr)
    s = op.apply(torch.from_numpy(sc.depth_clean.astype(np.float64))).numpy()
    ref = optisr.guided_upsample(s, guide, None, operator=kind, weights="color", tile_size=0, refine=0, guide_filter=False)
    x = tiled_guided_upsample(s, guide, op.scale, tile=32, operator=op)
    rows, cols = tile_grid(hr, op.scale, 33, 24, lr=lr)
    assert len(rows) > 2 and len(cols) > 2  # really tiled
    assert x.shape == hr and x.dtype == np.float64
    rng = np.ptp(ref)
    assert np.abs(x - ref).max() <= 1.5e-2 * rng  # the integer tiles' bounds (tests/test_guided_tiling.py)
    assert np.sqrt(np.mean((x - ref) ** 2)) <= 1.5e-3 * rng
    consistency = np.abs(op.apply(torch.from_numpy(x)).numpy() - s).max() / np.ptp(s)
    assert consistency <= 1e-9  # the final projection is global: exact to float64 rounding


def _noisy_scene_at_a_ratio(
    hr: tuple[int, int], lr: tuple[int, int], seed: int, sigma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uint8 guide, HR depth on 0–255, its area LR at the sizes' ratio + Gaussian noise of ``sigma``)."""
    sc = make_scene(*hr, seed=seed)
    d = sc.depth_clean.astype(np.float64)
    d = (d - d.min()) / np.ptp(d) * 255.0
    lr_clean = resampling_operator("area", hr, lr).apply(torch.from_numpy(d)).numpy()
    noisy = lr_clean + np.random.default_rng(seed).normal(0.0, sigma, lr)
    return np.round(sc.guide * 255).astype(np.uint8), d, noisy


def test_tile_size_at_a_ratio_through_the_api_soft_masked_and_robust() -> None:
    lr = (108, 144)
    guide, _, noisy = _noisy_scene_at_a_ratio((288, 384), lr, seed=4, sigma=4.0)  # 8/3, 3×3 tiles of 128 HR px
    mask = np.ones(lr, bool)
    mask[40:60, 50:80] = False
    conf = np.where(np.arange(lr[1])[None, :] < 70, 1.0, 0.5) * np.ones((lr[0], 1))
    kw = dict(weights="color", mask=mask)
    ref, ref_info = optisr.guided_upsample(noisy, guide, None, tile_size=0, return_info=True, **kw)
    x, info = optisr.guided_upsample(noisy, guide, None, tile_size=128, return_info=True, **kw)
    assert info.fidelity == ref_info.fidelity == "soft" and info.lam == pytest.approx(ref_info.lam, rel=1e-6)
    assert np.abs(x - ref).max() <= 1.5e-2 * np.ptp(ref)
    for mode in ("soft", "robust"):
        extra = dict(lam=0.5, confidence=conf) if mode == "soft" else dict(lam=0.5, noise_sigma=4.0)
        ref = optisr.guided_upsample(noisy, guide, None, fidelity=mode, tile_size=0, **kw, **extra)
        x = optisr.guided_upsample(noisy, guide, None, fidelity=mode, tile_size=128, **kw, **extra)
        assert np.abs(x - ref).max() <= 1.5e-2 * np.ptp(ref), mode


def test_cli_tiles_at_a_ratio(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hr, lr = (192, 256), (72, 96)  # 8/3, 2×2 tiles of 128 HR px
    sc = make_scene(*hr, seed=5)
    assert cv2.imwrite(str(tmp_path / "rgb.png"), np.round(sc.guide[..., ::-1] * 255).astype(np.uint8))
    s = resampling_operator("area", hr, lr).apply(torch.from_numpy(sc.depth_clean.astype(np.float64))).numpy()
    assert cv2.imwrite(str(tmp_path / "lr.tif"), s.astype(np.float32))
    outs = []
    for tile in ("0", "128"):
        out = tmp_path / f"hr{tile}.tif"
        args = ["guided", "--guide", str(tmp_path / "rgb.png"), "--source", str(tmp_path / "lr.tif"), "-o", str(out)]
        assert optisr_main([*args, "--method", "color", "--tile-size", tile, "--quiet"]) == 0
        cap = capsys.readouterr()
        assert "scale 2.667×2.667 from the sizes (72×96 -> 192×256)" in cap.err
        assert float(cap.out.split("max|Dx-s| ")[1].split()[0]) < 1e-2 * np.ptp(s)
        outs.append(cv2.imread(str(out), cv2.IMREAD_UNCHANGED))
    assert outs[1].shape == hr and np.abs(outs[1] - outs[0]).max() <= 1.5e-2 * np.ptp(outs[0])


def test_tile_problems_at_a_ratio_travel_to_another_process() -> None:
    """What ``--dask`` sends to a worker: a pickled TileProblem solves to the same bits."""
    import pickle

    from optisr.guided.tiling import solve_tile, tile_problems

    hr, lr = (96, 128), (36, 48)
    sc = make_scene(*hr, seed=6)
    guide = np.round(sc.guide * 255).astype(np.uint8)
    op = resampling_operator("bicubic", hr, lr)
    s = op.apply(torch.from_numpy(sc.depth_clean.astype(np.float64))).numpy().astype(np.float32)
    spans = tile_grid(hr, op.scale, 48, 24, lr=lr)
    problems = list(tile_problems(s, guide, op.scale, spans, operator=op, mode="exact", weights=None,
                                  valid=np.ones(lr, bool), lam=1.0, sigma=None, tol=1e-4, max_iter=2000,
                                  dtype=torch.float32))  # fmt: skip
    assert len(problems) == 6  # 2 × 3 cores of 18 LR px
    for p in problems:
        assert p.operator.hr_size == p.guide.shape[:2] and p.operator.lr_size == p.source.shape
        assert np.array_equal(solve_tile(pickle.loads(pickle.dumps(p))), solve_tile(p))


def test_auto_picks_the_floor_on_a_central_crop_at_a_ratio_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above FLOOR_CROP_HR² HR px the floor search runs on a central window, at a ratio as at an integer scale."""
    from optisr.guided import api

    guide, d, noisy = _noisy_scene_at_a_ratio((784, 784), (294, 294), seed=7, sigma=6.0)  # 8/3, just above 768²
    crops = []
    real = api._central_crop_ratio

    def spy(operator, side):  # type: ignore[no-untyped-def]
        crops.append(real(operator, side))
        return crops[-1]

    monkeypatch.setattr(api, "_central_crop_ratio", spy)
    x, info = optisr.guided_upsample(noisy, guide, None, weights="color", tile_size=0, return_info=True)
    assert len(crops) == 1 and info.fidelity == "soft"  # one crop: the floor search (None = the own floor won)
    rows, cols, lr_rows, lr_cols = crops[0]
    assert rows == cols and lr_rows == lr_cols  # a square image: the same window both ways
    assert rows.stop - rows.start <= 770 and lr_rows.stop - lr_rows.start == (768 * 294) // 784
    from optisr.guided.baselines import bicubic as bicubic_baseline

    bicubic = bicubic_baseline(noisy, guide, None)
    assert np.sqrt(np.mean((x - d) ** 2)) < np.sqrt(np.mean((bicubic - d) ** 2))


def test_learned_graph_tile_wise_at_a_ratio_matches_untiled() -> None:
    """The shipped network runs on each tile (with its context) at the nominal scale, as untiled."""
    lr = (108, 144)
    guide, d, noisy = _noisy_scene_at_a_ratio((288, 384), lr, seed=9, sigma=0.0)
    ref = optisr.guided_upsample(noisy, guide, None, tile_size=0)
    x = optisr.guided_upsample(noisy, guide, None, tile_size=128)
    assert np.abs(x - ref).max() <= 1.5e-2 * np.ptp(ref)
    assert np.sqrt(np.mean((x - ref) ** 2)) <= 1.5e-3 * np.ptp(ref)
    assert abs(np.sqrt(np.mean((x - d) ** 2)) - np.sqrt(np.mean((ref - d) ** 2))) <= 0.01 * np.sqrt(np.mean((ref - d) ** 2))


@pytest.mark.parametrize("kind", ["bicubic", "gaussian"])
def test_central_windows_follow_the_whole_images_geometry(kind: str) -> None:
    """The GCV windows (floor and tile-wise λ) of bicubic / Gaussian sources: their operator is the
    whole image's restricted to the window, so it predicts the window's source pixels as the whole
    operator does — also where 4 does not divide the size (an operator made for the crop's own size
    is a fraction of a pixel off there, measured here against it)."""
    from optisr.guided import api
    from optisr.ops.operators import make_operator

    hr = np.random.default_rng(0).normal(size=(1003, 1001)).cumsum(0).cumsum(1)  # smooth, no symmetry
    op = make_operator(kind, hr.shape, 4)
    lr = op.apply_strips(hr, dtype=torch.float64).numpy()
    rows, cols, lr_rows, lr_cols, window = api._central_window(kind, hr.shape, 4, 512)
    assert (rows.stop - rows.start, cols.stop - cols.start) == (512, 512) == window.hr_size
    pred = window.apply_strips(hr[rows, cols], dtype=torch.float64).numpy()
    inner = (slice(3, -3), slice(3, -3))  # away from the window's border (truncated kernels)
    err = np.abs(pred - lr[lr_rows, lr_cols])[inner].max()
    own = make_operator(kind, (512, 512), 4).apply_strips(hr[rows, cols], dtype=torch.float64).numpy()
    off = np.abs(own - lr[lr_rows, lr_cols])[inner].max()
    assert err <= 1e-9 * np.ptp(hr) and off > 1e3 * max(err, 1e-12 * np.ptp(hr)), (err, off)
    # area keeps the operator as given (blocks never cross a window)
    assert api._central_window("area", hr.shape, 4, 512)[4] == "area"
