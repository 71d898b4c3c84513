"""``optisr adapt``: fine-tune a blind SR model to one camera from its own photos, without HR images.

RealSR-style (Ji et al., CVPRW 2020) self-supervision on the user's photos:

1. **Read and measure** every photo of the folder: JPEG quality from the file's quantisation tables
   (:func:`optisr.degrade.estimate.read_jpeg_quality`), noise σ and sharpness
   (:func:`~optisr.degrade.estimate.noise_sigma`, :func:`~optisr.degrade.estimate.sharpness`), and
   real-noise tiles mined from its flat regions (:func:`optisr.degrade.noise.mine_noise_patches`, OTSR
   homogeneity rule) at full resolution, where the noise is the camera's.
2. **HR without HR**: each photo downscaled by ``photos.hr_downscale`` (default ×2, MATLAB bicubic with
   antialiasing), which halves the noise and sharpens the content.
3. **The degradation**: HR → Gaussian blur → MATLAB bicubic ↓scale → + a mined noise crop → JPEG
   (:func:`optisr.degrade.blur_noise_jpeg.blur_noise_jpeg`). The blur σ (HR pixels) is *matched*: among
   ``blur_sigma_search`` the σ whose simulated LR (blur, ↓, noise, JPEG; fixed draws) has the photos'
   median sharpness (no KernelGAN: it costs minutes per photo). The JPEG quality range is the photos'
   estimated qualities ± ``jpeg_margin``, used with probability ``jpeg_prob`` × the share of JPEG photos.
4. **Patches**: a teacher cache (:func:`optisr.blind.teacher_cache.build_teacher_cache`) in the work
   folder holds the HR patches, the clean LR and the source model's output on the clean LR; the
   training batches redraw noise and JPEG on the clean LR every step (:func:`~optisr.blind.teacher_cache.cache_batch`).
5. **Fine-tuning** with the blind engine (:func:`optisr.train.blind.train`, :class:`~optisr.train.blind.BlindTask`):
   L1 + edge + ``teacher_weight``·L1 to the cached source output + the OT critic (``gan_mode: otsr``) at a
   small weight, starting from the source model; time-limited, resumable states in ``WORK/run``. Both
   L1 terms compare the Gaussian low band only (``losses.pixel_lowpass_sigma``, 3 HR px by default),
   leaving the high band to the critic and the edge term: with full-band L1 the outputs of held-out
   photos first grew smoother (NIQE worse) for ~2000 steps, with or without the critic.
6. **Release**: the EMA generator written atomically to the output as the same safetensors format as the
   shipped models, with the source model, the estimates and the run in its metadata (``adapt_*`` keys).

The defaults are the embedded ``optisr/train/data/adapt.yaml`` (:func:`default_config_dict`); every key
can be overridden as ``KEY=VALUE`` (:func:`build_adapt_config`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optisr.blind.critics import CriticConfig
from optisr.blind.losses import LossConfig
from optisr.degrade.noise import NoiseMiningConfig
from optisr.errors import ConfigError, InputFileError, OutputExistsError
from optisr.train.blind import BlindTrainSection

if TYPE_CHECKING:
    import torch

__all__ = [
    "AdaptConfig",
    "AdaptDegradationConfig",
    "AdaptPhotosConfig",
    "FINISH_RESERVE_S",
    "AdaptResult",
    "PhotoEstimates",
    "adapt",
    "build_adapt_config",
    "default_config_dict",
    "estimate_photos",
    "match_blur_sigma",
    "parse_duration",
    "validation_split",
]

_CONFIG_RESOURCE = "data/adapt.yaml"

FINISH_RESERVE_S = 15.0
"""Seconds of ``--time`` kept back from training for what follows its time limit: the last
validation, the release and the output file (a 30-minute run ended 4 s over its budget without it)."""


# ------------------------------------------------------------------------------------ configs


@dataclass
class AdaptPhotosConfig:
    """How the photos become HR patches and noise tiles."""

    min_photos: int = 2  # fewer readable photos: an error
    hr_downscale: float = 2.0  # HR = photo ↓ this factor (MATLAB bicubic, antialias); 1: the photo itself
    lr_size: int = 48  # LR side of the cached patches; HR patches are lr_size·scale
    patches_per_photo: int = 8
    max_patches: int = 1024  # 0: all
    noise: NoiseMiningConfig = field(
        default_factory=lambda: NoiseMiningConfig(
            patch_size=64, sub_size=16, max_var=200.0, var_tol=0.5, max_per_image=16
        )
    )

    def __post_init__(self) -> None:
        if self.min_photos < 1:
            raise ValueError(f"min_photos must be >= 1, got {self.min_photos}")
        if not self.hr_downscale >= 1.0:
            raise ValueError(f"hr_downscale must be >= 1, got {self.hr_downscale}")
        for name in ("lr_size", "patches_per_photo"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_patches < 0:
            raise ValueError(f"max_patches must be >= 0, got {self.max_patches}")


@dataclass
class AdaptDegradationConfig:
    """The synthetic degradation of the HR patches; ``null`` values are estimated from the photos."""

    blur_prob: float = 0.9
    kernel_size: int = 15  # odd, HR pixels
    blur_sigma: float | None = None  # Gaussian σ (HR pixels); null: matched to the photos' sharpness
    blur_sigma_spread: float = 0.3  # σ is drawn in [σ − spread, σ + spread] (at least 0.1)
    blur_sigma_search: tuple[float, float] = (0.2, 3.0)  # the σ range the matching searches
    blur_sigma_steps: int = 15  # grid points of the search
    blur_match_crops: int = 8  # HR crops (one per photo, the first ones) the matching simulates
    isotropic_prob: float = 0.5
    noise_prob: float = 0.9
    noise_strength: tuple[float, float] = (0.8, 1.2)  # multiplier of the mined noise
    jpeg_quality: tuple[int, int] | None = None  # null: the photos' estimated qualities ± jpeg_margin
    jpeg_margin: int = 5
    jpeg_prob: float = 0.9  # times the share of JPEG photos (no JPEG step when there are none)

    def __post_init__(self) -> None:
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {self.kernel_size}")
        if self.blur_sigma is not None and not self.blur_sigma > 0:
            raise ValueError(f"blur_sigma must be > 0 or null, got {self.blur_sigma}")
        lo, hi = self.blur_sigma_search
        if not 0 < lo <= hi:
            raise ValueError(f"blur_sigma_search must satisfy 0 < low <= high, got {list(self.blur_sigma_search)}")
        if self.blur_sigma_steps < 1 or self.blur_match_crops < 1:
            raise ValueError("blur_sigma_steps and blur_match_crops must be >= 1")
        if self.blur_sigma_spread < 0 or self.jpeg_margin < 0:
            raise ValueError("blur_sigma_spread and jpeg_margin must be >= 0")
        for name in ("blur_prob", "noise_prob", "jpeg_prob", "isotropic_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass
class AdaptValidationConfig:
    """Held-out photos that choose what is written: MATLAB NIQE of the model's ×scale outputs of
    their centre crops, the starting model included (so a run that does not help writes it back)."""

    photos: int = 12  # photos held out of training (spread over the sorted list); 0: none (write the last step)
    every: int = 100  # training steps between validations
    crop: int = 128  # LR centre crop side of each held-out photo (0: the whole photo)
    noise_guard: bool = True  # a step is chosen only if its outputs are no grainier than bicubic upscaling's
    stop_after_guarded: int = 5  # end the run after this many validations in a row broke the guard (0: never)

    def __post_init__(self) -> None:
        for name in ("photos", "every", "crop", "stop_after_guarded"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.photos and not self.every:
            raise ValueError("every must be >= 1 when photos are held out")


def validation_split(files: list[Path], cfg: AdaptValidationConfig, min_photos: int) -> tuple[list[Path], list[Path]]:
    """``(training photos, held-out photos)`` of the sorted photo list.

    At most ``cfg.photos`` and at most a third of the photos are held out, evenly spread over the
    list (so both parts hold the same kinds of shots); none when that leaves fewer than 2 held out
    or fewer than ``min_photos`` to train on.
    """
    n_val = min(cfg.photos, len(files) // 3)
    if n_val < 2 or len(files) - n_val < min_photos:
        return list(files), []
    picks = set(np.linspace(0, len(files) - 1, n_val + 2)[1:-1].round().astype(int).tolist())
    return [f for i, f in enumerate(files) if i not in picks], [f for i, f in enumerate(files) if i in picks]


@dataclass
class AdaptConfig:
    """The whole ``optisr adapt`` config (defaults: ``optisr/train/data/adapt.yaml``)."""

    name: str = "adapt"
    threads: int = 0  # torch CPU threads (0: torch's default)
    gt_size: int = 128  # HR training crop; the LR crop is gt_size / scale
    teacher_weight: float = 0.5  # weight of L1(sr, source model's output on the clean LR)
    photos: AdaptPhotosConfig = field(default_factory=AdaptPhotosConfig)
    degradation: AdaptDegradationConfig = field(default_factory=AdaptDegradationConfig)
    validation: AdaptValidationConfig = field(default_factory=AdaptValidationConfig)
    network_d: CriticConfig = field(default_factory=lambda: CriticConfig(type="patchgan", num_feat=32))
    losses: LossConfig = field(default_factory=LossConfig)
    train: BlindTrainSection = field(default_factory=lambda: BlindTrainSection(total_steps=1_000_000))

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if self.teacher_weight < 0:
            raise ValueError(f"teacher_weight must be >= 0, got {self.teacher_weight}")


def default_config_dict() -> dict[str, Any]:
    """The embedded default config (``optisr/train/data/adapt.yaml``) as a mapping."""
    from importlib import resources

    import yaml

    text = resources.files("optisr.train").joinpath(_CONFIG_RESOURCE).read_text(encoding="utf-8")
    return dict(yaml.safe_load(text) or {})


def build_adapt_config(overrides: list[str] | tuple[str, ...] = ()) -> AdaptConfig:
    """The embedded defaults with ``KEY=VALUE`` overrides applied (as ``optisr train`` does).

    Raises:
        ConfigError: an unknown key or a bad value (one line naming the key).
    """
    from optisr.config import build_config

    return build_config(AdaptConfig, None, list(overrides), base=default_config_dict())


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds of a duration: ``"90s"``, ``"30m"``, ``"1.5h"`` or plain seconds (``"120"``).

    Raises:
        ConfigError: anything else, or a duration that is not > 0.
    """
    m = _DURATION.match(str(text))
    seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2).lower()] if m else math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"--time: expected a duration > 0 such as 90s, 30m, 1.5h or plain seconds; got {text!r}")
    return seconds


