"""tools/deepen_compact.py: a deeper SRVGGNetCompact that computes exactly what the shallower one did."""

from __future__ import annotations

import sys

import pytest
import torch

from optisr.blind.archs.compact import SRVGGNetCompact
from optisr.blind.checkpoints import load_model_file
from tests.conftest import load_tool


def test_deepened_network_is_the_same_function_and_keeps_basicsr_keys(tmp_path, monkeypatch):
    torch.manual_seed(0)
    small = SRVGGNetCompact(num_feat=8, num_conv=4, scale=2).eval()
    with torch.no_grad():  # PReLU slopes away from their init, so the inserted identities are tested
        for m in small.body:
            if isinstance(m, torch.nn.PReLU):
                m.weight.uniform_(-0.5, 0.5)
    tool = load_tool("deepen_compact")
    deep = tool.deepen(small, 3).eval()
    assert deep.num_conv == 7 and len(deep.body) == 2 * 7 + 3
    x = torch.rand(2, 3, 11, 9)
    with torch.no_grad():
        assert torch.equal(deep(x), small(x))
    with pytest.raises(SystemExit, match="--add"):
        tool.deepen(small, 5)
    with pytest.raises(SystemExit, match="PReLU"):
        tool.deepen(SRVGGNetCompact(num_feat=8, num_conv=2, scale=2, act_type="relu"), 1)
    # the command: a file that loads as the deeper architecture (keys body.N), same outputs
    from safetensors.torch import save_file

    src, dst = tmp_path / "small.safetensors", tmp_path / "deep.safetensors"
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, str(src), metadata={"name": "t"})
    monkeypatch.setattr(sys, "argv", ["deepen_compact.py", str(src), str(dst), "--add", "2"])
    tool.main()
    loaded = load_model_file(dst)
    assert loaded.hyperparameters["num_conv"] == 6 and "deepened_from" in loaded.metadata
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), small(x), atol=1e-6)
