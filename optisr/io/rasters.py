"""Single-band rasters (depth maps, disparities, geodata) and guide images: read and write.

Formats, chosen by the file extension:

=============  =====================  ==================================================
extension      read / write           notes
=============  =====================  ==================================================
``.png``       8/16-bit grey          float data must be given ``dtype=uint8|uint16``;
                                      values are rounded and clipped on write
``.tif(f)``    float/int, tifffile    georeferenced TIFFs go through rasterio (``geo``
                                      extra); DEFLATE(+predictor) compression
``.npy``       any numeric dtype      ``allow_pickle=False``
``.pfm``       float32                Middlebury: endianness from the scale sign,
                                      rows stored bottom-up
``.exr``       float32 (OpenCV)       only where this OpenCV build has the EXR codec
=============  =====================  ==================================================

Invalid pixels become ``mask == False``: NaN and ±inf always, the raster's ``nodata`` value,
a user ``invalid_value``, and 0 in integer rasters that declare no ``nodata`` (the depth-PNG
convention of NYUv2, RGB-D-D, DIML and Middlebury), unless ``zero_invalid=False``.

Every reading problem raises :class:`~optisr.errors.InputFileError` with a one-line message
that names the file; every write goes through :func:`~optisr.io.atomic.atomic_path`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optisr.errors import ConfigError, InputFileError, ShapeError
from optisr.io._decode import HeaderInfo, apply_orientation, peek_header, quiet_opencv
from optisr.io.atomic import atomic_path

__all__ = [
    "Raster",
    "RASTER_EXTENSIONS",
    "read_raster",
    "write_raster",
    "read_guide",
    "read_pfm",
    "write_pfm",
    "geo_for_upsampled",
    "exr_supported",
    "rasterio_available",
]

RASTER_EXTENSIONS = (".png", ".tif", ".tiff", ".npy", ".pfm", ".exr")
_GEOTIFF_TAGS = (33550, 33922, 34264, 34735)  # pixel scale, tiepoint, transformation, geokeys
_GDAL_NODATA_TAG = 42113


def _cv2():
    """Import OpenCV with the EXR codec enabled (the variable must be set before import)."""
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2

    return cv2


@dataclass
class Raster:
    """A single-band raster as read from disk.

    Attributes:
        data: (H, W) array in the dtype found on disk (uint8, uint16, float32, ...). Invalid
            pixels keep their on-disk value (NaN, 0, nodata); use ``mask`` or
            :meth:`as_float` rather than testing values.
        mask: (H, W) bool, True where the pixel is valid.
        dtype_on_disk: numpy dtype name of the stored samples, e.g. ``"uint16"``.
        geo: for GeoTIFFs read with rasterio, ``{"crs", "transform", "profile"}``; else None.
        nodata: the declared nodata value, or None.
        path: the file it came from, or None.
    """

    data: np.ndarray
    mask: np.ndarray
    dtype_on_disk: str
    geo: dict[str, Any] | None = None
    nodata: float | None = None
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W)."""
        h, w = self.data.shape[:2]
        return h, w

    def as_float(self, fill: float = np.nan) -> np.ndarray:
        """(H, W) float32 copy with invalid pixels set to ``fill`` (NaN by default)."""
        out = self.data.astype(np.float32, copy=True)
        out[~self.mask] = fill
        return out


# ----------------------------------------------------------------------------------- helpers


def _fail(path: Path, problem: str) -> InputFileError:
    return InputFileError(f"{path}: {problem}")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise _fail(path, "file not found")
    if path.is_dir():
        raise _fail(path, "is a folder, expected a file")
    if path.stat().st_size == 0:
        raise _fail(path, "file is empty (0 bytes)")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:  # permissions, I/O errors
        raise _fail(path, f"cannot read file ({exc.strerror or exc})") from exc


def _decode_cv2(path: Path) -> tuple[np.ndarray, HeaderInfo]:
    """Decode an image file with OpenCV; keeps bit depth and channel count (BGR(A) order).

    Returns the pixels as stored (EXIF orientation *not* applied) and the header information.
    Images that declare more than ``MAX_PIXELS`` pixels are refused before decoding.
    """
    cv2 = _cv2()
    raw = _read_bytes(path)
    header = peek_header(path, raw)
    buf = np.frombuffer(raw, dtype=np.uint8)
    try:
        with quiet_opencv():
            img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise _fail(path, f"cannot decode image ({str(exc).strip().splitlines()[-1]})") from exc
    if img is None:
        raise _fail(path, "cannot decode image (corrupt or unsupported format)")
    return img, header


