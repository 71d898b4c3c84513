"""optisr.train.logger.TrainLogger: TensorBoard events, metrics.jsonl, fallback without tensorboard."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

import optisr.train.logger as logger_mod
from optisr.train.logger import TrainLogger


def _records(log_dir):
    return [json.loads(line) for line in (log_dir / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_event_file_and_jsonl(tmp_path):
    pytest.importorskip("tensorboard")
    with TrainLogger(tmp_path) as log:
        assert log.writer is not None
        log.scalars(1, {"loss": 0.5, "psnr": torch.tensor(30.0)}, prefix="train/")
        log.scalars(2, {"loss": float("nan")})
        log.image(2, "val/sample", np.zeros((4, 5, 3), np.uint8))
        log.image(2, "val/chw", torch.rand(3, 4, 5))
    events = list(tmp_path.glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert acc.Scalars("train/loss")[0].value == 0.5 and acc.Scalars("train/loss")[0].step == 1
    assert "val/sample" in acc.Tags()["images"]
    recs = _records(tmp_path)
    assert recs[0]["step"] == 1 and recs[0]["train/psnr"] == 30.0 and recs[1]["loss"] == "nan"


def test_fallback_without_tensorboard_warns_once(tmp_path, monkeypatch):
    monkeypatch.setattr(logger_mod, "tensorboard_available", lambda: False)
    monkeypatch.setattr(logger_mod, "_WARNED", False)
    with pytest.warns(UserWarning, match="tensorboard is not installed"):
        first = TrainLogger(tmp_path / "a")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = TrainLogger(tmp_path / "b")  # no second warning
    first.scalars(3, {"x": 1})
    first.image(3, "val/img", torch.ones(1, 2, 2))
    first.close()
    second.close()
    assert _records(tmp_path / "a")[0]["x"] == 1.0
    png = tmp_path / "a" / "images" / "val_img_00000003.png"
    assert png.is_file() and not list((tmp_path / "a").glob("events.*"))


def test_disabled_and_purge(tmp_path):
    log = TrainLogger(tmp_path / "off", enabled=False)
    log.scalars(1, {"x": 1})
    log.close()
    assert not (tmp_path / "off").exists()
    with TrainLogger(tmp_path, use_tensorboard=False) as log:
        for s in (5, 10, 15):
            log.scalars(s, {"x": s})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 2')  # a line cut by a kill
    with TrainLogger(tmp_path, use_tensorboard=False, purge_step=10) as log:  # resumed at step 10
        log.scalars(15, {"x": -1})
    assert [(r["step"], r["x"]) for r in _records(tmp_path)] == [(5, 5.0), (15, -1.0)]
    with pytest.raises(ValueError, match="HxWx3"):
        TrainLogger(tmp_path, use_tensorboard=False).image(1, "bad", np.zeros((2, 2, 2, 2)))
