"""Tests for optisr.io.rasters: depth/geo raster IO and guide reading."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from optisr.errors import ConfigError, InputFileError, OptiSRError, ShapeError
from optisr.io import rasters
from optisr.io.rasters import (
    exr_supported,
    geo_for_upsampled,
    rasterio_available,
    read_guide,
    read_pfm,
    read_raster,
    write_pfm,
    write_raster,
)


def _shared_data() -> Path | None:
    env = os.environ.get("OPTISR_DATA_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    return path if path.is_dir() else None


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


# ------------------------------------------------------------------------------------- PNG


def test_png16_roundtrip_keeps_uint16_and_zero_is_invalid(tmp_path):
    depth = np.array([[0, 1, 1000], [65535, 3830, 7]], dtype=np.uint16)
    write_raster(tmp_path / "d.png", depth)
    r = read_raster(tmp_path / "d.png")
    assert r.dtype_on_disk == "uint16" and r.data.dtype == np.uint16
    np.testing.assert_array_equal(r.data, depth)
    np.testing.assert_array_equal(r.mask, depth != 0)
    assert np.isnan(r.as_float()[0, 0]) and r.as_float()[1, 1] == 3830.0
    assert _leftovers(tmp_path) == []


def test_png8_roundtrip_and_zero_invalid_switch(tmp_path):
    depth = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_raster(tmp_path / "d.png", depth)
    r = read_raster(tmp_path / "d.png", zero_invalid=False)
    assert r.dtype_on_disk == "uint8"
    np.testing.assert_array_equal(r.data, depth)
    assert r.mask.all()


def test_float_to_png16_rounds_and_clips_like_input(tmp_path):
    write_raster(tmp_path / "in.png", np.full((2, 3), 500, np.uint16))
    like = read_raster(tmp_path / "in.png")
    pred = np.array([[1.4, 1.6, -20.0], [70000.0, np.nan, 2999.5]])
    write_raster(tmp_path / "out.png", pred, like=like)
    out = read_raster(tmp_path / "out.png")
    assert out.dtype_on_disk == "uint16"
    np.testing.assert_array_equal(out.data, [[1, 2, 0], [65535, 0, 3000]])
    np.testing.assert_array_equal(out.mask, [[True, True, False], [True, False, True]])


def test_float_to_png_without_dtype_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="uint16"):
        write_raster(tmp_path / "x.png", np.ones((2, 2), np.float32))
    assert not (tmp_path / "x.png").exists()


def test_invalid_value_marks_pixels(tmp_path):
    write_raster(tmp_path / "d.png", np.array([[65535, 5], [6, 7]], np.uint16))
    r = read_raster(tmp_path / "d.png", invalid_value=65535)
    np.testing.assert_array_equal(r.mask, [[False, True], [True, True]])


# ------------------------------------------------------------------------------- TIFF / NPY


def test_float_tiff_roundtrip_nan_and_nodata(tmp_path):
    depth = np.array([[1.5, np.nan], [np.inf, -2.25]], np.float32)
    write_raster(tmp_path / "d.tif", depth)
    r = read_raster(tmp_path / "d.tif")
    assert r.dtype_on_disk == "float32" and r.geo is None
    np.testing.assert_array_equal(r.mask, [[True, False], [False, True]])
    assert r.data[0, 0] == 1.5 and r.data[1, 1] == -2.25

    write_raster(tmp_path / "n.tif", depth, nodata=-9999.0)
    r2 = read_raster(tmp_path / "n.tif")
    assert r2.nodata == -9999.0
    assert r2.data[0, 1] == -9999.0
    np.testing.assert_array_equal(r2.mask, r.mask)


def test_npy_roundtrip_and_shape_squeeze(tmp_path):
    depth = np.linspace(0.5, 4.0, 12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "a.npy", depth[None])  # (1, H, W) is accepted
    r = read_raster(tmp_path / "a.npy")
    np.testing.assert_array_equal(r.data, depth)
    assert r.mask.all()  # 0 is not special for floats
    write_raster(tmp_path / "b.npy", depth, mask=depth > 1.0)
    b = np.load(tmp_path / "b.npy")
    assert np.isnan(b[0, 0]) and b[2, 3] == 4.0


# ---------------------------------------------------------------------------------------- PFM


@pytest.mark.parametrize("little", [True, False])
def test_pfm_roundtrip_both_endians_bottom_up(tmp_path, little):
    depth = np.arange(6, dtype=np.float32).reshape(2, 3) + 0.5
    depth[0, 2] = np.inf
    write_pfm(tmp_path / "d.pfm", depth, little_endian=little)
    raw = (tmp_path / "d.pfm").read_bytes()
    header = b"Pf\n3 2\n" + (b"-1.0\n" if little else b"1.0\n")
    assert raw.startswith(header)
    first_stored = np.frombuffer(raw[len(header) : len(header) + 4], "<f4" if little else ">f4")[0]
    assert first_stored == depth[1, 0]  # bottom row comes first on disk
    np.testing.assert_array_equal(read_pfm(tmp_path / "d.pfm"), depth)
    r = read_raster(tmp_path / "d.pfm")
    assert r.dtype_on_disk == "float32" and not r.mask[0, 2] and r.mask.sum() == 5


def test_pfm_handwritten_big_endian_and_colour(tmp_path):
    data = np.array([[1.0, 2.0], [3.0, 4.0]], ">f4")
    (tmp_path / "b.pfm").write_bytes(b"Pf\n2 2\n2.5\n" + np.flipud(data).tobytes())
    np.testing.assert_array_equal(read_pfm(tmp_path / "b.pfm"), data.astype(np.float32))
    colour = np.zeros((2, 2, 3), np.float32)
    write_pfm(tmp_path / "c.pfm", colour)
    assert read_pfm(tmp_path / "c.pfm").shape == (2, 2, 3)
    with pytest.raises(InputFileError, match="1 channel, got 3"):
        read_raster(tmp_path / "c.pfm")


def test_write_raster_pfm_is_float32_little_endian(tmp_path):
    write_raster(tmp_path / "x.pfm", np.ones((3, 2)) * 7.0)
    assert (tmp_path / "x.pfm").read_bytes().startswith(b"Pf\n2 3\n-1.0\n")
    np.testing.assert_array_equal(read_pfm(tmp_path / "x.pfm"), np.full((3, 2), 7.0, np.float32))


# ------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("missing.png", None, "file not found"),
        ("empty.png", b"", "empty"),
        ("corrupt.png", b"\x89PNG\r\n\x1a\nthis is not a png", "cannot decode"),
        ("bad.pfm", b"P6\n2 2\n255\n", "not a PFM"),
        ("short.pfm", b"Pf\n4 4\n-1.0\n" + b"\x00" * 8, "truncated"),
        ("bad.npy", b"not numpy at all", "cannot read .npy"),
        ("bad.tif", b"II*\x00garbage", "cannot read TIFF"),
        ("file.xyz", b"abc", "unsupported raster extension"),
    ],
)
def test_bad_inputs_raise_input_file_error_naming_the_file(tmp_path, name, content, fragment):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputFileError, match=fragment) as info:
        read_raster(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert isinstance(info.value, OSError) and isinstance(info.value, OptiSRError)


def test_rgb_png_and_zero_size_are_rejected(tmp_path):
    cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputFileError, match="needs 1 channel, got 3"):
        read_raster(tmp_path / "rgb.png")
    np.save(tmp_path / "zero.npy", np.zeros((0, 5), np.float32))
    with pytest.raises(InputFileError, match="empty raster"):
        read_raster(tmp_path / "zero.npy")
    np.save(tmp_path / "vol.npy", np.zeros((2, 3, 4), np.float32))
    with pytest.raises(InputFileError, match="1 channel"):
        read_raster(tmp_path / "vol.npy")


def test_write_errors_and_atomicity(tmp_path, monkeypatch):
    with pytest.raises(ShapeError):
        write_raster(tmp_path / "x.npy", np.zeros((2, 3, 4)))
    with pytest.raises(ShapeError, match="mask shape"):
        write_raster(tmp_path / "x.npy", np.zeros((2, 3)), mask=np.ones((3, 2), bool))
    with pytest.raises(ConfigError, match="extension"):
        write_raster(tmp_path / "x.jpg", np.zeros((2, 3), np.uint8))
    target = tmp_path / "keep.tif"
    write_raster(target, np.ones((2, 2), np.float32))
    before = target.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    import tifffile

    monkeypatch.setattr(tifffile, "imwrite", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_raster(target, np.zeros((2, 2), np.float32))
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------- EXR


def test_exr_roundtrip_or_clear_error(tmp_path):
    depth = np.array([[0.25, 1.5], [2.0, np.nan]], np.float32)
    if not exr_supported():
        with pytest.raises(ConfigError, match="OpenEXR"):
            write_raster(tmp_path / "d.exr", depth)
        pytest.skip("this OpenCV build has no OpenEXR codec")
    write_raster(tmp_path / "d.exr", depth)
    r = read_raster(tmp_path / "d.exr")
    np.testing.assert_array_equal(r.mask, [[True, True], [True, False]])
    np.testing.assert_allclose(r.data[r.mask], depth[r.mask])


# ---------------------------------------------------------------------------------------- geo


@pytest.mark.skipif(not rasterio_available(), reason="rasterio (optisr[geo]) not installed")
def test_geotiff_roundtrip_keeps_crs_nodata_and_upsampled_transform(tmp_path):
    from affine import Affine
    from rasterio.crs import CRS

    transform = Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 5200000.0)
    geo = {"crs": CRS.from_epsg(32632), "transform": transform, "profile": {}}
    src = np.arange(20, dtype=np.float32).reshape(4, 5)
    src[1, 1] = -9999.0
    write_raster(tmp_path / "lr.tif", src, geo=geo, nodata=-9999.0)
    lr = read_raster(tmp_path / "lr.tif")
    assert lr.geo is not None and lr.geo["crs"] == CRS.from_epsg(32632)
    assert lr.geo["transform"] == transform and lr.nodata == -9999.0
    assert not lr.mask[1, 1] and lr.mask.sum() == 19
    assert lr.geo["profile"]["compress"].lower() == "deflate"
    import tifffile

    with tifffile.TiffFile(tmp_path / "lr.tif") as tif:
        assert int(tif.pages[0].predictor) == 3

    up = geo_for_upsampled(lr.geo, 4)
    assert up["transform"].a == 7.5 and up["transform"].e == -7.5
    assert (up["transform"].c, up["transform"].f) == (500000.0, 5200000.0)
    assert up["profile"]["width"] == 20 and up["profile"]["height"] == 16
    assert lr.geo["transform"] == transform  # input untouched
    hr = np.kron(lr.as_float(), np.ones((4, 4), np.float32))
    write_raster(tmp_path / "hr.tif", hr, like=lr, geo=up, mask=np.isfinite(hr))
    back = read_raster(tmp_path / "hr.tif")
    assert back.geo["crs"] == lr.geo["crs"] and back.geo["transform"] == up["transform"]
    assert back.mask.sum() == 19 * 16
    import rasterio

    with rasterio.open(tmp_path / "lr.tif") as a, rasterio.open(tmp_path / "hr.tif") as b:
        assert a.bounds == b.bounds


def test_geo_for_upsampled_rejects_bad_scale():
    with pytest.raises(ConfigError):
        geo_for_upsampled({"transform": None}, 2)
    with pytest.raises(ConfigError):
        geo_for_upsampled({"transform": object()}, 0)


def test_geotiff_without_rasterio_warns_and_reads(tmp_path, monkeypatch):
    if not rasterio_available():
        pytest.skip("needs rasterio to write the GeoTIFF fixture")
    import rasterio
    from affine import Affine

    profile = {"driver": "GTiff", "width": 3, "height": 3, "count": 1, "dtype": "float32"}
    transform = Affine(0.01, 0, 8.0, 0, -0.01, 47.0)
    with rasterio.open(tmp_path / "g.tif", "w", crs="EPSG:4326", transform=transform, **profile) as dst:
        dst.write(np.ones((3, 3), np.float32), 1)
    monkeypatch.setattr(rasters, "rasterio_available", lambda: False)
    with pytest.warns(UserWarning, match="CRS and transform are dropped"):
        r = read_raster(tmp_path / "g.tif")
    assert r.geo is None and r.data.shape == (3, 3)


# -------------------------------------------------------------------------------------- guide


def test_read_guide_8bit_rgb_order_and_range(tmp_path):
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    cv2.imwrite(str(tmp_path / "g.png"), rgb[:, :, ::-1])
    g = read_guide(tmp_path / "g.png")
    assert g.shape == (2, 3, 3) and g.dtype == np.float32
    np.testing.assert_array_equal(g[0, 0], [1.0, 0.0, 0.0])


def test_read_guide_16bit_grey_and_rgba(tmp_path):
    rgb16 = np.full((2, 2, 3), 65535, np.uint16)
    rgb16[..., 2] = 0  # blue = 0 -> stored first in BGR
    cv2.imwrite(str(tmp_path / "g16.png"), rgb16[:, :, ::-1])
    np.testing.assert_allclose(read_guide(tmp_path / "g16.png")[0, 0], [1.0, 1.0, 0.0])
    cv2.imwrite(str(tmp_path / "grey.png"), np.array([[0, 51]], np.uint8))
    grey = read_guide(tmp_path / "grey.png")
    assert grey.shape == (1, 2, 3)
    np.testing.assert_allclose(grey[0, 1], [0.2, 0.2, 0.2], rtol=1e-6)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 1] = 255  # green in BGRA
    rgba[..., 3] = 10  # alpha is dropped
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    np.testing.assert_array_equal(read_guide(tmp_path / "a.png")[1, 1], [0.0, 1.0, 0.0])


def test_read_guide_errors(tmp_path):
    with pytest.raises(InputFileError, match="file not found"):
        read_guide(tmp_path / "nope.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(InputFileError, match="bad.jpg: cannot decode"):
        read_guide(tmp_path / "bad.jpg")


# --------------------------------------------------------------------------------- shared data


def test_shared_middlebury2014_pfm_matches_png():
    root = _shared_data()
    folder = root / "depth_middlebury2014_artL_stereo" if root else None
    if folder is None or not folder.is_dir():
        pytest.skip("shared data not available")
    pfm = read_raster(folder / "disp0GT.pfm")
    png = read_raster(folder / "disp0GT.png", invalid_value=65535)
    assert pfm.data.shape == (554, 694)
    np.testing.assert_array_equal(pfm.mask, png.mask)
    assert 0.99 < pfm.mask.mean() < 1.0
    np.testing.assert_allclose(png.data[png.mask] / 257.0, pfm.data[pfm.mask], atol=0.02)
    assert 37.9 < pfm.data[pfm.mask].min() and pfm.data[pfm.mask].max() < 111.1


def test_read_guide_as_stored_dtype(tmp_path):
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 9
    cv2.imwrite(str(tmp_path / "g.png"), rgb[:, :, ::-1])
    raw = read_guide(tmp_path / "g.png", as_float=False)
    assert raw.dtype == np.uint8 and raw.flags.c_contiguous
    np.testing.assert_array_equal(raw, rgb)  # RGB order, like the float reader
    np.testing.assert_array_equal(raw.astype(np.float32) / 255.0, read_guide(tmp_path / "g.png"))
    cv2.imwrite(str(tmp_path / "g16.png"), rgb[:, :, ::-1].astype(np.uint16) * 257)
    raw16 = read_guide(tmp_path / "g16.png", as_float=False)
    assert raw16.dtype == np.uint16 and raw16.shape == (2, 3, 3)
    np.testing.assert_array_equal(raw16, rgb.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "grey.png"), rgb[:, :, 0])
    grey = read_guide(tmp_path / "grey.png", as_float=False)
    assert grey.dtype == np.uint8 and grey.shape == (2, 3, 3)
    np.testing.assert_array_equal(grey, np.repeat(rgb[:, :, :1], 3, axis=2))


# ------------------------------------------------------- header checks, orientation, quiet decode


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A valid tiny PNG whose IHDR then claims ``width × height`` (CRC fixed): a decompression bomb."""
    import struct
    import zlib

    cv2.imwrite(str(path), np.zeros((4, 4, 3), np.uint8))
    b = bytearray(path.read_bytes())
    b[16:24] = struct.pack(">II", width, height)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    path.write_bytes(bytes(b))
    return path


