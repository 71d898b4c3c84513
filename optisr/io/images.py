"""Photo IO: PNG (8/16 bit), JPEG, WebP, BMP, TIFF, through OpenCV.

Arrays are ``(H, W)`` for grey and ``(H, W, C)`` with channels in **RGB / RGBA** order (not
OpenCV's BGR). Bit depth is kept: uint8 stays uint8, uint16 stays uint16; float32 TIFFs read as
float32. EXIF orientation is applied on read for JPEG, PNG and WebP (TIFFs are read as stored),
as :func:`optisr.io.rasters.read_guide` does; an image that declares more than
``optisr.io._decode.MAX_PIXELS`` pixels is refused before decoding. WebP has no grey mode, so
grey written as WebP reads back as RGB with equal channels. Every read error is an
:class:`~optisr.errors.InputFileError` whose one-line message names the file; writes go through
:func:`~optisr.io.atomic.atomic_path`, so a failed write leaves no partial file.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from optisr.errors import InputFileError, ShapeError
from optisr.io._decode import apply_orientation, peek_header, quiet_opencv
from optisr.io.atomic import atomic_path

__all__ = [
    "IMAGE_EXTENSIONS",
    "from_float",
    "is_image_file",
    "read_image",
    "to_float",
    "to_rgb8",
    "to_rgb_float",
    "white_level",
    "write_image",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
_JPEG = (".jpg", ".jpeg")
_DEPTH16 = (".png", ".tif", ".tiff")


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the extension is one :func:`read_image` supports (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file.

    Args:
        path: a ``.png``, ``.jpg``/``.jpeg``, ``.webp``, ``.bmp``, ``.tif``/``.tiff`` file.
    Returns:
        ``(H, W)`` grey or ``(H, W, 3|4)`` RGB(A), dtype uint8 or uint16 (float32 for float TIFF).
        Rotated/mirrored upright according to the EXIF orientation, whatever the format.
    Raises:
        InputFileError: missing, empty, unreadable, unsupported or too large (declared size)
            file (message names it).
    """
    path = Path(path)
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise InputFileError(f"{path}: unsupported image type {path.suffix!r}; use {', '.join(IMAGE_EXTENSIONS)}")
    try:
        data = np.fromfile(path, dtype=np.uint8)  # works with non-ASCII paths, unlike cv2.imread
    except (OSError, ValueError) as exc:
        reason = "file not found" if isinstance(exc, FileNotFoundError) else (getattr(exc, "strerror", None) or str(exc))
        if path.is_dir():
            reason = "is a directory"
        raise InputFileError(f"{path}: cannot read image ({reason})") from None
    if data.size == 0:
        raise InputFileError(f"{path}: cannot read image (empty file)")
    header = peek_header(path, data)  # refuses huge declared sizes before decoding
    if path.suffix.lower() in _JPEG:  # keeps grey; orientation is applied below, for every format
        flags = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION
    else:
        flags = cv2.IMREAD_UNCHANGED  # keeps alpha and 16 bit; never applies orientation
    try:
        with quiet_opencv():
            img = cv2.imdecode(data, flags)
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        raise InputFileError(f"{path}: cannot decode image (corrupt or not a {path.suffix.lstrip('.')} file)")
    if img.dtype not in (np.uint8, np.uint16, np.float32):
        raise InputFileError(f"{path}: unsupported pixel type {img.dtype} (use 8/16-bit integer or float32)")
    if img.ndim == 3:
        channels = img.shape[2]
        if channels == 1:
            img = img[:, :, 0]
        elif channels == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        elif channels == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
        else:
            raise InputFileError(f"{path}: unsupported channel count {channels} (use grey, RGB or RGBA)")
    return np.ascontiguousarray(apply_orientation(img, header.orientation))


