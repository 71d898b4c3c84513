"""tools/ship_compact_release.py: the training cost it records from a run's metrics log."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import load_tool


def _log(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_cost_sums_resumed_segments_and_stops_at_the_shipped_step(tmp_path):
    rows = [
        {"step": 10, "time": 100.0, "train/sec_per_step": 1.0, "train/cpu_s": 5.0},
        {"step": 20, "time": 110.0, "train/sec_per_step": 1.0, "train/cpu_s": 15.0},
        {"step": 20, "time": 111.0, "val/psnr_y": 20.0},  # a validation row is not a training row
        {"step": 30, "time": 500.0, "train/sec_per_step": 1.0, "train/cpu_s": 4.0},  # resumed: counter restarted
        {"step": 40, "time": 507.0, "train/sec_per_step": 1.0, "train/cpu_s": 11.0},
    ]
    log = _log(tmp_path / "metrics.jsonl", rows)
    tool = load_tool("ship_compact_release")
    whole = tool.training_cost(log)
    assert whole["steps"] == 40 and whole["cpu_seconds"] == 15 + 11
    assert tool.training_cost(log, until_step=20) == {"steps": 20, "wall_seconds": 10, "cpu_seconds": 15}
