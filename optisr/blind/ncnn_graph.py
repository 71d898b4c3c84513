"""A small reference executor for ncnn SR graphs, written against the ``.param`` topology.

It runs the graph layer by layer, following the blob names in the ``.param`` file, with no
knowledge of RRDBNet or SRVGGNetCompact. Its only job is to verify the converters in
:mod:`optisr.blind.convert`: the converted PyTorch module and this executor must agree on the
same input. It supports the layer types that SR graphs use (Input, Split, Concat, Convolution,
Eltwise, BinaryOp, Interp, PReLU, PixelShuffle). Slow-ish and not meant for production use.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from optisr.errors import InputFileError
from optisr.io.ncnn import NcnnLayer, NcnnModel

__all__ = ["run_ncnn_graph"]

_INTERP = {1: "nearest", 2: "bilinear", 3: "bicubic"}


def _activation(x: Tensor, layer: NcnnLayer) -> Tensor:
    act = int(layer.get(9))
    args = layer.get(10, [])
    if act == 0:
        return x
    if act == 1:
        return F.relu(x)
    if act == 2:
        return F.leaky_relu(x, float(args[0]))
    if act == 3:
        return x.clamp(float(args[0]), float(args[1]))
    if act == 4:
        return torch.sigmoid(x)
    raise InputFileError(f"ncnn {layer.name}: activation type {act} not supported by the reference executor")


def _conv(x: Tensor, layer: NcnnLayer) -> Tensor:
    out_ch, k_w = int(layer.get(0)), int(layer.get(1))
    k_h = int(layer.get(11, k_w))
    dil_w = int(layer.get(2, 1))
    dil_h = int(layer.get(12, dil_w))
    str_w = int(layer.get(3, 1))
    str_h = int(layer.get(13, str_w))
    pad_l = int(layer.get(4, 0))
    pad_t = int(layer.get(14, pad_l))
    w = layer.weights["weight"]
    in_ch = w.size // (out_ch * k_w * k_h)
    weight = torch.from_numpy(np.ascontiguousarray(w.reshape(out_ch, in_ch, k_h, k_w))).to(x)
    bias = layer.weights.get("bias")
    b = torch.from_numpy(bias.copy()).to(x) if bias is not None else None
    y = F.conv2d(
        x,
        weight,
        b,
        stride=(str_h, str_w),
        padding=(pad_t, pad_l),
        dilation=(dil_h, dil_w),
    )
    return _activation(y, layer)


def _layer_forward(layer: NcnnLayer, ins: list[Tensor]) -> list[Tensor]:
    t = layer.type
    if t == "Split":
        return [ins[0]] * len(layer.tops)
    if t == "Concat":
        return [torch.cat(ins, dim=1 + int(layer.get(0, 0)))]
    if t == "Convolution":
        return [_conv(ins[0], layer)]
    if t == "PReLU":
        slope = torch.from_numpy(layer.weights["slope"].copy()).to(ins[0])
        return [F.prelu(ins[0], slope)]
    if t == "PixelShuffle":
        return [F.pixel_shuffle(ins[0], int(layer.get(0, 1)))]
    if t == "Interp":
        mode = _INTERP.get(int(layer.get(0, 1)))
        if mode is None:
            raise InputFileError(f"ncnn {layer.name}: interp type {layer.get(0)} not supported")
        sh, sw = float(layer.get(1, 1.0)), float(layer.get(2, 1.0))
        kwargs = {} if mode == "nearest" else {"align_corners": False}
        return [F.interpolate(ins[0], scale_factor=(sh, sw), mode=mode, **kwargs)]
    if t == "Eltwise":
        op = int(layer.get(0, 1))
        coeffs = layer.get(1, []) or [1.0] * len(ins)
        if op == 1:
            terms = [float(c) * v for c, v in zip(coeffs, ins, strict=True)]
            total = terms[0]
            for term in terms[1:]:
                total = total + term
            return [total]
        if op == 0:
            out = ins[0]
            for v in ins[1:]:
                out = out * v
            return [out]
        return [torch.stack(ins).amax(0)]
    if t == "BinaryOp":
        op = int(layer.get(0, 0))
        a, b = ins
        ops: dict[int, Callable[[Tensor, Tensor], Tensor]] = {
            0: torch.add,
            1: torch.sub,
            2: torch.mul,
            3: torch.div,
            4: torch.maximum,
            5: torch.minimum,
        }
        if op not in ops or int(layer.get(1, 0)):
            raise InputFileError(f"ncnn {layer.name}: BinaryOp {op} (scalar form) not supported")
        return [ops[op](a, b)]
    raise InputFileError(f"ncnn layer type {t!r} ({layer.name}) not supported by the reference executor")


@torch.no_grad()
def run_ncnn_graph(model: NcnnModel, x: Tensor) -> Tensor:
    """Execute an ncnn graph with decoded weights.

    Args:
        model: from :func:`optisr.io.ncnn.read_ncnn`.
        x: input ``(1, C, h, w)`` float, fed to the graph's single Input blob.
    Returns:
        the graph's last produced blob (``(1, C', H, W)``), same dtype as ``x``.
    """
    blobs: dict[str, Tensor] = {}
    last: Tensor | None = None
    for layer in model.layers:
        if layer.type == "Input":
            blobs[layer.tops[0]] = x
            continue
        outs = _layer_forward(layer, [blobs[b] for b in layer.bottoms])
        for name, value in zip(layer.tops, outs, strict=True):
            blobs[name] = value
        last = outs[-1]
    if last is None:
        raise InputFileError("ncnn graph has no layers after Input")
    return last
