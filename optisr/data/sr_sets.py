"""The classic SR test sets (Set5, Set14, BSD100, Urban100, Manga109, RealSRSet) and how to load them.

Paired sets (Set5, Set14, BSD100, Urban100, Manga109) give the mod-cropped HR and an LR image
(``lr_mode``):

* ``auto`` (default): the shipped standard LR (``LR_bicubic/X<s>/<name>x<s>.png``, the EDSR/BasicSR
  MATLAB-bicubic LR shipped with Set5) when present, else MATLAB-compatible bicubic ×1/s of the
  mod-cropped HR made here (:func:`imresize_matlab`). The SelfExSR LR folders shipped with
  Set14/BSD100/Urban100 are **not** used by ``auto``: they differ from the standard LR by up to
  ±7 levels, so numbers made from them do not match published tables.
* ``shipped``: any shipped LR folder (standard or SelfExSR); an error when there is none.
* ``matlab``: always regenerate from the HR.

The no-GT set ``realsrset`` (RealSRSet+5images) gives the real photos as LR. Images come as uint8
RGB: grey expanded (as BasicSR's ``cv2.IMREAD_COLOR``), alpha dropped, 16-bit rounded to 8 bit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optisr.degrade.bicubic import imresize
from optisr.errors import ConfigError, InputFileError
from optisr.io.images import read_image, to_rgb8

__all__ = ["DATASETS", "LR_MODES", "DatasetSpec", "Sample", "imresize_matlab", "load_dataset"]


@dataclass(frozen=True)
class DatasetSpec:
    """Where a test set lives and how its files are laid out.

    Attributes:
        title: name used in the report.
        folder: sub-folder of the shared data root (used when ``--data-dir`` is that root).
        paired: True when HR ground truth exists.
        hr_dirs: candidate HR sub-folders, first existing wins.
        selfexsr: how SelfExSR names the LR of an HR: ``"index"`` (``img_XXX`` by alphabetical
            position of the HR), ``"stem"`` (``<hr stem>_SRF_s_LR``), ``"hrname"`` (HR named
            ``img_XXX_SRF_s_HR``) or None.
    """

    title: str
    folder: str
    paired: bool = True
    hr_dirs: tuple[str, ...] = ("HR",)
    selfexsr: str | None = None


DATASETS: dict[str, DatasetSpec] = {
    "set5": DatasetSpec("Set5", "sr_set5"),
    "set14": DatasetSpec("Set14", "sr_set14", selfexsr="index"),
    "bsd100": DatasetSpec("BSD100", "sr_bsd100", hr_dirs=("HR_mod4", "HR"), selfexsr="hrname"),
    "urban100": DatasetSpec("Urban100", "sr_urban100_subset10", selfexsr="stem"),
    "manga109": DatasetSpec("Manga109", "sr_manga109_subset10"),
    "realsrset": DatasetSpec("RealSRSet+5images", "sr_realworld_lr_noGT/RealSRSet+5images", paired=False, hr_dirs=()),
}

_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
LR_MODES = ("auto", "shipped", "matlab")


# ---------------------------------------------------------------------------------------------
# MATLAB-compatible bicubic resize
# ---------------------------------------------------------------------------------------------


def imresize_matlab(image: np.ndarray, scale: float) -> np.ndarray:
    """Bicubic resize by ``scale`` like MATLAB's ``imresize(image, scale)`` (the SR-paper LR maker).

    A thin alias of :func:`optisr.degrade.bicubic.imresize`: output ``ceil(H·scale) ×
    ceil(W·scale)``; integer images rounded and clipped after each pass as MATLAB does (this
    reproduces the standard Set5 ×4 LR_bicubic on 99.9 % of the pixels, the rest within ±1);
    float input gives float32, unclipped.
    """
    if not scale > 0:
        raise ConfigError(f"resize scale must be > 0; got {scale}")
    return imresize(image, scale)


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------


@dataclass
class Sample:
    """One test image: its name, LR input and (paired sets) mod-cropped HR, uint8 RGB."""

    name: str
    lr: np.ndarray
    hr: np.ndarray | None
    lr_source: str


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_EXT)


def _resolve_root(dataset: str, data_dir: Path) -> Path:
    """The dataset folder: ``data_dir`` itself, or its ``<shared sub-folder>`` when given the data root."""
    spec = DATASETS[dataset]
    if not data_dir.is_dir():
        raise InputFileError(f"{data_dir}: data directory not found")
    looks_right = any((data_dir / d).is_dir() for d in spec.hr_dirs) if spec.paired else bool(_images_in(data_dir))
    if looks_right:
        return data_dir
    for cand in (data_dir / spec.folder, data_dir / Path(spec.folder).name):
        if cand.is_dir():
            return cand
    if spec.paired and _images_in(data_dir):
        return data_dir  # a flat folder of HR images
    want = f"an HR folder ({' or '.join(spec.hr_dirs)})" if spec.paired else "image files"
    raise InputFileError(f"{data_dir}: no {spec.title} data here (expected {want}, or a sub-folder {spec.folder})")


def _shipped_lr(
    root: Path, spec: DatasetSpec, hr_path: Path, index: int, scale: int, include_selfexsr: bool
) -> tuple[Path, str] | None:
    """(path, description) of a shipped LR for ``hr_path``, or None."""
    stem = hr_path.stem
    for sub in (f"LR_bicubic/X{scale}", f"LR_bicubic/x{scale}"):
        for name in (f"{stem}x{scale}.png", f"{stem}.png"):
            p = root / sub / name
            if p.is_file():
                return p, f"shipped standard MATLAB-bicubic LR (`{sub}/`)"
    if not include_selfexsr or spec.selfexsr is None:
        return None
    folder = root / f"LR_selfexsr/x{scale}"
    if spec.selfexsr == "index":
        name = f"img_{index + 1:03d}_SRF_{scale}_LR.png"
    elif spec.selfexsr == "hrname":
        name = stem.replace("_HR", "_LR").replace("_SRF_4_", f"_SRF_{scale}_") + ".png"
    else:
        name = f"{stem}_SRF_{scale}_LR.png"
    p = folder / name
    if p.is_file():
        return p, f"shipped SelfExSR LR (`LR_selfexsr/x{scale}/`; not identical to the standard LR)"
    return None


def load_dataset(
    dataset: str,
    data_dir: str | os.PathLike,
    *,
    scale: int = 4,
    limit: int | None = None,
    lr_mode: str = "auto",
) -> tuple[list[Sample], Path]:
    """Load a test set as uint8 RGB samples.

    Args:
        dataset: a key of :data:`DATASETS`.
        data_dir: the set's folder (e.g. ``.../sr_set5``) or the shared data root.
        scale: SR scale; HR is mod-cropped to a multiple of it.
        limit: keep the first N images (sorted by file name).
        lr_mode: ``auto`` / ``shipped`` / ``matlab`` (see the module docstring).
    Returns:
        (samples, resolved dataset folder).
    Raises:
        ConfigError: unknown dataset / mode. InputFileError: missing folder, no images, bad
            file, or a shipped LR whose size does not match the HR.
    """
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if lr_mode not in LR_MODES:
        raise ConfigError(f"--lr must be one of {', '.join(LR_MODES)}; got {lr_mode!r}")
    if scale < 1:
        raise ConfigError(f"--scale must be >= 1; got {scale}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1; got {limit}")
    spec = DATASETS[dataset]
    root = _resolve_root(dataset, Path(data_dir))
    if not spec.paired:
        files = _images_in(root)
        if not files:
            raise InputFileError(f"{root}: no image files")
        files = files[:limit] if limit else files
        return [Sample(p.stem, to_rgb8(read_image(p)), None, "real-world input (no GT)") for p in files], root
    hr_dir = next((root / d for d in spec.hr_dirs if (root / d).is_dir()), root)
    all_hr = _images_in(hr_dir)
    if not all_hr:
        raise InputFileError(f"{hr_dir}: no HR image files")
    samples = []
    for index, hr_path in enumerate(all_hr[:limit] if limit else all_hr):
        hr = to_rgb8(read_image(hr_path))
        h, w = hr.shape[:2]
        hr = hr[: h - h % scale, : w - w % scale]
        if hr.shape[0] < scale or hr.shape[1] < scale:
            raise InputFileError(f"{hr_path}: image smaller than the scale {scale}")
        shipped = None
        if lr_mode != "matlab":
            shipped = _shipped_lr(root, spec, hr_path, index, scale, lr_mode == "shipped")
        if lr_mode == "shipped" and shipped is None:
            raise InputFileError(f"{hr_path}: no shipped ×{scale} LR for this image (use --lr auto or matlab)")
        if shipped is not None:
            lr_path, how = shipped
            lr = to_rgb8(read_image(lr_path))
            if (lr.shape[0] * scale, lr.shape[1] * scale) != hr.shape[:2]:
                raise InputFileError(
                    f"{lr_path}: LR size {lr.shape[1]}×{lr.shape[0]} × {scale} does not match the "
                    f"mod-{scale} HR {hr.shape[1]}×{hr.shape[0]}"
                )
        else:
            lr = imresize_matlab(hr, 1.0 / scale)
            how = f"MATLAB-style bicubic ×1/{scale} of the mod-{scale} HR, made here"
        name = hr_path.stem
        if spec.selfexsr == "hrname":
            name = name.replace(f"_SRF_{scale}_HR", "").replace("_SRF_4_HR", "")
        samples.append(Sample(name, lr, hr, how))
    return samples, root
