"""Seconds per G+D step of a tail-only OTSR fine-tune of RRDB-23 on cached trunk features, vs the full fine-tune.

    OMP_NUM_THREADS=1 python benchmarks/rrdb_tail_cost.py [--steps 3] [--full-steps 2] [--ks 1 2 4]

Runs the real training code (:class:`optisr.train.blind.TailTask` / :class:`~optisr.train.blind.BlindTask`
``train_step``: generator loss L1 + edge + 0.5·L1 to the teacher + OTSR adversarial term, then the
OTSR critic step on a 64-feature PatchGAN) with ``configs/blind/otsr_df2k_tail.yaml`` at batch 4, 32² LR
crops → 128² HR, 1 thread, ``network_g.pretrained: realsr-df2k-x4``. Data: a synthetic teacher cache of
``--patches`` random 64² LR patches in a temporary folder, and its feature cache for each K (built with
the real head, which also gives the head's seconds per 64² patch, i.e. the one-off feature-cache cost).
The full fine-tune row is :class:`BlindTask` on the LR crops of the same teacher cache (all 23 blocks
and conv_first trained). One untimed warm-up step, then the mean of ``--steps`` timed steps.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "blind" / "otsr_df2k_tail.yaml"


def _fake_teacher_cache(folder: Path, patches: int) -> None:
    """``patches`` random uint8 64² LR / 256² HR and teacher patches, one shard, marked complete."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    arrays = {
        "hr": rng.integers(0, 256, (patches, 256, 256, 3), dtype=np.uint8),
        "lr_clean": rng.integers(0, 256, (patches, 64, 64, 3), dtype=np.uint8),
        "lr": rng.integers(0, 256, (patches, 64, 64, 3), dtype=np.uint8),
        "teacher": rng.integers(0, 256, (patches, 256, 256, 3), dtype=np.uint8),
    }
    np.savez(folder / "shard_00000.npz", **arrays)
    manifest = {"config": {"teacher": "synthetic"}, "shards": ["shard_00000.npz"], "patches": patches, "complete": True}
    (folder / "cache.json").write_text(json.dumps(manifest))


def _time_steps(task, steps: int) -> tuple[int, float]:
    """``(trainable G parameters, mean seconds of one train_step)`` after one warm-up step."""
    torch.manual_seed(0)
    models = task.build_model()
    optimizers = task.build_optimizers(models, task.cfg.train)
    n_train = sum(p.numel() for p in models["net_g"].parameters() if p.requires_grad)
    for m in models.values():
        m.train()
    times = []
    for step in range(steps + 1):
        batch = task.batch(step, 0)
        t0 = time.perf_counter()
        task.train_step(models, optimizers, batch, step)
        if step:
            times.append(time.perf_counter() - t0)
    return n_train, float(np.mean(times))


def main() -> None:
    from optisr.blind.feature_cache import FeatureCacheConfig, build_feature_cache
    from optisr.blind.registry import load_model
    from optisr.config import build_config
    from optisr.train.blind import BlindTask, BlindTrainConfig, TailTask

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--steps", type=int, default=3, help="timed steps per tail K")
    ap.add_argument("--full-steps", type=int, default=2, help="timed steps of the full fine-tune (0: skip)")
    ap.add_argument("--patches", type=int, default=2, help="synthetic 64² LR patches in the caches")
    ap.add_argument("--budget-s", type=float, default=5400.0, help="wall-clock budget for the 'steps' column")
    args = ap.parse_args()
    torch.set_num_threads(1)
    net = load_model("realsr-df2k-x4").model
    common = ["datasets.val.dataroot_gt=null", "datasets.val.dataroot_lq=null", "train.batch_size=4",
              "datasets.train.gt_size=128", "train.best_metric=null"]  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tc = Path(tmp) / "tc"
        _fake_teacher_cache(tc, args.patches)
        for k in args.ks:
            fc = Path(tmp) / f"feat_k{k}"
            fcfg = build_config(FeatureCacheConfig, base={"tail_blocks": k, "shard_size": args.patches})
            m = build_feature_cache(fcfg, tc, fc, net=net, progress=False)
            cfg = build_config(
                BlindTrainConfig, CONFIG, [*common, f"network_g.tail_blocks={k}", f"distill.feature_cache={fc}"]
            )
            n, s = _time_steps(TailTask(cfg), args.steps)
            rows.append(
                (f"{k} (tail: body[{23 - k}:23] + conv_body + upsampler)", n, s, m["head_seconds"] / m["patches"])
            )
            print(f"K={k}: {s:.2f} s/step", flush=True)
        if args.full_steps:
            cfg = build_config(
                BlindTrainConfig,
                CONFIG,
                [*common, "network_g.tail_blocks=0", "distill.feature_cache=null", f"distill.cache_dir={tc}"],
            )
            n, s = _time_steps(BlindTask(cfg), args.full_steps)
            rows.append(("23 (full fine-tune, LR input)", n, s, 0.0))
            print(f"full: {s:.2f} s/step", flush=True)
    load = os.getloadavg()[0]
    print(f"\n1 thread, batch 4, 32² LR → 128² HR, OTSR G+D (PatchGAN-64), load average {load:.2f}\n")
    print("| K trained RRDBs | trainable G params | s/step G+D | steps in 90 min | head s per 64² patch (cache) |")
    print("|---|---:|---:|---:|---:|")
    for name, n, s, head in rows:
        head_txt = f"{head:.2f}" if head else "—"
        print(f"| {name} | {n:,} | {s:.2f} | {int(args.budget_s // s):,} | {head_txt} |")


if __name__ == "__main__":
    main()
