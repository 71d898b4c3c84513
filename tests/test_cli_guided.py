"""Tests for ``optisr guided`` (optisr.cli.guided), on tiny generated files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from optisr.cli.main import main
from optisr.guided.baselines import fbs_available
from optisr.io.rasters import rasterio_available, read_raster, write_raster
from optisr.ops.operators import make_operator

SCALE = 4


def _scene(H: int = 32, W: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 guide with two colour regions; (H, W) depth in mm following them."""
    yy, xx = np.mgrid[0:H, 0:W]
    left = xx + 0.3 * yy < 0.55 * W
    guide = np.where(left[..., None], [200, 40, 40], [30, 60, 220]).astype(np.uint8)
    depth = np.where(left, 1200.0, 3400.0) + 5.0 * yy
    return guide, depth


def _area(x: np.ndarray, scale: int = SCALE, op: str = "area") -> np.ndarray:
    return make_operator(op, x.shape, scale).apply(torch.from_numpy(x.astype(np.float64))).numpy()


def _write_guide(path: Path, rgb: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))
    return path


@pytest.fixture
def files(tmp_path):
    """rgb.png (32×32) and depth.png (8×8 uint16 mm, one invalid 0 pixel)."""
    guide, depth = _scene()
    lr = np.rint(_area(depth)).astype(np.uint16)
    lr[2, 3] = 0
    _write_guide(tmp_path / "rgb.png", guide)
    write_raster(tmp_path / "depth.png", lr)
    return tmp_path, lr


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["guided", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


# -------------------------------------------------------------------------------- formats


def test_png16_in_png16_out_is_exactly_consistent(files, capsys):
    tmp, lr = files
    out = tmp / "hr.png"
    rc, stdout, err = _run(capsys, "--guide", tmp / "rgb.png", "--source", tmp / "depth.png", "--scale", 4, "-o", out)
    assert rc == 0, err
    hr = read_raster(out)
    assert hr.dtype_on_disk == "uint16" and hr.shape == (32, 32)
    assert hr.mask.all()  # dense output: the invalid LR pixel is filled, never written as 0
    valid = lr != 0
    np.testing.assert_array_equal(_area(hr.data)[valid], lr[valid])  # rounding keeps block means
    assert str(out) in stdout and "max|Dx-s| 0\t" in stdout and " s\t" in stdout
    assert stdout.endswith("fidelity auto: exact\n")  # a clean source: auto solved exactly, and says so
    assert _leftovers(tmp) == []


@pytest.mark.parametrize("ext", [".tif", ".npy", ".pfm"])
def test_float_source_round_trip_stays_float32(tmp_path, capsys, ext):
    guide, depth = _scene()
    lr = (_area(depth) / 1000.0).astype(np.float32)  # metres
    lr[0, 0] = np.nan
    _write_guide(tmp_path / "rgb.png", guide)
    write_raster(tmp_path / f"lr{ext}", lr)
    out = tmp_path / f"hr{ext}"
    rc, _, err = _run(
        capsys, "--guide", tmp_path / "rgb.png", "--source", tmp_path / f"lr{ext}", "--scale", 4, "-o", out
    )
    assert rc == 0, err
    hr = read_raster(out)
    assert hr.dtype_on_disk == "float32" and hr.shape == (32, 32) and hr.mask.all()
    valid = np.isfinite(lr)
    assert np.abs(_area(hr.data)[valid] - lr[valid]).max() < 1e-5


def test_float_source_to_png_is_refused_before_solving(tmp_path, capsys):
    guide, depth = _scene()
    _write_guide(tmp_path / "rgb.png", guide)
    np.save(tmp_path / "lr.npy", _area(depth).astype(np.float32))
    rc, _, err = _run(
        capsys,
        "--guide",
        tmp_path / "rgb.png",
        "--source",
        tmp_path / "lr.npy",
        "--scale",
        4,
        "-o",
        tmp_path / "hr.png",
    )
    assert rc == 1 and "float32" in err and ".tif" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "hr.png").exists()


@pytest.mark.skipif(not rasterio_available(), reason="rasterio (optisr[geo]) not installed")
def test_geotiff_keeps_crs_and_scales_transform(tmp_path, capsys):
    from affine import Affine
    from rasterio.crs import CRS

    guide, depth = _scene()
    transform = Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 5200000.0)
    geo = {"crs": CRS.from_epsg(32632), "transform": transform, "profile": {}}
    write_raster(tmp_path / "dem.tif", _area(depth).astype(np.float32), geo=geo, nodata=-9999.0)
    _write_guide(tmp_path / "rgb.png", guide)
    out = tmp_path / "dem_x4.tif"
    rc, _, err = _run(
        capsys, "--guide", tmp_path / "rgb.png", "--source", tmp_path / "dem.tif", "--scale", 4, "-o", out
    )
    assert rc == 0, err
    hr = read_raster(out)
    assert hr.geo["crs"] == CRS.from_epsg(32632)
    assert hr.geo["transform"] == Affine(7.5, 0.0, 500000.0, 0.0, -7.5, 5200000.0)
    assert hr.shape == (32, 32) and hr.dtype_on_disk == "float32"


