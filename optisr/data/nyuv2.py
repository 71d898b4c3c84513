"""NYU Depth v2 (labeled subset, Silberman et al. ECCV 2012), depth in metres.

Two layouts:

* :class:`NYUv2Npy` -- the test pack used by DKN/FDSR/DCTNet (the "first 1000 train / last 449
  test" split): ``RGB/<id>.jpg`` (or ``.png``) + ``Depth/<id>.npy`` (float32 metres, 480×640).
* :class:`NYUv2Mat` -- the official ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5), read
  with ``h5py`` (optional dependency). MATLAB stores arrays column-major, so h5py sees
  ``images`` as (N, 3, W, H) and ``depths`` as (N, W, H); both are transposed back here.

Protocol A reports RMSE in centimetres (``report_scale = 100``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from optisr.data.base import FilePair, PairedDataset, Sample, match_stems, require_dir
from optisr.errors import ConfigError, InputFileError

__all__ = ["NYUv2Npy", "NYUv2Mat", "DKN_TEST_INDICES"]

DKN_TEST_INDICES = range(1000, 1449)
"""0-based indices of the 449 test frames of the DKN/FDSR split (the last 449 of 1449)."""


class NYUv2Npy(PairedDataset):
    """NYUv2 test pack: ``RGB/<id>.jpg`` + ``Depth/<id>.npy`` in metres (449 frames when complete).

    Args:
        root: folder with ``RGB/`` and ``Depth/``.
    """

    name = "nyuv2"
    units = "m"
    report_units = "cm"
    report_scale = 100.0
    expected_count = 449
    _layout = "<root>/RGB/<id>.jpg and <root>/Depth/<id>.npy (float32 metres)"

    def __init__(self, root: str | os.PathLike) -> None:
        super().__init__(root)
        root = require_dir(root, self.name, self._layout)
        rgb = require_dir(root / "RGB", self.name, self._layout)
        depth = require_dir(root / "Depth", self.name, self._layout)
        guides = sorted(p for p in rgb.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        triples = match_stems(guides, sorted(depth.glob("*.npy")))
        if not triples:
            raise InputFileError(f"{root}: no matching guide/depth pairs found; expected layout {self._layout}")

        def order(t: tuple[str, Path, Path]) -> tuple[int, str]:
            return (int(t[0]), t[0]) if t[0].isdigit() else (1 << 62, t[0])

        self.pairs = [FilePair(name=k, guide=g, depth=d) for k, g, d in sorted(triples, key=order)]


class NYUv2Mat(PairedDataset):
    """NYUv2 frames straight from ``nyu_depth_v2_labeled.mat`` (needs ``h5py``).

    Uses the in-painted ``depths`` field (metres), as graph-SR/DADA and DKN do. The file is
    opened on each access, so the dataset object can be sent to worker processes.

    Args:
        path: the ``.mat`` file, or a folder holding ``nyu_depth_v2_labeled.mat``.
        indices: 0-based frame indices; default :data:`DKN_TEST_INDICES` (1000–1448). Pass
            ``range(1449)`` for all frames or a split file's list.
        depth_key: ``"depths"`` (filled) or ``"rawDepths"`` (raw; 0 = invalid).
    """

    name = "nyuv2-mat"
    units = "m"
    report_units = "cm"
    report_scale = 100.0
    expected_count = 449
    _layout = "nyu_depth_v2_labeled.mat (HDF5) with datasets 'images' and 'depths'"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        indices: Sequence[int] | None = None,
        depth_key: str = "depths",
    ) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / "nyu_depth_v2_labeled.mat"
        super().__init__(path)
        if not path.is_file():
            raise InputFileError(f"{path}: NYUv2 file not found; expected {self._layout}")
        if depth_key not in ("depths", "rawDepths"):
            raise ConfigError(f"depth_key must be 'depths' or 'rawDepths', got {depth_key!r}")
        self.depth_key = depth_key
        h5py = _import_h5py()
        try:
            with h5py.File(path, "r") as f:
                if "images" not in f or depth_key not in f:
                    raise InputFileError(f"{path}: lacks 'images' or {depth_key!r}; expected {self._layout}")
                count = f["images"].shape[0]
                if f[depth_key].shape[0] != count:
                    raise InputFileError(f"{path}: 'images' and {depth_key!r} hold different frame counts")
        except OSError as exc:
            if isinstance(exc, InputFileError):
                raise
            raise InputFileError(f"{path}: cannot open as HDF5/MATLAB v7.3 ({exc})") from exc
        chosen = list(DKN_TEST_INDICES) if indices is None else [int(i) for i in indices]
        bad = [i for i in chosen if not 0 <= i < count]
        if bad:
            raise ConfigError(f"indices {bad[:5]} out of range for {path} with {count} frames")
        self.indices = chosen
        self.pairs = [FilePair(name=f"{i:04d}", guide=path, depth=path, meta=(("index", i),)) for i in chosen]

    def load(self, pair: FilePair) -> Sample:
        h5py = _import_h5py()
        index = dict(pair.meta)["index"]
        with h5py.File(self.root, "r") as f:
            image = np.asarray(f["images"][index])  # (3, W, H) uint8
            depth = np.asarray(f[self.depth_key][index], dtype=np.float32)  # (W, H) metres
        guide = np.ascontiguousarray(image.transpose(2, 1, 0), dtype=np.float32) / 255.0
        depth = np.ascontiguousarray(depth.T)
        mask = np.isfinite(depth) & (depth > 0)
        depth[~mask] = np.nan
        return Sample(guide=guide, depth=depth, mask=mask, name=pair.name, units=self.units, meta={"index": index})


def _import_h5py():
    try:
        import h5py
    except ImportError as exc:
        raise ConfigError(
            "reading nyu_depth_v2_labeled.mat needs h5py; install it (pip install h5py) or use the "
            "RGB/ + Depth/*.npy test pack"
        ) from exc
    return h5py
