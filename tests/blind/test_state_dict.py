"""Checkpoint canonicalisation, ESRGAN key-layout conversion, loading and safetensors saving."""

from __future__ import annotations

import json
import re

import pytest
import torch

from optisr.blind.archs import RRDBNet, SRVGGNetCompact
from optisr.blind.checkpoints import convert_esrgan_keys, load_model_file
from optisr.errors import InputFileError
from optisr.io.state_dict import (
    canonicalize_state_dict,
    load_state_dict_file,
    load_torch_checkpoint,
    save_model_safetensors,
)


def _to_realsr_names(sd):
    """BasicSR names -> old BasicSR / RealSR / OTSR names (written independently of the loader)."""
    out = {}
    for k, v in sd.items():
        m = re.match(r"body\.(\d+)\.rdb(\d)\.conv(\d)\.(\w+)", k)
        if m:
            k = f"RRDB_trunk.{m[1]}.RDB{m[2]}.conv{m[3]}.{m[4]}"
        else:
            k = (
                k.replace("conv_body", "trunk_conv")
                .replace("conv_up1", "upconv1")
                .replace("conv_up2", "upconv2")
                .replace("conv_hr", "HRconv")
            )
        out[k] = v
    return out


def _to_esrgan_sequential(sd, nb):
    """BasicSR names -> original ESRGAN ``model.N`` names (×4)."""
    out = {}
    tail = {
        "conv_first": "model.0",
        "conv_body": f"model.1.sub.{nb}",
        "conv_up1": "model.3",
        "conv_up2": "model.6",
        "conv_hr": "model.8",
        "conv_last": "model.10",
    }
    for k, v in sd.items():
        m = re.match(r"body\.(\d+)\.rdb(\d)\.conv(\d)\.(\w+)", k)
        if m:
            out[f"model.1.sub.{m[1]}.RDB{m[2]}.conv{m[3]}.0.{m[4]}"] = v
        else:
            name, param = k.rsplit(".", 1)
            out[f"{tail[name]}.{param}"] = v
    return out


@pytest.fixture
def net():
    torch.manual_seed(1)
    return RRDBNet(num_feat=8, num_block=2, num_grow_ch=4)


def test_realsr_layout_converts_to_basicsr(net):
    sd = net.state_dict()
    old = _to_realsr_names(sd)
    assert "RRDB_trunk.1.RDB3.conv5.weight" in old and "HRconv.bias" in old
    new = convert_esrgan_keys(old)
    assert new.keys() == sd.keys()
    assert all(torch.equal(new[k], sd[k]) for k in sd)
    assert convert_esrgan_keys(new).keys() == sd.keys()  # idempotent on the new layout


def test_esrgan_sequential_layout_converts(net):
    sd = net.state_dict()
    new = convert_esrgan_keys(_to_esrgan_sequential(sd, 2))
    assert new.keys() == sd.keys()
    assert all(torch.equal(new[k], sd[k]) for k in sd)


def test_sequential_x2_is_rejected_clearly(net):
    old = _to_esrgan_sequential(net.state_dict(), 2)
    old = {k.replace("model.10.", "model.12."): v for k, v in old.items()}
    old["model.11.weight"] = old["model.8.weight"]
    with pytest.raises(InputFileError, match="upsampling"):
        convert_esrgan_keys(old)


def test_canonicalize_unwraps_and_strips_prefix(net):
    sd = net.state_dict()
    wrapped = {
        "params_ema": {f"module.{k}": v for k, v in sd.items()},
        "params": {},
        "iter": 5,
    }
    assert canonicalize_state_dict(wrapped).keys() == sd.keys()
    assert canonicalize_state_dict({"state_dict": sd}).keys() == sd.keys()
    with pytest.raises(InputFileError):
        canonicalize_state_dict({"epoch": 3})


@pytest.mark.parametrize("layout", ["basicsr", "realsr", "esrgan"])
def test_load_pth_any_layout(tmp_path, net, layout):
    sd = net.state_dict()
    if layout == "realsr":
        sd = _to_realsr_names(sd)
    elif layout == "esrgan":
        sd = _to_esrgan_sequential(sd, 2)
    path = tmp_path / "g.pth"
    torch.save({"params_ema": sd}, path)
    loaded = load_model_file(path)
    assert loaded.arch == "RRDBNet" and loaded.scale == 4
    assert loaded.hyperparameters == net.hyperparameters()
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), net(x))


@pytest.mark.parametrize(
    "model",
    [
        RRDBNet(scale=2, num_feat=4, num_block=1, num_grow_ch=2),
        SRVGGNetCompact(num_feat=4, num_conv=1, scale=3),
    ],
)
def test_safetensors_round_trip_with_metadata(tmp_path, model):
    path = save_model_safetensors(
        model, tmp_path / "m.safetensors", source_package="test"
    )
    sd, meta = load_state_dict_file(path)
    assert meta["arch"] == type(model).__name__
    assert meta["source_package"] == "test"
    assert json.loads(meta["hyperparameters"]) == model.hyperparameters()
    loaded = load_model_file(path)
    assert loaded.scale == model.scale
    assert loaded.hyperparameters == model.hyperparameters()
    assert all(torch.equal(sd[k], v) for k, v in model.state_dict().items())


def test_bad_files_name_the_file(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(InputFileError, match="nope.pth"):
        load_model_file(missing)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputFileError, match="junk.pth"):
        load_model_file(junk)
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(InputFileError, match="unsupported architecture"):
        load_model_file(other)


def test_pickled_code_is_refused(tmp_path):
    evil = tmp_path / "evil.pth"
    torch.save({"params": {"w": torch.zeros(1)}, "cfg": _Custom()}, evil)
    with pytest.raises(InputFileError, match="evil.pth"):
        load_model_file(evil)


def test_pickled_objects_give_one_line_in_our_words(tmp_path):
    """torch's multi-line "re-run with weights_only=False" advice must not reach the user."""
    evil = tmp_path / "evil.pth"
    torch.save({"params": {"w": torch.zeros(1)}, "cfg": _Custom()}, evil)
    for load in (load_torch_checkpoint, load_state_dict_file, load_model_file):
        with pytest.raises(InputFileError) as info:
            load(evil)
        msg = str(info.value)
        assert "\n" not in msg and "weights_only" not in msg and msg.startswith(f"{evil}: not a plain ")
        assert "refused for safety" in msg


def test_models_export_of_pickled_file_is_one_line(tmp_path, capsys):
    from optisr.cli.main import main

    evil = tmp_path / "evil.pth"
    torch.save({"params": {"w": torch.zeros(1)}, "cfg": _Custom()}, evil)
    assert main(["models", "export", str(evil), "-o", str(tmp_path / "out.safetensors")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "evil.pth: not a plain weights file" in err and "weights_only" not in err
    assert not (tmp_path / "out.safetensors").exists()


def test_truncated_pth_gives_one_line(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"w": torch.zeros(64)}, good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(InputFileError) as info:
        load_torch_checkpoint(cut, what="training state")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{cut}: cannot read training state, truncated")
    with pytest.raises(InputFileError, match="training state not found"):
        load_torch_checkpoint(tmp_path / "missing.pt", what="training state")


def test_io_state_dict_knows_no_engine():
    """Layering: io reads and writes generic weights files; architectures live in optisr.blind."""
    import ast
    import importlib.util

    origin = importlib.util.find_spec("optisr.io.state_dict").origin
    tree = ast.parse(open(origin, encoding="utf-8").read())
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(n.startswith(("optisr.blind", "optisr.guided")) for n in names)


class _Custom:
    pass
