"""DIML RGB-D (indoor "HR" sample from dimlrgbd.github.io), depth in millimetres.

Published layout, as used by graph-SR/DADA::

    <root>/{train,test}/HR/<scene>/color/<stem>_c.png
    <root>/{train,test}/HR/<scene>/depth_filled/<stem>_depth_filled.png   (uint16 mm, filled)

Frames are returned at native size (graph-SR resizes to 756×1344 in a preprocessing step; do
that yourself if you need it). Protocol A reports RMSE in centimetres.
"""

from __future__ import annotations

import os
from pathlib import Path

from optisr.data.base import FilePair, PairedDataset, require_dir
from optisr.errors import ConfigError, InputFileError

__all__ = ["DIML"]


class DIML(PairedDataset):
    """DIML indoor frames (colour + filled depth in mm).

    Args:
        root: the DIML root (holding ``train/`` and/or ``test/``), a split's ``HR`` folder, or a
            single scene folder (holding ``color/`` and ``depth_filled/``).
        split: ``"test"`` or ``"train"``, used when ``root`` is the DIML root.
    """

    name = "diml"
    units = "mm"
    report_units = "cm"
    report_scale = 0.1
    _layout = "<root>/<split>/HR/<scene>/color/<stem>_c.png and .../depth_filled/<stem>_depth_filled.png"

    def __init__(self, root: str | os.PathLike, *, split: str = "test") -> None:
        super().__init__(root)
        if split not in ("train", "test"):
            raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
        root = require_dir(root, self.name, self._layout)
        self.split = split
        for scene in self._scenes(root, split):
            depth_dir = scene / "depth_filled"
            for guide in sorted((scene / "color").glob("*_c.*")):
                stem = guide.stem[: -len("_c")]
                depth = next(iter(sorted(depth_dir.glob(f"{stem}_depth_filled.*"))), None)
                if depth is None:
                    continue
                label = f"{scene.name}/{stem}" if scene != root else stem
                self.pairs.append(FilePair(name=label, guide=guide, depth=depth))
        if not self.pairs:
            raise InputFileError(f"{root}: no DIML colour/depth pairs found; expected layout {self._layout}")

    @staticmethod
    def _scenes(root: Path, split: str) -> list[Path]:
        if (root / "color").is_dir():
            return [root]
        for base in (root / split / "HR", root / "HR", root):
            scenes = sorted(p for p in base.glob("*") if (p / "color").is_dir() and (p / "depth_filled").is_dir())
            if scenes:
                return scenes
        return []
