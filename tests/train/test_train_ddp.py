"""Two CPU processes under torchrun (gloo) train like one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import train_toy  # noqa: E402

ARGS = [
    "train.total_steps=12", "train.batch_size=8", "train.save_every=6", "train.val_every=6", "train.log_every=3",
    "train.ema_decay=0.8", "train.clip_grad_norm=0.5", "train.optim.lr=1e-2", "train.scheduler.type=multistep",
    "train.scheduler.milestones=[6]", "dropout=0.0", "tensorboard=false",
]


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_two_rank_ddp_matches_single_process_global_batch(tmp_path):
    ddp_dir, ref_dir = tmp_path / "ddp", tmp_path / "ref"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(HERE / "train_toy.py"), "--save-dir", str(ddp_dir), "--no-progress", *ARGS,
    ]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # the reference meanwhile: one process, batches of ranks 0 and 1 concatenated (16 samples)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            assert train_toy.main(["--save-dir", str(ref_dir), "--no-progress", *ARGS, "emulate_ranks=2"]) == 0
        finally:
            torch.set_num_threads(threads)
        out, _ = p.communicate(timeout=180)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, out

    r0 = torch.load(ddp_dir / "final_rank0.pt", weights_only=True)
    r1 = torch.load(ddp_dir / "final_rank1.pt", weights_only=True)
    ref = torch.load(ref_dir / "final_rank0.pt", weights_only=True)
    for part in ("model", "ema"):
        for k in ref[part]:
            assert torch.equal(r0[part][k], r1[part][k]), f"ranks disagree on {part}.{k}"
            torch.testing.assert_close(r0[part][k], ref[part][k], rtol=1e-10, atol=1e-12, msg=f"{part}.{k}")
    # only rank 0 wrote states, releases and logs
    assert sorted(q.name for q in ddp_dir.glob("state_*.pt")) == ["state_00000006.pt", "state_00000012.pt"]
    assert (ddp_dir / "last.safetensors").is_file()
    assert len((ddp_dir / "logs" / "metrics.jsonl").read_text().splitlines()) == 4 + 2  # 4 train + 2 val records
    # the logged training loss is the mean over ranks = the loss of the global batch
    import json

    recs = [json.loads(x) for x in (ddp_dir / "logs" / "metrics.jsonl").read_text().splitlines() if "train/loss" in x]
    ref_recs = [json.loads(x) for x in (ref_dir / "logs" / "metrics.jsonl").read_text().splitlines() if "train/loss" in x]
    assert [r["train/loss"] for r in recs] == pytest.approx([r["train/loss"] for r in ref_recs], rel=1e-9)
