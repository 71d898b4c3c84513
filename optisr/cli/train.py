"""``optisr train guided|blind``: train a model (engines live in ``optisr.<engine>.train``).

Each engine module provides ``add_arguments(parser)`` and ``run(args) -> int`` (use
:func:`optisr.train.add_common_train_args` in ``add_arguments``). Engine modules are imported
when the parser is built, so they should keep heavy imports inside ``run``. An engine whose
module is absent (or fails to import) still appears in ``--help`` and accepts the common options;
running it is a one-line :class:`~optisr.errors.ConfigError`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util

from optisr.errors import ConfigError

# engine -> (module providing add_arguments(parser) and run(args), help)
ENGINES = {
    "guided": ("optisr.guided.train", "guided depth SR: learn the graph-regularisation weights"),
    "blind": ("optisr.blind.train", "blind real-world SR: train an RRDBNet / Real-ESRGAN generator"),
}


def _unavailable(name: str, reason: str):
    def run(args: argparse.Namespace) -> int:
        raise ConfigError(f"engine {name} not available in this version ({reason})")

    return run


def _load_engine(module_name: str):
    """The engine module, or ``(None, reason)`` when it is missing or fails to import."""
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if spec is None:
        return None, f"no module {module_name}"
    try:
        return importlib.import_module(module_name), ""
    except ImportError as exc:
        return None, f"{module_name}: {type(exc).__name__}: {exc}"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a model (guided or blind SR) from a YAML config")
    engines = p.add_subparsers(dest="engine", metavar="ENGINE", required=True)
    for name, (module_name, help_text) in ENGINES.items():
        module, reason = _load_engine(module_name)
        if module is None:
            q = engines.add_parser(name, help=f"{help_text} [not available]")
            from optisr.train.loop import add_common_train_args

            add_common_train_args(q)
            q.set_defaults(_train_run=_unavailable(name, reason))
        else:
            q = engines.add_parser(name, help=help_text)
            module.add_arguments(q)
            q.set_defaults(_train_run=module.run)
    return p


def run(args: argparse.Namespace) -> int:
    return int(args._train_run(args) or 0)
