"""Output locations, checked before any work: writable, not under a file, not overlapping an input.

Commands call these *before* loading a model or computing anything, so a wrong ``--output``
costs a one-line :class:`~optisr.errors.ConfigError` (or
:class:`~optisr.errors.OutputExistsError`) at once instead of a traceback after the work. The
overlap rule protects inputs: no command may write into, over, or around what it reads.
Paths are compared after resolving symlinks (``Path.resolve``), also for paths that do not
exist yet.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from optisr.errors import ConfigError, OutputExistsError

__all__ = ["check_output_file", "check_output_folder", "paths_overlap", "refuse_overlap"]


def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve(strict=False)


def paths_overlap(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` are the same path, or one lies inside the other (symlinks resolved)."""
    ra, rb = _resolved(a), _resolved(b)
    if ra == rb or ra.is_relative_to(rb) or rb.is_relative_to(ra):
        return True
    try:  # hard links / bind mounts of the same existing file or folder
        return os.path.samefile(ra, rb)
    except OSError:
        return False


def refuse_overlap(output: str | os.PathLike, inputs: Iterable[str | os.PathLike], *, what: str = "output") -> None:
    """Raise a one-line ConfigError when ``output`` is, is inside, or contains any of ``inputs``."""
    for src in inputs:
        if paths_overlap(output, src):
            raise ConfigError(
                f"{output}: the {what} overlaps the input {src} (same path, inside it, or containing it); "
                "choose an output outside the inputs"
            )


def _check_parent_chain(folder: Path, shown: str | os.PathLike) -> None:
    """The nearest existing ancestor of ``folder`` (itself included) must be a writable folder."""
    probe = Path(os.path.abspath(folder))
    while not probe.exists() and not probe.is_symlink():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.is_symlink() and not probe.exists():
        raise ConfigError(f"{shown}: cannot create it: {probe} is a broken symbolic link")
    if not probe.is_dir():
        raise ConfigError(f"{shown}: cannot create it: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{shown}: cannot write there: folder {probe} is not writable")


def check_output_file(path: str | os.PathLike, *, overwrite: bool) -> Path:
    """Check that the file ``path`` can be written: its folder exists or can be created and is
    writable, ``path`` is not a folder, and it does not exist unless ``overwrite``.

    Returns:
        ``Path(path)``.
    Raises:
        ConfigError: ``path`` is a folder, lies under a regular file, or its folder is not
            writable. OutputExistsError: it exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give a file name")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputExistsError(f"{path}: output exists; pass --overwrite to replace it")
    _check_parent_chain(path.parent, path)
    return path


def check_output_folder(path: str | os.PathLike) -> Path:
    """Check that the folder ``path`` exists (as a folder) or can be created, and is writable.

    Returns:
        ``Path(path)``.
    Raises:
        ConfigError: ``path`` is a file, lies under a regular file, or is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path}: is a file, not a folder")
    _check_parent_chain(path, path)
    return path