# -------------------------------------------------------------------------------- methods


@pytest.mark.parametrize("method", ["default", "bicubic", "guided-filter", "jbu", "fbs"])
def test_each_method_runs(files, capsys, method):
    tmp, _ = files
    out = tmp / "hr.npy"
    argv = ["--guide", tmp / "rgb.png", "--source", tmp / "depth.png", "--scale", 4, "-o", out, "--method", method]
    rc, stdout, err = _run(capsys, *argv)
    if method == "fbs" and not fbs_available():
        assert rc == 1 and "fbs" in err and not out.exists()
        return
    assert rc == 0, err
    hr = np.load(out)
    assert hr.shape == (32, 32) and hr.dtype == np.float32 and np.isfinite(hr).all()
    assert 1000 < hr.min() and hr.max() < 3700 and "max|Dx-s|" in stdout


def test_color_only_options_are_rejected_for_baselines(files, capsys):
    tmp, _ = files
    rc, _, err = _run(
        capsys,
        "--guide",
        tmp / "rgb.png",
        "--source",
        tmp / "depth.png",
        "--scale",
        4,
        "-o",
        tmp / "hr.png",
        "--method",
        "jbu",
        "--mode",
        "soft",
    )
    assert rc == 1 and "graph methods (default, model, color)" in err


def test_soft_mode_and_other_operators(files, capsys):
    tmp, _ = files
    for i, extra in enumerate(
        [
            ["--mode", "soft", "--lam", "10"],
            ["--operator", "bicubic"],
            ["--operator", "gaussian", "--sigma", "1.5"],
            ["--operator", "sum"],
        ]
    ):
        rc, _, err = _run(
            capsys,
            "--guide",
            tmp / "rgb.png",
            "--source",
            tmp / "depth.png",
            "--scale",
            4,
            "-o",
            tmp / f"hr{i}.tif",
            *extra,
        )
        assert rc == 0, (extra, err)
        assert read_raster(tmp / f"hr{i}.tif").shape == (32, 32)


