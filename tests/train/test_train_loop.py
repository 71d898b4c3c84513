"""optisr.train.loop.fit in-process: releases, best tracking, schedules, GAN-style steps, CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from optisr.errors import ConfigError, InputFileError
from optisr.train import DistInfo, all_reduce_mean, fit, from_dict
from optisr.train.config import OptimConfig, SchedulerConfig, TrainConfig
from optisr.train.optim import build_optimizer, build_scheduler

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_toy  # noqa: E402


def _toy(**train):
    cfg = from_dict(train_toy.ToyConfig, {"train": {"total_steps": 12, "batch_size": 8, "log_every": 4, **train}})
    return train_toy.ToyTask(cfg), cfg.train


def test_fit_writes_states_releases_logs_and_tracks_best(tmp_path):
    task, cfg = _toy(save_every=4, val_every=4, keep_states=2, ema_decay=0.5, best_metric="mse", best_mode="min",
                     optim={"lr": 0.05})
    seen = []
    validate = task.validate
    task.validate = lambda model, step: seen.append((step, model.training)) or validate(model, step)
    result = fit(task, cfg, save_dir=tmp_path, progress=False)
    assert result.step == 12 and result.start_step == 0 and result.ema is not None
    assert seen == [(4, False), (8, False), (12, False)]
    assert sorted(p.name for p in tmp_path.glob("state_*.pt")) == ["state_00000008.pt", "state_00000012.pt"]
    last = load_file(tmp_path / "last.safetensors")
    assert all(torch.equal(last[k], v) for k, v in result.ema.module.state_dict().items())  # EMA is released
    assert (tmp_path / "best.safetensors").is_file() and result.best_step in (4, 8, 12)
    assert result.best_value == pytest.approx(min(r["val/mse"] for r in _val_records(tmp_path)))
    recs = [json.loads(x) for x in (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if "train/loss" in r] == [4, 8, 12]
    state = torch.load(tmp_path / "state_00000012.pt", weights_only=True)
    assert state["extra"]["best_step"] == result.best_step and state["extra"]["train_config"]["total_steps"] == 12

    again = fit(task, cfg, save_dir=tmp_path, resume=True, progress=False)  # finished run: nothing to do
    assert again.start_step == 12 and again.best_step == result.best_step
    assert all(torch.equal(a, b) for a, b in zip(again.model.parameters(), result.model.parameters()))


def _val_records(tmp_path):
    lines = (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "val/mse" in r]


def test_val_at_start_makes_the_starting_model_a_best_candidate(tmp_path):
    """``val_at_start``: step 0 is validated (not released as last); a run that never beats it keeps it as best."""
    task, cfg = _toy(total_steps=4, val_every=2, best_metric="mse", best_mode="min", val_at_start=True)
    seen, start = [], {}

    def validate(model, step):  # later steps score worse: the start must stay the best
        seen.append(step)
        if step == 0:
            start.update({k: v.clone() for k, v in model.state_dict().items()})
        return {"mse": float(step)}

    task.validate = validate
    result = fit(task, cfg, save_dir=tmp_path, progress=False)
    assert seen == [0, 2, 4] and result.best_step == 0
    best = load_file(tmp_path / "best.safetensors")
    assert all(torch.equal(best[k], v) for k, v in start.items())
    last = load_file(tmp_path / "last.safetensors")
    assert any(not torch.equal(last[k], v) for k, v in start.items())  # last is step 4, trained
    assert [r["step"] for r in _val_records(tmp_path)] == [0, 2, 4]

    cfg6 = _toy(total_steps=6, val_every=2, best_metric="mse", best_mode="min", val_at_start=True)[1]
    seen.clear()
    fit(task, cfg6, save_dir=tmp_path, resume=True, progress=False)
    assert seen == [6]  # a resumed run does not validate its start again


def test_best_guard_keeps_guarded_steps_out_of_best(tmp_path):
    """``best_guard``: a step with a better metric but a guard > 0 is not best; the start is exempt."""
    task, cfg = _toy(total_steps=6, val_every=2, best_metric="mse", best_mode="min", val_at_start=True,
                     best_guard="excess")
    scores = {0: (5.0, 1.0), 2: (4.0, -0.1), 4: (1.0, 0.3), 6: (3.0, 0.0)}  # step: (mse, guard)
    task.validate = lambda model, step: {"mse": scores[step][0], "excess": scores[step][1]}
    result = fit(task, cfg, save_dir=tmp_path, progress=False)
    # step 4 has the lowest mse but breaks the guard; step 6 (guard exactly 0) is allowed and beats step 2
    assert result.best_step == 6 and result.best_value == 3.0
    assert load_file(tmp_path / "best.safetensors").keys()

    task2, cfg2 = _toy(total_steps=2, val_every=2, best_metric="mse", best_mode="min", val_at_start=True,
                       best_guard="excess")
    task2.validate = lambda model, step: {"mse": 5.0 - step, "excess": 1.0}  # every step breaks it, the start too
    assert fit(task2, cfg2, save_dir=tmp_path / "b", progress=False).best_step == 0


def test_best_guard_must_be_returned_and_needs_best_metric(tmp_path):
    task, cfg = _toy(total_steps=2, val_every=2, best_metric="mse", best_mode="min", best_guard="excess")
    with pytest.raises(ConfigError, match=r"train.best_guard: validate\(\) returned no 'excess'"):
        fit(task, cfg, save_dir=tmp_path, progress=False)
    with pytest.raises((ConfigError, ValueError), match="best_guard needs best_metric"):
        _toy(total_steps=2, best_guard="excess")


def test_stop_after_guarded_ends_the_run_and_its_streak_survives_resume(tmp_path, capsys):
    """``stop_after_guarded``: N validations in a row that break the guard end training (states and
    ``last`` written at that step); a guard-passing validation resets the count; resume keeps it."""
    guard = {2: 1.0, 4: -1.0, 6: 1.0, 8: 1.0, 10: 1.0, 12: 1.0}
    task, cfg = _toy(total_steps=12, val_every=2, best_metric="mse", best_mode="min", best_guard="excess",
                     stop_after_guarded=3)
    task.validate = lambda model, step: {"mse": 1.0 / step, "excess": guard[step]}
    result = fit(task, cfg, save_dir=tmp_path / "a", progress=False)
    assert result.step == 10 and result.best_step == 4  # 6, 8, 10 broke it in a row (2 did, then 4 reset)
    assert "stopping at step 10: 3 validations in a row broke train.best_guard" in capsys.readouterr().out
    assert (tmp_path / "a" / "state_00000010.pt").is_file() and (tmp_path / "a" / "last.safetensors").is_file()
    from safetensors import safe_open

    with safe_open(str(tmp_path / "a" / "last.safetensors"), "pt") as f:
        assert f.metadata()["step"] == "10"

    first, cfg8 = _toy(total_steps=8, val_every=2, best_metric="mse", best_mode="min", best_guard="excess",
                       stop_after_guarded=3)
    first.validate = task.validate
    assert fit(first, cfg8, save_dir=tmp_path / "b", progress=False).step == 8  # streak 2 at the end (6, 8)
    cfg12 = _toy(total_steps=12, val_every=2, best_metric="mse", best_mode="min", best_guard="excess",
                 stop_after_guarded=3)[1]
    resumed = fit(first, cfg12, save_dir=tmp_path / "b", resume=True, progress=False)
    assert resumed.start_step == 8 and resumed.step == 10  # the streak of 2 went on: 10 is the third


def test_stop_after_guarded_needs_a_guard():
    with pytest.raises((ConfigError, ValueError), match="stop_after_guarded needs best_guard"):
        _toy(total_steps=2, best_metric="mse", stop_after_guarded=2)
    with pytest.raises((ConfigError, ValueError), match="stop_after_guarded must be >= 0"):
        _toy(total_steps=2, best_metric="mse", best_guard="excess", stop_after_guarded=-1)


def test_best_metric_must_be_returned(tmp_path):
    task, cfg = _toy(total_steps=2, val_every=2, best_metric="psnr")
    with pytest.raises(ConfigError, match=r"train.best_metric: validate\(\) returned no 'psnr' \(it returned mse, step_seen\)"):
        fit(task, cfg, save_dir=tmp_path, progress=False)


def test_no_validation_still_releases_last(tmp_path):
    task, cfg = _toy(total_steps=3, val_every=0, save_every=0, log_every=0)
    fit(task, cfg, save_dir=tmp_path, progress=False)
    assert (tmp_path / "last.safetensors").is_file() and not (tmp_path / "best.safetensors").exists()
    assert [p.name for p in tmp_path.glob("state_*.pt")] == ["state_00000003.pt"]


def _lrs(sched_cfg, total=10, lr=1.0):
    opt = build_optimizer([nn.Parameter(torch.zeros(1))], OptimConfig(lr=lr))
    sch = build_scheduler(opt, sched_cfg, total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    return out


def test_schedules():
    assert _lrs(SchedulerConfig(type="constant", warmup_steps=4))[:5] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert _lrs(SchedulerConfig(type="multistep", milestones=[3, 6], gamma=0.1)) == pytest.approx(
        [1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01]
    )
    cos = _lrs(SchedulerConfig(type="cosine", min_lr=0.1), total=10)
    assert cos[0] == 1.0 and cos[5] == pytest.approx(0.55) and all(a > b for a, b in zip(cos, cos[1:]))
    assert _lrs(SchedulerConfig(type="cosine", min_lr=0.1), total=10, lr=2.0)[5] == pytest.approx(2 * (0.05 + 0.95 * 0.5))


class GanTask:
    """Two networks, custom optimizers and a hand-written G-then-D step."""

    def build_model(self):
        return {"net_g": nn.Linear(2, 2), "net_d": nn.Linear(2, 1)}

    def build_optimizers(self, models, cfg):
        return {
            "net_g": build_optimizer(models["net_g"].parameters(), cfg.optim),
            "net_d": torch.optim.SGD(models["net_d"].parameters(), lr=0.1),
        }

    def batch(self, step, rank):
        return torch.randn(4, 2)  # global RNG is re-seeded per step by fit

    def train_step(self, models, optimizers, x, step):
        g, d = models["net_g"], models["net_d"]
        optimizers["net_g"].zero_grad()
        loss_g = -d(g(x)).mean()
        loss_g.backward()
        optimizers["net_g"].step()
        optimizers["net_d"].zero_grad()
        loss_d = d(g(x).detach()).mean() - d(x).mean()
        loss_d.backward()
        optimizers["net_d"].step()
        return {"loss_g": loss_g.item(), "loss_d": loss_d.item()}

    def validate(self, model, step):
        return {"n": float(model.weight.numel())}

    def save_release(self, model, path, metrics):
        torch.save(model.state_dict(), path.with_suffix(".pt"))


def test_gan_style_train_step(tmp_path):
    task = GanTask()
    cfg = TrainConfig(total_steps=6, val_every=3, save_every=3, ema_decay=0.9, log_every=2,
                      scheduler=SchedulerConfig(type="multistep", milestones=[2]))
    result = fit(task, cfg, save_dir=tmp_path, progress=False)
    assert list(result.models) == ["net_g", "net_d"] and result.ema.module.weight.shape == (2, 2)
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "best.pt").exists() is False
    state = torch.load(tmp_path / "state_00000006.pt", weights_only=True)
    assert set(state["model"]) == {"net_g", "net_d"} and set(state["scheduler"]) == {"net_g", "net_d"}
    assert state["optimizer"]["net_g"]["param_groups"][0]["lr"] == pytest.approx(cfg.optim.lr * 0.5)
    resumed = fit(task, TrainConfig(**{**cfg.__dict__, "total_steps": 8}), save_dir=tmp_path, resume=True, progress=False)
    assert resumed.start_step == 6 and (tmp_path / "state_00000008.pt").is_file()


def test_all_reduce_mean_single_process():
    info = DistInfo()
    assert all_reduce_mean({"b": 2, "a": torch.tensor(1.5)}, info) == {"a": 1.5, "b": 2.0}
    t = torch.ones(2)
    assert all_reduce_mean(t, info) is t


def test_cli_dispatch(tmp_path, monkeypatch, capsys):
    from optisr.cli import main as cli_main
    from optisr.cli import train as cli_train

    assert cli_main.main(["train", "guided", "--config", "x.yml"]) in (0, 1, 2)  # real engine or "not available"
    monkeypatch.setitem(cli_train.ENGINES, "guided", cli_train.Engine("optisr.guided.no_such_trainer", "x"))
    capsys.readouterr()
    assert cli_main.main(["train", "guided", "--config", "x.yml"]) == 1
    assert "engine guided not available in this version" in capsys.readouterr().err
    monkeypatch.setitem(cli_train.ENGINES, "toy", cli_train.Engine("train_toy", "toy engine"))
    rc = cli_main.main(["train", "toy", "--save-dir", str(tmp_path), "--no-progress", "--device", "cpu",
                        "--opt", "train.total_steps=3",
                        "train.val_every=0"])
    assert rc == 0 and (tmp_path / "state_00000003.pt").is_file() and (tmp_path / "final_rank0.pt").is_file()
    assert cli_main.main(["train", "toy", "--save-dir", str(tmp_path), "train.total_stepz=3"]) == 1
    assert "train.total_stepz: unknown key; did you mean 'total_steps'" in capsys.readouterr().err


def test_time_limit_ends_early_with_final_release_and_resumable_state(tmp_path, monkeypatch):
    import optisr.train.loop as loop

    clock = iter(range(1000))  # every perf_counter() call advances one "second"
    monkeypatch.setattr(loop.time, "perf_counter", lambda: float(next(clock)))
    closed = []
    task, cfg = _toy(time_limit_s=3.5, val_every=100, save_every=100)
    task.close = lambda: closed.append(True)
    result = fit(task, cfg, save_dir=tmp_path, progress=False)
    assert 1 <= result.step < 12
    assert (tmp_path / f"state_{result.step:08d}.pt").is_file() and (tmp_path / "last.safetensors").is_file()
    assert closed == [True]  # the task's close hook runs
    monkeypatch.undo()
    task2, cfg2 = _toy(val_every=100, save_every=100)
    assert fit(task2, cfg2, save_dir=tmp_path, resume=True, progress=False).step == 12
    with pytest.raises(ValueError, match="time_limit_s"):
        _toy(time_limit_s=0)


def test_progress_bar_shows_the_time_left_under_a_time_limit(tmp_path, monkeypatch, capsys):
    import optisr.train.loop as loop

    clock = iter(range(1000))
    monkeypatch.setattr(loop.time, "perf_counter", lambda: float(next(clock)))
    task, cfg = _toy(time_limit_s=125.0, total_steps=3, val_every=100, save_every=100)
    fit(task, cfg, save_dir=tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "left]" in err and "2:0" in err  # 125 s budget, a few "seconds" used: 2:0x left
    task2, cfg2 = _toy(total_steps=3, val_every=100, save_every=100)
    fit(task2, cfg2, save_dir=tmp_path / "b", progress=True)
    assert "left]" not in capsys.readouterr().err  # no budget, no countdown


def test_truncated_latest_state_falls_back_to_the_previous_one(tmp_path, capsys):
    task, cfg = _toy(save_every=4, val_every=0, keep_states=0)
    fit(task, cfg, save_dir=tmp_path, progress=False)
    latest, previous = tmp_path / "state_00000012.pt", tmp_path / "state_00000008.pt"
    data = latest.read_bytes()
    latest.write_bytes(data[: len(data) // 2])  # e.g. a full disk
    capsys.readouterr()
    task2, cfg2 = _toy(total_steps=16, save_every=4, val_every=0, keep_states=0)
    result = fit(task2, cfg2, save_dir=tmp_path, resume=True, progress=False)
    assert result.start_step == 8 and result.step == 16
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warning) == 1 and str(latest) in warning[0] and f"resuming from {previous}" in warning[0]
    assert "truncated" in warning[0]

    for p in tmp_path.glob("state_*.pt"):  # nothing readable left: one line naming the newest file
        p.write_bytes(b"")
    with pytest.raises(InputFileError) as info:
        fit(task2, cfg2, save_dir=tmp_path, resume=True, progress=False)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{tmp_path / 'state_00000016.pt'}: cannot read training state")
    assert "earlier state(s) are unreadable too" in msg


def test_run_training_undoes_a_failed_start(tmp_path):
    from optisr.train import run_training

    task, cfg = _toy(save_every=4, val_every=0)
    run = tmp_path / "a" / "b"
    with pytest.raises(InputFileError, match="missing.pt"):
        run_training(task, cfg, save_dir=run, resume=tmp_path / "missing.pt", progress=False, device="cpu",
                     config={"train": {"total_steps": 12}})
    assert list(tmp_path.iterdir()) == []
    result = run_training(task, cfg, save_dir=run, progress=False, device="cpu", config={"x": 1})
    assert result.save_dir == run and (run / "config.yaml").read_text() == "x: 1\n"
    task.loss = lambda model, batch: (_ for _ in ()).throw(RuntimeError("boom"))  # fails in the first step
    with pytest.raises(RuntimeError, match="boom"):
        run_training(task, cfg, save_dir=tmp_path / "c", progress=False, device="cpu", config={"x": 2})
    assert not (tmp_path / "c").exists()
    with pytest.raises(RuntimeError, match="boom"):  # an existing run: config.yaml restored, states kept
        run_training(task, cfg, save_dir=run, resume=False, progress=False, device="cpu", config={"x": 3})
    assert (run / "config.yaml").read_text() == "x: 1\n" and (run / "state_00000012.pt").is_file()


def test_device_rule_is_the_shared_one(monkeypatch, capsys):
    from optisr.cli import main as cli_main
    from optisr.cli import train as cli_train
    from optisr.train import init_distributed

    with pytest.raises(ConfigError, match="not a device name"):
        init_distributed(device="bogus")  # before: torch's RuntimeError
    auto = init_distributed(device="auto").device
    assert auto == (torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu"))
    monkeypatch.setitem(cli_train.ENGINES, "toy", cli_train.Engine("train_toy", "toy engine"))
    capsys.readouterr()
    assert cli_main.main(["train", "toy", "--device", "bogus"]) == 1
    assert "--device 'bogus': not a device name" in capsys.readouterr().err
    args = cli_main.build_parser().parse_args(["train", "toy"])
    assert args.device == "auto" and args.gpu_id is None  # default: CUDA when available
