"""Middlebury stereo scenes as guided-depth data, in four published layouts.

* :class:`Middlebury30` -- Lu, Ren & Liu (CVPR 2014) pack used by DKN/FDSR/DCTNet/SGNet:
  ``RGB/*_color.png`` + ``Depth/*_depth.png``, 8-bit disparity-like values (0–255), RMSE
  reported in those units. :class:`Lu2014` is the same layout for the 6-pair "Lu" set.
* :class:`Middlebury2005PMBA` -- the PMBANet 6-scene Middlebury 2005 pack: ``test_color/N.png``,
  ``test_gt/N.png`` and optional ``testx{2,4,8,16}/N.png`` LR depth.
* :class:`Middlebury0506` -- the original 2005/2006 scene folders (``view1.png``, ``disp1.png``,
  ``dmin.txt``), converted to depth in mm as LGR/DADA do.
* :class:`Middlebury2014` -- 2014 / MiddEval3 scene folders (``im0.png``, ``disp0.pfm`` or
  ``disp0GT.pfm``, ``calib.txt``), depth in mm from the calibration.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import ClassVar

import numpy as np

from optisr.data.base import FilePair, PairedDataset, match_stems, require_dir
from optisr.errors import ConfigError, InputFileError
from optisr.io.rasters import read_raster

__all__ = ["Middlebury30", "Lu2014", "Middlebury2005PMBA", "Middlebury0506", "Middlebury2014", "read_calib"]

_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _files(folder: Path, pattern: str) -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in _IMAGE_EXTS)


class _PackLayout(PairedDataset):
    """``RGB/<key>_color.png`` + ``Depth/<key>_depth.png`` (DCTNet "RawDatasets" layout)."""

    units = "disparity8"
    report_units = "0-255"
    report_scale = 1.0
    _layout = "<root>/RGB/<key>_color.png and <root>/Depth/<key>_depth.png"

    def __init__(self, root: str | os.PathLike) -> None:
        super().__init__(root)
        root = require_dir(root, self.name, self._layout)
        rgb = require_dir(root / "RGB", self.name, self._layout)
        depth = require_dir(root / "Depth", self.name, self._layout)
        triples = match_stems(
            _files(rgb, "*_color.*"), _files(depth, "*_depth.*"), guide_suffix="_color", depth_suffix="_depth"
        )
        if not triples:
            raise InputFileError(f"{root}: no matching guide/depth pairs found; expected layout {self._layout}")
        self.pairs = [FilePair(name=k, guide=g, depth=d) for k, g, d in triples]


class Middlebury30(_PackLayout):
    """The 30 Middlebury RGB-D pairs of Lu et al. 2014, 8-bit disparity-like depth (0–255).

    Zero depth pixels (16 across the set) are marked invalid.
    """

    name = "middlebury30"
    expected_count = 30


class Lu2014(_PackLayout):
    """The 6 "Lu" RGB-D pairs (same file layout as :class:`Middlebury30`)."""

    name = "lu"
    expected_count = 6


class Middlebury2005PMBA(PairedDataset):
    """PMBANet's 6 hole-filled Middlebury 2005 scenes (8-bit disparity, 0–255 units).

    Args:
        root: folder with ``test_color/`` and ``test_gt/`` (``N.png``, N = 1..6).
        lr_scale: if set (2, 4, 8 or 16), ``testx{lr_scale}/N.png`` is attached as
            ``Sample.lr_depth``. These LR maps are *not* MATLAB bicubic; regenerate LR yourself
            for a controlled protocol.
    """

    name = "middlebury2005"
    units = "disparity8"
    report_units = "0-255"
    report_scale = 1.0
    expected_count = 6
    scene_names: ClassVar[dict[int, str]] = {
        1: "Art",
        2: "Books",
        3: "Dolls",
        4: "Laundry",
        5: "Moebius",
        6: "Reindeer",
    }
    _layout = "<root>/test_color/N.png and <root>/test_gt/N.png (optional <root>/testxS/N.png)"

    def __init__(self, root: str | os.PathLike, *, lr_scale: int | None = None) -> None:
        super().__init__(root)
        root = require_dir(root, self.name, self._layout)
        color = require_dir(root / "test_color", self.name, self._layout)
        gt = require_dir(root / "test_gt", self.name, self._layout)
        lr_dir = None
        if lr_scale is not None:
            lr_dir = require_dir(root / f"testx{lr_scale}", self.name, self._layout)
        triples = match_stems(_files(color, "*"), _files(gt, "*"))
        if not triples:
            raise InputFileError(f"{root}: no matching guide/depth pairs found; expected layout {self._layout}")

        def sort_key(t: tuple[str, Path, Path]) -> tuple[int, str]:
            return (int(t[0]), t[0]) if t[0].isdigit() else (10**9, t[0])

        for key, g, d in sorted(triples, key=sort_key):
            lr = None
            if lr_dir is not None:
                lr = lr_dir / d.name
                if not lr.is_file():
                    raise InputFileError(f"{lr}: LR depth for scene {key} not found")
            label = self.scene_names.get(int(key), key) if key.isdigit() else key
            self.pairs.append(FilePair(name=label, guide=g, depth=d, lr_depth=lr))


# ---------------------------------------------------------------------------- 2005 / 2006 scenes


class Middlebury0506(PairedDataset):
    """Middlebury 2005/2006 two-view scenes, depth in mm (LGR/DADA convention).

    Disparity PNGs are 8-bit with 0 = unknown; ``dmin.txt`` holds the offset added to every
    disparity. Depth [mm] = ``baseline_mm * focal_px / (disp + dmin)``.

    Args:
        root: a folder of scene folders, or a folder with ``2005/`` and/or ``2006/`` holding
            scene folders, or a single scene folder. A scene folder holds ``view1.png``,
            ``disp1.png``, ``dmin.txt`` (and optionally ``view5.png``/``disp5.png``).
        views: which views to use (1 and/or 5).
        focal_px: focal length in pixels of the image size on disk; 3740 for full size
            (1870 for half size, 1246.67 for third size).
        baseline_mm: stereo baseline (160 mm).
        units: ``"mm"`` for metric depth or ``"disparity"`` for the raw 8-bit disparity
            (0 = invalid, dmin not added).
    """

    name = "middlebury0506"
    units = "mm"
    report_units = "cm"
    report_scale = 0.1
    _layout = "<root>/[2005|2006/]<scene>/{view1.png, disp1.png, dmin.txt}"

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        views: tuple[int, ...] = (1, 5),
        focal_px: float = 3740.0,
        baseline_mm: float = 160.0,
        units: str = "mm",
    ) -> None:
        super().__init__(root)
        if units not in ("mm", "disparity"):
            raise ConfigError(f"units must be 'mm' or 'disparity', got {units!r}")
        self.units = units  # type: ignore[misc]
        if units == "disparity":
            self.report_units, self.report_scale = "disparity", 1.0  # type: ignore[misc]
        self.focal_px, self.baseline_mm = float(focal_px), float(baseline_mm)
        root = require_dir(root, self.name, self._layout)
        for scene in _scene_dirs(root, marker="dmin.txt"):
            dmin = _read_number(scene / "dmin.txt")
            for v in views:
                guide, disp = scene / f"view{v}.png", scene / f"disp{v}.png"
                if guide.is_file() and disp.is_file():
                    label = f"{_scene_label(root, scene)}/view{v}"
                    self.pairs.append(FilePair(label, guide, disp, meta=(("dmin", dmin),)))
        if not self.pairs:
            raise InputFileError(f"{root}: no Middlebury 2005/2006 scenes found; expected layout {self._layout}")

    def load_depth(self, path: Path, pair: FilePair) -> tuple[np.ndarray, np.ndarray]:
        raster = read_raster(path, zero_invalid=True)
        disp = raster.as_float()
        if self.units == "disparity":
            return disp, raster.mask
        dmin = dict(pair.meta)["dmin"]
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = (self.baseline_mm * self.focal_px / (disp + dmin)).astype(np.float32)
        mask = raster.mask & np.isfinite(depth) & (depth > 0)
        depth[~mask] = np.nan
        return depth, mask


# --------------------------------------------------------------------------------- 2014 scenes


def read_calib(path: str | os.PathLike) -> dict[str, object]:
    """Parse a Middlebury 2014 ``calib.txt``.

    Returns:
        dict with ``cam0``/``cam1`` as (3, 3) float arrays, and the scalars (``doffs``,
        ``baseline`` in mm, ``width``, ``height``, ``ndisp``, ``vmin``, ``vmax``, ...) as floats.
    Raises:
        InputFileError: if the file is missing or lacks ``cam0``, ``doffs`` or ``baseline``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: calibration file not found")
    out: dict[str, object] = {}
    for line in path.read_text(errors="replace").splitlines():
        if "=" not in line:
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        if value.startswith("["):
            nums = [float(x) for x in re.split(r"[\s;\[\]]+", value) if x]
            if len(nums) != 9:
                raise InputFileError(f"{path}: {key} must be a 3x3 matrix, got {len(nums)} numbers")
            out[key] = np.array(nums, dtype=np.float64).reshape(3, 3)
        else:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
    missing = [k for k in ("cam0", "doffs", "baseline") if k not in out]
    if missing:
        raise InputFileError(f"{path}: calibration lacks {', '.join(missing)}")
    return out


