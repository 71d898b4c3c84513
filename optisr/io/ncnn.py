"""Reader for ncnn models: the text ``.param`` graph and the ``.bin`` weight blob.

Format (as written by ncnn's converters, ``onnx2ncnn`` / ``pnnx``):

``.param``
    line 1: magic ``7767517``; line 2: ``layer_count blob_count``; then one line per layer:
    ``Type Name n_bottom n_top bottom... top... key=value...``. A key ``k >= 0`` holds an int or a
    float; a key ``-23300 - k`` holds an array for id ``k``, written ``count,v1,v2,...``.

``.bin``
    the layers' weights, concatenated in layer order, no header. Every tensor is 4-byte aligned.
    Weights loaded with ncnn "type 0" start with a 4-byte tag:

    * ``0x01306B47``: float16 values follow;
    * ``0x000D4B38``: int8 values follow;
    * ``0x0002C056``: float32 values follow (raw data with extra scaling);
    * ``0``: float32 values follow;
    * any other tag: 8-bit quantised, a 256-entry float32 table then one uint8 index per value.

    Biases, PReLU slopes and int8 scales are "type 1": raw float32, no tag.

Only the layer types that carry weights in SR models are decoded (Convolution,
ConvolutionDepthWise, Deconvolution, DeconvolutionDepthWise, InnerProduct, PReLU); other layer
types must carry no weights, which holds for Input/Split/Concat/Eltwise/BinaryOp/Interp/
PixelShuffle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optisr.errors import InputFileError

__all__ = ["NcnnLayer", "NcnnModel", "read_ncnn", "read_ncnn_param"]

NCNN_MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAG_FP32_SCALED = 0x0002C056

_WEIGHT_LAYERS = {
    "Convolution",
    "ConvolutionDepthWise",
    "Deconvolution",
    "DeconvolutionDepthWise",
    "InnerProduct",
}
_NO_WEIGHT_LAYERS = {
    "Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle", "ReLU", "Sigmoid",
    "TanH", "Clip", "Crop", "Padding", "Pooling", "Reshape", "Permute", "Flatten", "Slice", "UnaryOp",
    "Noop", "Dropout", "Softmax", "Swish", "HardSwish", "HardSigmoid", "Mish", "GELU", "Reorg",
}  # fmt: skip


@dataclass
class NcnnLayer:
    """One layer of an ncnn graph.

    Attributes:
        type: ncnn layer type, e.g. ``"Convolution"``.
        name: layer name from the param file.
        bottoms: input blob names.
        tops: output blob names.
        params: ``{id: int | float | list}``; array params use their positive id.
        weights: decoded arrays (float32): ``"weight"`` (flat, ncnn order), ``"bias"``,
            ``"slope"`` (PReLU), int8 scales when present. Empty until the ``.bin`` is read.
    """

    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, int | float | list[int | float]] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def get(self, key: int, default: float | list = 0):
        return self.params.get(key, default)


@dataclass
class NcnnModel:
    """A parsed ncnn model: layers in file order, and the bytes of ``.bin`` consumed."""

    layers: list[NcnnLayer]
    blob_count: int
    bin_bytes: int = 0

    def layers_of(self, *types: str) -> list[NcnnLayer]:
        return [layer for layer in self.layers if layer.type in types]


def _parse_value(text: str) -> int | float:
    if any(c in text for c in ".eE") and not text.lstrip("-").isdigit():
        return float(text)
    return int(text)


def read_ncnn_param(path: str | os.PathLike) -> NcnnModel:
    """Parse an ncnn text ``.param`` file (weights not loaded).

    Raises:
        InputFileError: missing file, wrong magic, or a malformed line (the message names the
            file and line number).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: cannot read ncnn param file ({exc})") from exc
    lines = [ln for ln in lines if ln.strip()]
    if len(lines) < 2 or lines[0].strip() != str(NCNN_MAGIC):
        raise InputFileError(f"{path}: not an ncnn text param file (magic {NCNN_MAGIC} missing)")
    try:
        layer_count, blob_count = (int(v) for v in lines[1].split())
        layers = [_parse_layer_line(line) for line in lines[2:]]
    except (ValueError, IndexError) as exc:
        raise InputFileError(f"{path}: malformed ncnn param file ({exc})") from exc
    if len(layers) != layer_count:
        raise InputFileError(f"{path}: header says {layer_count} layers, file has {len(layers)}")
    return NcnnModel(layers=layers, blob_count=blob_count)