def test_help_describes_default_model_and_fallback(capsys):
    with pytest.raises(SystemExit):
        main(["guided", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "learned graph model shipped with optisr" in out and "colour graph if this install has none" in out


# ---------------------------------------------------------------------------------- masks


def test_invalid_value_and_mask_file_free_their_blocks(files, capsys):
    tmp, lr = files
    bad = lr.copy()
    bad[5, 5] = 9999  # a sensor's "no reading" value
    write_raster(tmp / "depth_bad.png", bad)
    mask = np.ones(lr.shape, np.uint8)
    mask[6, 1] = 0
    np.save(tmp / "mask.npy", mask)
    out = tmp / "hr.png"
    rc, _, err = _run(
        capsys,
        "--guide",
        tmp / "rgb.png",
        "--source",
        tmp / "depth_bad.png",
        "--scale",
        4,
        "-o",
        out,
        "--invalid-value",
        9999,
        "--mask",
        tmp / "mask.npy",
    )
    assert rc == 0, err
    hr = read_raster(out).data
    valid = (bad != 0) & (bad != 9999) & (mask != 0)
    np.testing.assert_array_equal(_area(hr)[valid], bad[valid])
    assert hr.max() < 4000  # the 9999 block follows its neighbours instead
    # Without --invalid-value the 9999 pixel is data, and its block reproduces it.
    rc, _, err = _run(
        capsys, "--guide", tmp / "rgb.png", "--source", tmp / "depth_bad.png", "--scale", 4, "-o", out, "--overwrite"
    )
    assert rc == 0 and _area(read_raster(out).data)[5, 5] == 9999


def test_mask_on_the_wrong_grid_is_a_one_line_error(files, capsys):
    tmp, _ = files
    np.save(tmp / "mask.npy", np.ones((32, 32), np.uint8))
    rc, _, err = _run(
        capsys,
        "--guide",
        tmp / "rgb.png",
        "--source",
        tmp / "depth.png",
        "--scale",
        4,
        "-o",
        tmp / "hr.png",
        "--mask",
        tmp / "mask.npy",
    )
    assert rc == 1 and "LR" in err and "mask.npy" in err and len(err.strip().splitlines()) == 1
    assert not (tmp / "hr.png").exists()


# ---------------------------------------------------------------------------------- sizes


def test_size_mismatch_explains_crop_and_pad(files, capsys):
    tmp, _ = files
    guide, _ = _scene(30, 29)
    _write_guide(tmp / "small.png", guide)
    out = tmp / "hr.png"
    rc, _, err = _run(
        capsys, "--guide", tmp / "small.png", "--source", tmp / "depth.png", "--scale", 4, "-o", out, "--method", "jbu"
    )
    assert rc == 1 and "--crop" in err and "--pad" in err and "30×29" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    rc, _, err = _run(capsys, "--guide", tmp / "rgb.png", "--source", tmp / "depth.png", "--scale", 8, "-o", out)
    assert rc == 1 and "--crop" in err and "--scale 4" in err


def test_crop_larger_guide_and_smaller_guide(files, capsys):
    tmp, lr = files
    big, _ = _scene(35, 38)
    _write_guide(tmp / "big.png", big)
    rc, _, err = _run(
        capsys, "--guide", tmp / "big.png", "--source", tmp / "depth.png", "--scale", 4, "-o", tmp / "a.png", "--crop"
    )
    assert rc == 0 and "cropped guide 35×38 -> 32×32" in err
    assert read_raster(tmp / "a.png").shape == (32, 32)
    small, _ = _scene(30, 29)
    _write_guide(tmp / "small.png", small)
    rc, _, err = _run(
        capsys, "--guide", tmp / "small.png", "--source", tmp / "depth.png", "--scale", 4, "-o", tmp / "b.png", "--crop"
    )
    assert rc == 0 and "source 8×8 -> 7×7" in err
    hr = read_raster(tmp / "b.png").data
    assert hr.shape == (28, 28)
    valid = lr[:7, :7] != 0
    np.testing.assert_array_equal(_area(hr)[valid], lr[:7, :7][valid])


def test_pad_and_partial_blocks(files, capsys):
    tmp, lr = files
    small, _ = _scene(30, 29)
    _write_guide(tmp / "small.png", small)
    valid = lr != 0
    rc, _, err = _run(
        capsys,
        "--guide",
        tmp / "small.png",
        "--source",
        tmp / "depth.png",
        "--scale",
        4,
        "-o",
        tmp / "pad.png",
        "--pad",
        "--method",
        "bicubic",
    )
    assert rc == 0 and "padded guide 30×29 -> 32×32" in err
    assert read_raster(tmp / "pad.png").shape == (32, 32)
    # The colour method takes ceil(guide / scale) = source as is: partial last blocks, guide-sized output.
    rc, _, err = _run(
        capsys, "--guide", tmp / "small.png", "--source", tmp / "depth.png", "--scale", 4, "-o", tmp / "native.png"
    )
    assert rc == 0, err
    hr = read_raster(tmp / "native.png").data
    assert hr.shape == (30, 29)
    np.testing.assert_array_equal(_area(hr)[valid], lr[valid])
    big, _ = _scene(35, 38)
    _write_guide(tmp / "big.png", big)
    rc, _, err = _run(
        capsys, "--guide", tmp / "big.png", "--source", tmp / "depth.png", "--scale", 4, "-o", tmp / "c.png", "--pad"
    )
    assert rc == 1 and "--crop" in err


# ------------------------------------------------------------------------------ file errors


def test_missing_file_names_it_and_writes_nothing(files, capsys):
    tmp, _ = files
    out = tmp / "hr.png"
    rc, stdout, err = _run(
        capsys, "--guide", tmp / "nope_rgb.png", "--source", tmp / "depth.png", "--scale", 4, "-o", out
    )
    assert rc == 1 and "nope_rgb.png" in err and len(err.strip().splitlines()) == 1
    assert stdout == "" and not out.exists() and _leftovers(tmp) == []
    rc, _, err = _run(capsys, "--guide", tmp / "rgb.png", "--source", tmp / "gone.png", "--scale", 4, "-o", out)
    assert rc == 1 and "gone.png" in err and not out.exists()


def test_existing_output_needs_overwrite(files, capsys):
    tmp, _ = files
    out = tmp / "hr.png"
    out.write_bytes(b"keep me")
    argv = ["--guide", tmp / "rgb.png", "--source", tmp / "depth.png", "--scale", 4, "-o", out]
    rc, _, err = _run(capsys, *argv)
    assert rc == 1 and "--overwrite" in err and out.read_bytes() == b"keep me"
    rc, _, err = _run(capsys, *argv, "--overwrite")
    assert rc == 0 and read_raster(out).shape == (32, 32)


def test_output_written_meanwhile_is_not_replaced(files, capsys, monkeypatch):
    """Two runs, same output, no --overwrite: the one that finishes second fails, the first's file stays."""
    from optisr.cli import guided_runner

    tmp, _ = files
    out = tmp / "hr.png"
    real = guided_runner.write_raster

    def other_run_finishes_first(path, *a, **k):
        Path(path).write_bytes(b"the other run's result")
        return real(path, *a, **k)

    monkeypatch.setattr(guided_runner, "write_raster", other_run_finishes_first)
    rc, _, err = _run(capsys, "--guide", tmp / "rgb.png", "--source", tmp / "depth.png", "--scale", 4, "-o", out)
    assert rc == 1 and out.read_bytes() == b"the other run's result"
    assert len(err.strip().splitlines()) == 1 and "hr.png" in err and "--overwrite" in err
    assert _leftovers(tmp) == []


@pytest.mark.parametrize("target", ["depth.png", "rgb.png"])
def test_output_onto_an_input_is_refused_even_with_overwrite(files, capsys, target):
    tmp, _ = files
    before = (tmp / target).read_bytes()
    rc, _, err = _run(capsys, "--guide", tmp / "rgb.png", "--source", tmp / "depth.png", "--scale", 4,
                      "-o", tmp / target, "--overwrite")  # fmt: skip
    assert rc == 1 and "overlaps the input" in err and len(err.strip().splitlines()) == 1
    assert (tmp / target).read_bytes() == before


def test_output_under_a_file_is_a_one_line_error_before_solving(files, capsys, monkeypatch):
    from optisr.cli import guided_runner

    tmp, _ = files
    (tmp / "afile").write_text("x")
    monkeypatch.setattr(guided_runner, "read_guide", lambda *a, **k: pytest.fail("read the guide before the check"))
    rc, _, err = _run(capsys, "--guide", tmp / "rgb.png", "--source", tmp / "depth.png", "--scale", 4,
                      "-o", tmp / "afile" / "hr.png")  # fmt: skip
    assert rc == 1 and "is a file" in err and len(err.strip().splitlines()) == 1


# -------------------------------------------------------------------------------- folders


def test_folder_mode_pairs_by_stem_and_survives_a_bad_file(files, capsys):
    tmp, lr = files
    gdir, sdir, odir = tmp / "rgb", tmp / "depth", tmp / "out"
    gdir.mkdir()
    sdir.mkdir()
    guide, _ = _scene()
    for stem in ("a", "b", "c"):
        _write_guide(gdir / (f"{stem}_color.png" if stem == "b" else f"{stem}.png"), guide)
        write_raster(sdir / f"{stem}.png", lr)
    (sdir / "c.png").write_bytes(b"not a png")  # corrupt
    rc, stdout, err = _run(capsys, "--guide", gdir, "--source", sdir, "--scale", 4, "-o", odir)
    assert rc == 1
    assert sorted(p.name for p in odir.iterdir()) == ["a.png", "b.png"]
    assert "c.png" in err and "1 of 3 files failed" in err
    assert len([line for line in stdout.splitlines() if line.strip()]) == 2


def test_folder_mode_lists_unmatched_sources(files, capsys):
    tmp, lr = files
    gdir, sdir = tmp / "rgb", tmp / "depth"
    gdir.mkdir()
    sdir.mkdir()
    guide, _ = _scene()
    _write_guide(gdir / "a.png", guide)
    for stem in ("a", "x1", "x2"):
        write_raster(sdir / f"{stem}.png", lr)
    rc, _, err = _run(capsys, "--guide", gdir, "--source", sdir, "--scale", 4, "-o", tmp / "out")
    assert rc == 1 and "x1.png" in err and "x2.png" in err and "2 of 3" in err
    assert not (tmp / "out").exists()
    rc, _, err = _run(capsys, "--guide", tmp / "rgb.png", "--source", sdir, "--scale", 4, "-o", tmp / "out")
    assert rc == 1 and "--guide must be a folder" in err


# ------------------------------------------------------------------------- memory-lean path


@pytest.fixture
def no_min_tile(monkeypatch):
    """Lift the minimum tile size so that the tiled path runs on these tiny images."""
    import optisr.guided.tiling as tiling

    monkeypatch.setattr(tiling, "MIN_TILE_HR", 1)
    monkeypatch.setattr(tiling, "MIN_TILE_LR", 1)


@pytest.fixture
def solve_spy(monkeypatch):
    """Records the guide dtype, solve dtype and tile size of every guided_upsample call of the CLI."""
    import optisr.guided.api as api

    calls, real = [], api.guided_upsample

    def spy(source, guide, scale, **kw):
        calls.append((guide.dtype, kw["dtype"], kw["tile_size"]))
        return real(source, guide, scale, **kw)

    monkeypatch.setattr(api, "guided_upsample", spy)
    return calls


@pytest.mark.parametrize("operator", ["area", "bicubic"])
def test_lean_tiled_path_matches_untiled_within_rounding(files, capsys, monkeypatch, solve_spy, operator, no_min_tile):
    """--tile-size forces the large-image path (uint8 guide, float32 tiled solve, strip-wise
    rounding and consistency check); it writes the untiled file up to rounding, and 16-bit area
    output stays exactly consistent."""
    import optisr.guided.consistency as strips

    tmp, lr = files
    common = ["--guide", tmp / "rgb.png", "--source", tmp / "depth.png", "--scale", 4, "--operator", operator]
    rc, whole_line, err = _run(capsys, *common, "-o", tmp / "whole.png", "--quiet")
    assert rc == 0, err
    monkeypatch.setattr(strips, "STRIP_PIXELS", 64)  # strips of one LR row: 8 strips
    rc, lean_line, err = _run(capsys, *common, "-o", tmp / "lean.png", "--tile-size", 8, "--quiet")
    assert rc == 0, err
    assert solve_spy == [(np.uint8, torch.float64, None), (np.uint8, torch.float32, 8)]
    whole, lean = read_raster(tmp / "whole.png"), read_raster(tmp / "lean.png")
    assert lean.dtype_on_disk == "uint16" and lean.shape == (32, 32) and lean.mask.all()
    diff = np.abs(whole.data.astype(np.int64) - lean.data.astype(np.int64))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.1
    if operator == "area":
        valid = lr != 0
        np.testing.assert_array_equal(_area(lean.data)[valid], lr[valid])
        assert "max|Dx-s| 0\t" in lean_line and "max|Dx-s| 0\t" in whole_line
    else:
        err_whole = float(whole_line.split("max|Dx-s| ")[1].split("\t")[0])
        assert abs(float(lean_line.split("max|Dx-s| ")[1].split("\t")[0]) - err_whole) <= 1.0


def test_lean_path_float_output_and_strip_wise_check(tmp_path, capsys, monkeypatch, solve_spy, no_min_tile):
    """float32 output of the lean path: the untiled float64 result to float32 precision; the
    strip-wise consistency error equals the whole-image one."""
    import optisr.guided.consistency as strips

    guide, depth = _scene()
    lr = _area(depth).astype(np.float32)
    lr[0, 0] = np.nan
    _write_guide(tmp_path / "rgb.png", guide)
    write_raster(tmp_path / "lr.tif", lr)
    common = ["--guide", tmp_path / "rgb.png", "--source", tmp_path / "lr.tif", "--scale", 4, "--quiet"]
    assert _run(capsys, *common, "-o", tmp_path / "whole.tif")[0] == 0
    monkeypatch.setattr(strips, "STRIP_PIXELS", 64)
    rc, line, err = _run(capsys, *common, "-o", tmp_path / "lean.tif", "--tile-size", 8)
    assert rc == 0, err
    assert [c[1] for c in solve_spy] == [torch.float64, torch.float32]
    whole, lean = read_raster(tmp_path / "whole.tif").data, read_raster(tmp_path / "lean.tif").data
    assert np.abs(whole - lean).max() <= 1e-4 * float(np.nanmax(lr) - np.nanmin(lr))
    valid = np.isfinite(lr)
    direct = np.abs(_area(lean)[valid] - lr[valid]).max()
    assert float(line.split("max|Dx-s| ")[1].split("\t")[0]) == pytest.approx(direct, rel=1e-2, abs=1e-9)


def test_tol_reaches_the_solver_and_device_is_checked(files, capsys, monkeypatch):
    import optisr.guided.api as api

    seen = {}
    real = api.guided_upsample

    def spy(*a, **k):
        seen.update(tol=k.get("tol"), device=k.get("device"))
        return real(*a, **k)

    monkeypatch.setattr(api, "guided_upsample", spy)
    tmp, _ = files
    base = ["--guide", tmp / "rgb.png", "--source", tmp / "depth.png", "--scale", 4, "--method", "color"]
    rc, _, err = _run(capsys, *base, "-o", tmp / "a.tif", "--tol", "1e-3", "--device", "cpu")
    assert rc == 0, err
    assert seen == {"tol": 1e-3, "device": torch.device("cpu")}
    rc, _, err = _run(capsys, *base, "-o", tmp / "b.tif", "--tol", "2")
    assert rc == 1 and "--tol must be in (0, 1)" in err and not (tmp / "b.tif").exists()
    rc, _, err = _run(capsys, *base, "-o", tmp / "c.tif", "--device", "potato")
    assert rc == 1 and "--device 'potato'" in err and len(err.strip().splitlines()) == 1
    if not torch.cuda.is_available():
        rc, _, err = _run(capsys, *base, "-o", tmp / "d.tif", "--device", "cuda")
        assert rc == 1 and "no CUDA" in err
    rc, _, err = _run(capsys, "--guide", tmp / "rgb.png", "--source", tmp / "depth.png", "--scale", 4,
                      "--method", "jbu", "-o", tmp / "e.tif", "--device", "cpu")
    assert rc == 1 and "--device applies to the graph methods" in err


def test_small_tile_size_is_raised_with_a_one_line_note(files, capsys, solve_spy):
    tmp, _ = files
    args = ["--guide", tmp / "rgb.png", "--source", tmp / "depth.png", "--scale", 4, "--method", "color"]
    rc, out, err = _run(capsys, *args, "-o", tmp / "a.tif", "-t", 1, "--quiet")
    assert rc == 0, err
    assert err.strip() == "optisr guided: note: --tile-size 1 is below the minimum of 128 HR pixels at ×4 (max(128, 32·scale)); using 128"
    assert solve_spy[-1][2] == 128
    rc, _, err = _run(capsys, *args, "-o", tmp / "b.tif", "--tile", 0, "--quiet")
    assert rc == 0 and err == "" and solve_spy[-1][2] == 0  # 0 (never tile) is kept


def test_device_default_is_auto_and_baselines_accept_it(files, capsys):
    """--device defaults to auto everywhere; a baseline runs on the CPU and only rejects an explicit device."""
    tmp, _ = files
    args = ["--guide", tmp / "rgb.png", "--source", tmp / "depth.png", "--scale", 4, "--method", "jbu"]
    rc, _, err = _run(capsys, *args, "-o", tmp / "a.tif")
    assert rc == 0, err
    rc, _, err = _run(capsys, *args, "-o", tmp / "b.tif", "--device", "auto")
    assert rc == 0, err
    rc, _, err = _run(capsys, *args, "-o", tmp / "c.tif", "-g", 0)
    assert rc == 1 and "--device applies to the graph methods" in err


# -------------------------------------------------------------------------------- fidelity


def _noisy_files(tmp_path: Path, sigma: float = 40.0) -> tuple[Path, Path, np.ndarray]:
    from optisr.data.synthetic import make_scene

    sc = make_scene(128, 128, seed=11)
    depth = 500.0 + 3000.0 * (sc.depth_clean - sc.depth_clean.min()) / np.ptp(sc.depth_clean)
    lr = _area(depth, 4) + np.random.default_rng(0).normal(0.0, sigma, (32, 32))
    guide = _write_guide(tmp_path / "g.png", (sc.guide * 255).astype(np.uint8))
    src = tmp_path / "s.tif"
    write_raster(src, lr.astype(np.float32))
    return guide, src, lr


def test_auto_fidelity_reports_the_noise_and_its_choice_in_one_line(tmp_path, capsys):
    guide, src, lr = _noisy_files(tmp_path)
    rc, out, err = _run(capsys, "--guide", guide, "--source", src, "--scale", 4, "-o", tmp_path / "a.tif",
                        "--method", "color", "--quiet")  # fmt: skip
    assert rc == 0, err
    assert len(out.strip().splitlines()) == 1
    report = out.strip().split("\t")[-1]
    # a clean rendered guide is not filtered: the line starts with the source's noise
    assert report.startswith("noise σ ") and "(estimated) -> fidelity auto: soft λ " in report
    sigma = float(report.split()[2])
    assert 25.0 < sigma < 60.0  # the noise added was 40
    rc, out, _ = _run(capsys, "--guide", guide, "--source", src, "--scale", 4, "-o", tmp_path / "e.tif",
                      "--method", "color", "--fidelity", "exact", "--quiet")  # fmt: skip
    assert rc == 0 and out.strip().endswith("fidelity exact")
    # a dim, noisy capture of the same guide is: its σ̂ leads the line; --guide-filter off turns it off
    from optisr.degrade.low_light import DIM_INDOOR, degrade_guide
    from optisr.io.images import read_image

    g = read_image(guide).astype(np.float32) / 255.0
    dim = _write_guide(tmp_path / "dim.png", np.round(degrade_guide(g, np.random.default_rng(0), DIM_INDOOR) * 255).astype(np.uint8))
    rc, out, _ = _run(capsys, "--guide", dim, "--source", src, "--scale", 4, "-o", tmp_path / "d.tif",
                      "--method", "color", "--fidelity", "exact", "--quiet")  # fmt: skip
    report = out.strip().split("\t")[-1]
    assert rc == 0 and report.startswith("guide σ ") and report.endswith(" (filtered) -> fidelity exact")
    assert 0.02 < float(report.split()[2]) < 0.2
    rc, out, _ = _run(capsys, "--guide", dim, "--source", src, "--scale", 4, "-o", tmp_path / "n.tif",
                      "--method", "color", "--fidelity", "exact", "--guide-filter", "off", "--quiet")  # fmt: skip
    assert rc == 0 and out.strip().split("\t")[-1] == "fidelity exact"  # no guide part: not filtered
    rc, _, err = _run(capsys, "--guide", guide, "--source", src, "--scale", 4, "-o", tmp_path / "b.tif",
                      "--method", "bicubic", "--guide-filter", "off")  # fmt: skip
    assert rc != 0 and "--guide-filter" in err and "Traceback" not in err
    # --guide-filter always: the clean guide too
    rc, out, _ = _run(capsys, "--guide", guide, "--source", src, "--scale", 4, "-o", tmp_path / "w.tif",
                      "--method", "color", "--fidelity", "exact", "--guide-filter", "always", "--quiet")  # fmt: skip
    report = out.strip().split("\t")[-1]
    assert rc == 0 and report.startswith("guide σ ") and float(report.split()[2]) < 0.02
    auto, exact = read_raster(tmp_path / "a.tif").data, read_raster(tmp_path / "e.tif").data
    assert np.abs(_area(auto) - lr).max() > 1.0 and np.abs(_area(exact) - lr).max() < 1e-2  # auto trusts less


def test_fidelity_options_given_explicitly(tmp_path, capsys):
    guide, src, lr = _noisy_files(tmp_path)
    base = ["--guide", guide, "--source", src, "--scale", 4, "--method", "color", "--quiet"]
    rc, out, err = _run(capsys, *base, "-o", tmp_path / "soft.tif", "--fidelity", "soft", "--lam", 0.5)
    assert rc == 0 and out.strip().endswith("fidelity soft λ 0.5 refined ×1"), (out, err)
    rc, out, err = _run(capsys, *base, "-o", tmp_path / "n.tif", "--noise-sigma", 40)
    assert rc == 0 and "noise σ 40 (given) -> fidelity auto: soft" in out, err
    rc, out, err = _run(capsys, *base, "-o", tmp_path / "m.tif", "--mode", "exact")  # the former name
    assert rc == 0 and out.strip().endswith("fidelity exact"), err
    conf = np.ones((32, 32), np.float32)
    conf[5, 5] = 0.0
    np.save(tmp_path / "c.npy", conf)
    rc, out, err = _run(capsys, *base, "-o", tmp_path / "c.tif", "--fidelity", "robust", "--lam", 1.0,
                        "--confidence", tmp_path / "c.npy")  # fmt: skip
    assert rc == 0 and out.strip().endswith("fidelity robust λ 1"), err
    rc, out, err = _run(capsys, *base, "-o", tmp_path / "ct.tif", "--fidelity", "robust", "--lam", 1.0,
                        "--confidence", tmp_path / "c.npy", "--tile-size", 128)  # fmt: skip
    assert rc == 0, err  # tile-wise: confidence and robust were refused before
    tiled, whole = read_raster(tmp_path / "ct.tif").data, read_raster(tmp_path / "c.tif").data
    assert np.abs(tiled - whole).max() <= 1e-3 * np.ptp(whole)
    rc, out, err = _run(capsys, *base, "-o", tmp_path / "f.tif", "--fidelity", "soft", "--lam", 0.5, "--floor", 0.1)
    assert rc == 0 and out.strip().endswith("fidelity soft λ 0.5 floor 0.1 refined ×1"), (out, err)
    rc, out, err = _run(capsys, *base, "-o", tmp_path / "r0.tif", "--fidelity", "soft", "--lam", 0.5, "--refine", 0)
    assert rc == 0 and out.strip().endswith("fidelity soft λ 0.5"), (out, err)
    assert np.abs(read_raster(tmp_path / "f.tif").data - read_raster(tmp_path / "soft.tif").data).max() > 1.0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lam", "2"], "--lam is the λ of --fidelity soft or robust"),
        (["--fidelity", "soft", "--lam", "-1"], "--lam must be > 0"),
        (["--noise-sigma", "loud"], "--noise-sigma must be auto or a number"),
        (["--fidelity", "exact", "--confidence", "c.npy"], "exact has none"),
        (["--method", "jbu", "--fidelity", "soft"], "apply to the graph methods"),
        (["--method", "jbu", "--floor", "0.1"], "apply to the graph methods"),
        (["--floor", "1.5"], "--floor must be in [0, 1)"),
        (["--confidence", "missing.npy"], "missing.npy"),
    ],
)
def test_fidelity_option_errors_are_one_line(tmp_path, capsys, extra, message):
    guide, src, _ = _noisy_files(tmp_path)
    args = ["--guide", guide, "--source", src, "--scale", 4, "-o", tmp_path / "x.tif", "--quiet"]
    if "--method" not in extra:
        args += ["--method", "color"]
    rc, _, err = _run(capsys, *args, *[str(tmp_path / e) if e.endswith(".npy") else e for e in extra])
    assert rc == 1 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.tif").exists()


