"""Training-state checkpoints: ``save_dir/state_{step:08d}.pt``, written atomically.

A training state holds everything needed to continue a run exactly: the step, the model(s), the
optimizer(s), the scheduler(s), the EMA, the global RNG states and a small ``extra`` mapping
(best metric so far, the config...). It contains only tensors, numbers, strings and
``dict``/``list``/``tuple`` containers, so it loads with ``torch.load(weights_only=True)``: a
state file cannot execute code when it is read.

Release weights are not training states: each trainer writes them separately with
:func:`optisr.io.state_dict.save_model_safetensors` (see ``TrainTask.save_release``).

GAN trainers pass dicts: ``model={"net_g": g, "net_d": d}``,
``optimizer={"net_g": opt_g, "net_d": opt_d}`` (same for ``scheduler``).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from optisr.errors import ConfigError, InputFileError
from optisr.io.atomic import atomic_path
from optisr.io.state_dict import load_torch_checkpoint
from optisr.train.ema import ModelEMA, unwrap_model
from optisr.train.seeding import rng_state, set_rng_state

__all__ = [
    "STATE_FORMAT",
    "find_resumable_state",
    "latest_state",
    "list_states",
    "load_training_state",
    "prune_states",
    "read_training_state",
    "restore_training_state",
    "save_training_state",
    "state_path",
]

STATE_FORMAT = "optisr-train-state/1"
_STATE_RE = re.compile(r"^state_(\d{8,})\.pt$")

Stateful = Any  # anything with state_dict() / load_state_dict()
OneOrMany = Stateful | Mapping[str, Stateful] | None


def state_path(save_dir: str | os.PathLike, step: int) -> Path:
    """``save_dir/state_{step:08d}.pt``."""
    return Path(save_dir) / f"state_{int(step):08d}.pt"


def list_states(save_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``state_*.pt`` in ``save_dir``, by increasing step."""
    save_dir = Path(save_dir)
    if not save_dir.is_dir():
        return []
    out = []
    for p in save_dir.iterdir():
        m = _STATE_RE.match(p.name)
        if m and p.is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_state(save_dir: str | os.PathLike) -> Path | None:
    """The state file with the highest step in ``save_dir``, or None.

    Temporary files of an interrupted write (``.state_*.tmp.pt``) are never returned.
    """
    states = list_states(save_dir)
    return states[-1][1] if states else None