# ---------------------------------------------------------------------------------- estimates


@dataclass
class PhotoEstimates:
    """What :func:`estimate_photos` found in the photo folder.

    ``hr`` are the HR images (uint8 ``(H, W, 3)``: the photos ↓``hr_downscale``) of the usable photos,
    ``names`` their file names; noise σ is in 0–255 units (median over all photos), sharpness in [0, 1]
    (median), ``jpeg_qualities`` the IJG qualities of the JPEG photos (empty: none is a JPEG).
    """

    names: list[str]
    hr: list[np.ndarray]
    noise_tiles: list[np.ndarray]
    photo_count: int
    too_small: int
    noise_sigma: float
    sharpness: float
    jpeg_qualities: list[float]
    digest: str  # sha256 of the photo names and sizes (identifies the set in the work folder)
    lr_size: int = 0  # the LR patch side used: photos.lr_size, or less when the photos are smaller


def _photo_files(folder: Path) -> list[Path]:
    from optisr.io.images import is_image_file

    if not folder.is_dir():
        raise InputFileError(f"{folder}: photo folder not found")
    return sorted(f for f in folder.iterdir() if f.is_file() and is_image_file(f) and not f.name.startswith("."))


def estimate_photos(
    folder: str | os.PathLike, cfg: AdaptConfig, scale: int, files: list[Path] | None = None
) -> PhotoEstimates:
    """Read the photos one at a time: measure them, mine their noise tiles, make their HR images.

    Args:
        folder: the photo folder (image files directly in it; other files are ignored).
        cfg: the config (``photos`` section).
        scale: the model's scale (the HR patch is ``photos.lr_size · scale`` pixels; when no
            downscaled photo holds that, the patch shrinks to the largest that one does, down to
            ``gt_size``, and ``PhotoEstimates.lr_size`` says which side was used).
        files: the photos of ``folder`` to use (default: all; :func:`validation_split` holds some out).
    Raises:
        InputFileError: missing folder, an unreadable photo (naming it), fewer than
            ``photos.min_photos`` photos, every photo too small, or no noise tile in any photo.
    """
    from optisr.degrade.bicubic import imresize
    from optisr.degrade.estimate import noise_sigma, read_jpeg_quality, sharpness
    from optisr.degrade.noise import mine_noise_patches
    from optisr.io.images import read_image, to_rgb_float

    folder = Path(folder)
    p = cfg.photos
    files = _photo_files(folder) if files is None else list(files)
    if len(files) < p.min_photos:
        raise InputFileError(
            f"{folder}: {len(files)} photo(s) found; adapt needs at least {p.min_photos} "
            "(.png, .jpg, .jpeg, .webp, .bmp, .tif, .tiff)"
        )
    patch = p.lr_size * scale
    min_patch = cfg.gt_size  # the training crop: no patch may be smaller
    names: list[str] = []
    hr: list[np.ndarray] = []
    tiles: list[np.ndarray] = []
    sigmas: list[float] = []
    sharp: list[float] = []
    qualities: list[float] = []
    digest = hashlib.sha256()
    for f in files:
        x = to_rgb_float(read_image(f))
        q = read_jpeg_quality(f)
        if q is not None:
            qualities.append(q)
        digest.update(f"{f.name}:{f.stat().st_size}:{x.shape}\n".encode())
        sigmas.append(noise_sigma(x))
        sharp.append(sharpness(x))
        tiles += mine_noise_patches(x, p.noise, zero_mean=False)
        h, w = x.shape[:2]
        oh, ow = int(round(h / p.hr_downscale)), int(round(w / p.hr_downscale))
        if min(oh, ow) < min_patch:
            continue
        small = x if p.hr_downscale == 1.0 else imresize(x, output_shape=(oh, ow))
        hr.append(np.round(np.clip(small, 0.0, 1.0) * 255.0).astype(np.uint8))
        names.append(f.name)
    if not hr:
        need = math.ceil(min_patch * p.hr_downscale)
        raise InputFileError(
            f"{folder}: all {len(files)} photos are too small: the {min_patch}² HR training crop after the "
            f"×{p.hr_downscale:g} downscale needs photos of at least {need}×{need} pixels"
        )
    # The configured patch when some photo holds it, else the largest patch the biggest photo holds.
    fit = max(min(im.shape[:2]) for im in hr) // scale * scale
    patch = min(patch, fit)
    keep = [i for i, im in enumerate(hr) if min(im.shape[:2]) >= patch]
    hr, names = [hr[i] for i in keep], [names[i] for i in keep]
    if not tiles:
        raise InputFileError(
            f"no homogeneous patches found in {folder} (no {p.noise.patch_size}² tile of the {len(files)} photos "
            f"passes the {p.noise.rule} noise rule; try photos.noise.patch_size or photos.noise.max_var)"
        )
    return PhotoEstimates(
        names=names,
        hr=hr,
        noise_tiles=tiles,
        photo_count=len(files),
        too_small=len(files) - len(hr),
        noise_sigma=float(np.median(sigmas)),
        sharpness=float(np.median(sharp)),
        jpeg_qualities=qualities,
        digest=digest.hexdigest(),
        lr_size=patch // scale,
    )


