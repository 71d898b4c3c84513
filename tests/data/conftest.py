"""Fixtures for the dataset-loader tests: the shared benchmark data, skipped when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def shared_data_root() -> Path | None:
    """``$OPTISR_DATA_DIR`` or ``../shared/data`` beside the repository, if it exists."""
    env = os.environ.get("OPTISR_DATA_DIR")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    return root if root.is_dir() else None


@pytest.fixture
def shared_dir():
    """Return a function mapping a shared-data folder name to its path, or skip the test."""

    def get(name: str) -> Path:
        root = shared_data_root()
        if root is None or not (root / name).is_dir():
            pytest.skip(f"shared data folder {name!r} not available")
        return root / name

    return get
