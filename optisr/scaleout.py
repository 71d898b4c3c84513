"""Scale-out on a Dask cluster (``dask.distributed``): files and tiles as tasks.

* :func:`connect` opens a :class:`distributed.Client` for ``--dask ADDRESS``: a scheduler address
  (``tcp://host:8786``) or ``local:N`` (a :class:`distributed.LocalCluster` of N single-threaded
  worker processes on this machine, closed again on exit).
* :func:`map_files` runs one task per input file (``optisr upscale --dask``: :func:`upscale_file`
  reads, upscales and writes one image on a worker) and yields each outcome as it completes.
* :func:`dask_tile_map` is a :data:`~optisr.guided.tiling.TileMap`: the padded tiles of one big
  raster are solved on the workers (``optisr guided --dask``); the driver slices each tile's
  windows as it submits it (at most two tiles per worker thread in flight), then cross-fades and
  re-projects exactly as the single-process tiled solve does, in the same order.

Every task is retried (``retries=2``) before it counts as failed; a failed file or tile is reported
in one line (:class:`TaskFailedError`, or the task's own :class:`~optisr.errors.OptiSRError`).
Outputs are written atomically by the task that made them (files) or once by the driver after
every tile (guided), so a failure never leaves a half-written file. Workers read and write the
paths they are given, so with a remote scheduler the files must be on storage the workers share.

Dask is optional (``pip install "optisr[dask]"``) and imported only here, when used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from optisr.errors import ConfigError, OptiSRError, OutputExistsError
from optisr.guided.tiling import TileMap, TileProblem, WeightsFn, solve_tile

__all__ = [
    "DASK_HINT",
    "DEFAULT_RETRIES",
    "TaskFailedError",
    "TileSolver",
    "UpscaleTask",
    "connect",
    "dask_available",
    "dask_tile_map",
    "map_files",
    "upscale_file",
    "task_slots",
]

DASK_HINT = 'pip install "optisr[dask]"'
DEFAULT_RETRIES = 2
_LOCAL = re.compile(r"local:(\d+)")
_ADDRESS = re.compile(r"([a-z0-9+]+://)?[^\s:/]+:\d+/?")

T = TypeVar("T")


class TaskFailedError(OptiSRError, RuntimeError):
    """A task failed on every try on the cluster (the message names its file or tile and the cause)."""


def dask_available() -> bool:
    """Whether ``dask.distributed`` can be imported."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError(f"--dask needs dask.distributed, which is not installed; {DASK_HINT}") from None
    return distributed


@contextlib.contextmanager
def connect(address: str, *, memory_limit: str | int = "auto", timeout: str = "10s") -> Iterator[Any]:
    """A Dask client for ``address`` (``local:N`` or a scheduler address such as ``tcp://host:8786``).

    ``local:N`` starts N worker processes of one thread each (each task sets torch to one thread),
    ``memory_limit`` each (``"auto"``: this machine's memory / N), no dashboard, and stops them on
    exit; meanwhile this process's torch uses at most the cores the workers leave (at least one).
    A scheduler address must answer within ``timeout``. Raises a one-line ConfigError for a
    malformed or unreachable address.
    """
    distributed = _distributed()
    local = _LOCAL.fullmatch(address.strip())
    if local:
        n = int(local.group(1))
        if not 1 <= n <= 256:
            raise ConfigError(f"--dask {address}: the number of local workers must be in 1..256")
        cluster = distributed.LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,  # failures are reported once, in one line, by the driver
        )
        import torch

        # The workers take N of this machine's cores: the driver (slicing, cross-fade, projection) keeps
        # to the rest, so its threads do not compete with the workers' (oversubscribed threads spin).
        driver_threads = torch.get_num_threads()
        torch.set_num_threads(max(1, min(driver_threads, (os.cpu_count() or 1) - n)))
        try:
            with cluster, distributed.Client(cluster) as client:
                yield client
        finally:
            torch.set_num_threads(driver_threads)
        return
    if not _ADDRESS.fullmatch(address.strip()):
        raise ConfigError(
            f"--dask {address!r}: not a scheduler address (tcp://host:8786) or local:N (N local worker processes)"
        )
    try:
        client = distributed.Client(address.strip(), timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"--dask {address}: cannot reach a Dask scheduler ({reason})") from None
    with client:
        yield client


def task_slots(client: Any) -> int:
    """How many tasks the client's cluster runs at once now: its workers' threads (at least 1)."""
    workers = client.scheduler_info().get("workers", {}).values()
    return max(1, sum(int(w.get("nthreads", 1)) for w in workers))


def _one_thread() -> None:
    """Tasks use one torch thread: the cluster's parallelism is its workers."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def _cause(exc: BaseException) -> str:
    """One line for an exception: its own message for optisr errors, else ``Type: first line``."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, OptiSRError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -------------------------------------------------------------------------------- files as tasks