def _parse_layer_line(line: str) -> NcnnLayer:
    tok = line.split()
    ltype, name, nb, nt = tok[0], tok[1], int(tok[2]), int(tok[3])
    bottoms = tok[4 : 4 + nb]
    tops = tok[4 + nb : 4 + nb + nt]
    params: dict[int, int | float | list[int | float]] = {}
    for item in tok[4 + nb + nt :]:
        key_s, val_s = item.split("=", 1)
        key = int(key_s)
        if key <= -23300:
            values = [_parse_value(v) for v in val_s.split(",")]
            params[-23300 - key] = values[1 : 1 + int(values[0])]
        else:
            params[key] = _parse_value(val_s)
    return NcnnLayer(ltype, name, bottoms, tops, params)


class _BinReader:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def _take(self, nbytes: int) -> bytes:
        if self.pos + nbytes > len(self.data):
            raise InputFileError(f"{self.path}: ncnn bin file too short (need {self.pos + nbytes} bytes)")
        chunk = self.data[self.pos : self.pos + nbytes]
        self.pos += nbytes
        return chunk

    def _align(self) -> None:
        self.pos = (self.pos + 3) // 4 * 4

    def raw_f32(self, count: int) -> np.ndarray:
        return np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)

    def tagged(self, count: int) -> np.ndarray:
        """ncnn ``ModelBin::load(w, 0)``: tag, then data in the tagged encoding."""
        head = self._take(4)
        tag = int.from_bytes(head, "little")
        if tag == TAG_FP16:
            out = np.frombuffer(self._take(2 * count), dtype="<f2").astype(np.float32)
            self._align()
        elif tag == TAG_INT8:
            out = np.frombuffer(self._take(count), dtype=np.int8).astype(np.float32)
            self._align()
        elif tag in (0, TAG_FP32_SCALED):
            out = self.raw_f32(count)
        else:  # 8-bit quantised: 256-entry table, then indices
            table = self.raw_f32(256)
            out = table[np.frombuffer(self._take(count), dtype=np.uint8)]
            self._align()
        return out


def read_ncnn(param_path: str | os.PathLike, bin_path: str | os.PathLike | None = None) -> NcnnModel:
    """Parse an ncnn model and decode its weights.

    Args:
        param_path: the text ``.param`` file.
        bin_path: the ``.bin`` file; default: ``param_path`` with suffix ``.bin``.

    Returns:
        :class:`NcnnModel` whose weight layers have ``weights`` filled with float32 arrays
        (flat ``"weight"`` in ncnn order: OIHW for convolutions, (out, in) for InnerProduct).

    Raises:
        InputFileError: unreadable files, an unknown layer type that might hold weights, or a
            ``.bin`` whose size does not match the graph exactly.
    """
    param_path = Path(param_path)
    bin_path = Path(bin_path) if bin_path is not None else param_path.with_suffix(".bin")
    model = read_ncnn_param(param_path)
    try:
        data = bin_path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"{bin_path}: cannot read ncnn bin file ({exc})") from exc
    rd = _BinReader(data, bin_path)
    for layer in model.layers:
        if layer.type in _WEIGHT_LAYERS:
            _read_weight_layer(layer, rd)
        elif layer.type == "PReLU":
            layer.weights["slope"] = rd.raw_f32(int(layer.get(0, 1)))
        elif layer.type not in _NO_WEIGHT_LAYERS:
            raise InputFileError(f"{param_path}: ncnn layer type {layer.type!r} ({layer.name}) is not supported")
    if rd.pos != len(data):
        raise InputFileError(f"{bin_path}: {len(data) - rd.pos} bytes left over after the last layer")
    model.bin_bytes = rd.pos
    return model


def _read_weight_layer(layer: NcnnLayer, rd: _BinReader) -> None:
    num_output = int(layer.get(0))
    layer.weights["weight"] = rd.tagged(int(layer.get(6 if layer.type != "InnerProduct" else 2)))
    bias_key = 5 if layer.type != "InnerProduct" else 1
    if int(layer.get(bias_key)):
        layer.weights["bias"] = rd.raw_f32(num_output)
    int8_term = int(layer.get(8))  # int8_scale_term has id 8 in all three layer types
    if int8_term and layer.type in (
        "Convolution",
        "ConvolutionDepthWise",
        "InnerProduct",
    ):
        group = int(layer.get(7, 1)) if layer.type == "ConvolutionDepthWise" else 1
        n_scales = group if layer.type == "ConvolutionDepthWise" else num_output
        layer.weights["weight_int8_scales"] = rd.raw_f32(n_scales)
        layer.weights["bottom_int8_scales"] = rd.raw_f32(1 if group == 1 else group)
        if int8_term > 100:
            layer.weights["top_int8_scales"] = rd.raw_f32(1)
