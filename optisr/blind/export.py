"""ONNX export of SR generators with dynamic height and width (chaiNNer / ONNX Runtime ready).

The graph takes ``input`` ``(N, C, H, W)`` float32 in [0, 1] and returns ``output``
``(N, C, s·H, s·W)`` (not clamped); N, H and W are dynamic, so one file serves every tile size.
Needs the optional packages ``onnx`` and ``onnxscript`` (torch's exporter); verifying needs
``onnxruntime``.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from optisr.errors import ConfigError
from optisr.io.atomic import atomic_path

__all__ = ["export_onnx", "verify_onnx"]


def export_onnx(model: nn.Module, path: str | os.PathLike, *, opset: int = 18, sample_size: int = 32) -> Path:
    """Export ``model`` to ONNX with dynamic batch, height and width; written atomically.

    Args:
        model: an SR generator (``num_in_ch`` attribute, default 3), float32.
        path: target ``.onnx`` file.
        opset: ONNX opset (>= 17).
        sample_size: H = W of the example input used for tracing (any multiple of the model's
            ``size_multiple``).
    Returns:
        the path written.
    Raises:
        ConfigError: the ``onnx``/``onnxscript`` packages are missing.
    """
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "ONNX export needs the optional packages onnx and onnxscript: pip install onnx onnxscript"
        ) from exc
    model = model.eval().float()
    x = torch.rand(1, int(getattr(model, "num_in_ch", 3)), sample_size, sample_size)
    batch, height, width = (
        torch.export.Dim("batch"),
        torch.export.Dim("height"),
        torch.export.Dim("width"),
    )
    multiple = int(getattr(model, "size_multiple", 1))
    if multiple > 1:  # pixel-unshuffle models: H and W are multiples of 2 or 4
        height, width = (
            multiple * torch.export.Dim("h_blocks"),
            multiple * torch.export.Dim("w_blocks"),
        )
    path = Path(path)
    with (
        atomic_path(path) as tmp,
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("ignore")  # the exporter's progress lines and deprecation notes
        program = torch.onnx.export(
            model,
            (x,),
            dynamo=True,
            input_names=["input"],
            output_names=["output"],
            dynamic_shapes=({0: batch, 2: height, 3: width},),
            opset_version=opset,
            external_data=False,
            verbose=False,
        )
        assert program is not None  # dynamo=True always returns an ONNXProgram
        program.save(str(tmp))
    return path


def verify_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    sizes: tuple[tuple[int, int], ...] = ((16, 24), (40, 20)),
) -> float:
    """Run the ONNX file in ONNX Runtime and PyTorch at several sizes; return the max abs difference.

    Needs ``onnxruntime``. Different ``sizes`` prove that the dynamic axes work.
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ConfigError("verifying an ONNX export needs onnxruntime: pip install onnxruntime") from exc
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for h, w in sizes:
        x = torch.rand(1, int(getattr(model, "num_in_ch", 3)), h, w)
        with torch.no_grad():
            ref = model(x).numpy()
        out = sess.run(["output"], {"input": x.numpy()})[0]
        if out.shape != ref.shape:
            raise ConfigError(f"ONNX output shape {out.shape} differs from PyTorch's {ref.shape} at input {h}×{w}")
        worst = max(worst, float(np.abs(out - ref).max()))
    return worst
