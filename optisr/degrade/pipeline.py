"""Training-pair generation for blind SR: ``DegradationConfig`` and :func:`build_training_pairs`.

Kinds (``DegradationConfig.kind``):

* ``bicubic``: HR = (×2-cleaned) source, LR = MATLAB bicubic ↓scale.
* ``otsr``: as ``bicubic`` (RealSR/OTSR's DF2K "Track 1" data) plus a noise pool mined from the
  *full-resolution* sources with the OTSR homogeneity rule.
* ``realsr-kernel``: LR = HR correlated with a kernel and sampled every ``scale`` pixels; the
  kernel is estimated per image (KernelGAN-style, on the source), drawn from a folder of
  ``.mat``/``.npy`` kernels, or a random anisotropic Gaussian; noise pool as above (RealSR's
  variance rule by default is *not* forced: ``noise.rule`` picks it).
* ``second-order``: Real-ESRGAN's second-order degradation of the HR.

``clean_up_x2`` (RealSR/OTSR): the source is first bicubic-downscaled ×2 to suppress its noise
and artefacts; that cleaned image is the HR. Noise is *not* added to the written LR by default:
RealSR/OTSR inject a random zero-mean crop at training time (``optisr.degrade.noise.NoisePool``
on ``out/noise``); ``noise.bake: true`` adds it to the written LR instead.

Output (BasicSR paired-folder layout)::

    out/HR/<stem>.png   out/LR/x<scale>/<stem>.png   out/noise/<stem>_<k>.png
    out/kernels/<stem>.npy (realsr-kernel)   out/degradation.yaml (the resolved config + seed)

Everything is written into a hidden staging folder inside ``out`` and moved into place at the
end, so an error leaves no partial output. The output folder may not overlap the source folder
(same, inside or containing it; symlinks resolved). ``overwrite`` replaces only the entries
named in :data:`OUTPUT_NAMES` (what this module writes), never other files of ``out``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from optisr.degrade._image import as_rgb_float
from optisr.degrade.bicubic import imresize
from optisr.degrade.jpeg import JpegConfig, random_jpeg
from optisr.degrade.kernels import (
    GaussianKernelConfig,
    degrade_with_kernel,
    estimate_kernel,
    load_kernels,
    random_gaussian_kernel,
)
from optisr.degrade.noise import NoiseMiningConfig, NoisePool, mine_noise_patches
from optisr.degrade.second_order import SecondOrderConfig, second_order_degrade
from optisr.errors import ConfigError, InputFileError
from optisr.io.outputs import check_output_folder, refuse_overlap

__all__ = [
    "KINDS",
    "OUTPUT_NAMES",
    "BuildResult",
    "DegradationConfig",
    "JpegSection",
    "KernelSection",
    "NoiseSection",
    "build_training_pairs",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "preview_figure",
]

KINDS = ("otsr", "realsr-kernel", "second-order", "bicubic")


@dataclass(frozen=True, kw_only=True)
class NoiseSection:
    """Noise-pool settings (used by ``otsr`` and ``realsr-kernel``)."""

    enabled: bool = True
    mining: NoiseMiningConfig = field(default_factory=NoiseMiningConfig)
    bake: bool = False  # also add a pool draw to the written LR (RealSR/OTSR do it online)
    strength: float = 1.0  # multiplier of baked noise


@dataclass(frozen=True, kw_only=True)
class KernelSection:
    """Kernel source for ``realsr-kernel``: estimate, a folder, or random Gaussians."""

    estimate: bool = False  # KernelGAN-style estimate on every source image
    estimate_iters: int = 400
    dir: str | None = None  # folder of .mat/.npy kernels, one drawn per image
    gaussian: GaussianKernelConfig = field(default_factory=GaussianKernelConfig)


@dataclass(frozen=True, kw_only=True)
class JpegSection:
    """Optional JPEG on the written LR (RealSR's DF2K-JPEG variant)."""

    enabled: bool = False
    quality_range: tuple[int, int] = (30, 95)
    prob: float = 1.0


@dataclass(frozen=True, kw_only=True)
class DegradationConfig:
    """How ``optisr degrade`` turns source images into HR/LR pairs (YAML-able; see module doc)."""

    kind: Literal["otsr", "realsr-kernel", "second-order", "bicubic"] = "otsr"
    scale: int = 4  # LR = HR / scale
    clean_up_x2: bool = True  # bicubic ↓2 of the source before anything else
    noise: NoiseSection = field(default_factory=NoiseSection)
    kernels: KernelSection = field(default_factory=KernelSection)
    jpeg: JpegSection = field(default_factory=JpegSection)
    second_order: SecondOrderConfig = field(default_factory=SecondOrderConfig)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        if int(self.scale) != self.scale or not 1 <= self.scale <= 16:
            raise ConfigError(f"scale must be an integer in 1..16; got {self.scale}")
        if self.kind == "realsr-kernel" and self.kernels.estimate and self.scale not in (2, 4):
            raise ConfigError(f"kernel estimation supports scale 2 or 4; got {self.scale}")
        JpegConfig(quality_range=self.jpeg.quality_range, prob=self.jpeg.prob)  # validates
        if self.second_order.scale != self.scale:  # one scale for the whole config
            object.__setattr__(self, "second_order", dataclasses.replace(self.second_order, scale=self.scale))

    @property
    def uses_noise(self) -> bool:
        return self.noise.enabled and self.kind in ("otsr", "realsr-kernel")


def config_from_dict(data: dict | None) -> DegradationConfig:
    """Build a :class:`DegradationConfig` from a (YAML) mapping; unknown keys are errors.

    ``degradation:`` as the single top-level key is also accepted.
    """
    data = dict(data or {})
    if set(data) == {"degradation"} and isinstance(data["degradation"], dict):
        data = data["degradation"]
    from optisr.config import from_dict  # the project's one strict dict -> dataclass converter

    return from_dict(DegradationConfig, data)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def config_to_dict(cfg: DegradationConfig) -> dict:
    """The config as plain YAML-safe types (tuples → lists)."""
    return _plain(dataclasses.asdict(cfg))


def load_config(path: str | os.PathLike) -> DegradationConfig:
    """Read a YAML config file (see ``configs/degrade/*.yaml``)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise InputFileError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if data is not None and not isinstance(data, dict):
        raise InputFileError(f"{path}: the config must be a mapping of keys to values")
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# ------------------------------------------------------------------------------------------
# building pairs
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build_training_pairs` wrote."""

    out_dir: Path
    pairs: int
    noise_patches: int
    hr_dir: Path
    lr_dir: Path
    noise_dir: Path | None
    kernels_dir: Path | None


def _u8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _list_sources(src_dir: Path) -> list[Path]:
    from optisr.io.images import is_image_file

    if not src_dir.is_dir():
        raise InputFileError(f"{src_dir}: input folder not found")
    files = sorted(f for f in src_dir.iterdir() if f.is_file() and is_image_file(f))
    if not files:
        raise InputFileError(f"{src_dir}: no images (.png, .jpg, ...) in this folder")
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise InputFileError(f"{f}: same name as {stems[f.stem].name}; outputs are named by stem")
        stems[f.stem] = f
    return files


def _modcrop(x: np.ndarray, scale: int, name: Path) -> np.ndarray:
    h, w = (x.shape[0] // scale) * scale, (x.shape[1] // scale) * scale
    if h == 0 or w == 0:
        raise InputFileError(f"{name}: image {x.shape[1]}×{x.shape[0]} is too small for ×{scale}")
    return x[:h, :w]


def _read(path: Path) -> np.ndarray:
    from optisr.io.images import read_image

    return as_rgb_float(read_image(path))


# What build_training_pairs writes at the top of its output folder, and nothing else: with
# overwrite, exactly these names are replaced; any other file in the folder is left alone.
OUTPUT_NAMES = ("HR", "LR", "noise", "kernels", "degradation.yaml")
_LOCK = ".optisr-degrade.lock"


def _lock_folder(lock: Path, out_dir: Path) -> int:
    """Take an exclusive advisory lock on ``lock`` (created if needed); return its descriptor.

    ``flock`` rather than an O_EXCL file alone: the kernel drops the lock when its process dies,
    so a killed run never blocks the next one. After locking we check that the path still names
    the file we locked (a finishing run unlinks it), else we try again on the new file.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: an exclusive create is the claim (a killed run leaves it)
        try:
            return os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            raise ConfigError(
                f"{out_dir}: another `optisr degrade` is writing this folder (if none is running, delete {lock})"
            ) from None
    while True:
        fd = os.open(lock, os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(f"{out_dir}: another `optisr degrade` is writing this folder") from None
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # we locked a file that its owner has just unlinked: take the new one


def _unlock_folder(lock: Path, fd: int) -> None:
    """Remove the claim (unlink while still holding the lock, then release it)."""
    lock.unlink(missing_ok=True)
    os.close(fd)


@contextlib.contextmanager
def _claimed_output(out_dir: Path, *, overwrite: bool) -> Iterator[Path]:
    """Claim ``out_dir`` for one run, yield a staging folder inside it, then swap our names in.

    * The claim is a lock file created exclusively in ``out_dir``: a second run writing the
      same folder at the same time fails at once instead of mixing or replacing outputs.
    * Without ``overwrite`` the folder must be new or empty (besides our claim and staging).
    * On success each name of :data:`OUTPUT_NAMES` that this run wrote replaces the old entry of
      that name (the old one is moved aside, then deleted); stale entries of those names from an
      earlier ``degrade`` run (one that left ``degradation.yaml``) are removed too. Nothing
      else in ``out_dir`` is touched.
    * On error the staging folder, the claim, and ``out_dir`` itself when this run created it
      are removed; what was there before stays as it was.
    """
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = out_dir / _LOCK
    fd = _lock_folder(lock, out_dir)
    stage: Path | None = None
    try:
        others = [p for p in out_dir.iterdir() if p.name != _LOCK]
        if others and not overwrite:
            raise ConfigError(f"{out_dir}: output folder exists and is not empty (use overwrite / --overwrite)")
        stage = Path(tempfile.mkdtemp(prefix=".optisr-degrade-staging-", dir=out_dir))
        yield stage
        _swap_in(stage, out_dir)
    except BaseException:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        _unlock_folder(lock, fd)
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # only if empty: never removes anything but our own traces
        raise
    shutil.rmtree(stage, ignore_errors=True)
    _unlock_folder(lock, fd)


def _swap_in(stage: Path, out_dir: Path) -> None:
    """Move ``stage/<name>`` onto ``out_dir/<name>`` for our names (old entries moved aside first)."""
    ours_before = (out_dir / "degradation.yaml").is_file()
    trash = Path(tempfile.mkdtemp(prefix=".optisr-degrade-old-", dir=out_dir))
    moved: list[tuple[Path, Path]] = []  # (from, to), for rollback
    try:
        for name in OUTPUT_NAMES:
            new, old = stage / name, out_dir / name
            if not new.exists() and not ours_before:
                continue  # not written now, and not known to be ours: leave whatever is there
            if old.exists() or old.is_symlink():
                os.replace(old, trash / name)
                moved.append((old, trash / name))
            if new.exists():
                os.replace(new, old)
                moved.append((new, old))
    except BaseException:
        for src, dst in reversed(moved):
            with contextlib.suppress(OSError):
                os.replace(dst, src)
        shutil.rmtree(trash, ignore_errors=True)
        raise
    shutil.rmtree(trash, ignore_errors=True)


def build_training_pairs(
    src_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: DegradationConfig | None = None,
    *,
    seed: int = 0,
    progress: bool = False,
    overwrite: bool = False,
) -> BuildResult:
    """Degrade every image of ``src_dir`` and write HR/LR pairs to ``out_dir`` (see module doc).

    Args:
        src_dir: folder of source-domain images (any :mod:`optisr.io.images` format).
        out_dir: output folder; must not exist or be empty unless ``overwrite``; must not be,
            contain or lie inside ``src_dir``.
        cfg: the degradation (default :class:`DegradationConfig`: OTSR Track-1 style).
        seed: image ``i`` uses ``np.random.default_rng([seed, i])``: the same seed gives the
            same output whatever else changes.
        progress: show a tqdm bar on stderr.
        overwrite: allow a non-empty ``out_dir``; only its :data:`OUTPUT_NAMES` entries are
            replaced, everything else in it is kept.
    Returns:
        :class:`BuildResult`.
    Raises:
        InputFileError: unreadable/too-small source (named), missing folders.
        ConfigError: non-empty output without ``overwrite``; output overlapping the source,
            under a file or not writable; another run writing the same output; ``noise.bake``
            with no noise found.
    """
    import yaml
    from tqdm import tqdm

    from optisr.io.images import write_image

    cfg = cfg or DegradationConfig()
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    files = _list_sources(src_dir)
    refuse_overlap(out_dir, [src_dir], what="output folder")
    check_output_folder(out_dir)
    kernel_pool = (
        load_kernels(cfg.kernels.dir)
        if cfg.kind == "realsr-kernel" and cfg.kernels.dir and not cfg.kernels.estimate
        else None
    )
    with _claimed_output(out_dir, overwrite=overwrite) as stage:
        hr_dir, lr_dir = stage / "HR", stage / "LR" / f"x{cfg.scale}"
        noise_dir = stage / "noise" if cfg.uses_noise else None
        kernels_dir = stage / "kernels" if cfg.kind == "realsr-kernel" else None
        n_noise = 0
        pool = None
        if cfg.uses_noise:  # pass 1: mine the full-resolution sources
            tiles_all = []
            too_small = []
            p = cfg.noise.mining.patch_size
            for f in tqdm(files, desc="noise", disable=not progress, file=sys.stderr):
                img = _read(f)
                if img.shape[0] < p or img.shape[1] < p:
                    too_small.append(f"{f.name} ({img.shape[1]}×{img.shape[0]})")
                for k, tile in enumerate(mine_noise_patches(img, cfg.noise.mining, zero_mean=False)):
                    assert noise_dir is not None  # cfg.uses_noise
                    write_image(noise_dir / f"{f.stem}_{k:03d}.png", _u8(tile))
                    tiles_all.append(tile)
            n_noise = len(tiles_all)
            if not tiles_all and not too_small:
                print(
                    f"optisr degrade: warning: no noise patch passed the {cfg.noise.mining.rule!r} rule in "
                    f"{len(files)} images; relax noise.mining thresholds for a noise pool",
                    file=sys.stderr,
                )
            if too_small:
                shown = ", ".join(too_small[:3]) + (f" and {len(too_small) - 3} more" if len(too_small) > 3 else "")
                print(
                    f"optisr degrade: warning: no noise patches from {len(too_small)} of {len(files)} images "
                    f"smaller than noise.mining.patch_size {p}×{p}: {shown}",
                    file=sys.stderr,
                )
            if cfg.noise.bake:
                if not tiles_all:
                    raise ConfigError(
                        "noise.bake is set but no noise patch passed the rule; relax noise.mining thresholds"
                    )
                pool = NoisePool(tiles_all, strength=cfg.noise.strength)
        jpeg = JpegConfig(quality_range=cfg.jpeg.quality_range, prob=cfg.jpeg.prob)
        for i, f in enumerate(tqdm(files, desc="pairs", disable=not progress, file=sys.stderr)):
            rng = np.random.default_rng([seed, i])
            src = _read(f)
            hr = np.clip(imresize(src, 0.5), 0.0, 1.0) if cfg.clean_up_x2 else src
            hr = _modcrop(hr, cfg.scale, f)
            if cfg.kind in ("bicubic", "otsr"):
                lr = np.clip(imresize(hr, 1.0 / cfg.scale), 0.0, 1.0)
            elif cfg.kind == "realsr-kernel":
                if cfg.kernels.estimate:
                    kernel = estimate_kernel(src, scale=cfg.scale, iters=cfg.kernels.estimate_iters, seed=rng)
                elif kernel_pool is not None:
                    kernel = kernel_pool[int(rng.integers(len(kernel_pool)))]
                else:
                    kernel = random_gaussian_kernel(cfg.kernels.gaussian, rng)
                lr = degrade_with_kernel(hr, kernel, cfg.scale)
                assert kernels_dir is not None  # kind == "realsr-kernel"
                kernels_dir.mkdir(parents=True, exist_ok=True)
                np.save(kernels_dir / f"{f.stem}.npy", kernel)
            else:
                lr = second_order_degrade(hr, cfg.second_order, rng)
            if pool is not None:
                lr = pool.inject(lr, rng)
            if cfg.jpeg.enabled:
                lr = random_jpeg(lr, jpeg, rng)
            write_image(hr_dir / f"{f.stem}.png", _u8(hr))
            write_image(lr_dir / f"{f.stem}.png", _u8(lr))
        record = {"degradation": config_to_dict(cfg), "seed": int(seed), "source": str(src_dir),
                  "pairs": len(files), "noise_patches": n_noise}  # fmt: skip
        (stage / "degradation.yaml").write_text(yaml.safe_dump(record, sort_keys=False), encoding="utf-8")

    def final(p: Path) -> Path:  # where a staged path ended up
        return out_dir / p.relative_to(stage)

    return BuildResult(
        out_dir, len(files), n_noise, final(hr_dir), final(lr_dir),
        None if noise_dir is None else final(noise_dir), None if kernels_dir is None else final(kernels_dir),
    )  # fmt: skip


# ------------------------------------------------------------------------------------------
# preview
# ------------------------------------------------------------------------------------------


def _fit(x: np.ndarray, cell: int) -> np.ndarray:
    """Nearest-neighbour scale of an (h, w, 3) float image into a cell×cell black canvas."""
    import cv2

    h, w = x.shape[:2]
    f = cell / max(h, w)
    nh, nw = max(1, int(round(h * f))), max(1, int(round(w * f)))
    y = cv2.resize(x, (nw, nh), interpolation=cv2.INTER_NEAREST)
    y = y[:, :, None] if y.ndim == 2 else y
    canvas = np.zeros((cell, cell, 3), np.float32)
    r0, c0 = (cell - nh) // 2, (cell - nw) // 2
    canvas[r0 : r0 + nh, c0 : c0 + nw] = y[:, :, :3] if y.shape[2] >= 3 else np.repeat(y[:, :, :1], 3, 2)
    return canvas


def preview_figure(
    dataset_dir: str | os.PathLike,
    path: str | os.PathLike,
    *,
    rows: int = 4,
    cell: int = 192,
    overwrite: bool = True,
) -> Path:
    """Write a PNG panel of a built dataset: clean HR | LR (nearest ×scale) | noise | kernel.

    With ``overwrite=False`` an existing ``path`` raises :class:`~optisr.errors.OutputExistsError`.

    Noise tiles are shown zero-mean as ``0.5 + 4·n``; kernels are scaled to their maximum.
    Columns with nothing to show (no noise pool, no kernels) are dark.
    """
    import yaml
    from PIL import Image, ImageDraw

    from optisr.io.images import write_image

    root = Path(dataset_dir)
    meta_file = root / "degradation.yaml"
    if not meta_file.is_file():
        raise InputFileError(f"{meta_file}: not found; preview needs a folder made by build_training_pairs")
    meta = yaml.safe_load(meta_file.read_text(encoding="utf-8"))
    scale = int(meta["degradation"]["scale"])
    hrs = sorted((root / "HR").glob("*.png"))[:rows]
    noise = sorted((root / "noise").glob("*.png")) if (root / "noise").is_dir() else []
    header = 22
    panel = []
    for i, hr_file in enumerate(hrs):
        hr = _read(hr_file)
        lr = _read(root / "LR" / f"x{scale}" / hr_file.name)
        cells = [_fit(hr, cell), _fit(np.repeat(np.repeat(lr, scale, 0), scale, 1), cell)]
        if noise:
            n = _read(noise[i % len(noise)])
            cells.append(_fit(np.clip(0.5 + 4.0 * (n - n.mean(axis=(0, 1))), 0, 1), cell))
        else:
            cells.append(np.full((cell, cell, 3), 0.1, np.float32))
        kfile = root / "kernels" / f"{hr_file.stem}.npy"
        if kfile.is_file():
            k = np.load(kfile)
            cells.append(_fit(np.repeat((k / max(k.max(), 1e-12))[:, :, None], 3, 2).astype(np.float32), cell))
        else:
            cells.append(np.full((cell, cell, 3), 0.1, np.float32))
        panel.append(np.concatenate(cells, axis=1))
    if not panel:
        raise InputFileError(f"{root / 'HR'}: no HR images to preview")
    body = _u8(np.concatenate(panel, axis=0))
    img = Image.new("RGB", (body.shape[1], body.shape[0] + header), (255, 255, 255))
    img.paste(Image.fromarray(body), (0, header))
    draw = ImageDraw.Draw(img)
    titles = ("clean HR", f"LR x{scale} (nearest)", "noise (0.5+4n)", "kernel")
    for j, t in enumerate(titles):
        draw.text((j * cell + 4, 4), t, fill=(0, 0, 0))
    return write_image(Path(path), np.asarray(img), overwrite=overwrite)
