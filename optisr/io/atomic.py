"""Atomic file output: write to a temporary file beside the target, then move it into place.

A crash or an error half-way never leaves a partial output file behind, and with
``overwrite=False`` a file that appeared at the target meanwhile (another run writing the same
output) is never replaced: the final step fails instead.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from optisr.errors import OutputExistsError

__all__ = ["atomic_path"]


def _usual_permissions(path: Path) -> None:
    """mkstemp creates 0600; give the file the umask-based permissions of an ordinary file."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _commit(tmp: Path, target: Path, overwrite: bool) -> None:
    """Move ``tmp`` onto ``target``: a rename, or an exclusive link when not overwriting."""
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        # link() fails with EEXIST if the target exists -- atomically, unlike exists()+rename().
        os.link(tmp, target)
    except FileExistsError:
        raise OutputExistsError(f"{target}: exists (written meanwhile by another process?); use --overwrite") from None
    except OSError:
        # No hard links on this file system (FAT, some network mounts): O_EXCL-create the target
        # as a claim, then rename over our own claim.
        try:
            fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            raise OutputExistsError(f"{target}: exists (written meanwhile by another process?); use --overwrite") from None
        os.close(fd)
        os.replace(tmp, target)
        return
    tmp.unlink()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, suffix: str | None = None, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success move it onto ``target``.

    The temporary name keeps the target's extension (or ``suffix``) so that writers that pick
    the format from the extension (OpenCV, tifffile, rasterio) still work. On an exception the
    temporary file is removed and the target is left untouched.

    Args:
        target: the final file; its parent folders are created.
        suffix: extension of the temporary file (default: the target's).
        overwrite: replace an existing target (default). With ``False`` the final step is an
            exclusive hard link, so it raises :class:`~optisr.errors.OutputExistsError` if the
            target exists *at that moment* -- a check made earlier cannot see a file that a
            concurrent run creates while this one computes.

    Example:
        >>> with atomic_path("out.png") as tmp:      # doctest: +SKIP
        ...     cv2.imwrite(str(tmp), image)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    ext = suffix if suffix is not None else "".join(target.suffixes[-1:])
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{ext}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            _usual_permissions(tmp)
        _commit(tmp, target, overwrite)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
