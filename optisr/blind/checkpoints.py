"""Generator checkpoints of the blind engine: key layouts, architecture detection, building.

Reading files is :mod:`optisr.io.state_dict`'s job (generic tensors and metadata); this module
knows the architectures of :mod:`optisr.blind.archs`. Three RRDBNet key layouts are recognised
and mapped to the BasicSR one:

* BasicSR / Real-ESRGAN: ``conv_first``, ``body.i.rdbj.convk``, ``conv_body``, ``conv_up1/2``,
  ``conv_hr``, ``conv_last``;
* old BasicSR / RealSR / OTSR: ``RRDB_trunk.i.RDBj.convk``, ``trunk_conv``, ``upconv1/2``, ``HRconv``;
* original ESRGAN (sequential): ``model.0``, ``model.1.sub.i.RDBj.convk.0``, ``model.1.sub.nb``,
  ``model.3``, ``model.6``, ``model.8``, ``model.10`` (×4 only).

SRVGGNetCompact (``body.N`` with PReLU or no activation weights) is detected too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from optisr.blind.archs import RRDBNet, SRVGGNetCompact
from optisr.errors import InputFileError
from optisr.io.state_dict import load_state_dict_file

__all__ = [
    "LoadedModel",
    "build_model",
    "convert_esrgan_keys",
    "detect_arch",
    "load_model_file",
]


@dataclass
class LoadedModel:
    """A generator built from a weights file, with what was inferred about it.

    Attributes:
        model: the ``nn.Module`` in eval mode, float32, on CPU.
        arch: ``"RRDBNet"`` or ``"SRVGGNetCompact"``.
        scale: upscale factor of one forward pass.
        hyperparameters: constructor arguments of ``model``.
        metadata: string metadata (safetensors header or empty).
    """

    model: nn.Module
    arch: str
    scale: int
    hyperparameters: dict
    metadata: dict[str, str] = field(default_factory=dict)


_OLD_RENAMES = (
    (
        re.compile(r"^RRDB_trunk\.(\d+)\.RDB(\d)\.conv(\d)\.(weight|bias)$"),
        r"body.\1.rdb\2.conv\3.\4",
    ),
    (re.compile(r"^trunk_conv\."), "conv_body."),
    (re.compile(r"^upconv1\."), "conv_up1."),
    (re.compile(r"^upconv2\."), "conv_up2."),
    (re.compile(r"^HRconv\."), "conv_hr."),
)


def convert_esrgan_keys(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map old RRDBNet key layouts (RealSR/old BasicSR, original ESRGAN) to BasicSR names.

    Keys already in the BasicSR layout pass through unchanged, so the function is idempotent.

    Raises:
        InputFileError: an original-ESRGAN dict whose upsampler is not the ×4 two-stage one.
    """
    if "model.0.weight" in sd:
        return _convert_sequential_esrgan(sd)
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        for pattern, repl in _OLD_RENAMES:
            key = pattern.sub(repl, key)
        out[key] = value
    return out


