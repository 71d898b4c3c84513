"""What every guided-depth dataset loader shares: the sample type and the indexed base class.

A dataset is a lazy, indexable list of file pairs (guide, depth, and for real-sensor sets an LR
depth). Files are read on ``dataset[i]``, never at construction, so listing a large folder is
cheap. Depth comes back in the dataset's *published* unit (``Sample.units``), and each dataset
states how protocol A reports RMSE (``report_units`` and ``report_scale``: multiply an error
in the published unit by ``report_scale`` to get the reported unit).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from optisr.errors import InputFileError, ShapeError
from optisr.io.rasters import read_guide, read_raster

__all__ = ["Sample", "PairedDataset", "FilePair", "require_dir", "match_stems"]


@dataclass
class Sample:
    """One guided-depth example.

    Attributes:
        guide: (H, W, 3) float32 RGB in [0, 1].
        depth: (H, W) float32 ground truth in ``units``; invalid pixels are NaN.
        mask: (H, W) bool, True where ``depth`` is valid.
        name: identifier, unique within the dataset (usually the file stem).
        units: unit of ``depth``: ``"mm"``, ``"m"``, ``"disparity8"`` (8-bit 0–255 scale),
            ``"px"`` (disparity in pixels) or ``"unknown"``.
        lr_depth: (h, w) float32 real low-resolution depth in ``units`` (NaN = invalid), or
            None when the LR input must be synthesised from ``depth``.
        lr_mask: (h, w) bool validity of ``lr_depth``, or None.
        meta: extra per-sample facts (calibration, source files).
    """

    guide: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    name: str
    units: str
    lr_depth: np.ndarray | None = None
    lr_mask: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the high-resolution depth."""
        return self.depth.shape


@dataclass(frozen=True)
class FilePair:
    """Files behind one sample: guide, HR depth and optional real LR depth."""

    name: str
    guide: Path
    depth: Path
    lr_depth: Path | None = None
    meta: tuple[tuple[str, Any], ...] = ()


def require_dir(path: str | os.PathLike, dataset: str, layout: str) -> Path:
    """Return ``path`` as a Path, or raise an error that names it and the expected layout."""
    path = Path(path)
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a folder"
        raise InputFileError(f"{path}: {dataset} data folder {what}; expected layout {layout}")
    return path


def match_stems(
    guides: Sequence[Path],
    depths: Sequence[Path],
    *,
    guide_suffix: str = "",
    depth_suffix: str = "",
) -> list[tuple[str, Path, Path]]:
    """Pair files whose stems agree once ``guide_suffix`` / ``depth_suffix`` are removed.

    Returns:
        ``(key, guide, depth)`` triples sorted by key; unmatched files are left out.
    """

    def key(p: Path, suffix: str) -> str:
        stem = p.stem
        return stem[: -len(suffix)] if suffix and stem.endswith(suffix) else stem

    by_key = {key(d, depth_suffix): d for d in depths}
    pairs = [(key(g, guide_suffix), g, by_key.get(key(g, guide_suffix))) for g in guides]
    return sorted((k, g, d) for k, g, d in pairs if d is not None)


class PairedDataset(Sequence[Sample]):
    """Base class: an indexed list of :class:`FilePair` read into :class:`Sample` on access.

    Subclasses fill ``self.pairs`` in ``__init__`` and may override :meth:`load_depth` to convert
    units (disparity to mm, ...).

    Class attributes:
        name: registry name, e.g. ``"rgbdd"``.
        units: unit of ``Sample.depth``.
        report_units: unit in which protocol A reports RMSE.
        report_scale: factor from ``units`` to ``report_units`` (mm → cm: 0.1).
        expected_count: size of the complete published split, if known (for checks).
        real_lr: True when ``Sample.lr_depth`` is a real sensor capture that the published
            evaluation uses as the LR input (the benchmark harness then scores it by default).
        published: published reference scores on the complete split, one line each (for reports).
    """

    name: ClassVar[str] = "dataset"
    units: ClassVar[str] = "unknown"
    report_units: ClassVar[str] = "unknown"
    report_scale: ClassVar[float] = 1.0
    expected_count: ClassVar[int | None] = None
    real_lr: ClassVar[bool] = False
    published: ClassVar[tuple[str, ...]] = ()

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.pairs: list[FilePair] = []

    # -- Sequence protocol -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        if isinstance(index, slice):
            raise TypeError("datasets support integer indices only; use a range and a loop")
        if not -len(self.pairs) <= index < len(self.pairs):
            raise IndexError(f"index {index} out of range for {self.name} with {len(self.pairs)} samples")
        return self.load(self.pairs[index])

    def __iter__(self) -> Iterator[Sample]:
        for pair in self.pairs:
            yield self.load(pair)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, n={len(self)}, units={self.units!r})"

    @property
    def names(self) -> list[str]:
        """Sample names in index order."""
        return [p.name for p in self.pairs]

    # -- loading ------------------------------------------------------------------------------
    def load_guide(self, pair: FilePair) -> np.ndarray:
        """(H, W, 3) float32 guide in [0, 1]."""
        return read_guide(pair.guide)

    def load_depth(self, path: Path, pair: FilePair) -> tuple[np.ndarray, np.ndarray]:
        """Read one depth file; return ((H, W) float32 in ``units`` with NaN holes, mask)."""
        raster = read_raster(path)
        return raster.as_float(), raster.mask

    def load(self, pair: FilePair) -> Sample:
        """Read the files of ``pair`` and check that guide and depth sizes agree."""
        guide = self.load_guide(pair)
        depth, mask = self.load_depth(pair.depth, pair)
        if guide.shape[:2] != depth.shape:
            raise ShapeError(
                f"{pair.name}: guide {pair.guide} is {guide.shape[0]}x{guide.shape[1]} but depth "
                f"{pair.depth} is {depth.shape[0]}x{depth.shape[1]}; they must be pixel-aligned"
            )
        lr_depth = lr_mask = None
        if pair.lr_depth is not None:
            lr_depth, lr_mask = self.load_depth(pair.lr_depth, pair)
        return Sample(
            guide=guide,
            depth=depth,
            mask=mask,
            name=pair.name,
            units=self.units,
            lr_depth=lr_depth,
            lr_mask=lr_mask,
            meta=dict(pair.meta),
        )