def test_the_line_names_the_non_local_term_and_nonlocal_off_drops_it(tmp_path, capsys):
    guide, src, lr = _noisy_files(tmp_path)  # 128² guide, noisy source at ×4, learned graph (default)
    base = ["--guide", guide, "--source", src, "--scale", 4, "--quiet"]
    rc, out, err = _run(capsys, *base, "-o", tmp_path / "a.tif")
    assert rc == 0, err
    assert "fidelity auto: soft λ " in out and out.strip().endswith("refined ×1 non-local κ 0.003")
    rc, out, err = _run(capsys, *base, "-o", tmp_path / "b.tif", "--nonlocal", "off")
    assert rc == 0 and out.strip().endswith("refined ×1"), (out, err)
    a, b = read_raster(tmp_path / "a.tif").data, read_raster(tmp_path / "b.tif").data
    assert not np.array_equal(a, b)
    rc, _, err = _run(capsys, *base, "-o", tmp_path / "c.tif", "--method", "bicubic", "--nonlocal", "off")
    assert rc != 0 and "--nonlocal" in err and "Traceback" not in err


def test_the_line_names_a_registration_shift_and_register_off_drops_it(tmp_path, capsys):
    """A source whose depth is off by (3, -3) px against the guide: the line says the guide was moved."""
    from optisr.data.synthetic import make_scene
    from optisr.guided.registration import shift_image

    sc = make_scene(192, 240, seed=7001)
    depth = shift_image(500.0 + 3000.0 * (sc.depth_clean - sc.depth_clean.min()) / np.ptp(sc.depth_clean), (3, -3))
    guide = _write_guide(tmp_path / "g.png", (sc.guide * 255).astype(np.uint8))
    src = tmp_path / "s.tif"
    write_raster(src, _area(depth, 4).astype(np.float32))
    base = ["--guide", guide, "--source", src, "--scale", 4, "--quiet"]
    rc, out, err = _run(capsys, *base, "-o", tmp_path / "a.tif")
    assert rc == 0, err
    report = out.strip().split("\t")[-1]
    assert report.startswith("guide moved (+") and " px onto the source -> " in report, report
    assert report.endswith("fidelity auto: exact"), report
    rc, out, err = _run(capsys, *base, "-o", tmp_path / "b.tif", "--register", "off")
    assert rc == 0 and "moved" not in out, (out, err)
    a, b = read_raster(tmp_path / "a.tif").data, read_raster(tmp_path / "b.tif").data
    err_a, err_b = (float(np.sqrt(np.mean((x - depth) ** 2))) for x in (a, b))
    assert err_a < 0.7 * err_b
    rc, _, err = _run(capsys, *base, "-o", tmp_path / "c.tif", "--method", "bicubic", "--register", "off")
    assert rc != 0 and "--register" in err and "Traceback" not in err


