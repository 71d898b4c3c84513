"""Training and validation data of ``optisr train blind``: paired random crops, online degradations.

Training batches (:func:`make_batch`) are a pure function of ``(seed, step, rank)``: the
step's numpy generator (:func:`optisr.rng.step_rng`) spawns one child generator per
sample, and sample ``i`` draws everything from its own child (image index, crop position,
flips, noise crop, JPEG quality, degradation parameters). Images may therefore be read and
processed by worker threads (``num_workers``) without changing a single value, and a resumed
run sees exactly the batches of the uninterrupted one.

Per sample, in this order (research note §3.2):

1. pick an image; LR from ``dataroot_lq`` (paired, e.g. ``optisr degrade``'s ``out/LR/x4``)
   or made online from the HR crop by ``degradation`` (``bicubic``, ``kernel``,
   ``second-order``);
2. random crop: an ``lq_size = gt_size / scale`` LR patch and the aligned ``gt_size`` HR patch
   (the LR crop starts at ``(top, left)``, the HR crop at ``(scale·top, scale·left)``);
3. augmentation, each with probability 0.5 and the same on HR and LR: ``use_flip`` a
   horizontal flip; ``use_rot`` a vertical flip and a transpose (BasicSR's ``augment``);
4. online degradation of the HR patch when there is no LR folder;
5. noise injection from ``noise_dir`` (RealSR/OTSR: a zero-mean crop of a real-noise tile,
   probability ``noise_prob``), then optional JPEG of the LR patch.

Batches are ``{"lq": (B, 3, gt_size/scale, gt_size/scale), "gt": (B, 3, gt_size, gt_size)}``
float32 RGB in [0, 1].
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from optisr.degrade.jpeg import JpegConfig, random_jpeg
from optisr.degrade.kernels import GaussianKernelConfig, degrade_with_kernel, load_kernels, random_gaussian_kernel
from optisr.degrade.second_order import SecondOrderConfig, second_order_degrade
from optisr.errors import ConfigError, InputFileError
from optisr.io.images import is_image_file
from optisr.rng import step_rng

__all__ = [
    "JpegOnlineConfig",
    "OnlineDegradationConfig",
    "PairedImages",
    "TrainDataConfig",
    "ValDataConfig",
    "ValSample",
    "load_val_photos",
    "load_val_samples",
    "make_batch",
]


# ------------------------------------------------------------------------------------ configs


@dataclass
class OnlineDegradationConfig:
    """LR made from the HR crop at training time (used when ``dataroot_lq`` is null).

    ``kind``: ``none`` (LR read from ``dataroot_lq``), ``bicubic`` (MATLAB ``imresize`` ×1/scale),
    ``kernel`` (blur with a kernel, keep every ``scale``-th pixel: RealSR's DPED model; kernels
    from ``kernels_dir`` or random anisotropic Gaussians) or ``second-order`` (Real-ESRGAN).
    """

    kind: Literal["none", "bicubic", "kernel", "second-order"] = "none"
    kernels_dir: str | None = None  # kernel: folder of .mat/.npy kernels, one drawn per sample
    gaussian: GaussianKernelConfig = field(default_factory=GaussianKernelConfig)  # kernel, no kernels_dir
    second_order: SecondOrderConfig = field(default_factory=SecondOrderConfig)  # its scale is the net's


@dataclass
class JpegOnlineConfig:
    """JPEG round trip of the LR patch after noise injection (RealSR's DF2K-JPEG variant)."""

    enabled: bool = False
    quality_range: tuple[int, int] = (30, 95)  # inclusive, libjpeg quality
    prob: float = 1.0

    def __post_init__(self) -> None:
        lo, hi = self.quality_range  # a YAML list arrives here as a list
        JpegConfig(quality_range=(int(lo), int(hi)), prob=self.prob)  # validates


@dataclass
class TrainDataConfig:
    """The ``datasets.train`` section (BasicSR key names)."""

    dataroot_gt: str = ""  # folder of HR images (required)
    dataroot_lq: str | None = None  # paired LR folder (same stems, or <stem>x<scale>); null: online
    degradation: OnlineDegradationConfig = field(default_factory=OnlineDegradationConfig)
    noise_dir: str | None = None  # folder of real-noise tiles (optisr degrade's out/noise)
    noise_prob: float = 1.0  # probability of injecting noise into a sample
    noise_strength: float = 1.0  # multiplier of the injected noise
    jpeg: JpegOnlineConfig = field(default_factory=JpegOnlineConfig)
    gt_size: int = 128  # HR patch side, pixels (a multiple of the scale)
    use_flip: bool = True  # horizontal flip, p = 0.5
    use_rot: bool = True  # vertical flip and transpose, each p = 0.5
    cache: bool = False  # keep decoded images in memory (uint8); for small sets
    num_workers: int = 0  # threads that read and crop the samples of a batch (0: this thread)

    def __post_init__(self) -> None:
        if not 0.0 <= self.noise_prob <= 1.0:
            raise ValueError(f"noise_prob must be in [0, 1], got {self.noise_prob}")
        if self.gt_size < 1:
            raise ValueError(f"gt_size must be >= 1, got {self.gt_size}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")


@dataclass
class ValDataConfig:
    """The ``datasets.val`` section: a folder pair, a bench set by name, or nothing (no validation).

    ``dataroot_gt`` (+ ``dataroot_lq``, else MATLAB-bicubic LR of the mod-cropped GT), or
    ``bench``: a name of :data:`optisr.bench.blind.DATASETS` (``set5``, ``set14``...) found in
    ``data_dir`` (default ``$OPTISR_DATA_DIR``).
    """

    dataroot_gt: str | None = None
    dataroot_lq: str | None = None
    bench: str | None = None
    data_dir: str | None = None
    limit: int = 3  # first N images (OTSR validates 3)
    niqe: bool = False  # also NIQE (MATLAB) of the outputs (images with >= two whole 96×96 blocks)
    tile: int = 0  # LR tile size for the forward pass (0: whole image)
    # LR-only photos scored by NIQE alone (``val/niqe_photos``): a larger no-reference check than
    # the paired images give, from training-side photos (never an evaluation set). Every
    # ``photos_pattern`` match in ``photos_dir`` (sorted; ``photos_limit`` spread evenly over them,
    # 0: all), centre-cropped to ``photos_crop``² LR pixels (0: whole photo).
    photos_dir: str | None = None
    photos_pattern: str = "*"
    photos_limit: int = 16
    photos_crop: int = 128

    def __post_init__(self) -> None:
        if self.photos_limit < 0 or self.photos_crop < 0:
            raise ValueError("photos_limit and photos_crop must be >= 0")
        if self.dataroot_gt and self.bench:
            raise ValueError("give dataroot_gt or bench, not both")
        if self.dataroot_lq and not self.dataroot_gt:
            raise ValueError("dataroot_lq needs dataroot_gt")
        if self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")


# ------------------------------------------------------------------------------------- images


def _image_files(folder: Path, key: str) -> list[Path]:
    if not folder.is_dir():
        raise ConfigError(f"{key}: folder {folder} not found")
    files = sorted(p for p in folder.iterdir() if is_image_file(p) and p.is_file())
    if not files:
        raise ConfigError(f"{key}: no images in {folder}")
    return files


def _read_u8(path: Path) -> np.ndarray:
    """Any image file → uint8 ``(H, W, 3)`` RGB (:func:`optisr.io.images.to_rgb8`)."""
    from optisr.io.images import read_image, to_rgb8

    return to_rgb8(read_image(path))


def _pair_lq(gt_files: list[Path], lq_dir: Path, scale: int, key: str) -> list[Path]:
    lq = {p.stem: p for p in _image_files(lq_dir, key)}
    out = []
    for g in gt_files:
        match = lq.get(g.stem) or lq.get(f"{g.stem}x{scale}")
        if match is None:
            raise ConfigError(
                f"{key}: no LR image for {g.name} in {lq_dir} (expected {g.stem}.* or {g.stem}x{scale}.*)"
            )
        out.append(match)
    return out


class PairedImages:
    """The training images: HR files, paired LR files (or None), noise pool, kernels.

    Args:
        cfg: the ``datasets.train`` section.
        scale: the generator's scale.
    Raises:
        ConfigError: naming the ``datasets.train.*`` key of a missing folder or a bad setting.
    """

    def __init__(self, cfg: TrainDataConfig, scale: int) -> None:
        key = "datasets.train"
        if not cfg.dataroot_gt:
            raise ConfigError(f"{key}.dataroot_gt: missing (a folder of HR images)")
        if cfg.gt_size % scale:
            raise ConfigError(f"{key}.gt_size: must be a multiple of the scale {scale}; got {cfg.gt_size}")
        kind = cfg.degradation.kind
        if cfg.dataroot_lq and kind != "none":
            raise ConfigError(
                f"{key}.degradation.kind: {kind!r} makes the LR online, but dataroot_lq is set too; remove one of them"
            )
        if not cfg.dataroot_lq and kind == "none":
            raise ConfigError(
                f"{key}.dataroot_lq: missing; give a paired LR folder or set degradation.kind "
                "(bicubic, kernel, second-order) to make the LR online"
            )
        self.cfg = cfg
        self.scale = scale
        self.gt_files = _image_files(Path(cfg.dataroot_gt), f"{key}.dataroot_gt")
        self.lq_files = (
            _pair_lq(self.gt_files, Path(cfg.dataroot_lq), scale, f"{key}.dataroot_lq") if cfg.dataroot_lq else None
        )
        self.noise = None
        if cfg.noise_dir:
            from optisr.degrade.noise import NoisePool

            if not Path(cfg.noise_dir).is_dir():
                raise ConfigError(f"{key}.noise_dir: folder {cfg.noise_dir} not found")
            self.noise = NoisePool.from_dir(cfg.noise_dir, strength=cfg.noise_strength)
        self.kernels = None
        if kind == "kernel" and cfg.degradation.kernels_dir:
            if not Path(cfg.degradation.kernels_dir).is_dir():
                raise ConfigError(f"{key}.degradation.kernels_dir: folder {cfg.degradation.kernels_dir} not found")
            self.kernels = load_kernels(cfg.degradation.kernels_dir)
        self.second_order = cfg.degradation.second_order
        if kind == "second-order" and self.second_order.scale != scale:
            import dataclasses

            self.second_order = dataclasses.replace(self.second_order, scale=scale)
        lo, hi = cfg.jpeg.quality_range
        self.jpeg = JpegConfig(quality_range=(int(lo), int(hi)), prob=cfg.jpeg.prob)
        self._cache: dict[Path, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.gt_files)

    def describe(self) -> str:
        """One line for release metadata: folders and online steps."""
        c = self.cfg
        parts = [f"HR {c.dataroot_gt} ({len(self)} images)"]
        parts.append(f"LR {c.dataroot_lq}" if c.dataroot_lq else f"LR online {c.degradation.kind}")
        if c.noise_dir:
            parts.append(f"noise injection from {c.noise_dir} (p={c.noise_prob:g})")
        if c.jpeg.enabled:
            parts.append(f"JPEG q{c.jpeg.quality_range[0]}-{c.jpeg.quality_range[1]} (p={c.jpeg.prob:g})")
        return "; ".join(parts)

    def _load(self, path: Path) -> np.ndarray:
        if not self.cfg.cache:
            return _read_u8(path)
        img = self._cache.get(path)
        if img is None:
            img = self._cache[path] = _read_u8(path)
        return img

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One ``(lq, gt)`` pair of float32 ``(h, w, 3)`` / ``(H, W, 3)`` arrays from ``rng`` alone."""
        c, s = self.cfg, self.scale
        gt_size, lq_size = c.gt_size, c.gt_size // s
        idx = int(rng.integers(len(self)))
        u_top, u_left = rng.random(2)
        flips = rng.random(3) < 0.5  # always three draws: the stream does not depend on the options
        gt = self._load(self.gt_files[idx])
        if self.lq_files is not None:
            lq = self._load(self.lq_files[idx])
            h, w = lq.shape[:2]
            if gt.shape[0] < h * s or gt.shape[1] < w * s or gt.shape[0] >= (h + 1) * s or gt.shape[1] >= (w + 1) * s:
                raise InputFileError(
                    f"{self.lq_files[idx]}: LR {w}×{h} × {s} does not match HR {self.gt_files[idx].name} "
                    f"{gt.shape[1]}×{gt.shape[0]}"
                )
            if h < lq_size or w < lq_size:
                raise InputFileError(f"{self.lq_files[idx]}: LR {w}×{h} is smaller than the LR patch {lq_size}²")
            top, left = int(u_top * (h - lq_size + 1)), int(u_left * (w - lq_size + 1))
            lq = lq[top : top + lq_size, left : left + lq_size]
            gt = gt[top * s : top * s + gt_size, left * s : left * s + gt_size]
        else:
            h, w = gt.shape[:2]
            if h < gt_size or w < gt_size:
                raise InputFileError(f"{self.gt_files[idx]}: HR {w}×{h} is smaller than gt_size {gt_size}")
            top, left = int(u_top * (h - gt_size + 1)), int(u_left * (w - gt_size + 1))
            gt = gt[top : top + gt_size, left : left + gt_size]
            lq = None
        gt = _augment(gt, flips, c)
        gt_f = gt.astype(np.float32) / 255.0
        if lq is not None:
            lq_f = _augment(lq, flips, c).astype(np.float32) / 255.0
        else:
            lq_f = self._degrade(gt_f, rng)
        if self.noise is not None and rng.random() < c.noise_prob:
            lq_f = self.noise.inject(lq_f, rng)
        if c.jpeg.enabled:
            lq_f = random_jpeg(lq_f, self.jpeg, rng)
        return np.ascontiguousarray(lq_f, dtype=np.float32), np.ascontiguousarray(gt_f)

    def _degrade(self, gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        d, s = self.cfg.degradation, self.scale
        if d.kind == "bicubic":
            from optisr.degrade.bicubic import imresize

            lq = imresize(gt, output_shape=(gt.shape[0] // s, gt.shape[1] // s))
            return np.clip(np.round(lq * 255.0) / 255.0, 0.0, 1.0).astype(np.float32)  # as a written PNG
        if d.kind == "kernel":
            k = (
                self.kernels[int(rng.integers(len(self.kernels)))]
                if self.kernels
                else random_gaussian_kernel(d.gaussian, rng)
            )
            return degrade_with_kernel(gt, k, s)
        return second_order_degrade(gt, self.second_order, rng)


def _augment(x: np.ndarray, flips: np.ndarray, cfg: TrainDataConfig) -> np.ndarray:
    if cfg.use_flip and flips[0]:
        x = x[:, ::-1]
    if cfg.use_rot and flips[1]:
        x = x[::-1]
    if cfg.use_rot and flips[2]:
        x = x.transpose(1, 0, 2)
    return x


_POOLS: dict[int, ThreadPoolExecutor] = {}


def make_batch(images: PairedImages, batch_size: int, seed: int, step: int, rank: int = 0) -> dict[str, torch.Tensor]:
    """The batch of ``step`` on ``rank``: ``{"lq": (B, 3, h, w), "gt": (B, 3, H, W)}`` float32.

    A pure function of ``(seed, step, rank)`` and the files (see the module docstring).
    """
    rngs = step_rng(seed, step, rank).spawn(batch_size)
    workers = images.cfg.num_workers
    if workers > 0:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="optisr-data")
        pairs = list(pool.map(images.sample, rngs))
    else:
        pairs = [images.sample(r) for r in rngs]
    lq = np.stack([p[0] for p in pairs]).transpose(0, 3, 1, 2)
    gt = np.stack([p[1] for p in pairs]).transpose(0, 3, 1, 2)
    return {"lq": torch.from_numpy(np.ascontiguousarray(lq)), "gt": torch.from_numpy(np.ascontiguousarray(gt))}


# ----------------------------------------------------------------------------------- validation


@dataclass
class ValSample:
    """One validation image: uint8 RGB LR and mod-cropped HR (``hr`` is None for no-GT sets)."""

    name: str
    lr: np.ndarray
    hr: np.ndarray | None


def load_val_photos(cfg: ValDataConfig) -> list[ValSample]:
    """The LR-only NIQE photos of ``cfg.photos_dir`` (``hr`` None; empty when it is unset).

    Raises:
        ConfigError: naming ``datasets.val.photos_dir`` when the folder is missing or no file
            matches ``photos_pattern``.
    """
    if not cfg.photos_dir:
        return []
    key = "datasets.val.photos_dir"
    folder = Path(cfg.photos_dir)
    if not folder.is_dir():
        raise ConfigError(f"{key}: folder {folder} not found")
    files = sorted(p for p in folder.glob(cfg.photos_pattern) if is_image_file(p) and p.is_file())
    if not files:
        raise ConfigError(f"{key}: no images matching {cfg.photos_pattern!r} in {folder}")
    if cfg.photos_limit and len(files) > cfg.photos_limit:
        picks = np.linspace(0, len(files) - 1, cfg.photos_limit).round().astype(int)
        files = [files[i] for i in sorted(set(picks.tolist()))]
    out = []
    for f in files:
        lr = _read_u8(f)
        c = cfg.photos_crop
        if c and min(lr.shape[:2]) > c:
            top, left = (lr.shape[0] - c) // 2, (lr.shape[1] - c) // 2
            lr = np.ascontiguousarray(lr[top : top + c, left : left + c])
        out.append(ValSample(f.stem, lr, None))
    return out


def load_val_samples(cfg: ValDataConfig, scale: int) -> list[ValSample]:
    """The validation images of ``cfg`` (empty when it names none).

    Raises:
        ConfigError: naming the ``datasets.val.*`` key of a missing folder or unknown set.
    """
    key = "datasets.val"
    if cfg.bench:
        from optisr.data.sr_sets import DATASETS, load_dataset

        if cfg.bench not in DATASETS:
            raise ConfigError(f"{key}.bench: unknown set {cfg.bench!r}; choose one of {', '.join(DATASETS)}")
        root = cfg.data_dir or os.environ.get("OPTISR_DATA_DIR")
        if not root:
            raise ConfigError(f"{key}.data_dir: needed for bench set {cfg.bench!r} (or set $OPTISR_DATA_DIR)")
        try:
            samples, _ = load_dataset(cfg.bench, root, scale=scale, limit=cfg.limit)
        except InputFileError as exc:
            raise ConfigError(f"{key}.data_dir: {exc}") from exc
        return [ValSample(s.name, s.lr, s.hr) for s in samples]
    if not cfg.dataroot_gt:
        return []
    gt_files = _image_files(Path(cfg.dataroot_gt), f"{key}.dataroot_gt")[: cfg.limit]
    lq_files = _pair_lq(gt_files, Path(cfg.dataroot_lq), scale, f"{key}.dataroot_lq") if cfg.dataroot_lq else None
    out = []
    for i, g in enumerate(gt_files):
        hr = _read_u8(g)
        hr = hr[: hr.shape[0] - hr.shape[0] % scale, : hr.shape[1] - hr.shape[1] % scale]
        if lq_files is not None:
            lr = _read_u8(lq_files[i])
            if (lr.shape[0] * scale, lr.shape[1] * scale) != hr.shape[:2]:
                raise InputFileError(
                    f"{lq_files[i]}: LR {lr.shape[1]}×{lr.shape[0]} × {scale} does not match the "
                    f"mod-{scale} HR {hr.shape[1]}×{hr.shape[0]} of {g.name}"
                )
        else:
            from optisr.degrade.bicubic import imresize

            lr_f = imresize(hr.astype(np.float32) / 255.0, output_shape=(hr.shape[0] // scale, hr.shape[1] // scale))
            lr = np.round(np.clip(lr_f, 0.0, 1.0) * 255.0).astype(np.uint8)
        out.append(ValSample(g.stem, lr, hr))
    return out
