"""Shared pieces of the image readers of :mod:`optisr.io.images` and :mod:`optisr.io.rasters`.

One rule for every reader:

* **Size limit.** The header is looked at (with Pillow, which reads only the header) before any
  pixel is decoded; an image that declares more than :data:`MAX_PIXELS` pixels (OpenCV's own
  ``CV_IO_MAX_IMAGE_PIXELS``) is refused with one line naming the file, instead of a Pillow
  ``DecompressionBombError`` traceback or an OpenCV assertion text.
* **EXIF orientation** (tag 0x0112) is applied for JPEG, PNG (``eXIf``) and WebP, so a photo
  reads as it is displayed. TIFF is read as stored (its Orientation tag is left to the decoder,
  which is inconsistent about it, so we report 1).
* **Quiet OpenCV.** OpenCV's own log lines (``[ WARN:0@...] ... PNG input buffer is incomplete``)
  are silenced while we decode; our one-line error says what went wrong.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optisr.errors import InputFileError

__all__ = ["MAX_PIXELS", "HeaderInfo", "apply_orientation", "peek_header", "quiet_opencv"]

MAX_PIXELS = 1 << 30  # OpenCV's CV_IO_MAX_IMAGE_PIXELS default
_ORIENTED_FORMATS = ("JPEG", "PNG", "WEBP")  # Pillow format names whose EXIF orientation we apply


@dataclass(frozen=True)
class HeaderInfo:
    """What the header says: ``size`` = (width, height) or None, EXIF ``orientation`` (1 = as stored)."""

    size: tuple[int, int] | None
    orientation: int


def _too_large(path: Path, detail: str) -> InputFileError:
    return InputFileError(f"{path}: image too large ({detail}; at most {MAX_PIXELS:,} pixels are read)")


def peek_header(path: Path, data: bytes | np.ndarray | None = None) -> HeaderInfo:
    """Read size and EXIF orientation from the header; refuse images over :data:`MAX_PIXELS`.

    Args:
        path: the file (named in messages; opened when ``data`` is None).
        data: the file's bytes when already read.
    Returns:
        :class:`HeaderInfo`; ``size`` None and orientation 1 when Pillow does not know the format
        (the decoder then reports what is wrong).
    Raises:
        InputFileError: the declared size is over the limit.
    """
    from PIL import Image

    source = io.BytesIO(bytes(data)) if data is not None else path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise _too_large(path, f"{w}×{h} = {w * h:,} pixels declared")
                if im.format not in _ORIENTED_FORMATS:
                    return HeaderInfo((w, h), 1)
                try:
                    orientation = int(im.getexif().get(0x0112, 1))
                except Exception:  # a broken EXIF block: treat as no orientation
                    orientation = 1
                return HeaderInfo((w, h), orientation if 1 <= orientation <= 8 else 1)
    except Image.DecompressionBombError as exc:
        m = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_large(path, f"{int(m.group(1)):,} pixels declared" if m else "declared size") from None
    except InputFileError:
        raise
    except Exception:  # not a format Pillow knows, or a corrupt header: the decoder will say
        return HeaderInfo(None, 1)


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an ``(H, W[, C])`` array as stored into the upright image of EXIF ``orientation`` 1..8.

    Same result as Pillow's ``ImageOps.exif_transpose``.
    """
    if orientation == 2:
        return img[:, ::-1]
    if orientation == 3:
        return img[::-1, ::-1]
    if orientation == 4:
        return img[::-1]
    if orientation == 5:
        return img.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(img, -1)
    if orientation == 7:
        return img[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(img, 1)
    return img


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log output for the duration (restores the previous level)."""
    import cv2

    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is None:
        yield
        return
    previous = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        log.setLogLevel(previous)
