"""A generic folder of guide/depth pairs matched by file stem.

Default layout: ``<root>/<guide folder>/<stem>.<ext>`` and ``<root>/<depth folder>/<stem>.<ext>``,
where the guide folder is the first of ``guide, rgb, RGB, color, image, images`` that exists and
the depth folder the first of ``depth, Depth, gt, target``. An optional LR folder (``lr, LR,
depth_lr, DepthLR, source``) supplies real LR depth with the same stems. Suffixes such as
``_color``/``_depth`` can be stripped from stems before matching.
"""

from __future__ import annotations

import os
from pathlib import Path

from optisr.data.base import FilePair, PairedDataset, match_stems, require_dir
from optisr.errors import InputFileError
from optisr.io.rasters import RASTER_EXTENSIONS

__all__ = ["FolderPairs"]

GUIDE_DIRS = ("guide", "rgb", "RGB", "color", "image", "images")
DEPTH_DIRS = ("depth", "Depth", "gt", "target")
LR_DIRS = ("lr", "LR", "depth_lr", "DepthLR", "source")
_GUIDE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _first_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def _list(folder: Path, exts: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts)


class FolderPairs(PairedDataset):
    """Guide/depth pairs from two folders with matching stems.

    Args:
        root: the folder holding the guide and depth folders.
        guide_dir, depth_dir, lr_dir: folder names or paths (relative to ``root``) to use
            instead of the defaults; ``lr_dir`` is optional.
        guide_suffix, depth_suffix: stem suffixes removed before matching (e.g. ``"_color"``).
        units: unit of the depth files' values (``"mm"``, ``"m"``, ...); reported as is.
        report_units, report_scale: protocol A reporting unit and the factor to it.
    """

    name = "folder"

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        guide_dir: str | os.PathLike | None = None,
        depth_dir: str | os.PathLike | None = None,
        lr_dir: str | os.PathLike | None = None,
        guide_suffix: str = "",
        depth_suffix: str = "",
        units: str = "unknown",
        report_units: str | None = None,
        report_scale: float = 1.0,
    ) -> None:
        super().__init__(root)
        layout = f"<root>/{{{'|'.join(GUIDE_DIRS)}}}/<stem>.* and <root>/{{{'|'.join(DEPTH_DIRS)}}}/<stem>.*"
        root = require_dir(root, self.name, layout)
        self.units, self.report_units, self.report_scale = units, report_units or units, float(report_scale)  # type: ignore[misc]
        g_dir = root / guide_dir if guide_dir is not None else _first_dir(root, GUIDE_DIRS)
        d_dir = root / depth_dir if depth_dir is not None else _first_dir(root, DEPTH_DIRS)
        if g_dir is None or d_dir is None:
            raise InputFileError(f"{root}: no guide or depth folder found; expected layout {layout}")
        g_dir, d_dir = require_dir(g_dir, self.name, layout), require_dir(d_dir, self.name, layout)
        l_dir = root / lr_dir if lr_dir is not None else _first_dir(root, LR_DIRS)
        if l_dir is not None:
            l_dir = require_dir(l_dir, self.name, layout)
        triples = match_stems(
            _list(g_dir, _GUIDE_EXTS),
            _list(d_dir, RASTER_EXTENSIONS),
            guide_suffix=guide_suffix,
            depth_suffix=depth_suffix,
        )
        if not triples:
            raise InputFileError(f"{root}: no guide/depth files with matching stems in {g_dir.name}/ and {d_dir.name}/")
        lr_by_key: dict[str, Path] = {}
        if l_dir is not None:
            lr_files = _list(l_dir, RASTER_EXTENSIONS)
            guides = [g for _, g, _ in triples]
            matched = match_stems(guides, lr_files, guide_suffix=guide_suffix, depth_suffix=depth_suffix)
            lr_by_key = {k: lr for k, _, lr in matched}
        self.pairs = [FilePair(name=k, guide=g, depth=d, lr_depth=lr_by_key.get(k)) for k, g, d in triples]
