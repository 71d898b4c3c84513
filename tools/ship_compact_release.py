"""Ship a trained compact release inside the package as fp16 safetensors with full metadata.

    python tools/ship_compact_release.py runs/otsr_compact [--release best] \
        [-o optisr/blind/weights/otsr-compact-x4.safetensors]
    python tools/ship_compact_release.py runs/otsr_compact_otsr --release-file KEPT.safetensors \
        --base distilled.safetensors        # a fine-tune: the base's training cost is kept as base_*

Reads ``<run>/<release>.safetensors`` (the EMA generator) and ``<run>/logs/metrics.jsonl`` (steps,
wall and CPU seconds), stores the weights as float16 and adds ``name``, ``license``,
``train_steps``, ``train_cpu_seconds``, ``train_wall_seconds`` to the metadata. ``--release-file``
ships a release kept elsewhere (e.g. an intermediate step of the run; the cost counted is then the
run's log up to that release's ``step``); ``--base`` records the training cost and name of the
model the run started from (``base_name``, ``base_train_steps``, ``base_train_cpu_seconds``, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def training_cost(metrics_file: Path, until_step: int | None = None) -> dict[str, float]:
    """``steps``, ``wall_seconds`` and ``cpu_seconds`` (summed over resumed segments) of a run's log,
    up to ``until_step`` when given."""
    steps, wall, cpu, seg_cpu, last_t, last_step = 0, 0.0, 0.0, 0.0, None, None
    for line in metrics_file.read_text().splitlines():
        row = json.loads(line)
        if "train/sec_per_step" not in row:
            continue
        step = int(row["step"])
        if until_step is not None and step > until_step:
            break
        if last_step is not None and step > last_step and last_t is not None:
            wall += float(row["time"]) - last_t
        c = float(row.get("train/cpu_s", 0.0))
        if c < seg_cpu:  # a resumed process: its counter restarted
            cpu += seg_cpu
        seg_cpu = c
        last_t, last_step, steps = float(row["time"]), step, max(steps, step)
    return {"steps": steps, "wall_seconds": round(wall), "cpu_seconds": round(cpu + seg_cpu)}


def main(argv: list[str] | None = None) -> int:
    import torch

    from optisr.blind.checkpoints import load_model_file
    from optisr.io.state_dict import save_model_safetensors

    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--release", default="best")
    ap.add_argument("--release-file", type=Path, default=None, help="ship this release file instead")
    ap.add_argument("--base", type=Path, default=None, help="the release the run started from")
    ap.add_argument("-o", "--output", type=Path, default=Path("optisr/blind/weights/otsr-compact-x4.safetensors"))
    ap.add_argument("--name", default="otsr-compact-x4")
    ap.add_argument(
        "--license",
        default="research / non-commercial: trained on BSDS300 training images (research terms), "
        "T91, and real noise from PolyU-Real-World-Noisy-Images (non-commercial)",
    )
    args = ap.parse_args(argv)
    release_file = args.release_file or args.run / f"{args.release}.safetensors"
    loaded = load_model_file(release_file)
    until = int(loaded.metadata["step"]) if args.release_file and "step" in loaded.metadata else None
    cost = training_cost(args.run / "logs" / "metrics.jsonl", until)
    meta = {k: v for k, v in loaded.metadata.items() if k not in ("format", "arch", "hyperparameters", "scale")}
    meta.update(
        name=args.name,
        license=args.license,
        release=args.release,
        train_steps=str(cost["steps"]),
        train_cpu_seconds=str(cost["cpu_seconds"]) if cost["cpu_seconds"] else "not logged",
        train_wall_seconds=str(cost["wall_seconds"]),
        train_hardware="CPU, 1 torch thread (2 shared cores)",
        storage="float16",
    )
    if args.release_file:
        meta["release"] = f"{args.run.name}/{args.release_file.name}"
    if args.base is not None:
        base = load_model_file(args.base).metadata
        for key in ("name", "train_steps", "train_cpu_seconds", "train_wall_seconds", "loss_mode", "losses"):
            if key in base:
                meta[f"base_{key}"] = base[key]
    save_model_safetensors(loaded.model, args.output, storage_dtype=torch.float16, **meta)
    print(f"{args.output}: {args.output.stat().st_size} bytes; {json.dumps(cost)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
