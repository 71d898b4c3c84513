"""RGB-D-D (He et al., CVPR 2021): synthetic-LR test split and real-sensor triplets.

Layout (as distributed with FDSR/DCTNet):

* ``RGB/<id>_RGB.jpg`` -- colour guide, 384×512;
* ``Depth/<id>_HR_gt.png`` -- 16-bit ToF depth in millimetres (0 = invalid);
* ``DepthLR/<id>_LR_fill_depth.png`` -- (real branch only) phone ToF LR depth, 144×192,
  millimetres, hole-filled.

Protocol A reports RMSE in centimetres (``report_scale = 0.1``).
"""

from __future__ import annotations

import os

from optisr.data.base import FilePair, PairedDataset, match_stems, require_dir
from optisr.errors import InputFileError

__all__ = ["RGBDD", "RGBDDReal"]


class RGBDD(PairedDataset):
    """RGB-D-D test split (405 pairs: 297 portraits, 68 plants, 40 models), depth in mm.

    Args:
        root: folder with ``RGB/`` and ``Depth/``.
    """

    name = "rgbdd"
    units = "mm"
    report_units = "cm"
    report_scale = 0.1
    expected_count = 405
    _layout = "<root>/RGB/<id>_RGB.jpg and <root>/Depth/<id>_HR_gt.png (uint16 mm)"
    _with_lr = False

    def __init__(self, root: str | os.PathLike) -> None:
        super().__init__(root)
        root = require_dir(root, self.name, self._layout)
        rgb = require_dir(root / "RGB", self.name, self._layout)
        depth = require_dir(root / "Depth", self.name, self._layout)
        lr_dir = require_dir(root / "DepthLR", self.name, self._layout) if self._with_lr else None
        triples = match_stems(
            sorted(rgb.glob("*_RGB.*")), sorted(depth.glob("*_HR_gt.*")), guide_suffix="_RGB", depth_suffix="_HR_gt"
        )
        if not triples:
            raise InputFileError(f"{root}: no matching guide/depth pairs found; expected layout {self._layout}")
        for key, g, d in triples:
            lr = None
            if lr_dir is not None:
                lr = next(iter(sorted(lr_dir.glob(f"{key}_LR_fill_depth.*"))), None)
                if lr is None:
                    raise InputFileError(f"{lr_dir}: no {key}_LR_fill_depth.png for guide {g.name}")
            self.pairs.append(FilePair(name=key, guide=g, depth=d, lr_depth=lr))


class RGBDDReal(RGBDD):
    """RGB-D-D real-sensor branch: HR ToF ground truth plus the phone's real LR depth.

    ``Sample.lr_depth`` is the real (h, w) LR depth in mm; it is about ×2.67 smaller than the HR
    (144×192 vs 384×512), not an integer factor of the HR grid. ``optisr bench guided`` scores it
    by default (``real_lr``): resampled to the ×4 grid, then solved as a ×4 task.

    Args:
        root: folder with ``RGB/``, ``Depth/`` and ``DepthLR/``.
    """

    name = "rgbdd-real"
    expected_count = 405  # the full real test split; local copies may hold fewer
    real_lr = True
    published = ("DCTNet (Zhao et al., CVPR 2022): 7.37 cm RMSE on the full real-scene test set (405 pairs)",)
    _layout = (
        "<root>/RGB/<id>_RGB.jpg, <root>/Depth/<id>_HR_gt.png and <root>/DepthLR/<id>_LR_fill_depth.png (uint16 mm)"
    )
    _with_lr = True
