"""Command-line options shared by every subcommand: one spelling, one default, one rule.

* ``--device DEV`` (alias ``-g/--gpu-id N`` for ``cuda:N``, Real-ESRGAN's spelling): default
  ``auto`` everywhere, resolved by :func:`optisr.devices.resolve_device`.
* ``--tile-size N`` (aliases ``-t``, ``--tile``, ``--tile_size``: Real-ESRGAN's and BasicSR's
  spellings), ``0`` = no tiling.
"""

from __future__ import annotations

import argparse

import torch

from optisr.devices import DEVICE_HELP, resolve_device

__all__ = ["add_device_option", "add_tile_option", "device_from_args"]


def add_device_option(p: argparse.ArgumentParser, *, help_prefix: str = "") -> None:
    """Add ``--device`` (default ``auto``) and its alias ``-g/--gpu-id N``."""
    p.add_argument("--device", default="auto", metavar="DEV", help=help_prefix + DEVICE_HELP)
    p.add_argument("-g", "--gpu-id", dest="gpu_id", type=int, default=None, metavar="N",
                   help="alias of --device cuda:N (Real-ESRGAN's spelling)")  # fmt: skip


def device_from_args(args: argparse.Namespace) -> torch.device:
    """The checked device of ``--device``/``--gpu-id`` (one-line ConfigError when unusable)."""
    gpu_id = getattr(args, "gpu_id", None)
    if gpu_id is not None:
        return resolve_device(f"cuda:{gpu_id}", what="--gpu-id")
    return resolve_device(getattr(args, "device", "auto"))


def add_tile_option(p: argparse.ArgumentParser, *, default: int | None, help: str, short: bool = True) -> None:
    """Add ``--tile-size`` with its aliases (``-t`` only where ``short``)."""
    names = ["-t"] if short else []
    names += ["--tile-size", "--tile", "--tile_size"]
    p.add_argument(*names, dest="tile_size", type=int, default=default, metavar="N", help=help)
