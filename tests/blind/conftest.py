"""Shared fixtures for the blind-SR tests: tiny random-weight generators and an isolated cache."""

from __future__ import annotations

import pytest
import torch

from optisr.blind.archs import RRDBNet, SRVGGNetCompact


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("optisr_cache")


@pytest.fixture(autouse=True)
def _isolated_cache(_session_cache, monkeypatch):
    """One model cache for the test session (converted once); nothing touches ~/.cache."""
    monkeypatch.setenv("OPTISR_CACHE", str(_session_cache))


@pytest.fixture
def tiny_rrdb() -> RRDBNet:
    torch.manual_seed(0)
    return RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).eval()


@pytest.fixture
def tiny_compact() -> SRVGGNetCompact:
    torch.manual_seed(0)
    return SRVGGNetCompact(num_feat=8, num_conv=2, scale=2).eval()
