import argparse
import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def load_tool(name: str, folder: str = "tools"):
    """The script ``FOLDER/NAME.py`` of the repository as a module (tools and benchmarks are scripts)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / folder / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def shared_data_dir() -> Path:
    """../shared/data beside the repository (or $OPTISR_DATA_DIR)."""
    env = os.environ.get("OPTISR_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def bench_blind_cli(argv: list[str]) -> int:
    """``optisr bench blind ...`` with the CLI's error handling (one line on stderr, exit 1)."""
    from optisr.cli import bench
    from optisr.errors import OptiSRError

    parser = argparse.ArgumentParser(prog="optisr")
    sub = parser.add_subparsers(dest="command")
    bench.add_parser(sub)
    args = parser.parse_args(["bench", "blind", *argv])
    try:
        return bench.run(args)
    except OptiSRError as exc:
        print(f"optisr bench: error: {exc}", file=sys.stderr)
        return 1