def _jpeg_settings(est: PhotoEstimates, d: AdaptDegradationConfig) -> tuple[float, tuple[int, int]]:
    """``(probability, (low, high))`` of the JPEG step."""
    if d.jpeg_quality is not None:
        lo, hi = d.jpeg_quality
        return d.jpeg_prob, (int(lo), int(hi))
    if not est.jpeg_qualities:
        return 0.0, (95, 95)
    lo = int(np.clip(math.floor(min(est.jpeg_qualities)) - d.jpeg_margin, 1, 100))
    hi = int(np.clip(math.ceil(max(est.jpeg_qualities)) + d.jpeg_margin, lo, 100))
    return d.jpeg_prob * len(est.jpeg_qualities) / est.photo_count, (lo, hi)


def match_blur_sigma(
    hr: list[np.ndarray],
    target_sharpness: float,
    d: AdaptDegradationConfig,
    noise: Any,
    jpeg: tuple[float, tuple[int, int]],
    scale: int,
    seed: int,
) -> tuple[float, float]:
    """The blur σ (HR pixels) whose simulated LR has the photos' sharpness.

    For each σ of the ``blur_sigma_search`` grid, the centre crops (at most 256² HR, a multiple of
    ``scale``) of the first ``blur_match_crops`` HR images are degraded with that isotropic blur, the
    bicubic ↓scale, the mean noise strength and the JPEG step, with the same random draws for every σ
    (common random numbers); the σ whose mean :func:`~optisr.degrade.estimate.sharpness` is closest to
    ``target_sharpness`` wins.

    Args:
        hr: uint8 ``(H, W, 3)`` HR images.
        target_sharpness: the photos' sharpness, in [0, 1].
        noise: the :class:`~optisr.degrade.noise.NoisePool` (or None).
        jpeg: ``(probability, (low, high))`` of the JPEG step.
    Returns:
        ``(σ, simulated sharpness at σ)``.
    """
    from optisr.degrade.blur_noise_jpeg import BlurNoiseJpegConfig, blur_noise_jpeg
    from optisr.degrade.estimate import sharpness
    from optisr.degrade.jpeg import JpegConfig
    from optisr.degrade.kernels import GaussianKernelConfig

    crops = []
    for img in hr[: d.blur_match_crops]:
        side = min(256, img.shape[0], img.shape[1]) // scale * scale
        top, left = (img.shape[0] - side) // 2, (img.shape[1] - side) // 2
        crops.append(img[top : top + side, left : left + side])
    strength = 0.5 * (d.noise_strength[0] + d.noise_strength[1])
    best: tuple[float, float, float] | None = None  # (|Δ|, σ, sharpness)
    for sigma in np.linspace(*d.blur_sigma_search, d.blur_sigma_steps):
        cfg = BlurNoiseJpegConfig(
            scale=scale,
            blur_prob=1.0,
            kernel=GaussianKernelConfig(
                size=d.kernel_size, sigma_range=(float(sigma), float(sigma)), isotropic_prob=1.0
            ),
            noise_prob=d.noise_prob,
            noise_strength=(strength, strength),
            jpeg=JpegConfig(quality_range=jpeg[1], prob=jpeg[0]),
        )
        values = [
            sharpness(blur_noise_jpeg(c, cfg, noise, np.random.default_rng([seed, 77, i]))[1])
            for i, c in enumerate(crops)
        ]
        s = float(np.mean(values))
        gap = abs(s - target_sharpness)
        if best is None or gap < best[0]:
            best = (gap, float(sigma), s)
    assert best is not None
    return best[1], best[2]


