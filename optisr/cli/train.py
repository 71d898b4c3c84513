"""``optisr train guided|blind``: train a model from a YAML config (engines: ``optisr.train.<engine>``).

    optisr train ENGINE [--config FILE] [--save-dir DIR] [--resume [STATE]] [--opt KEY=VALUE]...
                        [KEY=VALUE ...] [--no-progress] [--device DEV]

An engine module provides ``CONFIG_CLASS`` (its config dataclass) and a plain function
``train(cfg, *, save_dir=None, resume=False, progress=True, device="auto") -> FitResult``; this
module owns the command line: the common options (:func:`add_common_train_args`), the
``KEY=VALUE`` overrides (:func:`collect_overrides`), engine-specific options (:class:`Engine`),
building the config and calling ``train``. Engine modules are imported when the parser is built,
so they keep heavy imports inside ``train``. An engine whose module is absent (or fails to
import) still appears in ``--help`` and accepts the common options; running it is a one-line
:class:`~optisr.errors.ConfigError`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from optisr.cli.options import add_device_option, device_from_args
from optisr.errors import ConfigError

__all__ = ["ENGINES", "Engine", "add_common_train_args", "add_parser", "collect_overrides", "run"]


@dataclass(frozen=True)
class Engine:
    """A trainer reachable as ``optisr train NAME``.

    Attributes:
        module: module with ``CONFIG_CLASS`` and ``train(cfg, *, save_dir, resume, progress, device)``.
        help: one line for ``--help``.
        add_options: adds the engine's own options to its parser.
        apply_options: ``apply_options(module, cfg, args)`` applies them to the built config.
    """

    module: str
    help: str
    add_options: Callable[[argparse.ArgumentParser], None] | None = None
    apply_options: Callable[[ModuleType, Any, argparse.Namespace], None] | None = None


def _guided_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=None, metavar="NAME",
                   help="add a real dataset (e.g. rgbdd) to the procedural scenes, equal weight")  # fmt: skip
    p.add_argument("--data-dir", default=None, metavar="DIR", help="folder of --dataset")


def _guided_apply(module: ModuleType, cfg: Any, args: argparse.Namespace) -> None:
    if (args.dataset is None) != (args.data_dir is None):
        raise ConfigError("--dataset and --data-dir go together")
    if args.dataset:
        module.add_dataset(cfg, args.dataset, str(args.data_dir))


ENGINES: dict[str, Engine] = {
    "guided": Engine(
        "optisr.train.guided",
        "guided depth SR: learn the graph-regularisation weights",
        add_options=_guided_options,
        apply_options=_guided_apply,
    ),
    "blind": Engine("optisr.train.blind", "blind real-world SR: train an RRDBNet / Real-ESRGAN generator"),
}


def add_common_train_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options every ``optisr train ENGINE`` shares.

    ``--config FILE``, ``--save-dir DIR``, ``--resume [STATE]`` (bare: latest readable state in the
    save folder), ``--opt KEY=VALUE`` (repeatable), trailing ``KEY=VALUE`` tokens, ``--no-progress``
    and ``--device`` (default auto: CUDA when available). Read the overrides with
    :func:`collect_overrides` and the device with :func:`optisr.cli.options.device_from_args`.
    """
    parser.add_argument("--config", "-c", type=Path, default=None, metavar="FILE", help="YAML config (BasicSR layout)")
    parser.add_argument("--save-dir", type=Path, default=None, metavar="DIR", help="run folder: states, releases, logs")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="STATE",
        help="resume: bare = the latest readable state_*.pt in --save-dir (fresh start when none); or a state file",
    )
    parser.add_argument(
        "--opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --opt train.optim.lr=2e-4 (repeatable)",
    )
    parser.add_argument(
        "overrides", nargs="*", default=[], metavar="KEY=VALUE", help="more overrides, e.g. train.total_steps=1000"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device_option(parser)
    return parser


def collect_overrides(args: argparse.Namespace) -> list[str]:
    """All ``KEY=VALUE`` overrides of ``args`` in command-line order of kind (``--opt`` first).

    ``--resume key=value`` (a bare ``--resume`` that swallowed an override) is repaired:
    the token becomes an override and ``args.resume`` becomes True.

    Raises:
        ConfigError: a token is not ``KEY=VALUE``.
    """
    tokens = list(getattr(args, "opt", None) or [])
    resume = getattr(args, "resume", False)
    if isinstance(resume, str) and "=" in resume and not Path(resume).exists():
        tokens.append(resume)
        args.resume = True
    tokens += list(getattr(args, "overrides", None) or [])
    for t in tokens:
        key, sep, _ = t.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"unexpected argument {t!r}: config overrides are KEY=VALUE, e.g. train.optim.lr=2e-4")
    return tokens


def _load_engine(module_name: str) -> tuple[ModuleType | None, str]:
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


def _unavailable(name: str, reason: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        raise ConfigError(f"engine {name} not available in this version ({reason})")

    return run


def _runner(engine: Engine, module: ModuleType) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from optisr.config import build_config

        overrides = collect_overrides(args)
        device = device_from_args(args)
        cfg = build_config(module.CONFIG_CLASS, args.config, overrides)
        if engine.apply_options is not None:
            engine.apply_options(module, cfg, args)
        result = module.train(
            cfg, save_dir=args.save_dir, resume=args.resume, progress=not args.no_progress, device=device
        )
        if int(os.environ.get("RANK", "0")) == 0:  # torchrun: only rank 0 reports
            best = f" and best.safetensors (step {result.best_step})" if result.best_step else ""
            print(f"trained to step {result.step}; weights in {Path(result.save_dir) / 'last.safetensors'}{best}")
        return 0

    return run


def add_parser(sub: Any) -> argparse.ArgumentParser:  # sub: the subparsers action of `optisr`
    p = sub.add_parser("train", help="train a model (guided or blind SR) from a YAML config")
    engines = p.add_subparsers(dest="engine", metavar="ENGINE", required=True)
    for name, engine in ENGINES.items():
        module, reason = _load_engine(engine.module)
        if module is None:
            q = engines.add_parser(name, help=f"{engine.help} [not available]")
            add_common_train_args(q)
            if engine.add_options is not None:
                engine.add_options(q)
            q.set_defaults(train_run=_unavailable(name, reason))
            continue
        doc = (module.__doc__ or "").split("\n\n")[0]
        q = engines.add_parser(name, help=engine.help, description=doc or None)
        add_common_train_args(q)
        if engine.add_options is not None:
            engine.add_options(q)
        q.set_defaults(train_run=_runner(engine, module))
    return p


def run(args: argparse.Namespace) -> int:
    return int(args.train_run(args) or 0)