def prune_states(save_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest state files (``keep <= 0`` keeps all); return the deleted."""
    if keep <= 0:
        return []
    removed = []
    for _, p in list_states(save_dir)[:-keep]:
        try:
            p.unlink()
        except FileNotFoundError:
            continue
        removed.append(p)
    return removed


def _plain(obj: Any, where: str) -> Any:
    """Convert ``obj`` to tensors / primitives / plain containers (what weights_only accepts)."""
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, torch.Tensor, torch.dtype, torch.device)):
        return obj
    if isinstance(obj, collections.Counter):  # MultiStepLR milestones; allowed by weights_only
        return collections.Counter({_plain(k, where): _plain(v, where) for k, v in obj.items()})
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _plain(v, f"{where}.{k}")) for k, v in obj.items())
    if isinstance(obj, Mapping):
        return {k: _plain(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        from optisr.config import to_dict

        return _plain(to_dict(obj), where)
    raise ConfigError(
        f"{where}: a {type(obj).__name__} cannot be stored in a training state "
        "(only tensors, numbers, strings, None and dict/list/tuple of them)"
    )


def _state_of(obj: OneOrMany, kind: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return {name: _state_of(v, f"{kind}.{name}") for name, v in obj.items()}
    if isinstance(obj, nn.Module):
        obj = unwrap_model(obj)
    return _plain(obj.state_dict(), kind)


def _load_into(obj: OneOrMany, state: Any, kind: str, path: Path) -> None:
    if obj is None:
        return
    if state is None:
        raise InputFileError(f"{path}: holds no {kind} state")
    if isinstance(obj, Mapping):
        missing = [n for n in obj if n not in state]
        if missing:
            raise InputFileError(f"{path}: no {kind} state for {', '.join(missing)} (has {', '.join(state)})")
        for name, v in obj.items():
            _load_into(v, state[name], f"{kind}.{name}", path)
        return
    if isinstance(obj, nn.Module):
        obj = unwrap_model(obj)
    obj.load_state_dict(state)


def save_training_state(
    path: str | os.PathLike,
    *,
    step: int,
    model: nn.Module | Mapping[str, nn.Module],
    optimizer: OneOrMany,
    scheduler: OneOrMany = None,
    ema: ModelEMA | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a training state atomically (temporary file in the same folder, then ``os.replace``).

    Args:
        path: target file, normally :func:`state_path` ``(save_dir, step)``.
        step: number of optimisation steps completed.
        model: module or ``{name: module}`` (DDP wrappers are unwrapped).
        optimizer / scheduler: object or ``{name: object}`` with ``state_dict()``, or None.
        ema: a :class:`ModelEMA` or None.
        extra: small mapping of tensors / primitives (best metric, config as ``to_dict``...).

    Stored: ``{"format", "step", "model", "optimizer", "scheduler", "ema", "rng", "extra"}``.
    """
    state = {
        "format": STATE_FORMAT,
        "step": int(step),
        "model": _state_of(model, "model"),
        "optimizer": _state_of(optimizer, "optimizer"),
        "scheduler": _state_of(scheduler, "scheduler"),
        "ema": _plain(ema.state_dict(), "ema") if ema is not None else None,
        "rng": rng_state(),
        "extra": _plain(dict(extra or {}), "extra"),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def read_training_state(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a state file written by :func:`save_training_state`, without applying it.

    Returns:
        the stored mapping (see :func:`save_training_state`).

    Raises:
        InputFileError: one line naming the file: missing, truncated or otherwise unreadable, or
            not an optisr training state.
    """
    path = Path(path)
    state = load_torch_checkpoint(path, map_location=map_location, what="training state")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise InputFileError(f"{path}: not an optisr training state (format {STATE_FORMAT})")
    return state


def restore_training_state(
    state: Mapping[str, Any],
    *,
    path: str | os.PathLike,
    model: nn.Module | Mapping[str, nn.Module],
    optimizer: OneOrMany,
    scheduler: OneOrMany = None,
    ema: ModelEMA | None = None,
    restore_rng: bool = True,
) -> tuple[int, dict[str, Any]]:
    """Load a state from :func:`read_training_state` into the given objects.

    Restores the global RNG states unless ``restore_rng=False``. ``path`` only names the file in
    messages.

    Returns:
        ``(step, extra)``.

    Raises:
        InputFileError: the state lacks a requested part.
    """
    path = Path(path)
    _load_into(model, state["model"], "model", path)
    _load_into(optimizer, state["optimizer"], "optimizer", path)
    _load_into(scheduler, state["scheduler"], "scheduler", path)
    if ema is not None:
        if state.get("ema") is None:
            raise InputFileError(f"{path}: holds no EMA state")
        ema.load_state_dict(state["ema"])
    if restore_rng and state.get("rng") is not None:
        set_rng_state(state["rng"])
    return int(state["step"]), dict(state.get("extra") or {})


def load_training_state(
    path: str | os.PathLike,
    *,
    model: nn.Module | Mapping[str, nn.Module],
    optimizer: OneOrMany,
    scheduler: OneOrMany = None,
    ema: ModelEMA | None = None,
    map_location: str | torch.device = "cpu",
    restore_rng: bool = True,
) -> tuple[int, dict[str, Any]]:
    """Load a state written by :func:`save_training_state` into the given objects.

    :func:`read_training_state` then :func:`restore_training_state`: ``torch.load`` with
    ``weights_only=True``; restores the global RNG states unless ``restore_rng=False``.

    Returns:
        ``(step, extra)``.

    Raises:
        InputFileError: the file is missing, unreadable, not a training state, or lacks a
            requested part (one line naming the file).
    """
    state = read_training_state(path, map_location=map_location)
    return restore_training_state(
        state, path=path, model=model, optimizer=optimizer, scheduler=scheduler, ema=ema, restore_rng=restore_rng
    )


def find_resumable_state(
    save_dir: str | os.PathLike, *, map_location: str | torch.device = "cpu"
) -> tuple[Path, dict[str, Any], list[tuple[Path, str]]] | None:
    """The newest readable state in ``save_dir``, falling back past unreadable newer ones.

    A run killed while the disk filled up, or a copied folder, can leave a truncated latest
    state; the previous valid one is then the place to resume from.

    Returns:
        ``(path, state, skipped)`` where ``skipped`` lists ``(path, reason)`` of the newer
        unreadable states (newest first), or None when ``save_dir`` has no state file.

    Raises:
        InputFileError: every state file is unreadable; the message names the newest one.
    """
    states = list_states(save_dir)
    skipped: list[tuple[Path, str]] = []
    for _, path in reversed(states):
        try:
            return path, read_training_state(path, map_location=map_location), skipped
        except InputFileError as exc:
            skipped.append((path, str(exc)))
    if not skipped:
        return None
    reason = skipped[0][1]  # names the newest file
    if len(skipped) > 1:
        raise InputFileError(f"{reason}; the {len(skipped) - 1} earlier state(s) are unreadable too")
    raise InputFileError(f"{reason}; no earlier state to fall back to")