@dataclass(frozen=True)
class UpscaleTask:
    """One ``optisr upscale`` input file as a task (plain values: it travels to a worker).

    Attributes:
        source: the input image (absolute path).
        targets: the output path for an image without and with an alpha channel (the extension
            may differ: JPEG keeps no alpha); the worker picks one after reading the image.
        model: registered model name or weights path; the rest as ``optisr upscale``'s options,
            ``device`` a torch device string and ``dtype`` a torch dtype name (``"float32"``).
    """

    source: str
    targets: tuple[str, str]
    model: str
    outscale: float | None
    tile_size: int
    tile_pad: int
    device: str
    dtype: str
    alpha_upsampler: str
    overwrite: bool


def upscale_file(task: UpscaleTask) -> str:
    """Read, upscale and atomically write one image (on a worker); returns the written path."""
    import torch

    from optisr.blind.api import upscale
    from optisr.io.images import read_image, write_image

    _one_thread()
    img = read_image(task.source)
    has_alpha = img.ndim == 3 and img.shape[2] in (2, 4)
    target = Path(task.targets[1 if has_alpha else 0])
    if target.exists() and not task.overwrite:
        raise OutputExistsError(f"{target}: output exists; pass --overwrite to replace it")
    result = upscale(
        img,
        task.model,
        outscale=task.outscale,
        tile_size=task.tile_size,
        tile_pad=task.tile_pad,
        device=task.device,
        dtype=getattr(torch, task.dtype),
        alpha_upsampler="bicubic" if task.alpha_upsampler == "bicubic" else "model",
    )
    write_image(target, result, overwrite=task.overwrite)
    return str(target)


def map_files(
    client: Any,
    fn: Callable[[T], str],
    tasks: Iterable[T],
    *,
    name: Callable[[T], str],
    retries: int = DEFAULT_RETRIES,
) -> Iterator[tuple[T, str | None, OptiSRError | None]]:
    """Run ``fn(task)`` for every task on the cluster; yield ``(task, result, None)`` or ``(task, None, error)``.

    Outcomes come in completion order. A task that fails ``1 + retries`` times gives its own
    OptiSRError (e.g. an unreadable input) or a :class:`TaskFailedError` naming ``name(task)``.
    """
    distributed = _distributed()
    futures = {client.submit(fn, t, retries=retries, pure=False): t for t in tasks}
    try:
        for fut in distributed.as_completed(futures):
            task = futures[fut]
            try:
                yield task, fut.result(), None
            except OptiSRError as exc:
                yield task, None, exc
            except Exception as exc:  # a worker's crash, KilledWorker, a library error: one line
                yield task, None, TaskFailedError(f"{name(task)}: failed on {1 + retries} tries: {_cause(exc)}")
    finally:
        client.cancel([f for f in futures if not f.done()])


# -------------------------------------------------------------------------------- tiles as tasks


TileSolver = Callable[[TileProblem, "WeightsFn | None"], np.ndarray]
"""``(problem, weights_fn) -> solution``: :func:`~optisr.guided.tiling.solve_tile` or a stand-in (tests)."""


def dask_tile_map(
    client: Any, *, in_flight: int | None = None, retries: int = DEFAULT_RETRIES, solve: TileSolver = solve_tile
) -> TileMap:
    """A :data:`~optisr.guided.tiling.TileMap` that solves tiles on the cluster, in order.

    At most ``in_flight`` tiles (default ``2 ×`` :func:`task_slots`) are submitted and not yet consumed, so
    the driver holds only that many tile windows and solutions besides its whole arrays. Callable
    weights (a learned model) are sent to every worker once. Solutions come back in the problems'
    order (the cross-fade then sums in the same order as in one process). A tile that fails on
    every try raises a one-line :class:`TaskFailedError` and cancels the rest. ``solve`` runs on
    the workers (it must pickle: a module-level function, or a closure cloudpickle sends by value).
    """

    def run(problems: Iterable[TileProblem], weights_fn: WeightsFn | None) -> Iterator[tuple[TileProblem, np.ndarray]]:
        limit = in_flight or 2 * task_slots(client)
        shared = None if weights_fn is None else client.scatter(weights_fn, broadcast=True, hash=False)
        pending: deque[tuple[TileProblem, Any]] = deque()
        todo = iter(problems)

        def submit_next() -> None:
            problem = next(todo, None)
            if problem is not None:
                fut = client.submit(_solve_on_worker, solve, problem, shared, retries=retries, pure=False)
                pending.append((problem, fut))

        try:
            for _ in range(limit):
                submit_next()
            while pending:
                problem, fut = pending.popleft()
                try:
                    sol = fut.result()
                except Exception as exc:
                    raise TaskFailedError(
                        f"tile at LR rows {problem.rows.c0}..{problem.rows.c1}, cols {problem.cols.c0}..{problem.cols.c1}: "
                        f"failed on {1 + retries} tries: {_cause(exc)}"
                    ) from None
                submit_next()
                yield problem, sol
        finally:
            client.cancel([f for _, f in pending])
            if shared is not None:
                client.cancel([shared])

    return run


def _solve_on_worker(solve: TileSolver, problem: TileProblem, weights_fn: WeightsFn | None) -> np.ndarray:
    _one_thread()
    return solve(problem, weights_fn)
