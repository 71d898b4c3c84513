"""Process-wide tuning of glibc's allocator for the ``optisr`` command.

By default glibc serves every allocation above a (dynamic) threshold of at most 32 MB with a fresh
``mmap`` and gives it back to the system when freed, and trims the top of the heap. A tiled guided
solve allocates and frees the same few-MB arrays tile after tile (the CG vectors, the weights, the
network's activations), so each tile paid the page faults of zero-filled fresh memory again.
Keeping freed blocks of up to 256 MB in the heap removes that: ``python benchmarks/cli_memory.py
--sizes 8192 --scale 8 --methods color`` (2 threads, 2026-12-02) took 22.9 s instead of 28.5 s
(solve 13.9 instead of 17.8 s) with peak RSS 1164 against 1126 MB.

This is for the command's own process only: a library must not change its host's allocator. Code
that calls :func:`optisr.guided_upsample` on large images in its own process can call
:func:`tune_allocator` itself. ``OPTISR_MALLOC=default`` in the environment turns it off.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_allocator"]

MMAP_THRESHOLD = 256 << 20  # blocks below this come from the heap and are reused (bytes)
TRIM_THRESHOLD = 512 << 20  # free memory at the top of the heap kept before returning it (bytes)
_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3


def tune_allocator() -> bool:
    """Set glibc's mmap and trim thresholds (see the module doc). True when they were set.

    A no-op (False) on other C libraries and platforms, or with ``OPTISR_MALLOC=default``.
    """
    if os.environ.get("OPTISR_MALLOC", "") == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no glibc mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
