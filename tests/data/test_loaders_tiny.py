"""Dataset loaders on tiny files written into tmp_path (no shared data needed)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from optisr.data import DATASETS, Sample, get_dataset
from optisr.errors import ConfigError, InputFileError, ShapeError
from optisr.io.rasters import write_pfm

H, W = 6, 8


def _rgb(path: Path, h: int = H, w: int = W, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, 3), value, np.uint8)
    img[0, 0] = (10, 20, 30)  # BGR on disk
    assert cv2.imwrite(str(path), img)


def _grey(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def _mk(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _check(sample: Sample, units: str, shape=(H, W)) -> None:
    assert sample.guide.shape == (*shape, 3) and sample.guide.dtype == np.float32
    assert 0.0 <= sample.guide.min() and sample.guide.max() <= 1.0
    assert sample.depth.shape == shape and sample.depth.dtype == np.float32
    assert sample.mask.shape == shape and sample.mask.dtype == bool
    assert np.all(np.isnan(sample.depth[~sample.mask]))
    assert np.all(np.isfinite(sample.depth[sample.mask]))
    assert sample.units == units


def test_middlebury30_pack(tmp_path):
    for i in (1, 2, 3):
        _rgb(tmp_path / "RGB" / f"Middlebury_0{i}_output_color.png")
        depth = np.full((H, W), 40 * i, np.uint8)
        depth[2, 3] = 0
        _grey(tmp_path / "Depth" / f"Middlebury_0{i}_output_depth.png", depth)
    _rgb(tmp_path / "RGB" / "Middlebury_09_output_color.png")  # no depth: ignored
    ds = get_dataset("middlebury30", tmp_path)
    assert len(ds) == 3 and ds.names[0] == "Middlebury_01_output"
    assert (ds.units, ds.report_units, ds.report_scale) == ("disparity8", "0-255", 1.0)
    s = ds[1]
    _check(s, "disparity8")
    assert not s.mask[2, 3] and s.mask.sum() == H * W - 1 and np.nanmax(s.depth) == 80.0
    np.testing.assert_allclose(s.guide[0, 0], np.array([30, 20, 10]) / 255.0)  # RGB order
    assert [x.name for x in ds] == ds.names
    with pytest.raises(IndexError):
        ds[3]


def test_middlebury2005_pmba_with_lr(tmp_path):
    for n in (1, 2, 10):
        _rgb(tmp_path / "test_color" / f"{n}.png")
        _grey(tmp_path / "test_gt" / f"{n}.png", np.full((H, W), 100, np.uint8))
        _grey(tmp_path / "testx2" / f"{n}.png", np.full((H // 2, W // 2), 100, np.uint8))
    ds = get_dataset("middlebury2005", tmp_path, lr_scale=2)
    assert ds.names == ["Art", "Books", "10"]
    s = ds[0]
    _check(s, "disparity8")
    assert s.lr_depth.shape == (H // 2, W // 2) and s.lr_mask.all()
    with pytest.raises(InputFileError, match="testx4"):
        get_dataset("middlebury2005", tmp_path, lr_scale=4)


def test_middlebury0506_disparity_to_mm(tmp_path):
    scene = tmp_path / "2005" / "Art"
    _rgb(scene / "view1.png")
    disp = np.full((H, W), 50, np.uint8)
    disp[0, 1] = 0
    _grey(scene / "disp1.png", disp)
    (scene / "dmin.txt").write_text("200\n")
    ds = get_dataset("middlebury0506", tmp_path)
    assert ds.names == ["2005/Art/view1"] and ds.report_scale == 0.1
    s = ds[0]
    _check(s, "mm")
    assert not s.mask[0, 1]
    np.testing.assert_allclose(s.depth[s.mask], 160.0 * 3740.0 / 250.0, rtol=1e-6)
    raw = get_dataset("middlebury0506", scene, units="disparity")[0]
    assert raw.units == "disparity" and np.nanmax(raw.depth) == 50.0


@pytest.mark.parametrize("little", [True, False])
def test_middlebury2014_pfm_calib(tmp_path, little):
    scene = tmp_path / "Adirondack-perfect"
    _rgb(scene / "im0.png")
    disp = np.full((H, W), 90.0, np.float32)
    disp[H - 1, 0] = np.inf  # bottom-left: stored first in the PFM
    write_pfm(scene / "disp0.pfm", disp, little_endian=little)
    (scene / "calib.txt").write_text(
        "cam0=[1000 0 4; 0 1000 3; 0 0 1]\ncam1=[1000 0 5; 0 1000 3; 0 0 1]\n"
        "doffs=10\nbaseline=200.5\nwidth=8\nheight=6\nndisp=128\n"
    )
    skipped = tmp_path / "Bad-imperfect"
    _rgb(skipped / "im0.png")
    write_pfm(skipped / "disp0.pfm", disp)
    (skipped / "calib.txt").write_text((scene / "calib.txt").read_text())
    ds = get_dataset("middlebury2014", tmp_path)
    assert ds.names == ["Adirondack-perfect/view0"]
    s = ds[0]
    _check(s, "mm")
    assert not s.mask[H - 1, 0] and s.mask.sum() == H * W - 1
    np.testing.assert_allclose(s.depth[s.mask], 200.5 * 1000.0 / 100.0, rtol=1e-6)
    assert len(get_dataset("middlebury2014", tmp_path, include_imperfect=True)) == 2
    px = get_dataset("middlebury2014", scene, units="px")[0]
    assert np.nanmax(px.depth) == 90.0


def test_middlebury2014_bad_calib(tmp_path):
    _rgb(tmp_path / "im0.png")
    write_pfm(tmp_path / "disp0.pfm", np.ones((H, W), np.float32))
    (tmp_path / "calib.txt").write_text("width=8\n")
    with pytest.raises(InputFileError, match="calib.txt: calibration lacks cam0"):
        get_dataset("middlebury2014", tmp_path)


def test_rgbdd_and_real(tmp_path):
    for key in ("20200101000001", "20200101000002"):
        _rgb(tmp_path / "RGB" / f"{key}_RGB.jpg")
        depth = np.full((H, W), 1234, np.uint16)
        depth[1, 1] = 0
        _grey(tmp_path / "Depth" / f"{key}_HR_gt.png", depth)
        _grey(tmp_path / "DepthLR" / f"{key}_LR_fill_depth.png", np.full((3, 3), 1200, np.uint16))
    ds = get_dataset("rgbdd", tmp_path)
    assert len(ds) == 2 and (ds.units, ds.report_units, ds.report_scale) == ("mm", "cm", 0.1)
    s = ds[0]
    _check(s, "mm")
    assert s.lr_depth is None and not s.mask[1, 1] and np.nanmax(s.depth) == 1234.0
    real = get_dataset("rgbdd_real", tmp_path)[1]
    assert real.lr_depth.shape == (3, 3) and np.all(real.lr_depth == 1200.0)
    (tmp_path / "DepthLR" / "20200101000002_LR_fill_depth.png").unlink()
    with pytest.raises(InputFileError, match="20200101000002_LR_fill_depth"):
        get_dataset("rgbdd-real", tmp_path)


def test_nyuv2_npy(tmp_path):
    depth_dir = _mk(tmp_path / "Depth")
    for i in (1001, 1000):
        _rgb(tmp_path / "RGB" / f"{i}.jpg")
        np.save(depth_dir / f"{i}.npy", np.full((H, W), 2.5, np.float32))
    ds = get_dataset("nyuv2", tmp_path)
    assert ds.names == ["1000", "1001"] and ds.report_scale == 100.0
    s = ds[0]
    _check(s, "m")
    assert s.mask.all() and np.all(s.depth == 2.5)


def test_nyuv2_mat_h5py(tmp_path):
    h5py = pytest.importorskip("h5py")
    n, h, w = 5, 4, 6
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)  # natural (N, H, W, 3)
    depths = rng.uniform(0.5, 9.0, (n, h, w)).astype(np.float32)
    depths[2, 0, 0] = 0.0
    with h5py.File(tmp_path / "nyu_depth_v2_labeled.mat", "w") as f:
        f["images"] = images.transpose(0, 3, 2, 1)  # MATLAB layout as seen by h5py: (N, 3, W, H)
        f["depths"] = depths.transpose(0, 2, 1)  # (N, W, H)
    ds = get_dataset("nyuv2", tmp_path, indices=[2, 4])
    assert type(ds).__name__ == "NYUv2Mat" and ds.names == ["0002", "0004"]
    s = ds[0]
    _check(s, "m", shape=(h, w))
    np.testing.assert_allclose(s.guide, images[2] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(s.depth[s.mask], depths[2][depths[2] > 0])
    assert not s.mask[0, 0]
    with pytest.raises(ConfigError, match="out of range"):
        get_dataset("nyuv2-mat", tmp_path / "nyu_depth_v2_labeled.mat")  # default 1000..1448
    with pytest.raises(InputFileError, match="cannot open"):
        (tmp_path / "bad.mat").write_bytes(b"MATLAB 5.0 MAT-file, not HDF5")
        get_dataset("nyuv2", tmp_path / "bad.mat")


def test_diml_layout(tmp_path):
    scene = tmp_path / "test" / "HR" / "sceneA"
    for stem in ("in_0001", "in_0002"):
        _rgb(scene / "color" / f"{stem}_c.png")
        _grey(scene / "depth_filled" / f"{stem}_depth_filled.png", np.full((H, W), 2750, np.uint16))
    _rgb(tmp_path / "train" / "HR" / "sceneB" / "color" / "x_c.png")
    ds = get_dataset("diml", tmp_path)
    assert ds.names == ["sceneA/in_0001", "sceneA/in_0002"] and ds.report_scale == 0.1
    _check(ds[0], "mm")
    assert len(get_dataset("diml", scene)) == 2
    with pytest.raises(InputFileError, match="no DIML"):
        get_dataset("diml", tmp_path, split="train")


def test_folder_pairs(tmp_path):
    for stem in ("a", "b", "c"):
        _rgb(tmp_path / "rgb" / f"{stem}_color.png")
    depth_dir = _mk(tmp_path / "depth")
    for stem in ("a", "b"):
        np.save(depth_dir / f"{stem}_depth.npy", np.full((H, W), 3.0, np.float32))
    options = {"guide_suffix": "_color", "depth_suffix": "_depth", "report_units": "cm", "report_scale": 100.0}
    ds = get_dataset("folder", tmp_path, units="m", **options)
    assert ds.names == ["a", "b"] and ds.units == "m" and ds.report_units == "cm"
    _check(ds[0], "m")
    with pytest.raises(InputFileError, match="matching stems"):
        get_dataset("folder", tmp_path)


def test_size_mismatch_is_shape_error(tmp_path):
    _rgb(tmp_path / "guide" / "x.png", h=H + 1)
    _grey(_mk(tmp_path / "depth") / "x.png", np.ones((H, W), np.uint8))
    with pytest.raises(ShapeError, match="pixel-aligned"):
        get_dataset("folder", tmp_path)[0]


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_missing_folder_names_path_and_layout(tmp_path, name):
    missing = tmp_path / "nothing_here"
    with pytest.raises(InputFileError) as info:
        get_dataset(name, missing)
    assert str(missing) in str(info.value)
    assert "expected" in str(info.value)


def test_unknown_dataset_suggests(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'middlebury30'"):
        get_dataset("middlebury3", tmp_path)
