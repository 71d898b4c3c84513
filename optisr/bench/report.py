"""Pieces shared by the benchmark reports: number formatting, markdown tables, file names, writing.

Used by :mod:`optisr.bench.guided_report` and :mod:`optisr.bench.blind_report`. Every file is
written atomically (:func:`optisr.io.atomic.atomic_path`) and readable by all (as a plain
``open``/``write`` under the umask would leave it).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from optisr.errors import InputFileError
from optisr.io.atomic import atomic_path

__all__ = ["finite_mean", "format_number", "markdown_table", "safe_name", "write_text"]


def format_number(v: object, digits: int = 2, *, missing: str = "n/a", small_in_sci: bool = False) -> str:
    """A table cell: ``v`` with ``digits`` decimals; ``missing`` for None/NaN/non-numbers, ``inf`` as is.

    With ``small_in_sci``, 0 is written ``0`` and nonzero values below ``10**-digits`` in
    scientific notation (``3.2e-05``), so exact-consistency columns do not all read ``0.000``.
    """
    if v is None or isinstance(v, bool) or not isinstance(v, numbers.Real) or math.isnan(v):
        return missing
    v = float(v)
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if small_in_sci:
        if v == 0:
            return "0"
        if abs(v) < 10 ** (-digits):
            return f"{v:.1e}"
    return f"{v:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Lines of a markdown table: the first column left-aligned (labels), the others right-aligned (numbers)."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def finite_mean(values: Iterable[float]) -> float:
    """Mean of the finite values (NaN when there is none)."""
    a = np.asarray(list(values), dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else math.nan


def safe_name(name: object) -> str:
    """``name`` with every character but letters, digits and ``-_.`` replaced by ``_`` (for file names)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a UTF-8 text file atomically, readable by all (umask applied); OSError -> one-line InputFileError."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(path, 0o666 & ~umask)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    return path