def test_exclude_outliers_then_registration_as_the_api_does(tmp_path, capsys):
    """Spikes are left out before the registration search (they would swamp its held-out errors):
    with --exclude-outliers a spiky source off by (3, -3) px is still moved, the file equals the
    API's ``guided_upsample(exclude_outliers=True)``, and the line names both."""
    import optisr
    from optisr.data.synthetic import make_scene
    from optisr.guided.registration import shift_image

    sc = make_scene(192, 240, seed=7001)
    depth = shift_image(500.0 + 3000.0 * (sc.depth_clean - sc.depth_clean.min()) / np.ptp(sc.depth_clean), (3, -3))
    guide_rgb = (sc.guide * 255).astype(np.uint8)
    lr = _area(depth, 4)
    rng = np.random.default_rng(3)
    at = rng.choice(lr.size, 40, replace=False)
    lr.flat[at] += 2500.0  # isolated spikes
    guide = _write_guide(tmp_path / "g.png", guide_rgb)
    src = tmp_path / "s.tif"
    write_raster(src, lr.astype(np.float32))
    rc, out, err = _run(capsys, "--guide", guide, "--source", src, "--scale", 4, "--quiet", "-o", tmp_path / "a.tif",
                        "--exclude-outliers")  # fmt: skip
    assert rc == 0, err
    report = out.strip().split("\t")[-1]
    assert report.startswith("guide moved (+") and "outliers left out" in report, report
    want, choice = optisr.guided_upsample(
        lr.astype(np.float32).astype(np.float64), guide_rgb, 4, exclude_outliers=True, return_info=True
    )
    assert choice.guide_shift is not None and choice.outliers >= 30
    assert f"{choice.outliers} outliers left out" in report
    np.testing.assert_allclose(read_raster(tmp_path / "a.tif").data, want, rtol=0, atol=1e-2)
