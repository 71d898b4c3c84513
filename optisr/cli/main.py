"""Entry point of the ``optisr`` command.

Each subcommand lives in its own module of :mod:`optisr.cli` and provides

* ``add_parser(subparsers)`` -> the ``argparse`` parser it registered, and
* ``run(args) -> int`` -> the exit code.

Errors derived from :class:`optisr.errors.OptiSRError` are printed as one line on stderr
and give exit code 1; so are the operating system's errors (``OSError``: disk full, permission
denied, ...), out-of-memory errors and device errors (CUDA/MPS runtime failures), which no
command can prevent by checking beforehand. Usage errors give exit code 2 (argparse's convention).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from optisr.cli.allocator import tune_allocator
from optisr.errors import OptiSRError
from optisr.version import __version__

__all__ = ["SUBCOMMANDS", "build_parser", "describe_error", "main"]

# name -> module under optisr.cli; order is the order shown in --help.
SUBCOMMANDS: dict[str, str] = {
    "demo": "optisr.cli.demo",
    "upscale": "optisr.cli.upscale",
    "guided": "optisr.cli.guided",
    "models": "optisr.cli.models",
    "bench": "optisr.cli.bench",
    "degrade": "optisr.cli.degrade",
    "train": "optisr.cli.train",
    "adapt": "optisr.cli.adapt",
    "serve": "optisr.cli.serve",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optisr",
        description="Super-resolution by optimisation: guided (graph-regularised) and blind real-world SR.",
    )
    parser.add_argument("--version", action="version", version=f"optisr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMANDS.values():
        module = importlib.import_module(module_name)
        p = module.add_parser(sub)
        p.set_defaults(run_command=module.run)
    return parser


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _is_device_error(exc: BaseException) -> bool:
    """A torch runtime failure of the accelerator (CUDA/MPS error, out of device memory)."""
    torch = sys.modules.get("torch")
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None) if torch is not None else None
    if oom is not None and isinstance(exc, oom):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    head = _first_line(str(exc))
    return any(key in head for key in ("CUDA", "cuDNN", "CUBLAS", "MPS", "out of memory"))


def describe_error(exc: BaseException) -> str | None:
    """One line for an error the CLI reports without a traceback, or None for a bug.

    OptiSRError: its message. OSError: ``FILE: reason`` (``[Errno 28] ...`` spelled as
    ``No space left on device``). MemoryError and device errors: their first line.
    """
    if isinstance(exc, OptiSRError):
        return _first_line(str(exc)) or type(exc).__name__
    if isinstance(exc, OSError):
        reason = exc.strerror or _first_line(str(exc)) or type(exc).__name__
        names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
        return f"{' -> '.join(names)}: {reason}" if names else reason
    if isinstance(exc, MemoryError):
        return f"out of memory{': ' + _first_line(str(exc)) if str(exc) else ''}"
    if _is_device_error(exc):
        return f"device error: {_first_line(str(exc))}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    tune_allocator()  # the command's own process: fewer page faults in tiled solves (see allocator)
    try:
        return int(args.run_command(args) or 0)
    except KeyboardInterrupt:
        print(f"optisr {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        line = describe_error(exc)
        if line is None:
            raise
        print(f"optisr {args.command}: error: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
