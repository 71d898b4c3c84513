"""Entry point of the ``optisr`` command.

Each subcommand lives in its own module of :mod:`optisr.cli` and provides

* ``add_parser(subparsers)`` -> the ``argparse`` parser it registered, and
* ``run(args) -> int`` -> the exit code.

Errors derived from :class:`optisr.errors.OptiSRError` are printed as one line on stderr
and give exit code 1; usage errors give exit code 2 (argparse's convention).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from optisr.version import __version__
from optisr.errors import OptiSRError

# name -> module under optisr.cli; order is the order shown in --help.
SUBCOMMANDS: dict[str, str] = {
    "demo": "optisr.cli.demo",
    "upscale": "optisr.cli.upscale",
    "guided": "optisr.cli.guided",
    "models": "optisr.cli.models",
    "bench": "optisr.cli.bench",
    "degrade": "optisr.cli.degrade",
    "train": "optisr.cli.train",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optisr",
        description="Super-resolution by optimisation: guided (graph-regularised) and blind real-world SR.",
    )
    parser.add_argument("--version", action="version", version=f"optisr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except OptiSRError as exc:
        print(f"optisr {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"optisr {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
