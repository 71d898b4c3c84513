"""optisr.train.checkpoint: atomic training states, weights_only loading, latest/prune."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from optisr.errors import ConfigError, InputFileError
from optisr.train.checkpoint import (
    latest_state,
    list_states,
    load_training_state,
    prune_states,
    save_training_state,
    state_path,
)
from optisr.train.config import OptimConfig, SchedulerConfig
from optisr.train.ema import ModelEMA
from optisr.train.optim import build_optimizer, build_scheduler


def _setup(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    opt = build_optimizer(model.parameters(), OptimConfig(type="AdamW", lr=1e-2, weight_decay=1e-3))
    sched = build_scheduler(opt, SchedulerConfig(type="cosine", warmup_steps=2, min_lr=1e-4), total_steps=20)
    ema = ModelEMA(model, decay=0.9)
    return model, opt, sched, ema


def _train(model, opt, sched, ema, n):
    for _ in range(n):
        opt.zero_grad()
        model(torch.randn(4, 3)).square().mean().backward()
        opt.step()
        sched.step()
        ema.update(model)


def test_round_trip_continues_identically(tmp_path):
    model, opt, sched, ema = _setup(0)
    _train(model, opt, sched, ema, 3)
    path = save_training_state(
        state_path(tmp_path, 3), step=3, model=model, optimizer=opt, scheduler=sched, ema=ema, extra={"best": 1.5, "tag": "x"}
    )
    assert path.name == "state_00000003.pt"
    raw = torch.load(path, weights_only=True)  # only tensors and primitive containers
    assert raw["step"] == 3 and raw["extra"]["tag"] == "x"
    r_expected = random.random()
    _train(model, opt, sched, ema, 4)
    expected = [p.detach().clone() for p in model.parameters()] + [p.clone() for p in ema.module.parameters()]

    model2, opt2, sched2, ema2 = _setup(1)
    step, extra = load_training_state(path, model=model2, optimizer=opt2, scheduler=sched2, ema=ema2)
    assert step == 3 and extra == {"best": 1.5, "tag": "x"}
    assert random.random() == r_expected  # RNG restored
    assert sched2.last_epoch == 3
    torch.manual_seed(0)
    load_training_state(path, model=model2, optimizer=opt2, scheduler=sched2, ema=ema2)  # RNG back to the save
    _train(model2, opt2, sched2, ema2, 4)
    got = [p.detach() for p in model2.parameters()] + list(ema2.module.parameters())
    assert all(torch.equal(a, b) for a, b in zip(expected, got))


def test_dict_of_models_and_errors(tmp_path):
    g, d = nn.Linear(2, 2), nn.Linear(2, 1)
    og, od = torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters())
    path = save_training_state(tmp_path / "s.pt", step=5, model={"g": g, "d": d}, optimizer={"g": og, "d": od})
    g2, d2 = nn.Linear(2, 2), nn.Linear(2, 1)
    step, _ = load_training_state(
        path, model={"g": g2, "d": d2}, optimizer={"g": torch.optim.Adam(g2.parameters()), "d": torch.optim.Adam(d2.parameters())}
    )
    assert step == 5 and torch.equal(g2.weight, g.weight) and torch.equal(d2.bias, d.bias)
    with pytest.raises(InputFileError, match="no model state for x"):
        load_training_state(path, model={"x": g2}, optimizer=None)
    with pytest.raises(InputFileError, match="holds no EMA state"):
        load_training_state(path, model={"g": g2, "d": d2}, optimizer=None, ema=ModelEMA(g2))
    with pytest.raises(ConfigError, match=r"extra\.fn: a function cannot be stored"):
        save_training_state(tmp_path / "t.pt", step=1, model=g, optimizer=None, extra={"fn": lambda: 0})
    assert not (tmp_path / "t.pt").exists() and [p.name for p in tmp_path.iterdir()] == ["s.pt"]
    bad = tmp_path / "state_00000009.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputFileError, match="cannot read training state"):
        load_training_state(bad, model=g2, optimizer=None)
    with pytest.raises(InputFileError, match="not found"):
        load_training_state(tmp_path / "nope.pt", model=g2, optimizer=None)


def test_latest_and_prune(tmp_path):
    assert latest_state(tmp_path) is None and latest_state(tmp_path / "missing") is None
    m = nn.Linear(1, 1)
    for s in (5, 10, 100, 15):
        save_training_state(state_path(tmp_path, s), step=s, model=m, optimizer=None)
    (tmp_path / ".state_00000200.abc.tmp.pt").write_bytes(b"partial")  # an interrupted write
    (tmp_path / "state_final.pt").write_bytes(b"")
    assert latest_state(tmp_path).name == "state_00000100.pt"
    removed = prune_states(tmp_path, keep=2)
    assert sorted(p.name for p in removed) == ["state_00000005.pt", "state_00000010.pt"]
    assert [s for s, _ in list_states(tmp_path)] == [15, 100]
    assert prune_states(tmp_path, keep=0) == []


class _Pickled:
    pass


def test_resume_file_with_pickled_objects_is_one_line(tmp_path):
    evil = tmp_path / "state_00000004.pt"
    torch.save({"format": "optisr-train-state/1", "step": 4, "thing": _Pickled()}, evil)
    with pytest.raises(InputFileError) as info:
        load_training_state(evil, model=nn.Linear(2, 2), optimizer=None)
    msg = str(info.value)
    assert "\n" not in msg and "weights_only" not in msg
    assert msg.startswith(f"{evil}: not a plain training state") and "refused for safety" in msg
