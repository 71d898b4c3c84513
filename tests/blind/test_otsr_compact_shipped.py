"""The compact OTSR model shipped inside the package: registry entry, file, metadata, offline use."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open

from optisr.blind.api import upscale
from optisr.blind.registry import BUNDLED_DIR, MODELS, find_source, load_model, resolve_weights
from optisr.cli.main import main
from optisr.errors import ConfigError
from optisr.io.images import read_image, write_image

NAME = "otsr-compact-x4"
FILE = BUNDLED_DIR / MODELS[NAME].bundled


def test_registered_and_listed_as_installed(capsys):
    assert "otsr" in NAME and MODELS[NAME].package == "optisr"
    assert find_source(NAME) == FILE and resolve_weights(NAME) == FILE
    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[NAME]["installed"] and rows[NAME]["arch"] == "SRVGGNetCompact"


def test_file_is_small_fp16_with_basicsr_keys_and_metadata():
    assert FILE.stat().st_size <= 5 * 1024 * 1024
    with safe_open(str(FILE), framework="pt") as f:
        keys, meta = set(f.keys()), f.metadata()
        dtypes = {f.get_tensor(k).dtype for k in keys}
    assert {"body.0.weight", "body.0.bias", "body.1.weight", "body.34.weight"} <= keys  # Real-ESRGAN compact layout
    assert str(dtypes) == "{torch.float16}"
    for field in ("arch", "hyperparameters", "scale", "training_data", "license", "noise_license", "losses",
                  "train_steps", "train_cpu_seconds", "teacher", "degradation"):  # fmt: skip
        assert meta.get(field), field
    assert meta["arch"] == "SRVGGNetCompact" and meta["scale"] == "4" and int(meta["train_steps"]) > 0
    assert "PolyU" in meta["training_data"] and "non-commercial" in meta["noise_license"]
    hp = json.loads(meta["hyperparameters"])
    assert hp["num_feat"] * hp["num_feat"] * 9 * hp["num_conv"] <= 2_000_000


def test_loads_and_runs_on_a_tiny_image():
    loaded = load_model(NAME)
    assert loaded.arch == "SRVGGNetCompact" and loaded.scale == 4
    assert sum(p.numel() for p in loaded.model.parameters()) <= 2_000_000
    x = (np.random.default_rng(0).random((12, 10, 3)) * 255).astype(np.uint8)
    y = upscale(x, NAME, device="cpu")
    assert y.shape == (48, 40, 3) and y.dtype == np.uint8
    for level in (30, 128, 200):  # no hallucinated noise: a flat grey image stays flat (GAN texture < 1.5 levels)
        dev = upscale(np.full((40, 40, 3), level, np.uint8), NAME, device="cpu").astype(int) - level
        inner = dev[16:-16, 16:-16]
        assert abs(inner.mean()) <= 1.0 and inner.std() <= 1.5 and np.abs(dev).max() <= 10, level


def test_cli_upscale_by_name_offline(tmp_path):
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    write_image(src, (np.random.default_rng(1).random((9, 11, 3)) * 255).astype(np.uint8))
    assert main(["upscale", "-i", str(src), "-o", str(out), "-n", NAME, "--device", "cpu"]) == 0
    assert read_image(out).shape == (36, 44, 3)


def test_missing_bundled_file_is_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setattr("optisr.blind.registry.BUNDLED_DIR", tmp_path)
    assert find_source(NAME) is None
    with pytest.raises(ConfigError, match=r"otsr-compact-x4\.safetensors is missing"):
        resolve_weights(NAME)
