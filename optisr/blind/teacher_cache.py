"""A teacher-output cache for distilling a blind SR generator without running the teacher in the loop.

Built once by :func:`build_teacher_cache` (e.g. ``python tools/build_teacher_cache.py -c
configs/blind/teacher_cache.yaml``): random HR crops of the training images are degraded with
:func:`optisr.degrade.blur_noise_jpeg.blur_noise_jpeg` (blur, MATLAB bicubic ↓4, real-noise
crops mined from source-domain photos, JPEG), the teacher (e.g. ``realsr-df2k-x4``) runs once per
patch, and everything is stored as uint8 shards::

    cache_dir/cache.json         the resolved config + the shard list (rewritten after each shard)
    cache_dir/noise.npz          "tiles": (N, P, P, 3) uint8 mined noise tiles (for online redraws)
    cache_dir/shard_00000.npz    "hr": (K, S·s, S·s, 3), "lr_clean" / "lr": (K, S, S, 3),
                                 "teacher": (K, S·s, S·s, 3), all uint8 RGB; S = lr_size, s = scale
    cache_dir/val/HR, val/LR     the ``holdout`` images (mod-cropped) and one fixed degradation draw

``teacher_input: clean`` (default) runs the teacher on the clean LR (blur + bicubic only), so the
distillation target is what the teacher makes of an undamaged input, never its hallucinated
texture on noise or JPEG blocks; ``degraded`` runs it on the degraded LR.

Shards are written atomically and are a pure function of ``(seed, shard index)``: an interrupted
build resumes where it stopped (``time_limit_s`` stops it cleanly between shards), and a resumed
build writes exactly the shards of an uninterrupted one.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from optisr.degrade.blur_noise_jpeg import BlurNoiseJpegConfig, blur_noise_jpeg
from optisr.degrade.jpeg import JpegConfig
from optisr.degrade.kernels import GaussianKernelConfig
from optisr.degrade.noise import NoiseMiningConfig, NoisePool, mine_noise_patches
from optisr.errors import ConfigError, InputFileError
from optisr.io.images import is_image_file

__all__ = [
    "load_shards",
    "CacheDegradationConfig",
    "CachePatches",
    "NoiseSourceConfig",
    "TeacherCacheConfig",
    "build_teacher_cache",
    "cache_batch",
    "hr_image_files",
    "load_teacher_cache",
    "mine_noise_pool",
    "save_noise_tiles",
    "write_validation_pairs",
]


@dataclass
class NoiseSourceConfig:
    """Source-domain photos whose flat regions give the real-noise tiles (OTSR homogeneity rule)."""

    photos_dir: str | None = None  # null: no noise step
    pattern: str = "*_real.*"  # file glob inside photos_dir
    patch_size: int = 128  # tile side, source pixels
    sub_size: int = 32
    max_var: float = 200.0  # grey variance bound, 0-255 units²
    license: str = ""  # recorded in the cache and in models trained on it

    def mining(self) -> NoiseMiningConfig:
        return NoiseMiningConfig(patch_size=self.patch_size, sub_size=self.sub_size, max_var=self.max_var)


@dataclass
class CacheDegradationConfig:
    """YAML-friendly mirror of :class:`BlurNoiseJpegConfig` (lists instead of tuples)."""

    blur_prob: float = 0.7
    kernel_size: int = 15
    sigma_range: tuple[float, float] = (0.3, 1.6)
    isotropic_prob: float = 0.5
    noise_prob: float = 0.8
    noise_strength: tuple[float, float] = (0.5, 1.5)
    jpeg_prob: float = 0.8
    jpeg_quality: tuple[int, int] = (30, 95)

    def build(self, scale: int) -> BlurNoiseJpegConfig:
        """The :class:`BlurNoiseJpegConfig` (raises ConfigError on bad values)."""
        lo, hi = self.sigma_range
        qlo, qhi = self.jpeg_quality
        slo, shi = self.noise_strength
        return BlurNoiseJpegConfig(
            scale=scale,
            blur_prob=float(self.blur_prob),
            kernel=GaussianKernelConfig(
                size=int(self.kernel_size), sigma_range=(float(lo), float(hi)), isotropic_prob=self.isotropic_prob
            ),
            noise_prob=float(self.noise_prob),
            noise_strength=(float(slo), float(shi)),
            jpeg=JpegConfig(quality_range=(int(qlo), int(qhi)), prob=float(self.jpeg_prob)),
        )


@dataclass
class TeacherCacheConfig:
    """What :func:`build_teacher_cache` makes (the ``teacher_cache.yaml`` schema)."""

    hr_dirs: list[str] = field(default_factory=list)  # folders of HR training images
    holdout: int = 4  # the last N images (sorted by path) of the first folder are left out (validation)
    teacher: str = "realsr-df2k-x4"  # registry name or weights file
    teacher_input: Literal["clean", "degraded"] = "clean"
    scale: int = 4
    lr_size: int = 64  # LR patch side; HR patches are lr_size·scale
    patches_per_image: int = 2
    shard_size: int = 16
    max_patches: int = 0  # 0: all (images × patches_per_image)
    time_limit_s: float = 0.0  # stop cleanly between shards after this many seconds (0: none)
    seed: int = 0
    threads: int = 1
    degradation: CacheDegradationConfig = field(default_factory=CacheDegradationConfig)
    noise: NoiseSourceConfig = field(default_factory=NoiseSourceConfig)
    training_data: str = ""  # free text: data sets and licences (copied into model metadata)

    def __post_init__(self) -> None:
        if self.teacher_input not in ("clean", "degraded"):
            raise ValueError(f"teacher_input must be 'clean' or 'degraded', got {self.teacher_input!r}")
        for name in ("scale", "lr_size", "patches_per_image", "shard_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.holdout < 0 or self.max_patches < 0 or self.time_limit_s < 0:
            raise ValueError("holdout, max_patches and time_limit_s must be >= 0")


def hr_image_files(cfg: TeacherCacheConfig) -> tuple[list[Path], list[Path]]:
    """``(training files, held-out files)``: sorted images of ``hr_dirs``; the held-out ones are the
    last ``holdout`` of the first folder.

    Raises:
        ConfigError: no folder, a missing folder or an empty one (naming ``hr_dirs``).
    """
    if not cfg.hr_dirs:
        raise ConfigError("hr_dirs: missing (folders of HR training images)")
    train: list[Path] = []
    held: list[Path] = []
    for i, d in enumerate(cfg.hr_dirs):
        folder = Path(d).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"hr_dirs: folder {folder} not found")
        files = sorted(f for f in folder.iterdir() if is_image_file(f))
        if not files:
            raise ConfigError(f"hr_dirs: no images in {folder}")
        if i == 0 and cfg.holdout:
            if len(files) <= cfg.holdout:
                raise ConfigError(f"hr_dirs: {folder} has {len(files)} images, not more than holdout {cfg.holdout}")
            files, held = files[: -cfg.holdout], files[-cfg.holdout :]
        train += files
    return train, held


def mine_noise_pool(cfg: NoiseSourceConfig) -> NoisePool | None:
    """Mine the noise tiles of ``cfg.photos_dir`` (None when no folder is configured).

    Raises:
        ConfigError: missing folder, no matching photos, or no tile passes the rule.
    """
    if not cfg.photos_dir:
        return None
    folder = Path(cfg.photos_dir).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"noise.photos_dir: folder {folder} not found")
    files = sorted(folder.glob(cfg.pattern))
    if not files:
        raise ConfigError(f"noise.photos_dir: no files matching {cfg.pattern!r} in {folder}")
    mining = cfg.mining()
    tiles = [t for f in files for t in mine_noise_patches(_read_rgb(f), mining, zero_mean=False)]
    if not tiles:
        raise ConfigError(f"noise.photos_dir: no homogeneous {cfg.patch_size}² tile found in {len(files)} photos")
    return NoisePool(tiles)


def save_noise_tiles(noise: NoisePool, cache_dir: str | Path) -> Path:
    """Write the pool's tiles as ``cache_dir/noise.npz`` (what :func:`load_teacher_cache` reads).

    The tiles are cropped to the smallest tile side and stored as ``"tiles"``: ``(N, P, P, 3)``
    uint8. Written atomically; returns the file.
    """
    from optisr.io.atomic import atomic_path

    side = min(min(t.shape[:2]) for t in noise.patches)
    tiles = np.stack([_u8(t[:side, :side]) for t in noise.patches])
    path = Path(cache_dir) / "noise.npz"
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, tiles=tiles)
    return path


def _u8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _read_rgb(path: Path) -> np.ndarray:
    """``(H, W, 3)`` float32 RGB in [0, 1] (grey repeated, alpha dropped)."""
    from optisr.io.images import read_image, to_rgb_float

    try:
        image = read_image(path)
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{path}: cannot read ({exc})") from exc
    return to_rgb_float(image)


def _jobs(files: list[Path], cfg: TeacherCacheConfig) -> list[tuple[int, int]]:
    """``(image index, patch index)`` of every patch, in the seeded order the shards follow."""
    jobs = [(i, k) for i in range(len(files)) for k in range(cfg.patches_per_image)]
    order = np.random.default_rng([cfg.seed, 7]).permutation(len(jobs))
    jobs = [jobs[j] for j in order]
    return jobs[: cfg.max_patches] if cfg.max_patches else jobs


def _patch(
    img: np.ndarray,
    cfg: TeacherCacheConfig,
    deg: BlurNoiseJpegConfig,
    noise: NoisePool | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(hr, clean_lr, lr)`` float32 of one random crop, or None when the image is too small."""
    hs = cfg.lr_size * cfg.scale
    h, w = img.shape[:2]
    if h < hs or w < hs:
        return None
    top, left = int(rng.integers(h - hs + 1)), int(rng.integers(w - hs + 1))
    hr = img[top : top + hs, left : left + hs]
    clean, lr = blur_noise_jpeg(hr, deg, noise, rng)
    return hr, clean, lr