# ----------------------------------------------------------------------------------------- run


@dataclass
class AdaptResult:
    """What :func:`adapt` did: the output file, its metadata, the steps (all runs) and this call's seconds."""

    output: Path
    metadata: dict[str, str]
    steps: int
    seconds: float


def _log_records(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/logs/metrics.jsonl`` in order (unreadable lines skipped; none without the file)."""
    path = run_dir / "logs" / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _final_losses(run_dir: Path) -> dict[str, float]:
    """The last ``train/`` scalars of ``run_dir/logs/metrics.jsonl`` (losses, critic values)."""
    last: dict[str, float] = {}
    for rec in _log_records(run_dir):
        vals = {k[len("train/") :]: float(v) for k, v in rec.items() if k.startswith("train/")}
        if vals:
            last = vals
    skip = {"lr", "sec_per_step", "g_grad_norm", "d_grad_norm", "cpu_s"}
    return {k: round(v, 6) for k, v in last.items() if k not in skip and math.isfinite(v)}


def _source_generator(source: str) -> tuple[Any, dict[str, str]]:
    """``(NetworkGConfig, source metadata)`` of a registry name or weights file."""
    from dataclasses import fields

    from optisr.blind.registry import load_model
    from optisr.train.blind import NetworkGConfig

    loaded = load_model(source)
    if loaded.arch not in ("RRDBNet", "SRVGGNetCompact"):
        raise ConfigError(f"--from: {source} is a {loaded.arch}; adapt fine-tunes RRDBNet or SRVGGNetCompact")
    names = {f.name for f in fields(NetworkGConfig)}
    hp = {k: v for k, v in loaded.hyperparameters.items() if k in names}
    try:
        net = NetworkGConfig(type="RRDBNet" if loaded.arch == "RRDBNet" else "SRVGGNetCompact", pretrained=source, **hp)
    except ValueError as exc:
        raise ConfigError(f"--from: {source}: {exc}") from exc
    return net, dict(loaded.metadata)


def _write_output(release: Path, output: Path, extra: dict[str, str], overwrite: bool) -> dict[str, str]:
    """Copy the release ``release`` to ``output`` atomically with ``extra`` metadata; returns the metadata."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from optisr.io.atomic import atomic_path

    with safe_open(str(release), framework="pt") as fh:
        meta = dict(fh.metadata() or {})
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    meta.update(extra)
    with atomic_path(output, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return meta


def _remove_work(work: Path, *, keep_folder: bool) -> None:
    """Remove what a failed fresh run wrote in ``work`` (and ``work`` itself unless it existed before)."""
    if not keep_folder:
        shutil.rmtree(work, ignore_errors=True)
        return
    for child in work.iterdir() if work.is_dir() else ():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _default_work_dir(output: Path) -> Path:
    return output.with_name(output.name.removesuffix(".safetensors") + ".adapt")


def adapt(
    photos_dir: str | os.PathLike,
    output: str | os.PathLike,
    *,
    time_limit_s: float | None = 1800.0,
    source: str = "otsr-compact-x4",
    config: AdaptConfig | None = None,
    work_dir: str | os.PathLike | None = None,
    resume: bool = False,
    device: str | torch.device | None = "auto",
    seed: int | None = None,
    max_steps: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> AdaptResult:
    """Fine-tune ``source`` on the photos of ``photos_dir`` and write the adapted model to ``output``.

    Args:
        photos_dir: folder of the camera's photos (JPEG, PNG, TIFF...; no HR images needed).
        output: the ``.safetensors`` to write (loads with ``optisr upscale --model-path``).
        time_limit_s: wall-clock budget of this call, preparation included (None: until ``max_steps``
            or ``train.total_steps``); training gets what the preparation left (at least one step).
        source: registry name (``optisr models``) or weights file of the model to start from.
        config: the settings (default: :func:`build_adapt_config` ``()``).
        work_dir: patches, training states and logs (default: ``<output stem>.adapt`` next to it).
        resume: continue the run in ``work_dir`` (a fresh start when it holds none); without it a
            ``work_dir`` that is not empty is refused.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        seed: overrides ``train.seed`` (patches, batches, initialisation of the critic).
        max_steps: overrides ``train.total_steps`` (counted over all resumed runs).
        overwrite: replace an existing ``output``.
        progress: tqdm bars.
    Returns:
        :class:`AdaptResult`.
    Raises:
        OutputExistsError: ``output`` exists and ``overwrite`` is False (checked first, and again
            when writing). InputFileError / ConfigError: bad photos or settings, found before training;
            a work folder this call created is then removed.
    """
    from optisr.blind.teacher_cache import (
        CacheDegradationConfig,
        TeacherCacheConfig,
        build_teacher_cache,
        save_noise_tiles,
    )
    from optisr.blind.training_data import TrainDataConfig, ValDataConfig
    from optisr.config import to_dict
    from optisr.degrade.noise import NoisePool
    from optisr.io.images import write_image
    from optisr.train.blind import BlindDatasetsConfig, BlindTrainConfig, DistillConfig, check_config, train
    from optisr.train.checkpoint import list_states
    from optisr.train.config import PathConfig
    from optisr.version import __version__

    t0 = time.perf_counter()
    output = Path(output)
    photos = Path(photos_dir)
    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output}: exists; use --overwrite to replace it")
    if time_limit_s is not None and not time_limit_s > 0:
        raise ConfigError(f"time limit must be > 0 seconds, got {time_limit_s}")
    cfg = config if config is not None else build_adapt_config()
    t = cfg.train
    if seed is not None:
        t = replace(t, seed=int(seed))
    if max_steps is not None:
        if max_steps < 1:
            raise ConfigError(f"--max-steps: must be >= 1, got {max_steps}")
        t = replace(t, total_steps=int(max_steps))
    work = Path(work_dir) if work_dir is not None else _default_work_dir(output)
    if not resume and work.exists() and any(work.iterdir()):
        raise ConfigError(f"{work}: holds a previous adapt run; use --resume to continue it, or remove the folder")
    if cfg.threads > 0:
        import torch

        torch.set_num_threads(cfg.threads)

    net_g, source_meta = _source_generator(source)
    scale = net_g.scale
    if cfg.gt_size % scale or cfg.gt_size // scale > cfg.photos.lr_size:
        raise ConfigError(
            f"gt_size: must be a multiple of the scale {scale} and at most photos.lr_size·scale "
            f"= {cfg.photos.lr_size * scale}; got {cfg.gt_size}"
        )
    hr_dir, cache_dir, run_dir = work / "hr", work / "cache", work / "run"
    bcfg = BlindTrainConfig(
        name=cfg.name,
        network_g=net_g,
        network_d=cfg.network_d,
        datasets=BlindDatasetsConfig(train=TrainDataConfig(gt_size=cfg.gt_size)),
        losses=cfg.losses,
        train=t,
        distill=DistillConfig(cache_dir=str(cache_dir), teacher_weight=cfg.teacher_weight, redraw=True),
        path=PathConfig(str(run_dir)),
        threads=cfg.threads,
    )
    check_config(bcfg)  # cross-section errors before the photos are read
    fresh = not work.exists() or not any(work.iterdir())  # a failure removes what this call wrote
    existed = work.exists()
    try:
        train_files, val_files = validation_split(_photo_files(photos), cfg.validation, cfg.photos.min_photos)
        est = estimate_photos(photos, cfg, scale, train_files)
        noise = NoisePool(est.noise_tiles)
        d = cfg.degradation
        jpeg = _jpeg_settings(est, d)
        if d.blur_sigma is None:
            sigma, sim_sharp = match_blur_sigma(est.hr, est.sharpness, d, noise, jpeg, scale, t.seed)
            blur_note = f"σ matched to the photos' sharpness {est.sharpness:.3f} (simulated {sim_sharp:.3f})"
        else:
            sigma = float(d.blur_sigma)
            blur_note = "σ from degradation.blur_sigma"
        sig_lo, sig_hi = max(0.1, sigma - d.blur_sigma_spread), max(0.1, sigma + d.blur_sigma_spread)
        degradation = CacheDegradationConfig(
            blur_prob=d.blur_prob,
            kernel_size=d.kernel_size,
            sigma_range=(round(sig_lo, 4), round(sig_hi, 4)),
            isotropic_prob=d.isotropic_prob,
            noise_prob=d.noise_prob,
            noise_strength=d.noise_strength,
            jpeg_prob=round(jpeg[0], 6),
            jpeg_quality=jpeg[1],
        )
        degradation.build(scale)  # validates the recipe before anything is written
        hr_dir.mkdir(parents=True, exist_ok=True)
        for i, (name, img) in enumerate(zip(est.names, est.hr)):
            write_image(hr_dir / f"{i:05d}_{Path(name).stem}.png", img)
        described = f"{est.photo_count} photos of {photos} (adapt; set {est.digest[:16]})"
        cache_cfg = TeacherCacheConfig(
            hr_dirs=[str(hr_dir)],
            holdout=0,
            teacher=source,
            teacher_input="clean",
            scale=scale,
            lr_size=est.lr_size,
            patches_per_image=cfg.photos.patches_per_photo,
            max_patches=cfg.photos.max_patches,
            seed=t.seed,
            threads=cfg.threads,
            degradation=degradation,
            training_data=described,
        )
        cache_dir.mkdir(parents=True, exist_ok=True)
        if not (cache_dir / "noise.npz").is_file():
            save_noise_tiles(noise, cache_dir)
        from optisr.blind.registry import load_model

        build_teacher_cache(cache_cfg, cache_dir, teacher=load_model(source).model, progress=progress)
        if val_files:
            # the held-out photos choose the release (the starting model included): NIQE of the outputs
            val_dir = work / "val_photos"
            val_dir.mkdir(parents=True, exist_ok=True)
            for f in val_files:
                shutil.copy2(f, val_dir / f.name)
            v = cfg.validation
            val = ValDataConfig(photos_dir=str(val_dir), photos_pattern="*", photos_limit=0, photos_crop=v.crop)
            bcfg = replace(bcfg, datasets=replace(bcfg.datasets, val=val))
            t = replace(
                t,
                val_every=v.every,
                best_metric="niqe_photos",
                best_mode="min",
                best_guard="noise_photos_excess" if v.noise_guard else None,
                stop_after_guarded=v.stop_after_guarded if v.noise_guard else 0,
                val_at_start=True,
            )
        prep_s = time.perf_counter() - t0
        if time_limit_s is not None:
            t = replace(t, time_limit_s=max(1.0, time_limit_s - prep_s - FINISH_RESERVE_S))
        bcfg = replace(bcfg, train=t, training_data=described)
        check_config(bcfg)
        result = train(bcfg, save_dir=run_dir, resume=resume, progress=progress, device=device)
    except BaseException:
        if fresh and not list_states(run_dir):
            _remove_work(work, keep_folder=existed)
        raise
    seconds = time.perf_counter() - t0
    quality = (
        f"{min(est.jpeg_qualities):.0f}-{max(est.jpeg_qualities):.0f} ({len(est.jpeg_qualities)} JPEG photos)"
        if est.jpeg_qualities
        else "none (no JPEG photos)"
    )
    extra = {
        "name": cfg.name,
        "adapt_source": str(source),
        "adapt_source_name": source_meta.get("name", Path(str(source)).stem),
        "adapt_photos": str(est.photo_count),
        "adapt_photos_used_for_hr": str(len(est.hr)),
        "adapt_lr_patch": str(est.lr_size),
        "adapt_photos_dir": str(photos),
        "adapt_noise_patches": str(len(est.noise_tiles)),
        "adapt_noise_sigma": f"{est.noise_sigma:.3f}",
        "adapt_jpeg_quality": quality,
        "adapt_sharpness": f"{est.sharpness:.4f}",
        "adapt_blur_sigma": f"{sigma:.3f}",
        "adapt_blur_method": f"Gaussian, {blur_note}; no kernel estimate (KernelGAN) was run",
        "adapt_degradation": json.dumps(to_dict(degradation)),
        "adapt_hr_downscale": f"{cfg.photos.hr_downscale:g}",
        "adapt_steps": str(result.step),
        "adapt_steps_this_run": str(result.step - result.start_step),
        "adapt_seconds": f"{seconds:.1f}",
        "adapt_final_losses": json.dumps(_final_losses(run_dir)),
        "adapt_config": json.dumps(to_dict(cfg)),
        "noise_source": str(photos),
        "noise_license": "the adapting user's own photos",
        "optisr_version": __version__,
    }
    if "license" in source_meta:
        extra["license"] = source_meta["license"]
    release = run_dir / "last.safetensors"
    if val_files:
        curve = _val_curve(run_dir)
        best = run_dir / "best.safetensors"
        chosen = result.best_step if result.best_step is not None else result.step
        if best.is_file():
            release = best
        extra.update(
            adapt_val_photos=json.dumps([f.name for f in val_files]),
            adapt_val_crop=str(cfg.validation.crop),
            adapt_val_niqe=json.dumps({str(k): round(v, 4) for k, v in curve.items()}),
            adapt_val_noise_excess=json.dumps(
                {str(k): round(v, 4) for k, v in _val_curve(run_dir, "val/noise_photos_excess").items()}
            ),
            adapt_val_rule=(
                "the lowest NIQE among the steps whose outputs, resized back to the photo, have a noise σ no "
                "higher than bicubic upscaling's (noise σ excess <= 0; the start exempt)"
                if cfg.validation.noise_guard
                else "the lowest NIQE"
            ),
            adapt_selected_step=str(chosen),
            adapt_selected=(
                "the starting model: no checkpoint scored a lower NIQE on the held-out photos"
                + (" without adding noise" if cfg.validation.noise_guard else "")
                if chosen == 0
                else f"step {chosen}: the lowest NIQE on the {len(val_files)} held-out photos"
                + (" among the steps that add no noise" if cfg.validation.noise_guard else "")
            ),
        )
    else:
        extra["adapt_selected"] = "the last step (no held-out photos: too few photos, or validation.photos 0)"
    meta = _write_output(release, output, extra, overwrite)
    return AdaptResult(output=output, metadata=meta, steps=result.step, seconds=seconds)


def _val_curve(run_dir: Path, key: str = "val/niqe_photos") -> dict[int, float]:
    """step -> ``key`` from ``run_dir/logs/metrics.jsonl`` (default: the held-out photos' NIQE)."""
    return {int(rec["step"]): float(rec[key]) for rec in _log_records(run_dir) if key in rec and "step" in rec}
