"""JPEG compression artefacts through OpenCV's encoder (libjpeg, 4:2:0 chroma subsampling).

Images are float32 ``(H, W, C)`` in [0, 1] with C = 1 or 3 (RGB); they are rounded to 8 bit
before encoding, so the output is on the 1/255 grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from optisr.degrade._image import check_image
from optisr.errors import ConfigError, ShapeError

__all__ = ["JpegConfig", "jpeg_compress", "random_jpeg"]


def jpeg_compress(x: np.ndarray, quality: int) -> np.ndarray:
    """Encode to JPEG at ``quality`` and decode again.

    Args:
        x: ``(H, W, 1|3)`` float32 in [0, 1] (RGB when 3 channels).
        quality: libjpeg quality, 1–100 (higher = fewer artefacts).
    Returns:
        ``(H, W, C)`` float32 in [0, 1], multiples of 1/255.
    Raises:
        ConfigError: quality out of range. ShapeError: unsupported channel count.
    """
    x = check_image(x)
    q = int(round(quality))
    if not 1 <= q <= 100:
        raise ConfigError(f"JPEG quality must be in 1..100; got {quality}")
    if x.shape[2] not in (1, 3):
        raise ShapeError(f"JPEG needs 1 or 3 channels; got {x.shape[2]}")
    u8 = np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    bgr = u8[:, :, 0] if x.shape[2] == 1 else cv2.cvtColor(u8, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, q])
    if not ok:  # pragma: no cover - libjpeg does not fail on valid 8-bit input
        raise ShapeError(f"the JPEG encoder failed for an image of shape {x.shape}")
    dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if dec is None:  # pragma: no cover - the decoder reads what the encoder just wrote
        raise ShapeError(f"the JPEG decoder failed for an image of shape {x.shape}")
    dec = dec[:, :, None] if dec.ndim == 2 else cv2.cvtColor(dec, cv2.COLOR_BGR2RGB)
    return dec.astype(np.float32) / 255.0


@dataclass(frozen=True, kw_only=True)
class JpegConfig:
    """Random JPEG: applied with probability ``prob`` at a quality drawn uniformly (integers)."""

    quality_range: tuple[int, int] = (30, 95)  # inclusive, Real-ESRGAN's default
    prob: float = 1.0

    def __post_init__(self) -> None:
        lo, hi = self.quality_range
        if not 1 <= lo <= hi <= 100:
            raise ConfigError(f"quality_range must satisfy 1 <= low <= high <= 100; got {self.quality_range}")
        if not 0.0 <= self.prob <= 1.0:
            raise ConfigError(f"prob must be in [0, 1]; got {self.prob}")

    def sample_quality(self, generator: np.random.Generator) -> int | None:
        """The quality to use, or None when this draw skips JPEG."""
        if generator.uniform() >= self.prob:
            return None
        return int(generator.integers(self.quality_range[0], self.quality_range[1] + 1))


def random_jpeg(x: np.ndarray, cfg: JpegConfig, generator: np.random.Generator) -> np.ndarray:
    """:func:`jpeg_compress` at a quality drawn from ``cfg`` (or ``x`` as float32 when skipped)."""
    q = cfg.sample_quality(generator)
    if q is None:
        return check_image(x).copy()
    return jpeg_compress(x, q)