def _teacher_forward(teacher: nn.Module, lr: np.ndarray, scale: int) -> np.ndarray:
    """Teacher output of ``(K, h, w, 3)`` float32 LR → ``(K, h·s, w·s, 3)`` uint8 (one patch at a time)."""
    outs = []
    with torch.no_grad():
        for x in lr:
            t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
            y = teacher(t).clamp(0.0, 1.0)[0].permute(1, 2, 0).numpy()
            outs.append(_u8(y))
    return np.stack(outs)


def _cache_meta(cfg: TeacherCacheConfig, n_train: int, n_jobs: int) -> dict:
    from optisr.config import to_dict

    return {"config": to_dict(cfg), "train_images": n_train, "patches_planned": n_jobs, "format": 1}


def build_teacher_cache(
    cfg: TeacherCacheConfig,
    out_dir: str | Path,
    *,
    teacher: nn.Module | None = None,
    progress: bool = True,
    clock: Callable[[], float] = time.perf_counter,
) -> dict:
    """Build (or resume) the cache in ``out_dir``.

    Args:
        cfg: the cache recipe.
        out_dir: the cache folder (created).
        teacher: a loaded teacher module (``(B, 3, h, w)`` → ``(B, 3, h·s, w·s)`` in [0, 1]);
            None: ``load_model(cfg.teacher)``.
        progress: tqdm bar on stderr.
        clock: seconds, for ``time_limit_s`` (injectable for tests).
    Returns:
        the manifest written to ``cache.json`` (``shards``, ``patches``, ``teacher_seconds``,
        ``complete``).
    Raises:
        ConfigError: bad recipe, or ``out_dir`` holds a cache built with another recipe.
    """
    from tqdm import tqdm

    from optisr.io.atomic import atomic_path

    out = Path(out_dir)
    files, _ = hr_image_files(cfg)
    jobs = _jobs(files, cfg)
    deg = cfg.degradation.build(cfg.scale)
    meta = _cache_meta(cfg, len(files), len(jobs))
    manifest_path = out / "cache.json"
    manifest = {**meta, "shards": [], "patches": 0, "teacher_seconds": 0.0, "complete": False}
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text())
        if {k: old.get(k) for k in meta} != meta:
            raise ConfigError(f"{out}: holds a cache built with another recipe; use an empty folder")
        manifest.update({k: old[k] for k in ("shards", "patches", "teacher_seconds") if k in old})
    out.mkdir(parents=True, exist_ok=True)
    noise = mine_noise_pool(cfg.noise)
    if noise is not None and not (out / "noise.npz").is_file():
        save_noise_tiles(noise, out)
    if teacher is None:
        from optisr.blind.registry import load_model

        loaded = load_model(cfg.teacher)
        if loaded.scale != cfg.scale:
            raise ConfigError(f"teacher: {cfg.teacher} is ×{loaded.scale}, the cache is ×{cfg.scale}")
        teacher = loaded.model
    teacher = teacher.eval()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    n_shards = (len(jobs) + cfg.shard_size - 1) // cfg.shard_size
    done = set(manifest["shards"])
    start = clock()
    bar = tqdm(
        total=n_shards, initial=len(done), desc="teacher cache", unit="shard", disable=not progress, file=sys.stderr
    )
    images: dict[int, np.ndarray] = {}
    try:
        for si in range(n_shards):
            name = f"shard_{si:05d}.npz"
            if name in done and (out / name).is_file():
                continue
            if cfg.time_limit_s and clock() - start > cfg.time_limit_s:
                break
            rng = np.random.default_rng([cfg.seed, si])
            hr, clean, lr = [], [], []
            for i, _k in jobs[si * cfg.shard_size : (si + 1) * cfg.shard_size]:
                img = images.get(i)
                if img is None:
                    images.clear()  # keep one decoded image: jobs are shuffled
                    img = images[i] = _read_rgb(files[i])
                p = _patch(img, cfg, deg, noise, rng)
                if p is not None:
                    hr.append(p[0])
                    clean.append(p[1])
                    lr.append(p[2])
            if not hr:
                continue
            t0 = clock()
            teacher_in = np.stack(clean if cfg.teacher_input == "clean" else lr)
            tout = _teacher_forward(teacher, teacher_in, cfg.scale)
            manifest["teacher_seconds"] += clock() - t0
            arrays: dict[str, Any] = {
                "hr": _u8(np.stack(hr)),
                "lr_clean": _u8(np.stack(clean)),
                "lr": _u8(np.stack(lr)),
                "teacher": tout,
            }
            with atomic_path(out / name) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
            manifest["shards"] = sorted(set(manifest["shards"]) | {name})
            manifest["patches"] += len(hr)
            _write_json(manifest_path, manifest)
            bar.update(1)
            bar.set_postfix(patches=manifest["patches"], teacher_s=round(manifest["teacher_seconds"]))
    finally:
        bar.close()
    manifest["complete"] = len(manifest["shards"]) == n_shards
    _write_json(manifest_path, manifest)
    if not (out / "val").is_dir():
        write_validation_pairs(cfg, out / "val", noise)
    return manifest


