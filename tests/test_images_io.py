"""Photo IO: formats, bit depths, grey/alpha, EXIF orientation, errors, atomic writes."""

from __future__ import annotations

import io

import numpy as np
import pytest

from optisr.errors import InputFileError, ShapeError
from optisr.io.images import from_float, read_image, to_float, write_image

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".webp"])
@pytest.mark.parametrize("channels", [None, 3, 4])
def test_lossless_round_trip_8bit(tmp_path, ext, channels):
    if ext == ".bmp" and channels == 4:
        pytest.skip("BMP drops alpha")
    shape = (7, 5) if channels is None else (7, 5, channels)
    img = RNG.integers(0, 256, shape).astype(np.uint8)
    params = (
        {"quality": 101} if ext == ".webp" else {}
    )  # WebP quality > 100 = lossless in OpenCV
    path = write_image(tmp_path / f"a{ext}", img, **params)
    back = read_image(path)
    if (
        ext == ".webp" and channels is None
    ):  # WebP has no grey mode: it comes back as R = G = B
        assert back.shape == (*img.shape, 3) and (back == img[..., None]).all()
        return
    assert back.shape == img.shape and back.dtype == np.uint8
    if ext != ".webp" or channels != 4:
        np.testing.assert_array_equal(back, img)


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("channels", [None, 3, 4])
def test_16bit_stays_16bit(tmp_path, ext, channels):
    shape = (6, 4) if channels is None else (6, 4, channels)
    img = RNG.integers(0, 65536, shape).astype(np.uint16)
    back = read_image(write_image(tmp_path / f"b{ext}", img))
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, img)


def test_rgb_order_is_kept(tmp_path):
    img = np.zeros((2, 2, 3), np.uint8)
    img[..., 0] = 255  # pure red
    back = read_image(write_image(tmp_path / "red.png", img))
    assert back[0, 0].tolist() == [255, 0, 0]


def test_jpeg_grey_and_colour(tmp_path):
    grey = np.full((16, 16), 128, np.uint8)
    assert read_image(write_image(tmp_path / "g.jpg", grey)).ndim == 2
    rgba16 = np.full((8, 8, 4), 40000, np.uint16)
    out = read_image(
        write_image(tmp_path / "c.jpeg", rgba16)
    )  # 16 → 8 bit, alpha dropped
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert abs(int(out[0, 0, 0]) - round(40000 / 257)) <= 2


def test_jpeg_exif_orientation(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    arr = np.zeros((10, 20, 3), np.uint8)  # wide image, red left half
    arr[:, :10, 0] = 255
    exif = pil.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    pil.fromarray(arr).save(buf, format="JPEG", exif=exif, quality=95)
    path = tmp_path / "rot.jpg"
    path.write_bytes(buf.getvalue())
    img = read_image(path)
    assert img.shape[:2] == (20, 10)  # displayed upright: tall
    assert img[2, 5, 0] > 200 and img[-3, 5, 0] < 60  # red half now on top


def test_grey_alpha_png_reads_as_rgba(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    la = np.stack([np.full((4, 4), 100, np.uint8), np.full((4, 4), 7, np.uint8)], -1)
    pil.fromarray(la).save(tmp_path / "la.png")
    img = read_image(tmp_path / "la.png")
    assert img.shape[-1] == 4 and img[0, 0].tolist() == [100, 100, 100, 7]


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: None, "file not found"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(b"\x89PNG garbage"), "cannot decode"),
        (lambda p: p.mkdir(), "directory"),
    ],
)
def test_bad_input_names_the_file(tmp_path, make, fragment):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(InputFileError, match=fragment) as err:
        read_image(path)
    assert "bad.png" in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, OSError)


def test_unsupported_extension(tmp_path):
    with pytest.raises(InputFileError, match="unsupported image type"):
        read_image(tmp_path / "x.gif")
    with pytest.raises(InputFileError, match="unsupported image type"):
        write_image(tmp_path / "x.gif", np.zeros((2, 2), np.uint8))


def test_write_rejects_bad_arrays_and_leaves_nothing(tmp_path):
    with pytest.raises(ShapeError):
        write_image(tmp_path / "x.png", np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ShapeError):
        write_image(tmp_path / "x.png", np.zeros((2, 2), np.float64))
    assert list(tmp_path.iterdir()) == []


