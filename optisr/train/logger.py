"""Training logs: TensorBoard event files (when installed) plus ``metrics.jsonl``.

``metrics.jsonl`` has one JSON object per :meth:`TrainLogger.scalars` call,
``{"step": int, "time": unix seconds, "<name>": float, ...}``, and is always written, so a run
can be inspected with nothing but the standard library. TensorBoard comes with the ``train``
extra (``pip install optisr[train]``); without it a warning is given once per process and images
are written as PNG files under ``log_dir/images/`` instead.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["TrainLogger", "tensorboard_available"]

_WARNED = False


def tensorboard_available() -> bool:
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (needs the tensorboard package)
    except ImportError:
        return False
    return True


def _to_hwc_uint8(image: Any) -> np.ndarray:
    """HxWx3 (or HxW) uint8 array, or CxHxW / HxW float tensor/array in [0, 1] -> HxWx3 uint8."""
    if isinstance(image, torch.Tensor):
        image = image.detach().to("cpu")
        if image.dtype == torch.uint8:
            arr = image.numpy()
        else:
            arr = image.float().clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
        if arr.ndim == 3:
            arr = np.moveaxis(arr, 0, -1)  # tensors are CHW
    else:
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
                arr = np.moveaxis(arr, 0, -1)
            arr = (np.clip(arr.astype(np.float64), 0, 1) * 255).round().astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"image must be HxWx3 uint8 or CxHxW float (C = 1 or 3), got shape {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr)


class TrainLogger:
    """Scalars and images for one run; a no-op unless ``enabled`` (pass ``enabled=info.is_main``).

    Args:
        log_dir: folder for the event files and ``metrics.jsonl`` (created).
        enabled: False on ranks other than 0.
        purge_step: records with ``step >= purge_step`` (left by an interrupted run after its
            last state) are dropped from ``metrics.jsonl`` and from TensorBoard. ``fit`` passes
            ``k + 1`` when resuming from the state of step ``k`` (whose logs were complete).
        use_tensorboard: None = when importable, False = never.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        enabled: bool = True,
        *,
        purge_step: int | None = None,
        use_tensorboard: bool | None = None,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.enabled = bool(enabled)
        self.writer = None
        self._jsonl = None
        if not self.enabled:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        jsonl_path = self.log_dir / "metrics.jsonl"
        if purge_step is not None and jsonl_path.exists():
            self._purge_jsonl(jsonl_path, purge_step)
        self._jsonl = open(jsonl_path, "a", encoding="utf-8")  # noqa: SIM115  (open until close())
        if use_tensorboard is not False:
            if tensorboard_available():
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge_step)
            elif use_tensorboard is None:
                global _WARNED
                if not _WARNED:
                    _WARNED = True
                    warnings.warn(
                        "tensorboard is not installed: logging to metrics.jsonl only "
                        "(pip install 'optisr[train]' for TensorBoard)",
                        stacklevel=2,
                    )
            else:
                raise ImportError("TrainLogger(use_tensorboard=True) needs the tensorboard package")

    @staticmethod
    def _purge_jsonl(path: Path, purge_step: int) -> None:
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if int(json.loads(line).get("step", -1)) >= purge_step:
                    continue
            except (ValueError, AttributeError):
                continue  # a line cut by a kill
            kept.append(line + "\n")
        path.write_text("".join(kept), encoding="utf-8")

    def scalars(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
        """Log ``{name: number}`` at ``step``; names may contain ``/`` (TensorBoard groups)."""
        if not self.enabled or self._jsonl is None:  # enabled implies an open metrics.jsonl
            return
        record: dict[str, Any] = {"step": int(step), "time": round(time.time(), 3)}
        for name, value in values.items():
            v = float(value.item() if isinstance(value, torch.Tensor) else value)
            record[prefix + name] = v if math.isfinite(v) else str(v)
            if self.writer is not None:
                self.writer.add_scalar(prefix + name, v, int(step))
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()

    def image(self, step: int, tag: str, image: Any) -> None:
        """Log an image: HxWx3 uint8 (array) or CxHxW float in [0, 1] (tensor or array)."""
        if not self.enabled:
            return
        arr = _to_hwc_uint8(image)
        if self.writer is not None:
            self.writer.add_image(tag, arr, int(step), dataformats="HWC")
        else:
            from PIL import Image

            out = self.log_dir / "images" / f"{tag.replace('/', '_')}_{int(step):08d}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(out)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()
        if self._jsonl is not None:
            self._jsonl.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        self.enabled = False

    def __enter__(self) -> TrainLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
