"""Real-noise patches: mining flat regions of source-domain images, and injecting them into LR.

RealSR (Ji et al., CVPRW 2020) and OTSR collect *noise patches* from the full-resolution
source-domain images: tiles flat enough that their content is sensor/processing noise. At
training time a random crop of a random tile, made zero-mean per channel, is added to every LR
patch (``l = (h ⊛ k)↓ + n``).

Rules (all thresholds on the BT.601 grey image in 0–255 units, non-overlapping tiles):

* ``"realsr"``: keep a ``patch_size`` tile when ``var < max_var`` (20) and ``mean > min_mean``
  (0 for DF2K, 50 for DPED).
* ``"otsr"`` (homogeneity rule): ``var <= max_var`` (50) **and** every examined
  ``sub_size`` sub-tile satisfies ``|μ_sub − μ| <= mean_tol·μ`` (0.1) and
  ``|σ²_sub − σ²| <= var_tol·σ²`` (0.25). Faithful to OTSR, only the sub-tiles at offsets
  ``0, sub, 2·sub, … < patch_size − sub_size`` are examined (3×3 of the 4×4 for 256/64: the
  last row and column are not).

Images are float32 ``(H, W, C)`` in [0, 1] throughout.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from optisr.degrade._image import as_rgb_float, check_image
from optisr.errors import ConfigError, InputFileError

__all__ = [
    "NoiseMiningConfig",
    "NoisePool",
    "grey255",
    "is_noise_tile",
    "mine_noise_patches",
]

_BT601 = np.array([0.299, 0.587, 0.114], dtype=np.float64)


@dataclass(frozen=True, kw_only=True)
class NoiseMiningConfig:
    """How noise tiles are selected (see the module docstring for the rules).

    Defaults are OTSR's; ``NoiseMiningConfig.realsr()`` gives RealSR's.
    """

    rule: Literal["otsr", "realsr"] = "otsr"
    patch_size: int = 256  # tile side, source-image pixels (non-overlapping tiles)
    max_var: float = 50.0  # grey variance bound, 0–255 units² (otsr: <=, realsr: <)
    min_mean: float = 0.0  # realsr only: grey mean must exceed this (0 DF2K, 50 DPED)
    sub_size: int = 64  # otsr only: homogeneity sub-tile side
    mean_tol: float = 0.1  # otsr only: |μ_sub − μ| <= mean_tol·μ
    var_tol: float = 0.25  # otsr only: |σ²_sub − σ²| <= var_tol·σ²
    max_per_image: int = 0  # keep at most this many tiles per image (0 = all)

    def __post_init__(self) -> None:
        if self.rule not in ("otsr", "realsr"):
            raise ConfigError(f"noise rule must be 'otsr' or 'realsr'; got {self.rule!r}")
        if self.patch_size < 2:
            raise ConfigError(f"patch_size must be >= 2; got {self.patch_size}")
        if self.rule == "otsr" and not 1 <= self.sub_size < self.patch_size:
            raise ConfigError(
                f"sub_size must be in [1, patch_size); got {self.sub_size} for patch_size {self.patch_size}"
            )
        if self.max_var < 0 or self.mean_tol < 0 or self.var_tol < 0 or self.max_per_image < 0:
            raise ConfigError("max_var, mean_tol, var_tol and max_per_image must be >= 0")

    @classmethod
    def realsr(cls, *, min_mean: float = 0.0, **kw) -> NoiseMiningConfig:
        """RealSR's rule: 256² grey tiles with variance < 20 and mean > ``min_mean``."""
        return cls(rule="realsr", max_var=20.0, min_mean=min_mean, **kw)