def _convert_sequential_esrgan(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    trunk = re.compile(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$")
    tail_idx = sorted({int(m.group(1)) for k in sd if (m := re.match(r"^model\.(\d+)\.weight$", k))} - {0})
    if len(tail_idx) != 4:
        raise InputFileError(
            f"original-ESRGAN checkpoint with {len(tail_idx) - 2} upsampling convs; only ×4 (2 convs) is supported"
        )
    names = dict(zip(tail_idx, ("conv_up1", "conv_up2", "conv_hr", "conv_last"), strict=True))
    body_ids = [int(m.group(1)) for k in sd if (m := re.match(r"^model\.1\.sub\.(\d+)\.weight$", k))]
    for key, value in sd.items():
        if m := trunk.match(key):
            out[f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}"] = value
        elif m := re.match(r"^model\.1\.sub\.(\d+)\.(weight|bias)$", key):
            out[f"conv_body.{m.group(2)}"] = value
        elif m := re.match(r"^model\.(\d+)\.(weight|bias)$", key):
            idx = int(m.group(1))
            out[f"{'conv_first' if idx == 0 else names[idx]}.{m.group(2)}"] = value
        else:
            out[key] = value
    if len(body_ids) != 1:
        raise InputFileError("original-ESRGAN checkpoint without a single trunk conv (model.1.sub.N)")
    return out


def detect_arch(sd: dict[str, Tensor]) -> tuple[str, dict]:
    """Infer the architecture and its constructor arguments from key names and tensor shapes.

    Args:
        sd: a canonical state dict (after :func:`canonicalize_state_dict` and
            :func:`convert_esrgan_keys`).
    Returns:
        ``(arch, hyperparameters)`` with ``arch`` in ``{"RRDBNet", "SRVGGNetCompact"}``.
    Raises:
        InputFileError: the keys match no supported architecture.
    """
    if "conv_first.weight" in sd and "conv_last.weight" in sd and "body.0.rdb1.conv1.weight" in sd:
        num_block = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("body."))
        num_feat, in_first = sd["conv_first.weight"].shape[:2]
        num_out = sd["conv_last.weight"].shape[0]
        ratio = in_first // num_out
        scale = {1: 4, 4: 2, 16: 1}.get(ratio)
        if scale is None or in_first % num_out:
            raise InputFileError(f"RRDBNet conv_first has {in_first} input channels for {num_out} output channels")
        return "RRDBNet", {
            "num_in_ch": in_first // {4: 1, 2: 4, 1: 16}[scale],
            "num_out_ch": int(num_out),
            "scale": scale,
            "num_feat": int(num_feat),
            "num_block": num_block,
            "num_grow_ch": int(sd["body.0.rdb1.conv1.weight"].shape[0]),
        }
    body = sorted({int(m.group(1)) for k in sd if (m := re.match(r"^body\.(\d+)\.weight$", k))})
    if body and body[0] == 0 and all(re.match(r"^body\.\d+\.(weight|bias)$", k) for k in sd):
        convs = [i for i in body if sd[f"body.{i}.weight"].ndim == 4]
        acts = [i for i in body if sd[f"body.{i}.weight"].ndim == 1]
        num_feat, num_in = sd["body.0.weight"].shape[:2]
        last = sd[f"body.{convs[-1]}.weight"]
        out_ch = num_in  # compact models are image-to-image with the same channel count
        scale = round((last.shape[0] / out_ch) ** 0.5)
        if scale * scale * out_ch != last.shape[0]:
            raise InputFileError(f"compact net: last conv has {last.shape[0]} channels, not out·scale²")
        return "SRVGGNetCompact", {
            "num_in_ch": int(num_in),
            "num_out_ch": int(out_ch),
            "num_feat": int(num_feat),
            "num_conv": len(convs) - 2,
            "scale": scale,
            "act_type": "prelu" if acts else "relu",
        }
    sample = ", ".join(list(sd)[:4])
    raise InputFileError(f"unsupported architecture (keys start with: {sample})")


def build_model(arch: str, hyperparameters: dict) -> nn.Module:
    """Instantiate ``arch`` (``"RRDBNet"`` or ``"SRVGGNetCompact"``) with its arguments."""
    hp = dict(hyperparameters)
    cls = {"RRDBNet": RRDBNet, "SRVGGNetCompact": SRVGGNetCompact}.get(arch)
    if cls is None:
        raise InputFileError(f"unknown architecture {arch!r}; expected RRDBNet or SRVGGNetCompact")
    return cls(hp.pop("num_in_ch"), hp.pop("num_out_ch"), **hp)


def load_model_file(path: str | os.PathLike) -> LoadedModel:
    """Build a generator from a weights file, inferring architecture, scale and sizes.

    Args:
        path: ``.pth``/``.pt``/``.ckpt``/``.safetensors`` in any supported key layout.
    Returns:
        :class:`LoadedModel` with the model in eval mode (float32, CPU).
    Raises:
        InputFileError: the file is missing, unreadable, or its keys do not match exactly.
    """
    sd, meta = load_state_dict_file(path)
    try:
        sd = convert_esrgan_keys(sd)
        arch, hp = detect_arch(sd)
        with torch.device("meta"):  # skip the random init: every tensor is overwritten
            model = build_model(arch, hp)
        model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True, assign=True)
    except InputFileError as exc:
        raise InputFileError(f"{path}: {exc}") from exc
    except RuntimeError as exc:
        raise InputFileError(f"{path}: weights do not fit {arch}: {str(exc).splitlines()[0]}") from exc
    model.eval()
    return LoadedModel(
        model=model,
        arch=arch,
        scale=int(hp["scale"]),
        hyperparameters=hp,
        metadata=meta,
    )
