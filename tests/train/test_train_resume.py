"""Kill a training run with SIGKILL after a checkpoint, resume it, get bit-identical weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from optisr.train.checkpoint import latest_state, list_states

HERE = Path(__file__).resolve().parent
TOY = HERE / "train_toy.py"
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import train_toy  # noqa: E402

ARGS = [
    "train.total_steps=40", "train.batch_size=16", "train.save_every=5", "train.keep_states=2", "train.val_every=10",
    "train.log_every=5", "train.ema_decay=0.9", "train.ema_warmup_steps=3", "train.clip_grad_norm=1.0",
    "train.optim.type=AdamW", "train.optim.lr=1e-2", "train.optim.weight_decay=1e-4", "train.scheduler.type=cosine",
    "train.scheduler.warmup_steps=5", "train.best_metric=mse", "train.best_mode=min", "dropout=0.2",
    "tensorboard=false",
]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _start(save_dir: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, str(TOY), "--save-dir", str(save_dir), "--no-progress", *ARGS, *extra]
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(p: subprocess.Popen, timeout: float = 120) -> str:
    out, _ = p.communicate(timeout=timeout)
    assert p.returncode == 0, out
    return out


def run_in_process(save_dir: Path, *extra: str) -> None:
    """The same script in this process, single-threaded like the subprocesses."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train_toy.main(["--save-dir", str(save_dir), "--no-progress", *ARGS, *extra]) == 0
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tmp_path):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    killed = _start(run_dir, "sleep=0.03")  # slow steps: time to kill it half-way
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and killed.poll() is None:
            states = list_states(run_dir)
            if states and states[-1][0] >= 10:
                break
            time.sleep(0.01)
        killed.send_signal(signal.SIGKILL)
        out, _ = killed.communicate(timeout=30)
        assert killed.returncode == -signal.SIGKILL, f"the run finished before it could be killed:\n{out}"
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.wait()
    interrupted_at = int(latest_state(run_dir).name[6:14])
    assert 10 <= interrupted_at < 40 and not (run_dir / "final_rank0.pt").exists()

    resumed = _start(run_dir, "--resume")
    try:
        run_in_process(ref_dir)  # the uninterrupted reference, while the resumed run starts up
        out = _finish(resumed)
    finally:
        if resumed.poll() is None:
            resumed.kill()
            resumed.wait()
    assert f"at step {interrupted_at}" in out

    a = torch.load(ref_dir / "final_rank0.pt", weights_only=True)
    b = torch.load(run_dir / "final_rank0.pt", weights_only=True)
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    for name in ("last.safetensors", "best.safetensors"):
        ra, rb = load_file(ref_dir / name), load_file(run_dir / name)
        assert all(torch.equal(ra[k], rb[k]) for k in ra), name
    sa = torch.load(ref_dir / "state_00000040.pt", weights_only=True)
    sb = torch.load(run_dir / "state_00000040.pt", weights_only=True)
    assert sa["extra"]["best_step"] == sb["extra"]["best_step"] and sa["extra"]["best_value"] == sb["extra"]["best_value"]
    # the resumed log has each step once (records of the killed run after the state were purged)
    steps = [json.loads(x)["step"] for x in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()]
    train_steps = [s for s in steps if s % 5 == 0]
    assert sorted(set(train_steps)) == list(range(5, 41, 5)) and len(steps) == len(
        (ref_dir / "logs" / "metrics.jsonl").read_text().splitlines()
    )
