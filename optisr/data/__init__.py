"""Guided depth super-resolution datasets: loaders for the published layouts and a registry.

Example:
    >>> from optisr.data import get_dataset                      # doctest: +SKIP
    >>> ds = get_dataset("middlebury30", "../shared/data/depth_lu2014_middlebury30")
    >>> sample = ds[0]; sample.depth.shape, sample.units, ds.report_units
    ((370, 427), 'disparity8', '0-255')
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from optisr.data.base import FilePair, PairedDataset, Sample
from optisr.data.diml import DIML
from optisr.data.folder import FolderPairs
from optisr.data.middlebury import Lu2014, Middlebury0506, Middlebury30, Middlebury2005PMBA, Middlebury2014
from optisr.data.nyuv2 import NYUv2Mat, NYUv2Npy
from optisr.data.rgbdd import RGBDD, RGBDDReal
from optisr.errors import ConfigError

__all__ = [
    "DATASETS",
    "DIML",
    "FilePair",
    "FolderPairs",
    "Lu2014",
    "Middlebury0506",
    "Middlebury2005PMBA",
    "Middlebury2014",
    "Middlebury30",
    "NYUv2Mat",
    "NYUv2Npy",
    "PairedDataset",
    "RGBDD",
    "RGBDDReal",
    "Sample",
    "get_dataset",
]

DATASETS: dict[str, type[PairedDataset]] = {
    "middlebury30": Middlebury30,
    "lu": Lu2014,
    "middlebury2005": Middlebury2005PMBA,
    "middlebury0506": Middlebury0506,
    "middlebury2014": Middlebury2014,
    "rgbdd": RGBDD,
    "rgbdd-real": RGBDDReal,
    "nyuv2": NYUv2Npy,
    "nyuv2-mat": NYUv2Mat,
    "diml": DIML,
    "folder": FolderPairs,
}
"""Registry name -> loader class. ``"nyuv2"`` also accepts the labeled ``.mat`` file."""


def get_dataset(name: str, data_dir: str | os.PathLike, **kwargs: Any) -> PairedDataset:
    """Build the loader registered as ``name`` on ``data_dir``.

    Args:
        name: one of :data:`DATASETS` (case-insensitive; ``_`` and ``-`` are interchangeable).
        data_dir: the dataset's folder (or, for NYUv2, the ``nyu_depth_v2_labeled.mat`` file).
        **kwargs: passed to the loader, e.g. ``lr_scale=8`` for ``middlebury2005``.
    Returns:
        A :class:`PairedDataset`; ``ds[i]`` is a :class:`Sample`.
    Raises:
        ConfigError: unknown name (with a suggestion) or bad option.
        InputFileError: missing folder or wrong layout (names the path and the layout).
    """
    key = name.strip().lower().replace("_", "-")
    if key not in DATASETS:
        close = difflib.get_close_matches(key, DATASETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown dataset {name!r}{hint}; valid names: {', '.join(DATASETS)}")
    path = Path(data_dir)
    if key == "nyuv2" and (path.suffix.lower() == ".mat" or (path / "nyu_depth_v2_labeled.mat").is_file()):
        key = "nyuv2-mat"
    return DATASETS[key](path, **kwargs)
