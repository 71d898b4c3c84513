"""The job runner of ``optisr serve``: one job at a time, progress, one-line errors, tidy paths."""

from __future__ import annotations

import threading
import time

import pytest

from optisr.errors import InputFileError
from optisr.serve.jobs import Job, JobRunner


def _describe(exc: BaseException) -> str | None:
    return str(exc) if isinstance(exc, InputFileError) else None


def _wait(job: Job, timeout: float = 10.0) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = job.snapshot()
        if state["status"] in ("done", "error"):
            return state
        time.sleep(0.01)
    raise AssertionError(f"job not finished: {job.snapshot()}")


@pytest.fixture
def runner(tmp_path):
    r = JobRunner(tmp_path, _describe)
    yield r
    r.stop()


def test_one_job_at_a_time_with_progress(runner):
    gate, seen = threading.Event(), []

    def slow(job: Job) -> list[dict]:
        job.report("halfway", 0.5)
        seen.append(job.snapshot())
        gate.wait(10)
        return [{"n": 1}]

    first = runner.submit(runner.new_job("blind"), slow)
    second = runner.submit(runner.new_job("blind"), lambda job: [{"n": 2}])
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen[0]["status"] == "running" and seen[0]["progress"] == 0.5 and seen[0]["stage"] == "halfway"
    time.sleep(0.1)
    assert second.snapshot()["status"] == "queued"  # waits for the first
    gate.set()
    assert _wait(first)["results"] == [{"n": 1}]
    done = _wait(second)
    assert done["status"] == "done" and done["progress"] == 1.0 and done["results"] == [{"n": 2}]
    assert (first.folder / "in").is_dir() and (first.folder / "out").is_dir() and first.folder.parent == runner.workdir


def test_errors_are_one_line_with_file_names_only(runner):
    def bad_input(job: Job) -> list[dict]:
        job.note(f"optisr guided: {job.folder / 'in' / 'guide' / 'rgb.png'}: padded")
        raise InputFileError(f"{job.folder / 'in' / 'source' / 'depth.png'}: not a PNG file\nmore detail")

    def bug(job: Job) -> list[dict]:
        raise KeyError(f"{job.folder / 'out' / 'x.png'}")

    state = _wait(runner.submit(runner.new_job("guided"), bad_input))
    assert state["status"] == "error"
    assert state["error"] == "depth.png: not a PNG file"
    assert state["notes"] == ["optisr guided: rgb.png: padded"]
    state = _wait(runner.submit(runner.new_job("guided"), bug))
    assert state["error"] == "internal error (KeyError: 'x.png'); see the server's log"
