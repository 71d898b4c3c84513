"""One training run in a run folder: join the process group, write ``config.yaml``, :func:`fit`.

:func:`run_training` is what the engines' plain ``train(cfg, ...)`` functions call (and what
``optisr train ENGINE`` ends in). A run that fails before it has written any training state or
release (a bad ``--resume`` file, a config error found while building the task, a crash in the
first steps) leaves the run folder as it found it: the folders, ``config.yaml`` and ``logs/`` it
created are removed and a previous ``config.yaml`` is put back.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from optisr.config import to_dict
from optisr.io.atomic import atomic_path
from optisr.train.checkpoint import list_states
from optisr.train.config import TrainConfig
from optisr.train.distributed import cleanup, init_distributed
from optisr.train.loop import FitResult, TrainTask, fit

__all__ = ["CONFIG_FILE", "RunFolder", "run_training"]

CONFIG_FILE = "config.yaml"
_RELEASES = ("best.safetensors", "last.safetensors")


class RunFolder:
    """What a run folder held before a run, so that a failed start can be undone.

    Args:
        save_dir: the run folder (need not exist yet).
    """

    def __init__(self, save_dir: str | os.PathLike) -> None:
        self.path = Path(save_dir)
        top = self.path  # the outermost folder this run will create (None: all exist)
        while not top.parent.exists() and top.parent != top:
            top = top.parent
        self.created_top: Path | None = None if self.path.exists() else top
        self.entries: set[str] = set(os.listdir(self.path)) if self.path.is_dir() else set()
        config = self.path / CONFIG_FILE
        self.old_config: bytes | None = config.read_bytes() if config.is_file() else None

    def write_config(self, config: Any) -> Path:
        """Write ``config`` (a dataclass or mapping) as ``config.yaml``, creating the folder."""
        import yaml

        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / CONFIG_FILE
        with atomic_path(target) as tmp:
            Path(tmp).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
        return target

    def produced_output(self) -> bool:
        """True when the run wrote a training state or a release that was not there before."""
        names = {p.name for _, p in list_states(self.path)} | {n for n in _RELEASES if (self.path / n).exists()}
        return bool(names - self.entries)

    def undo(self) -> None:
        """Remove what the run created and restore the previous ``config.yaml``.

        Call only when :meth:`produced_output` is False.
        """
        if not self.path.is_dir():
            return
        for name in set(os.listdir(self.path)) - self.entries:
            target = self.path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
        if self.old_config is not None:
            with atomic_path(self.path / CONFIG_FILE) as tmp:
                Path(tmp).write_bytes(self.old_config)
        if self.created_top is not None:
            folder = self.path
            while True:
                try:
                    folder.rmdir()  # only empty folders
                except OSError:
                    break
                if folder == self.created_top:
                    break
                folder = folder.parent


def run_training(
    task: TrainTask,
    cfg_train: TrainConfig,
    *,
    save_dir: str | os.PathLike,
    resume: bool | str | os.PathLike = False,
    progress: bool = True,
    device: str | torch.device | None = "auto",
    config: Any = None,
    tensorboard: bool | None = None,
    ddp_kwargs: Mapping[str, Any] | None = None,
) -> FitResult:
    """Train ``task`` in ``save_dir`` (single process or under ``torchrun``).

    Args:
        task: a :class:`~optisr.train.loop.TrainTask`.
        cfg_train: its ``train:`` section.
        save_dir: the run folder (created when needed).
        resume: as for :func:`~optisr.train.loop.fit`: False, True (latest readable state in
            ``save_dir``), or a state file / folder.
        progress: show a progress bar on rank 0.
        device: ``"auto"`` (CUDA ``local_rank`` when available, else CPU), ``"cpu"``, ``"cuda"``...
        config: the whole trainer config (dataclass or mapping): written to ``config.yaml`` once
            the start succeeded and stored in every training state's ``extra["config"]``.
        tensorboard: as for :func:`~optisr.train.loop.fit`.
        ddp_kwargs: as for :func:`~optisr.train.loop.fit`.

    Returns:
        the :class:`~optisr.train.loop.FitResult`.

    Raises:
        InputFileError / ConfigError: bad resume state or settings; the run folder is then left
            as it was found (see the module docstring).
    """
    folder = RunFolder(save_dir)
    info = init_distributed(device=device)
    extra = {"config": to_dict(config)} if config is not None else None

    def on_start(step: int) -> None:
        if config is not None:
            folder.write_config(config)

    try:
        return fit(
            task,
            cfg_train,
            save_dir=folder.path,
            resume=resume,
            progress=progress,
            dist_info=info,
            extra_state=extra,
            tensorboard=tensorboard,
            ddp_kwargs=ddp_kwargs,
            on_start=on_start,
        )
    except Exception:
        if info.is_main and not folder.produced_output():
            folder.undo()
        raise
    finally:
        cleanup(info)