def write_validation_pairs(cfg: TeacherCacheConfig, folder: str | Path, noise: NoisePool | None) -> int:
    """Write the held-out images as ``folder/HR/<stem>.png`` and their degraded ``folder/LR/<stem>.png``.

    Each image is mod-cropped to the scale and degraded once with its own fixed generator
    (``default_rng([seed, 1000 + index])``). Returns the number of pairs (0 when ``holdout`` is 0).
    """
    from optisr.io.images import write_image

    _, held = hr_image_files(cfg)
    deg = cfg.degradation.build(cfg.scale)
    folder = Path(folder)
    for j, f in enumerate(held):
        img = _read_rgb(f)
        h, w = (img.shape[0] // cfg.scale) * cfg.scale, (img.shape[1] // cfg.scale) * cfg.scale
        hr = img[:h, :w]
        _, lr = blur_noise_jpeg(hr, deg, noise, np.random.default_rng([cfg.seed, 1000 + j]))
        write_image(folder / "HR" / f"{f.stem}.png", _u8(hr))
        write_image(folder / "LR" / f"{f.stem}.png", _u8(lr))
    return len(held)


def _write_json(path: Path, data: dict) -> None:
    from optisr.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))


# --------------------------------------------------------------------------------------- reading


@dataclass
class CachePatches:
    """A loaded cache: uint8 arrays ``(N, ·, ·, 3)`` and the noise pool (None without one)."""

    hr: np.ndarray
    lr_clean: np.ndarray
    lr: np.ndarray
    teacher: np.ndarray
    noise: NoisePool | None
    manifest: dict

    @property
    def scale(self) -> int:
        return self.hr.shape[1] // self.lr.shape[1]

    def __len__(self) -> int:
        return self.hr.shape[0]

    def describe(self) -> str:
        """One line for model metadata."""
        c = self.manifest.get("config", {})
        return (
            f"teacher cache: {len(self)} patches of {self.lr.shape[1]}² LR from {', '.join(c.get('hr_dirs', []))} "
            f"(teacher {c.get('teacher')} on the {c.get('teacher_input')} LR); {c.get('training_data', '')}"
        ).strip("; ")


