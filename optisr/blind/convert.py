"""Map an ncnn SR graph onto :class:`RRDBNet` or :class:`SRVGGNetCompact` state dicts.

ncnn stores convolution weights flat in OIHW order, so each Convolution layer of the graph maps
onto one ``nn.Conv2d`` of ours, in forward order:

* RRDBNet: ``conv_first``; for each RRDB ``i`` and RDB ``j``: ``conv1..conv5``; ``conv_body``;
  ``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``: ``6 + 15·nb`` convolutions.
* SRVGGNetCompact: Convolution / PReLU alternate as ``body.0, body.1, ...``; the last conv has
  ``out·scale²`` outputs and is followed by PixelShuffle.

The structural checks (layer counts, kernel sizes, LeakyReLU 0.2 where RRDBNet has it, the
Interp/PixelShuffle factors) guard against silently mis-assigning a graph of another shape.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from optisr.errors import InputFileError
from optisr.io.ncnn import NcnnLayer, NcnnModel

__all__ = ["ncnn_to_state_dict"]


def _conv_tensors(layer: NcnnLayer, in_ch: int) -> tuple[Tensor, Tensor | None]:
    out_ch, k = int(layer.get(0)), int(layer.get(1))
    k_h = int(layer.get(11, k))
    w = layer.weights["weight"]
    if w.size != out_ch * in_ch * k * k_h:
        raise InputFileError(f"ncnn {layer.name}: {w.size} weights, expected {out_ch}·{in_ch}·{k_h}·{k}")
    weight = torch.from_numpy(np.ascontiguousarray(w.reshape(out_ch, in_ch, k_h, k)))
    bias = layer.weights.get("bias")
    return weight, (torch.from_numpy(bias.copy()) if bias is not None else None)


def _in_channels(layer: NcnnLayer) -> int:
    out_ch, k = int(layer.get(0)), int(layer.get(1))
    k_h = int(layer.get(11, k))
    return layer.weights["weight"].size // (out_ch * k * k_h)


def ncnn_to_state_dict(model: NcnnModel) -> tuple[str, dict, dict[str, Tensor]]:
    """Convert a decoded ncnn SR model into ``(arch, hyperparameters, state_dict)``.

    Args:
        model: from :func:`optisr.io.ncnn.read_ncnn` (weights decoded).
    Returns:
        ``arch`` (``"RRDBNet"`` or ``"SRVGGNetCompact"``), its constructor arguments, and a
        float32 state dict with BasicSR / Real-ESRGAN key names.
    Raises:
        InputFileError: the graph is neither an RRDBNet nor a compact VGG-style net.
    """
    convs = model.layers_of("Convolution")
    if not convs:
        raise InputFileError("ncnn graph has no Convolution layers")
    if model.layers_of("PReLU") or model.layers_of("PixelShuffle"):
        return _compact(model)
    return _rrdbnet(model)


def _rrdbnet(model: NcnnModel) -> tuple[str, dict, dict[str, Tensor]]:
    convs = model.layers_of("Convolution")
    n = len(convs)
    if n < 21 or (n - 6) % 15:
        raise InputFileError(f"ncnn graph has {n} convolutions; an RRDBNet has 6 + 15·nb")
    num_block = (n - 6) // 15
    for layer in convs:
        if int(layer.get(1)) != 3 or int(layer.get(11, 3)) != 3:
            raise InputFileError(f"ncnn {layer.name}: kernel {layer.get(1)}, RRDBNet uses 3×3 everywhere")
    interps = model.layers_of("Interp")
    if len(interps) != 2 or any(float(i.get(1, 1.0)) != 2.0 for i in interps):
        raise InputFileError("ncnn graph: RRDBNet expects two nearest ×2 Interp layers")
    num_feat = int(convs[0].get(0))
    num_grow = int(convs[1].get(0))
    num_in = _in_channels(convs[0])
    num_out = int(convs[-1].get(0))
    names = ["conv_first"]
    names += [f"body.{i}.rdb{j}.conv{k}" for i in range(num_block) for j in (1, 2, 3) for k in range(1, 6)]
    names += ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
    leaky = {"conv_up1", "conv_up2", "conv_hr"} | {nm for nm in names if nm[-1] in "1234" and ".rdb" in nm}
    sd: dict[str, Tensor] = {}
    for name, layer in zip(names, convs, strict=True):
        is_leaky = int(layer.get(9)) == 2 and abs(float(layer.get(10, [0.0])[0]) - 0.2) < 1e-6
        if is_leaky != (name in leaky):
            raise InputFileError(f"ncnn {layer.name}: activation does not match RRDBNet's {name}")
        weight, bias = _conv_tensors(layer, _in_channels(layer))
        sd[f"{name}.weight"] = weight
        if bias is None:
            raise InputFileError(f"ncnn {layer.name}: RRDBNet convs have biases")
        sd[f"{name}.bias"] = bias
    hp = {
        "num_in_ch": num_in,
        "num_out_ch": num_out,
        "scale": 4,
        "num_feat": num_feat,
        "num_block": num_block,
        "num_grow_ch": num_grow,
    }
    return "RRDBNet", hp, sd


def _compact(model: NcnnModel) -> tuple[str, dict, dict[str, Tensor]]:
    weighted = [layer for layer in model.layers if layer.type in ("Convolution", "PReLU")]
    sd: dict[str, Tensor] = {}
    n_conv = 0
    for idx, layer in enumerate(weighted):
        expect = "Convolution" if idx % 2 == 0 or idx == len(weighted) - 1 else "PReLU"
        if layer.type != expect:
            raise InputFileError(f"ncnn {layer.name}: compact net expects {expect} at body.{idx}")
        if layer.type == "PReLU":
            sd[f"body.{idx}.weight"] = torch.from_numpy(layer.weights["slope"].copy())
            continue
        n_conv += 1
        weight, bias = _conv_tensors(layer, _in_channels(layer))
        sd[f"body.{idx}.weight"] = weight
        if bias is not None:
            sd[f"body.{idx}.bias"] = bias
    shuffles = model.layers_of("PixelShuffle")
    if len(shuffles) != 1 or len(weighted) % 2 == 0:
        raise InputFileError("ncnn graph: compact net expects one PixelShuffle after the last conv")
    scale = int(shuffles[0].get(0))
    num_in = _in_channels(weighted[0])
    last_out = int(weighted[-1].get(0))
    if last_out != num_in * scale * scale:
        raise InputFileError(f"ncnn graph: last conv has {last_out} outputs, expected {num_in}·{scale}²")
    hp = {
        "num_in_ch": num_in,
        "num_out_ch": num_in,
        "num_feat": int(weighted[0].get(0)),
        "num_conv": n_conv - 2,
        "scale": scale,
        "act_type": "prelu",
    }
    return "SRVGGNetCompact", hp, sd
