"""optisr.cli.allocator: glibc's thresholds set for the command's process, a no-op elsewhere."""

from __future__ import annotations

import ctypes
import sys

import pytest

from optisr.cli import allocator
from optisr.cli.main import main


def _glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and hasattr(ctypes.CDLL("libc.so.6"), "mallopt")
    except OSError:
        return False


@pytest.mark.skipif(not _glibc(), reason="needs glibc")
def test_sets_the_thresholds_on_glibc(monkeypatch):
    monkeypatch.delenv("OPTISR_MALLOC", raising=False)
    assert allocator.tune_allocator() is True


def test_off_by_environment_and_without_glibc(monkeypatch):
    monkeypatch.setenv("OPTISR_MALLOC", "default")
    assert allocator.tune_allocator() is False
    monkeypatch.delenv("OPTISR_MALLOC")

    def no_libc(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(allocator.ctypes, "CDLL", no_libc)
    assert allocator.tune_allocator() is False


def test_the_command_tunes_its_process(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr("optisr.cli.main.tune_allocator", lambda: calls.append(1) or True)
    rc = main(["guided", "--guide", str(tmp_path / "no.png"), "--source", str(tmp_path / "no.png"), "--scale", "4",
               "-o", str(tmp_path / "o.png")])  # fmt: skip
    assert rc != 0 and calls == [1]
    assert "no.png" in capsys.readouterr().err