def load_shards(folder: Path, names: Iterable[str], keys: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
    """``keys`` of the ``.npz`` shards ``names`` in ``folder``, each concatenated along axis 0.

    Raises:
        InputFileError: a shard is missing / unreadable / lacks a key, there are no shards, or
            shards disagree in shape (message names the file or folder and ``what``).
    """
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for name in names:
        try:
            with np.load(folder / name) as z:
                for k in keys:
                    parts[k].append(z[k])
        except (OSError, ValueError, KeyError) as exc:
            raise InputFileError(f"{folder / name}: unreadable shard ({exc})") from exc
    if not parts[keys[0]]:
        raise InputFileError(f"{folder}: the {what} has no shards yet")
    try:
        return {k: np.concatenate(v) for k, v in parts.items()}
    except ValueError as exc:
        raise InputFileError(f"{folder}: shards of different shapes ({exc})") from exc


def load_teacher_cache(cache_dir: str | Path) -> CachePatches:
    """Read every shard listed in ``cache_dir/cache.json``.

    Raises:
        InputFileError: no cache there, or a shard is missing / unreadable / of another shape.
    """
    folder = Path(cache_dir)
    mpath = folder / "cache.json"
    if not mpath.is_file():
        raise InputFileError(f"{folder}: no teacher cache here (cache.json missing)")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{mpath}: unreadable ({exc})") from exc
    arrays = load_shards(folder, manifest.get("shards", []), ("hr", "lr_clean", "lr", "teacher"), "teacher cache")
    noise = None
    if (folder / "noise.npz").is_file():
        with np.load(folder / "noise.npz") as z:
            noise = NoisePool([t.astype(np.float32) / 255.0 for t in z["tiles"]])
    return CachePatches(**arrays, noise=noise, manifest=manifest)


def _augment(x: np.ndarray, flips: np.ndarray) -> np.ndarray:
    if flips[0]:
        x = x[:, ::-1]
    if flips[1]:
        x = x[::-1]
    if flips[2]:
        x = x.transpose(1, 0, 2)
    return x


def cache_batch(
    cache: CachePatches,
    batch_size: int,
    lq_size: int,
    seed: int,
    step: int,
    rank: int = 0,
    *,
    redraw: BlurNoiseJpegConfig | None = None,
) -> dict[str, torch.Tensor]:
    """The batch of ``step``: random aligned crops of cached patches, flips and a transpose.

    A pure function of ``(seed, step, rank)`` and the cache. With ``redraw``, the LR is made
    anew from the cached clean LR by :func:`~optisr.degrade.blur_noise_jpeg.noise_and_jpeg`
    (fresh noise crop and JPEG quality every time); otherwise the cached degraded LR is used.

    Returns:
        ``{"lq": (B, 3, q, q), "gt": (B, 3, q·s, q·s), "teacher": (B, 3, q·s, q·s)}`` float32 in
        [0, 1], ``q = lq_size``.
    Raises:
        ConfigError: ``lq_size`` larger than the cached patches.
    """
    from optisr.degrade.blur_noise_jpeg import noise_and_jpeg
    from optisr.rng import step_rng

    s, size = cache.scale, cache.lr.shape[1]
    if not 1 <= lq_size <= size:
        raise ConfigError(f"LR crop {lq_size} must be in 1..{size} (the cached LR patch side)")
    lqs, gts, tes = [], [], []
    for rng in step_rng(seed, step, rank).spawn(batch_size):
        i = int(rng.integers(len(cache)))
        top, left = (int(v) for v in rng.integers(size - lq_size + 1, size=2))
        flips = rng.random(3) < 0.5
        hs = slice(top * s, (top + lq_size) * s)
        ws = slice(left * s, (left + lq_size) * s)
        if redraw is not None:
            clean = cache.lr_clean[i, top : top + lq_size, left : left + lq_size].astype(np.float32) / 255.0
            lq = _u8(noise_and_jpeg(clean, redraw, cache.noise, rng))
        else:
            lq = cache.lr[i, top : top + lq_size, left : left + lq_size]
        lqs.append(_augment(lq, flips))
        gts.append(_augment(cache.hr[i, hs, ws], flips))
        tes.append(_augment(cache.teacher[i, hs, ws], flips))

    def t(xs: list[np.ndarray]) -> torch.Tensor:
        a = np.stack(xs).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        return torch.from_numpy(np.ascontiguousarray(a))

    return {"lq": t(lqs), "gt": t(gts), "teacher": t(tes)}