def _to_single_band(path: Path, arr: np.ndarray, what: str = "depth map") -> np.ndarray:
    """Squeeze (H, W, 1) / (1, H, W) to (H, W); reject other channel counts and empty arrays."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    elif arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        if arr.ndim == 3:
            channels = arr.shape[2] if arr.shape[2] <= 4 or arr.shape[0] > 4 else arr.shape[0]
            raise _fail(path, f"a {what} needs 1 channel, got {channels} (array shape {arr.shape})")
        raise _fail(path, f"a {what} needs a 2-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise _fail(path, f"empty raster (size {arr.shape[0]}x{arr.shape[1]})")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise _fail(path, f"unsupported sample type {arr.dtype}; expected integers or floats")
    return arr


def _make_mask(
    data: np.ndarray,
    *,
    nodata: float | None,
    invalid_value: float | None,
    zero_invalid: bool | None,
) -> np.ndarray:
    mask = np.ones(data.shape, dtype=bool)
    if np.issubdtype(data.dtype, np.floating):
        mask &= np.isfinite(data)
    if zero_invalid is None:
        zero_invalid = np.issubdtype(data.dtype, np.integer) and nodata is None
    if zero_invalid:
        mask &= data != 0
    for value in (nodata, invalid_value):
        if value is not None and not np.isnan(value):
            mask &= data != value
    return mask


# --------------------------------------------------------------------------------------- PFM


def read_pfm(path: str | os.PathLike) -> np.ndarray:
    """Read a PFM file (Middlebury disparities).

    The header is ``Pf`` (grey) or ``PF`` (colour), then width and height, then a scale whose
    sign gives the byte order (negative: little-endian). Rows are stored bottom-up.

    Args:
        path: file name.
    Returns:
        (H, W) or (H, W, 3) float32 array, top row first, native byte order.
    Raises:
        InputFileError: if the file is missing, truncated or not a PFM.
    """
    path = Path(path)
    _check_file(path)
    raw = _read_bytes(path)
    tokens: list[bytes] = []
    pos = 0
    # Three header tokens separated by whitespace; a single whitespace byte ends the header.
    while len(tokens) < 4:
        while pos < len(raw) and raw[pos : pos + 1].isspace():
            pos += 1
        if pos < len(raw) and raw[pos : pos + 1] == b"#":  # comment line (non-standard)
            pos = raw.find(b"\n", pos) + 1 or len(raw)
            continue
        start = pos
        while pos < len(raw) and not raw[pos : pos + 1].isspace():
            pos += 1
        if start == pos:
            raise _fail(path, "truncated PFM header")
        tokens.append(raw[start:pos])
    pos += 1  # the single whitespace byte after the scale
    magic = tokens[0]
    if magic not in (b"Pf", b"PF"):
        raise _fail(path, f"not a PFM file (header starts with {magic[:8]!r}, expected b'Pf' or b'PF')")
    try:
        width, height = int(tokens[1]), int(tokens[2])
        scale = float(tokens[3])
    except ValueError as exc:
        raise _fail(path, f"malformed PFM header {b' '.join(tokens)!r}") from exc
    if width <= 0 or height <= 0 or scale == 0:
        raise _fail(path, f"malformed PFM header: width={width}, height={height}, scale={scale}")
    channels = 3 if magic == b"PF" else 1
    dtype = np.dtype("<f4") if scale < 0 else np.dtype(">f4")
    count = width * height * channels
    if len(raw) - pos < count * 4:
        raise _fail(path, f"truncated PFM data: expected {count * 4} bytes, found {len(raw) - pos}")
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=pos)
    shape = (height, width, channels) if channels == 3 else (height, width)
    return np.flipud(data.reshape(shape)).astype(np.float32)


def write_pfm(path: str | os.PathLike, array: np.ndarray, *, little_endian: bool = True) -> None:
    """Write a (H, W) or (H, W, 3) array as PFM (bottom-up rows, scale magnitude 1).

    Args:
        path: output file name.
        array: (H, W) or (H, W, 3) array, converted to float32.
        little_endian: byte order; written as the sign of the scale (negative = little).
    Raises:
        ShapeError: for other shapes.
    """
    arr = np.asarray(array, dtype=np.float32)
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)) or arr.size == 0:
        raise ShapeError(f"PFM holds (H, W) or (H, W, 3) arrays; got shape {arr.shape}")
    magic = "PF" if arr.ndim == 3 else "Pf"
    height, width = arr.shape[:2]
    header = f"{magic}\n{width} {height}\n{-1.0 if little_endian else 1.0}\n".encode("ascii")
    body = np.flipud(arr).astype("<f4" if little_endian else ">f4").tobytes()
    with atomic_path(path) as tmp:
        tmp.write_bytes(header + body)


# ------------------------------------------------------------------------------------ TIFF / geo


def rasterio_available() -> bool:
    """Whether the optional ``rasterio`` package (``optisr[geo]``) can be imported."""
    try:
        import rasterio  # noqa: F401
    except ImportError:
        return False
    return True


def _read_tiff(path: Path) -> tuple[np.ndarray, float | None, dict[str, Any] | None]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            tags = {tag.code for tag in page.tags.values()}
            nodata_tag = page.tags.get(_GDAL_NODATA_TAG)
            is_geo = any(code in tags for code in _GEOTIFF_TAGS)
            if not is_geo or not rasterio_available():
                data = page.asarray()
            else:
                data = None
    except Exception as exc:  # tifffile raises many types for corrupt files
        if rasterio_available():  # e.g. a codec or predictor that needs imagecodecs
            return _read_geotiff(path)
        raise _fail(path, f"cannot read TIFF ({type(exc).__name__}: {exc})") from exc
    nodata = None
    if nodata_tag is not None:
        try:
            nodata = float(str(nodata_tag.value).strip().strip("\x00"))
        except ValueError:
            nodata = None
    if data is not None:
        if is_geo:
            warnings.warn(
                f"{path}: georeferenced TIFF read without rasterio, so CRS and transform are dropped; "
                "install the 'geo' extra (pip install optisr[geo]) to keep them",
                UserWarning,
                stacklevel=3,
            )
        return data, nodata, None
    return _read_geotiff(path)


def _read_geotiff(path: Path) -> tuple[np.ndarray, float | None, dict[str, Any] | None]:
    import rasterio

    try:
        with rasterio.open(path) as src:
            if src.count != 1:
                raise _fail(path, f"a depth map needs 1 band, got {src.count}")
            data = src.read(1)
            profile = dict(src.profile)
            georeferenced = src.crs is not None or not src.transform.is_identity
            geo = {"crs": src.crs, "transform": src.transform, "profile": profile} if georeferenced else None
            nodata = src.nodata
    except InputFileError:
        raise
    except Exception as exc:
        raise _fail(path, f"cannot read TIFF ({type(exc).__name__}: {exc})") from exc
    return data, (None if nodata is None else float(nodata)), geo


def geo_for_upsampled(geo: dict[str, Any], scale: int | float | tuple[float, float]) -> dict[str, Any]:
    """Georeferencing of a raster upsampled by ``scale`` on the same footprint.

    The CRS is kept; the transform becomes ``transform @ Affine.scale(1 / scale)`` (pixel size
    divided by ``scale``, same origin) and the profile's width and height are multiplied.

    Args:
        geo: ``{"crs", "transform", "profile"}`` as in :attr:`Raster.geo`.
        scale: upsampling scale > 0, or ``(rows, cols)`` factors (a non-integer ratio may differ per axis).
    Returns:
        A new dict; ``geo`` is not modified.
    Raises:
        ConfigError: if ``scale`` is not positive or ``geo`` has no transform.
    """
    sy, sx = (float(scale[0]), float(scale[1])) if isinstance(scale, tuple) else (scale, scale)
    if not sy or not sx or sy <= 0 or sx <= 0:
        raise ConfigError(f"scale must be > 0, got {scale!r}")
    if "transform" not in geo or geo["transform"] is None:
        raise ConfigError("geo has no 'transform'; expected the dict from read_raster(...).geo")
    from affine import Affine

    try:
        transform = geo["transform"] @ Affine.scale(1.0 / sx, 1.0 / sy)
    except TypeError:  # affine < 2.4 composes with "*" only
        transform = geo["transform"] * Affine.scale(1.0 / sx, 1.0 / sy)
    profile = dict(geo.get("profile") or {})
    profile["transform"] = transform
    for key, factor in (("width", sx), ("height", sy)):
        if key in profile:
            profile[key] = int(round(profile[key] * factor))
    return {**geo, "transform": transform, "profile": profile}


def _write_geotiff(tmp: Path, arr: np.ndarray, geo: dict[str, Any], nodata: float | None) -> None:
    try:
        import rasterio
    except ImportError as exc:
        raise ConfigError(
            "writing a GeoTIFF with CRS/transform needs rasterio; install the 'geo' extra "
            "(pip install optisr[geo]) or pass geo=None to write a plain TIFF"
        ) from exc
    profile = dict(geo.get("profile") or {})
    for key in ("blockxsize", "blockysize", "tiled", "photometric", "interleave"):
        profile.pop(key, None)
    is_float = np.issubdtype(arr.dtype, np.floating)
    profile.update(
        driver="GTiff",
        height=arr.shape[0],
        width=arr.shape[1],
        count=1,
        dtype=arr.dtype.name,
        crs=geo.get("crs", profile.get("crs")),
        transform=geo.get("transform", profile.get("transform")),
        compress="deflate",
        predictor=3 if is_float else 2,
        nodata=nodata,
    )
    if arr.shape[0] >= 256 and arr.shape[1] >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(arr, 1)


# ------------------------------------------------------------------------------------- EXR


def exr_supported() -> bool:
    """Whether this OpenCV build can read and write OpenEXR files."""
    cv2 = _cv2()
    try:
        return bool(cv2.haveImageWriter(".exr"))
    except (AttributeError, cv2.error):
        return False


# ------------------------------------------------------------------------------------- read


def read_raster(
    path: str | os.PathLike,
    *,
    invalid_value: float | None = None,
    zero_invalid: bool | None = None,
) -> Raster:
    """Read a single-band raster (depth, disparity, elevation, ...).

    Args:
        path: ``.png``, ``.tif``/``.tiff``, ``.npy``, ``.pfm`` or ``.exr`` file.
        invalid_value: an extra sample value that marks invalid pixels (e.g. 65535).
        zero_invalid: whether 0 marks invalid pixels. Default (None): True for integer data
            without a declared nodata value, False for floating-point data.
    Returns:
        :class:`Raster` with ``data`` (H, W) in the on-disk dtype and ``mask`` (H, W) bool.
    Raises:
        InputFileError: missing, empty, corrupt or unsupported file, more than one channel,
            or zero-size raster. The message names the file and the problem.
    """
    path = Path(path)
    _check_file(path)
    ext = path.suffix.lower()
    nodata: float | None = None
    geo: dict[str, Any] | None = None
    if ext == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise _fail(path, f"cannot read .npy ({type(exc).__name__}: {exc})") from exc
    elif ext == ".pfm":
        data = read_pfm(path)
    elif ext in (".tif", ".tiff"):
        data, nodata, geo = _read_tiff(path)
    elif ext in (".png", ".exr", ".jpg", ".jpeg", ".bmp"):
        if ext == ".exr" and not exr_supported():
            raise _fail(path, "this OpenCV build cannot read OpenEXR; convert to .tif, .pfm or .npy")
        data, _ = _decode_cv2(path)  # a raster is a data grid: EXIF orientation is not applied
    else:
        raise _fail(path, f"unsupported raster extension {ext!r}; expected one of {', '.join(RASTER_EXTENSIONS)}")
    data = _to_single_band(path, np.asarray(data))
    if data.dtype.byteorder not in ("=", "|"):
        data = data.astype(data.dtype.newbyteorder("="))
    mask = _make_mask(data, nodata=nodata, invalid_value=invalid_value, zero_invalid=zero_invalid)
    return Raster(data=data, mask=mask, dtype_on_disk=data.dtype.name, geo=geo, nodata=nodata, path=path)


# ------------------------------------------------------------------------------------ write


def _quantise(arr: np.ndarray, dtype: np.dtype, fill: float) -> np.ndarray:
    """Round and clip floats to an integer dtype; NaN/inf become ``fill``."""
    if arr.dtype == dtype:  # already integers of that type: nothing to round (no float64 copies)
        return arr.copy()
    info = np.iinfo(dtype)
    out = np.asarray(arr, dtype=np.float64)
    out = np.where(np.isfinite(out), out, fill)
    return np.clip(np.rint(out), info.min, info.max).astype(dtype)


def write_raster(
    path: str | os.PathLike,
    array: np.ndarray,
    *,
    like: Raster | None = None,
    dtype: str | np.dtype | type | None = None,
    geo: dict[str, Any] | None = None,
    mask: np.ndarray | None = None,
    nodata: float | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a single-band raster, atomically, in the format given by the extension.

    The stored sample type is ``dtype`` if given, else ``like.dtype_on_disk``, else the array's
    own dtype. Floats written to an integer type are rounded and clipped to its range, so a
    16-bit depth map in mm stays 16-bit. Invalid pixels (``mask == False`` and non-finite
    values) are written as ``nodata`` if set, else NaN for float types, else 0.

    Args:
        path: output file; ``.png`` (uint8/uint16), ``.tif``/``.tiff``, ``.npy``, ``.pfm``
            (float32, little-endian) or ``.exr`` (float32, where OpenCV supports it).
        array: (H, W) array, any real dtype.
        like: a raster read before; supplies ``dtype``, ``geo`` and ``nodata`` defaults.
        dtype: sample type on disk, e.g. ``"uint16"`` or ``np.float32``.
        geo: ``{"crs", "transform", "profile"}``; if set (or taken from ``like``) a ``.tif``
            is written as a GeoTIFF through rasterio (DEFLATE, predictor 2/3).
        mask: (H, W) bool, True where valid.
        nodata: value stored for invalid pixels.
        overwrite: replace an existing file; with ``False`` an existing file (also one that
            appears while this call runs) raises :class:`~optisr.errors.OutputExistsError`.
    Returns:
        The path written.
    Raises:
        ShapeError: if ``array`` is not 2-D or ``mask`` does not match it.
        ConfigError: unsupported extension or dtype for the format, or rasterio missing for a
            GeoTIFF.
    """
    path = Path(path)
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2 or arr.size == 0:
        raise ShapeError(f"write_raster needs a non-empty (H, W) array; got shape {arr.shape}")
    if like is not None:
        dtype = dtype if dtype is not None else like.dtype_on_disk
        geo = geo if geo is not None else like.geo
        nodata = nodata if nodata is not None else like.nodata
    target = np.dtype(dtype) if dtype is not None else arr.dtype
    if target == np.float16 or target.kind not in "uif":
        raise ConfigError(f"unsupported raster dtype {target}; use uint8, uint16, int16, int32 or float32/64")
    ext = path.suffix.lower()
    if ext == ".pfm" or ext == ".exr":
        target = np.dtype(np.float32)
    if ext == ".png" and target not in (np.uint8, np.uint16):
        raise ConfigError(
            f"{path}: PNG stores uint8 or uint16 samples, not {target}; pass dtype='uint16' "
            "(values are rounded and clipped) or write .tif, .pfm or .npy for floats"
        )
    if ext not in RASTER_EXTENSIONS:
        choices = ", ".join(RASTER_EXTENSIONS)
        raise ConfigError(f"{path}: unsupported raster extension {ext!r}; expected one of {choices}")
    if ext == ".exr" and not exr_supported():
        raise ConfigError(f"{path}: this OpenCV build cannot write OpenEXR; use .tif, .pfm or .npy")

    valid = np.ones(arr.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if valid.shape != arr.shape:
        raise ShapeError(f"mask shape {valid.shape} does not match array shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        valid = valid & np.isfinite(arr)
    fill = nodata if nodata is not None else (np.nan if target.kind == "f" else 0.0)
    if target.kind in "ui":
        out = _quantise(arr, target, 0.0 if np.isnan(fill) else fill)
        out[~valid] = fill
    else:
        out = arr.astype(target)
        out[~valid] = fill

    with atomic_path(path, overwrite=overwrite) as tmp:
        if ext == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, out, allow_pickle=False)
        elif ext == ".pfm":
            header = f"Pf\n{out.shape[1]} {out.shape[0]}\n-1.0\n".encode("ascii")
            tmp.write_bytes(header + np.flipud(out).astype("<f4").tobytes())
        elif ext in (".tif", ".tiff"):
            if geo is not None:
                _write_geotiff(tmp, out, geo, nodata)
            else:
                import tifffile

                extratags = []
                if nodata is not None:
                    extratags.append((_GDAL_NODATA_TAG, "s", 0, f"{nodata:g}", True))
                tifffile.imwrite(tmp, out, compression="zlib", extratags=extratags)
        else:  # .png / .exr through OpenCV
            cv2 = _cv2()
            ok, buf = cv2.imencode(ext, out)
            if not ok:
                raise ConfigError(f"{path}: OpenCV could not encode a {out.dtype} image as {ext}")
            tmp.write_bytes(buf.tobytes())
    return path


# ------------------------------------------------------------------------------------ guide


def read_guide(path: str | os.PathLike, *, as_float: bool = True) -> np.ndarray:
    """Read a guide image as RGB float32 in [0, 1].

    8-bit values are divided by 255 and 16-bit by 65535; grey images are repeated to three
    channels and an alpha channel is dropped. The EXIF orientation is applied (JPEG, PNG, WebP), as
    :func:`optisr.io.images.read_image` does, so a guide reads as it is displayed; depth rasters
    (:func:`read_raster`) are data grids and are never rotated. Float TIFF/EXR guides are taken as [0, 1] and
    clipped.

    Args:
        path: PNG, JPEG, TIFF, BMP, WebP, ... file.
        as_float: False keeps 8/16-bit guides in their stored dtype (uint8/uint16 RGB, a
            quarter/half of the float32 memory); :func:`optisr.guided_upsample` and the
            tile-wise solve convert them with the same ``/255`` / ``/65535`` (tile by tile).
            Float guides are returned as float32 in [0, 1] either way.
    Returns:
        (H, W, 3) float32 array in [0, 1], RGB order (uint8/uint16 with ``as_float=False``).
    Raises:
        InputFileError: missing, empty or corrupt file, unsupported channel count or
            sample type, or zero-size image.
    """
    path = Path(path)
    _check_file(path)
    try:
        img, header = _decode_cv2(path)
        orientation = header.orientation
    except InputFileError as exc:
        if "too large" in str(exc):
            raise
        img, orientation = _decode_pil(path)
    if orientation != 1:
        img = apply_orientation(img, orientation)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise _fail(path, f"a guide image needs 1, 3 or 4 channels; got array shape {img.shape}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise _fail(path, f"empty image (size {img.shape[0]}x{img.shape[1]})")
    channels = img.shape[2]
    if not as_float and img.dtype in (np.uint8, np.uint16) and channels == 3 and img.flags.writeable:
        for r in range(0, img.shape[0], 256):  # BGR -> RGB in place, strip by strip (no full copy)
            img[r : r + 256] = img[r : r + 256, :, ::-1]
        return np.ascontiguousarray(img)
    if channels in (1, 2):  # grey or grey+alpha
        rgb = np.repeat(img[:, :, :1], 3, axis=2)
    else:
        rgb = img[:, :, 2::-1]  # BGR(A) -> RGB, alpha dropped
    if not as_float and rgb.dtype in (np.uint8, np.uint16):
        return np.ascontiguousarray(rgb)
    if rgb.dtype == np.uint8:
        out = rgb.astype(np.float32) / 255.0
    elif rgb.dtype == np.uint16:
        out = rgb.astype(np.float32) / 65535.0
    elif np.issubdtype(rgb.dtype, np.floating):
        out = np.clip(np.nan_to_num(rgb.astype(np.float32), nan=0.0), 0.0, 1.0)
    else:
        raise _fail(path, f"unsupported guide sample type {rgb.dtype}; expected 8/16-bit or float")
    return np.ascontiguousarray(out)


def _decode_pil(path: Path) -> tuple[np.ndarray, int]:
    """Fallback decoder for formats OpenCV lacks: BGR(A)-ordered pixels as stored, like OpenCV,
    and the EXIF orientation."""
    from PIL import Image, UnidentifiedImageError

    orientation = peek_header(path).orientation  # refuses huge declared sizes before decoding
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
                im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _fail(path, "cannot decode image (corrupt or unsupported format)") from exc
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]]
    return arr, orientation