def grey255(x: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` float in [0, 1] → ``(H, W)`` float64 BT.601 luma in 0–255 (grey passes through)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[2] >= 3:
        g = x[:, :, :3] @ _BT601
    else:
        g = x[:, :, 0]
    return g * 255.0


def is_noise_tile(grey: np.ndarray, cfg: NoiseMiningConfig) -> bool:
    """Apply the selection rule to one ``(P, P)`` grey tile in 0–255 units."""
    mean, var = float(grey.mean()), float(grey.var())
    if cfg.rule == "realsr":
        return var < cfg.max_var and mean > cfg.min_mean
    if var > cfg.max_var:
        return False
    s = cfg.sub_size
    offsets = range(0, grey.shape[0] - s, s)  # OTSR stops before the last sub-tile
    for r in offsets:
        for c in offsets:
            sub = grey[r : r + s, c : c + s]
            if abs(float(sub.mean()) - mean) > cfg.mean_tol * mean:
                return False
            if abs(float(sub.var()) - var) > cfg.var_tol * var:
                return False
    return True


def mine_noise_patches(
    x: np.ndarray, cfg: NoiseMiningConfig | None = None, *, zero_mean: bool = True
) -> list[np.ndarray]:
    """Tile a source image and return the tiles that pass the rule.

    Args:
        x: ``(H, W, C)`` float32 in [0, 1], a *full-resolution* source-domain image.
        cfg: selection rule and thresholds (default: OTSR's).
        zero_mean: subtract each tile's per-channel mean (the noise); ``False`` returns the raw
            tiles (what RealSR/OTSR save to disk).
    Returns:
        list of ``(P, P, C)`` float32 tiles, in raster order of their position.
    """
    cfg = cfg or NoiseMiningConfig()
    x = check_image(x)
    p = cfg.patch_size
    grey = grey255(x)
    out: list[np.ndarray] = []
    for r in range(0, x.shape[0] - p + 1, p):
        for c in range(0, x.shape[1] - p + 1, p):
            if is_noise_tile(grey[r : r + p, c : c + p], cfg):
                tile = x[r : r + p, c : c + p].copy()
                if zero_mean:
                    tile -= tile.mean(axis=(0, 1), keepdims=True)
                out.append(tile)
                if cfg.max_per_image and len(out) >= cfg.max_per_image:
                    return out
    return out


class NoisePool:
    """A set of real-noise tiles; draws zero-mean noise of any size and adds it to LR images.

    Args:
        patches: ``(P, P, C)`` float tiles (raw or zero-mean: each drawn crop is re-centred).
        strength: multiplier of the injected noise (1 = as mined).

    A draw picks a tile uniformly, takes a random crop of the requested size (tiles smaller
    than the request are mirror-tiled first), subtracts the crop's per-channel mean and scales
    by ``strength`` -- RealSR/OTSR's injection, which crops 32×32 from 256² tiles.
    """

    def __init__(self, patches: Sequence[np.ndarray], *, strength: float = 1.0) -> None:
        self.patches = [check_image(p, "noise patch") for p in patches]
        if not self.patches:
            raise ConfigError("NoisePool needs at least one noise patch (none were mined or found)")
        self.strength = float(strength)

    def __len__(self) -> int:
        return len(self.patches)

    @classmethod
    def from_images(
        cls, images: Iterable[np.ndarray], cfg: NoiseMiningConfig | None = None, *, strength: float = 1.0
    ) -> NoisePool:
        """Mine every image with :func:`mine_noise_patches` and pool the tiles."""
        tiles = [t for img in images for t in mine_noise_patches(img, cfg, zero_mean=False)]
        return cls(tiles, strength=strength)

    @classmethod
    def from_dir(cls, folder: str | os.PathLike, *, strength: float = 1.0) -> NoisePool:
        """Load every image in ``folder`` (e.g. ``out/noise`` written by ``optisr degrade``)."""
        from optisr.io.images import is_image_file, read_image

        folder = Path(folder)
        if not folder.is_dir():
            raise InputFileError(f"{folder}: noise folder not found")
        files = sorted(f for f in folder.iterdir() if is_image_file(f))
        if not files:
            raise InputFileError(f"{folder}: no noise patch images in this folder")
        return cls([as_rgb_float(read_image(f)) for f in files], strength=strength)

    def sample(self, shape: tuple[int, int], generator: np.random.Generator, *, channels: int | None = None) -> np.ndarray:
        """Draw zero-mean noise.

        Args:
            shape: ``(h, w)`` of the noise.
            generator: the only source of randomness.
            channels: output channel count (default: the tile's; 1-channel tiles are broadcast).
        Returns:
            ``(h, w, C)`` float32, every channel of mean 0.
        """
        h, w = int(shape[0]), int(shape[1])
        tile = self.patches[int(generator.integers(len(self.patches)))]
        th, tw = tile.shape[:2]
        if th < h or tw < w:
            tile = np.pad(tile, ((0, max(0, h - th)), (0, max(0, w - tw)), (0, 0)), mode="symmetric")
            th, tw = tile.shape[:2]
        r = int(generator.integers(th - h + 1))
        c = int(generator.integers(tw - w + 1))
        crop = tile[r : r + h, c : c + w].astype(np.float32)
        if channels is not None and crop.shape[2] != channels:
            crop = np.broadcast_to(crop[:, :, :1], (h, w, channels)) if crop.shape[2] == 1 else crop[:, :, :channels]
        crop = crop - crop.mean(axis=(0, 1), keepdims=True)
        return (self.strength * crop).astype(np.float32)

    def inject(self, lr: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        """``clip(lr + n, 0, 1)`` with ``n`` from :meth:`sample` of the LR size.

        Args:
            lr: ``(h, w, C)`` float32 in [0, 1].
        Returns:
            ``(h, w, C)`` float32 in [0, 1]; ``lr`` is not modified.
        """
        lr = check_image(lr, "lr")
        noise = self.sample(lr.shape[:2], generator, channels=lr.shape[2])
        return np.clip(lr + noise, 0.0, 1.0).astype(np.float32)
