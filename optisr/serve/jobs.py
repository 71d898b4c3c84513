"""The job runner of ``optisr serve``: one background worker thread, one job at a time.

A job is a function ``work(job) -> list[dict]`` (the result entries the page shows) run on the
worker thread; it reports its stage and progress through :meth:`Job.report` and leaves its files
in ``job.folder``. The page polls :meth:`Job.snapshot` as JSON. One job at a time because one
solve or network run already uses every CPU core (and the GPU, when there is one); later jobs
wait in the queue with status ``queued``.

Errors inside a job become its one-line ``error`` (the CLI's message, via the ``describe``
function given to the runner); an error nobody foresaw (a bug) is reported as one line too, so
the page never shows a traceback, and the traceback goes to the server's log.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Job", "JobRunner"]

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One submitted job and its state (read by the page through :meth:`snapshot`).

    Attributes:
        id: random hex id (also the name of its folder).
        kind: ``"guided"`` or ``"blind"``.
        folder: where its inputs (``in/``) and outputs (``out/``) live, inside the server's work folder.
        work: the function the worker runs; returns the result entries.
        status: ``queued``, ``running``, ``done`` or ``error``.
        stage: what it is doing now, in words.
        progress: fraction done in [0, 1], or None while unknown (an indeterminate bar).
        error: the one-line error of a failed job.
        notes: one-line notes (size fits, raised tile sizes, warnings).
        results: what :attr:`work` returned (file names, figures, numbers).
    """

    id: str
    kind: str
    folder: Path
    work: Callable[[Job], list[dict[str, Any]]]
    status: str = "queued"
    stage: str = "waiting for the previous job"
    progress: float | None = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    started: float | None = None
    finished: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def report(self, stage: str, progress: float | None) -> None:
        """Set the stage text and the fraction done (None: unknown)."""
        with self.lock:
            self.stage = stage
            self.progress = None if progress is None else min(1.0, max(0.0, float(progress)))

    def note(self, line: str) -> None:
        """Add a one-line note shown under the result (folder paths cut to file names)."""
        with self.lock:
            self.notes.append(self.tidy(line))

    def tidy(self, text: str) -> str:
        """``text`` with this job's folder paths cut down to file names (``<folder>/in/guide/a.png`` -> ``a.png``)."""
        return re.sub(re.escape(str(self.folder)) + r"[/\\](?:in[/\\][A-Za-z0-9_]+|out)[/\\]", "", text)

    def snapshot(self) -> dict[str, Any]:
        """The job's state as JSON-ready values."""
        with self.lock:
            seconds = None
            if self.started is not None:
                seconds = round((self.finished or time.monotonic()) - self.started, 2)
            return {
                "id": self.id, "kind": self.kind, "status": self.status, "stage": self.stage,
                "progress": self.progress, "error": self.error, "notes": list(self.notes),
                "results": list(self.results), "seconds": seconds,
            }  # fmt: skip


class JobRunner:
    """A queue of jobs and the one worker thread that runs them in order.

    Args:
        workdir: the folder under which each job gets its own folder ``workdir/<id>``.
        describe: turns an exception into a one-line message, or None for one nobody foresaw
            (:func:`optisr.cli.main.describe_error`).
    """

    def __init__(self, workdir: Path, describe: Callable[[BaseException], str | None]) -> None:
        self.workdir = Path(workdir)
        self.describe = describe
        self.jobs: dict[str, Job] = {}
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.thread = threading.Thread(target=self.loop, name="optisr-serve-worker", daemon=True)
        self.thread.start()

    def new_job(self, kind: str) -> Job:
        """A job with a fresh id and folder (``in/`` and ``out/`` made); not queued yet."""
        job_id = uuid.uuid4().hex[:16]
        folder = self.workdir / job_id
        (folder / "in").mkdir(parents=True)
        (folder / "out").mkdir()
        return Job(id=job_id, kind=kind, folder=folder, work=lambda job: [])

    def submit(self, job: Job, work: Callable[[Job], list[dict[str, Any]]]) -> Job:
        """Queue ``job`` to run ``work`` on the worker thread."""
        job.work = work
        self.jobs[job.id] = job
        self.queue.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        return self.jobs.get(job_id)

    def loop(self) -> None:
        """The worker: run queued jobs one by one until :meth:`stop`."""
        while True:
            job = self.queue.get()
            if job is None:
                return
            self.run_one(job)

    def run_one(self, job: Job) -> None:
        """Run one job, recording its results or its one-line error."""
        with job.lock:
            job.status, job.started = "running", time.monotonic()
        job.report("starting", 0.0)
        try:
            results = job.work(job)
        except Exception as exc:
            line = self.describe(exc)
            if line is not None:
                line = job.tidy(line.strip().splitlines()[0] if line.strip() else type(exc).__name__)
            else:
                log.exception("optisr serve: job %s failed", job.id)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no message"
                line = f"internal error ({type(exc).__name__}: {job.tidy(first)}); see the server's log"
            with job.lock:
                job.status, job.error, job.finished = "error", line, time.monotonic()
            return
        with job.lock:
            job.results = results
            job.status, job.stage, job.progress, job.finished = "done", "done", 1.0, time.monotonic()

    def stop(self, timeout: float = 10.0) -> None:
        """Let the running job finish (at most ``timeout`` s) and stop the worker."""
        self.queue.put(None)
        self.thread.join(timeout)