def test_write_replaces_atomically(tmp_path):
    path = tmp_path / "sub" / "o.png"
    write_image(path, np.zeros((3, 3), np.uint8))
    write_image(path, np.full((3, 3), 9, np.uint8))
    assert read_image(path)[0, 0] == 9
    assert [p.name for p in path.parent.iterdir()] == ["o.png"]


def test_float_conversions():
    u8 = np.array([0, 128, 255], np.uint8)
    np.testing.assert_array_equal(from_float(to_float(u8), np.uint8), u8)
    u16 = np.array([0, 1, 65535], np.uint16)
    np.testing.assert_array_equal(from_float(to_float(u16), np.uint16), u16)
    assert from_float(np.array([-0.5, 2.0]), np.float32).tolist() == [0.0, 1.0]


def test_atomic_path_gives_usual_permissions(tmp_path):
    import os
    import stat

    from optisr.io.atomic import atomic_path

    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


# ------------------------------------------------------- header checks, orientation, quiet decode


def _png_declaring(path, width, height):
    """A valid tiny PNG whose IHDR then claims ``width × height`` (CRC fixed): a decompression bomb."""
    import struct
    import zlib

    write_image(path, np.zeros((4, 4, 3), np.uint8))
    b = bytearray(path.read_bytes())
    b[16:24] = struct.pack(">II", width, height)  # IHDR data starts at byte 16
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))  # CRC over type + data
    path.write_bytes(bytes(b))
    return path


def test_huge_declared_size_is_one_line_error(tmp_path):
    path = _png_declaring(tmp_path / "bomb.png", 100_000, 100_000)
    with pytest.raises(InputFileError, match=r"bomb\.png: image too large") as info:
        read_image(path)
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize("ext", [".png", ".webp", ".jpg"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_in_every_format(tmp_path, ext, orientation):
    pil = pytest.importorskip("PIL.Image")
    from PIL import ImageOps

    arr = np.zeros((16, 24, 3), np.uint8)  # smooth but asymmetric, so JPEG keeps it recognisable
    arr[:8, :12] = 250
    arr[:, :, 1] = np.arange(24, dtype=np.uint8)[None, :] * 10
    exif = pil.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{ext}"
    extra = {"lossless": True} if ext == ".webp" else {}
    pil.fromarray(arr).save(path, exif=exif, **extra)
    expected = np.asarray(ImageOps.exif_transpose(pil.open(path)))
    got = read_image(path)
    assert got.shape == expected.shape
    if ext == ".jpg":  # lossy: compare loosely, but tightly enough to catch a wrong rotation
        assert np.abs(got.astype(int) - expected.astype(int)).mean() < 20
    else:
        np.testing.assert_array_equal(got, expected)


def test_truncated_png_gives_no_opencv_log_lines(tmp_path, capfd):
    full = write_image(tmp_path / "full.png", RNG.integers(0, 256, (64, 64, 3)).astype(np.uint8))
    cut = tmp_path / "cut.png"
    cut.write_bytes(full.read_bytes()[:200])
    with pytest.raises(InputFileError, match="cut.png"):
        read_image(cut)
    assert capfd.readouterr().err == ""  # OpenCV's own "[ WARN:0@...]" line is silenced


def test_to_rgb_float_repeats_grey_drops_alpha_and_scales_by_dtype():
    from optisr.io.images import to_rgb_float

    grey = np.array([[0, 65535]], np.uint16)
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 7
    np.testing.assert_array_equal(to_rgb_float(grey), np.array([[[0.0] * 3, [1.0] * 3]], np.float32))
    np.testing.assert_array_equal(to_rgb_float(rgba), np.array([[[1.0, 0, 0]] * 2], np.float32))
    assert to_rgb_float(np.full((2, 2, 3), 1.5)).max() == 1.0 and to_rgb_float(rgba).dtype == np.float32


def test_to_rgb8_rounds_16_bit_and_float_repeats_grey_drops_alpha():
    from optisr.io.images import to_rgb8

    np.testing.assert_array_equal(to_rgb8(np.array([[0, 257 * 200, 65535]], np.uint16)), [[[0] * 3, [200] * 3, [255] * 3]])
    np.testing.assert_array_equal(to_rgb8(np.array([[[0.5, 1.2, -1.0, 0.3]]], np.float32)), [[[128, 255, 0]]])
    out = to_rgb8(np.zeros((2, 3, 1), np.uint8))
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