def write_image(path: str | os.PathLike, image: np.ndarray, *, quality: int = 95, overwrite: bool = True) -> Path:
    """Write an image atomically; the format follows the extension.

    Args:
        path: target file (``.png``, ``.jpg``, ``.webp``, ``.bmp``, ``.tif``); parent folders are
            created.
        image: ``(H, W)`` grey or ``(H, W, 3|4)`` RGB(A), uint8 or uint16 (float32 for TIFF).
            uint16 written to a format without 16-bit support (JPEG, WebP, BMP) is rounded to
            8 bit; JPEG and BMP drop an alpha channel.
        quality: JPEG / WebP quality, 1-100.
        overwrite: replace an existing file; with ``False`` an existing file (also one that
            appears while this call runs) raises :class:`~optisr.errors.OutputExistsError`.
    Returns:
        the path written.
    Raises:
        ShapeError: wrong array shape or dtype. InputFileError: unsupported extension or the
            encoder failed.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise InputFileError(f"{path}: unsupported image type {path.suffix!r}; use {', '.join(IMAGE_EXTENSIONS)}")
    img = np.asarray(image)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
        raise ShapeError(f"image must be (H, W) or (H, W, 1|3|4); got shape {img.shape}")
    if img.dtype not in (np.uint8, np.uint16) and not (img.dtype == np.float32 and ext in (".tif", ".tiff")):
        raise ShapeError(f"image dtype must be uint8 or uint16 (float32 for TIFF); got {img.dtype}")
    if img.dtype == np.uint16 and ext not in _DEPTH16:
        img = np.round(img.astype(np.float32) / 257.0).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3 and img.shape[2] == 4 and ext in (*_JPEG, ".bmp"):
        img = img[:, :, :3]
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR if img.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    params: list[int] = []
    if ext in _JPEG:
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif ext == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(img), params)
    if not ok:
        raise InputFileError(f"{path}: the {ext} encoder failed for a {img.dtype} image of shape {img.shape}")
    with atomic_path(path, overwrite=overwrite) as tmp:
        buf.tofile(tmp)
    return path


def white_level(dtype: np.dtype | type, what: str = "image") -> float:
    """The value of white for an image dtype: 255 (uint8), 65535 (uint16), 1 (float).

    Any other dtype is a one-line :class:`~optisr.errors.ShapeError` that starts with ``what``.
    """
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if dtype.kind == "f":
        return 1.0
    raise ShapeError(f"{what} dtype must be uint8, uint16 or float; got {dtype}")


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 / uint16 → float32 in [0, 1] (float input is returned as float32 unchanged)."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    return image.astype(np.float32, copy=False)


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Any image from :func:`read_image` → uint8 ``(H, W, 3)`` RGB.

    16-bit is rounded to 8 bit (÷257), float in [0, 1] is clipped and rounded; grey is repeated to
    three channels; an alpha channel is dropped.
    """
    img = np.asarray(image)
    if img.dtype == np.uint16:
        img = np.round(img.astype(np.float32) / 257.0).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.round(np.clip(img.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def to_rgb_float(image: np.ndarray) -> np.ndarray:
    """Any image from :func:`read_image` → float32 ``(H, W, 3)`` RGB in [0, 1].

    Grey is repeated to three channels; an alpha channel is dropped.
    """
    x = to_float(np.asarray(image))
    if x.ndim == 2:
        x = x[:, :, None]
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    elif x.shape[2] == 4:
        x = x[:, :, :3]
    return np.ascontiguousarray(np.clip(x, 0.0, 1.0), dtype=np.float32)


def from_float(image: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """float in [0, 1] → ``dtype`` (uint8/uint16: clipped and rounded; float: clipped to [0, 1])."""
    dtype = np.dtype(dtype)
    x = np.clip(image, 0.0, 1.0)
    if dtype == np.uint8:
        return np.round(x * 255.0).astype(np.uint8)
    if dtype == np.uint16:
        return np.round(x * 65535.0).astype(np.uint16)
    return x.astype(dtype)
