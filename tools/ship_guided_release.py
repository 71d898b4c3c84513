"""Ship a trained guided release as the package's default model, with full metadata.

    python tools/ship_guided_release.py runs/guided_distill_edge [--release best] \
        [-o optisr/guided/weights/default.safetensors] [--training-data TEXT] [--selected-by TEXT]

Reads ``<run>/<release>.safetensors`` (the EMA model the run selected) and
``<run>/logs/metrics.jsonl`` (steps, wall and CPU seconds; see
``tools/ship_compact_release.py``), and writes the model (float32) with the run's metadata plus
``train_steps``, ``train_cpu_seconds``, ``train_wall_seconds``, ``train_hardware``, ``command``,
``training_data`` and ``selected_by``. For a distilled run the teacher's name and its own training
cost are recorded as ``teacher_*``; for a run started from ``init_weights`` (``--base`` when that
file has moved) the start's training cost and lineage as ``base_*``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ship_compact_release import training_cost  # the same log arithmetic as the blind releases


def main(argv: list[str] | None = None) -> int:
    import yaml

    from optisr.guided.model import load_guided_model, save_guided_model

    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--release", default="best")
    ap.add_argument("-o", "--output", type=Path, default=Path("optisr/guided/weights/default.safetensors"))
    ap.add_argument("--training-data", default=None, help="overrides the run's description of its data")
    ap.add_argument("--selected-by", default=None, help="how the release was chosen")
    ap.add_argument(
        "--base", type=Path, default=None, help="the release the run started from (default: its init_weights)"
    )
    args = ap.parse_args(argv)
    model, meta = load_guided_model(args.run / f"{args.release}.safetensors")
    cfg = yaml.safe_load((args.run / "config.yaml").read_text())
    metrics = json.loads(meta.get("metrics", "{}"))
    step = int(metrics.get("step", 0)) or None
    cost = training_cost(args.run / "logs" / "metrics.jsonl")
    extra: dict[str, object] = {
        k: v
        for k, v in meta.items()
        if k not in ("format", "arch", "config", "scales", "operator", "training_data", "version")
    }
    extra.update(
        train_steps=str(cost["steps"]),
        train_cpu_seconds=str(cost["cpu_seconds"]) if cost["cpu_seconds"] else "not logged",
        train_wall_seconds=str(cost["wall_seconds"]),
        train_hardware="CPU, 1 torch thread (2 shared cores)",
        command=f"optisr train guided -c configs/guided/{cfg.get('name', 'guided').removeprefix('guided_')}.yaml "
        f"--save-dir {args.run}",
        selected_by=args.selected_by
        or f"lowest validation nRMSE on the procedural validation scenes, step {step} of {cost['steps']}",
    )
    loss = cfg.get("loss", {})
    if loss.get("kind") == "distill":
        from optisr.guided.model import guided_model_path

        teacher = loss.get("teacher", "default")
        _, t_meta = load_guided_model(guided_model_path(teacher))
        extra["teacher"] = str(teacher)
        for key in ("config", "train_steps", "train_cpu_seconds", "command", "selected_by", "metrics"):
            if key in t_meta:
                extra[f"teacher_{key}"] = t_meta[key]
    base = args.base or (Path(cfg["init_weights"]) if cfg.get("init_weights") else None)
    if base is not None:
        _, b_meta = load_guided_model(base)
        extra["base"] = str(base)
        base_log = base.parent / "logs" / "metrics.jsonl"
        if base_log.is_file():  # a release inside a run folder: that run's cost
            b_cost = training_cost(base_log)
            extra.update(base_train_steps=str(b_cost["steps"]), base_train_wall_seconds=str(b_cost["wall_seconds"]))
        for key, value in b_meta.items():
            if key.startswith(("train_", "teacher")) or key in ("config_name", "metrics", "selected_by", "command"):
                extra[f"base_{key}"] = value
    out = save_guided_model(
        model,
        args.output,
        scales=json.loads(meta["scales"]),
        operator=meta["operator"],
        training_data=args.training_data or meta["training_data"],
        **extra,
    )
    print(f"{out}: {out.stat().st_size} bytes; {json.dumps(cost)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