@pytest.mark.parametrize("reader", [read_guide, read_raster])
def test_huge_declared_size_is_one_line_error(tmp_path, reader):
    path = _png_declaring(tmp_path / "bomb.png", 100_000, 100_000)
    with pytest.raises(InputFileError, match=r"bomb\.png: image too large") as info:
        reader(path)  # was a PIL DecompressionBombError traceback in read_guide
    assert len(str(info.value).splitlines()) == 1


def test_guide_applies_exif_orientation_like_read_image(tmp_path):
    from PIL import Image

    from optisr.io.images import read_image

    arr = np.random.default_rng(1).integers(0, 256, (5, 8, 3)).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90° clockwise
    path = tmp_path / "g.png"
    Image.fromarray(arr).save(path, exif=exif)
    guide = read_guide(path, as_float=False)
    assert guide.shape == (8, 5, 3)
    np.testing.assert_array_equal(guide, np.rot90(arr, -1))
    np.testing.assert_array_equal(guide, read_image(path))
    assert read_raster(_grey_with_orientation(tmp_path / "d.png", 6)).shape == (2, 3)  # rasters: as stored


def _grey_with_orientation(path: Path, orientation: int) -> Path:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.full((2, 3), 7, np.uint8)).save(path, exif=exif)
    return path


def test_truncated_png_gives_only_our_error(tmp_path, capfd):
    cv2.imwrite(str(tmp_path / "full.png"), np.random.default_rng(0).integers(0, 256, (64, 64, 3)).astype(np.uint8))
    cut = tmp_path / "cut.png"
    cut.write_bytes((tmp_path / "full.png").read_bytes()[:200])
    for reader in (read_guide, read_raster):
        with pytest.raises(InputFileError, match="cut.png"):
            reader(cut)
    assert capfd.readouterr().err == ""