class Middlebury2014(PairedDataset):
    """Middlebury 2014 / MiddEval3 scenes, depth in mm from ``calib.txt``.

    Depth [mm] = ``baseline * f / (disp + doffs)`` with ``f = cam{v}[0, 0]``; infinite
    (unknown) disparities are invalid.

    Args:
        root: a folder of scene folders, or one scene folder. A scene folder holds
            ``calib.txt``, ``im0.png`` and ``disp0.pfm`` or ``disp0GT.pfm`` (and optionally
            ``im1.png`` + ``disp1.pfm``).
        views: which views to use (0 and/or 1).
        include_imperfect: also use scenes named ``*-imperfect`` (skipped by default, as in
            LGR).
        units: ``"mm"`` or ``"px"`` (the disparity itself).
    """

    name = "middlebury2014"
    units = "mm"
    report_units = "cm"
    report_scale = 0.1
    _layout = "<root>/<scene>/{calib.txt, im0.png, disp0.pfm or disp0GT.pfm}"

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        views: tuple[int, ...] = (0, 1),
        include_imperfect: bool = False,
        units: str = "mm",
    ) -> None:
        super().__init__(root)
        if units not in ("mm", "px"):
            raise ConfigError(f"units must be 'mm' or 'px', got {units!r}")
        self.units = units  # type: ignore[misc]
        if units == "px":
            self.report_units, self.report_scale = "px", 1.0  # type: ignore[misc]
        root = require_dir(root, self.name, self._layout)
        for scene in _scene_dirs(root, marker="calib.txt"):
            if scene.name.endswith("-imperfect") and not include_imperfect:
                continue
            calib = read_calib(scene / "calib.txt")
            for v in views:
                guide = scene / f"im{v}.png"
                disp = next((p for p in (scene / f"disp{v}.pfm", scene / f"disp{v}GT.pfm") if p.is_file()), None)
                if guide.is_file() and disp is not None:
                    cam = calib.get(f"cam{v}", calib["cam0"])
                    meta = (
                        ("focal_px", float(cam[0, 0])),  # type: ignore[index]
                        ("baseline_mm", float(calib["baseline"])),  # type: ignore[arg-type]
                        ("doffs", float(calib["doffs"])),  # type: ignore[arg-type]
                    )
                    self.pairs.append(FilePair(f"{_scene_label(root, scene)}/view{v}", guide, disp, meta=meta))
        if not self.pairs:
            raise InputFileError(f"{root}: no Middlebury 2014 scenes found; expected layout {self._layout}")

    def load_depth(self, path: Path, pair: FilePair) -> tuple[np.ndarray, np.ndarray]:
        raster = read_raster(path)
        disp = raster.as_float()
        if self.units == "px":
            return disp, raster.mask
        m = dict(pair.meta)
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = (m["baseline_mm"] * m["focal_px"] / (disp + m["doffs"])).astype(np.float32)
        mask = raster.mask & np.isfinite(depth) & (depth > 0)
        depth[~mask] = np.nan
        return depth, mask


# ------------------------------------------------------------------------------------ helpers


def _scene_dirs(root: Path, *, marker: str) -> list[Path]:
    """Scene folders (those holding ``marker``) at depth 0, 1 or 2 below ``root``, sorted."""
    if (root / marker).is_file():
        return [root]
    found = sorted(p.parent for p in root.glob(f"*/{marker}"))
    found += sorted(p.parent for p in root.glob(f"*/*/{marker}"))
    return found


def _scene_label(root: Path, scene: Path) -> str:
    return scene.name if scene == root else scene.relative_to(root).as_posix()


def _read_number(path: Path) -> float:
    try:
        return float(path.read_text().split()[0])
    except (OSError, ValueError, IndexError) as exc:
        raise InputFileError(f"{path}: expected a single number (the disparity offset dmin)") from exc
