"""``optisr train guided`` on the tiny config: outputs, exact resume after SIGKILL, DDP, errors."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from optisr.cli.main import main
from optisr.config import build_config
from optisr.errors import ConfigError
from optisr.guided.model import GraphSRModel, load_guided_model
from optisr.train.guided import GuidedTrainConfig
from optisr.guided.training_data import make_training_batch

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "guided" / "tiny.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _train(save_dir, *extra):
    # CPU always: the resume tests demand bit-identical weights, which CUDA kernels need not give
    return main(["train", "guided", "-c", str(TINY), "--save-dir", str(save_dir), "--no-progress", "--device", "cpu", *extra])


def test_tiny_run_writes_release_state_and_logs(tmp_path):
    assert _train(tmp_path) == 0
    for name in ("best.safetensors", "last.safetensors", "config.yaml", "logs/metrics.jsonl"):
        assert (tmp_path / name).is_file(), name
    model, meta = load_guided_model(tmp_path / "last.safetensors")
    assert meta["operator"] == "area" and "procedural" in meta["training_data"]
    assert "nrmse" in meta["metrics"]
    torch.manual_seed(0)
    start = GraphSRModel(model.config)
    assert not torch.equal(model.net.head.weight, start.net.head.weight)  # the network learns
    log = (tmp_path / "logs" / "metrics.jsonl").read_text()
    assert "val/nrmse" in log and "val/color_nrmse" in log and "train/loss" in log
    events = list((tmp_path / "logs").glob("events.out.tfevents.*"))
    images = list((tmp_path / "logs").rglob("*.png"))
    assert events or images  # TensorBoard (scalars + the validation panel) or its PNG fallback
    if events:
        from tensorboard.backend.event_processing.event_accumulator import (
            EventAccumulator,
        )

        acc = EventAccumulator(str(events[0])).Reload()
        assert any(t.startswith("val/panel") for t in acc.Tags()["images"])


def test_batches_are_a_function_of_seed_and_step():
    cfg = build_config(GuidedTrainConfig, TINY)
    a = make_training_batch(cfg.datasets.train, 2, 0, 5)
    b = make_training_batch(cfg.datasets.train, 2, 0, 5)
    c = make_training_batch(cfg.datasets.train, 2, 0, 6)
    assert torch.equal(a.guide, b.guide) and torch.equal(a.source, b.source)
    assert not torch.equal(a.guide, c.guide)
    assert a.source.shape[-1] * a.scale == 32


def test_resume_in_process_equals_uninterrupted(tmp_path):
    assert _train(tmp_path / "full") == 0
    assert _train(tmp_path / "part", "train.total_steps=4") == 0
    assert _train(tmp_path / "part", "--resume") == 0  # continues from state_00000004 to 6
    full = load_file(str(tmp_path / "full" / "last.safetensors"))
    part = load_file(str(tmp_path / "part" / "last.safetensors"))
    assert full.keys() == part.keys()
    assert all(torch.equal(full[k], part[k]) for k in full)


@pytest.mark.slow
def test_sigkill_then_resume_gives_identical_weights(tmp_path):
    base = [sys.executable, "-m", "optisr.cli.main", "train", "guided", "-c", str(TINY), "--no-progress",
            "train.total_steps=12", "train.save_every=1", "train.keep_states=0", "train.val_every=0"]
    ref = tmp_path / "ref"
    subprocess.run(base + ["--save-dir", str(ref)], check=True, env=ENV, cwd=REPO, capture_output=True)
    run = tmp_path / "run"
    proc = subprocess.Popen(base + ["--save-dir", str(run)], env=ENV, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "state_00000004.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "state_00000012.pt").exists()
    subprocess.run(base + ["--save-dir", str(run), "--resume"], check=True, env=ENV, cwd=REPO, capture_output=True)
    a = load_file(str(ref / "last.safetensors"))
    b = load_file(str(run / "last.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_ddp_two_gloo_processes(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "optisr.cli.main", "train", "guided", "-c", str(TINY), "--no-progress", "--device", "cpu",
           "--save-dir", str(tmp_path), "train.total_steps=3", "train.val_every=0"]
    res = subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    model, _ = load_guided_model(tmp_path / "last.safetensors")
    torch.manual_seed(0)  # the trainer's seed: the same initial weights
    start = GraphSRModel(model.config)
    assert not torch.equal(model.net.head.weight, start.net.head.weight)  # it trained


def test_bad_config_and_missing_data_dir(tmp_path, capsys):
    with pytest.raises(ConfigError, match="crop"):
        build_config(GuidedTrainConfig, TINY, ["datasets.train.crop=30"])
    assert _train(tmp_path, "--dataset", "rgbdd", "--data-dir", str(tmp_path / "nope")) != 0
    assert "nope: training data folder of 'rgbdd' not found" in capsys.readouterr().err
    assert _train(tmp_path, "model.widthz=[2]") != 0
    assert "widthz" in capsys.readouterr().err
    assert not (tmp_path / "last.safetensors").exists()


def test_masked_losses_against_manual_formulas():
    from optisr.train.guided import masked_loss

    x = torch.tensor([[[[1.0, 2.0], [3.0, 10.0]]], [[[0.0, 0.0], [0.0, 4.0]]]])
    t = torch.zeros_like(x)
    valid = torch.tensor([[[[True, True], [True, False]]], [[[True, True], [True, True]]]])
    scale = torch.tensor([1.0, 2.0]).view(2, 1, 1, 1)
    l1 = (1 + 2 + 3 + 0 + 0 + 0 + 2) / 7
    assert masked_loss("l1", x, t, valid, scale).item() == pytest.approx(l1)
    mse0, mse1 = (1 + 4 + 9) / 3, 4 / 4
    assert masked_loss("mse", x, t, valid, scale).item() == pytest.approx((mse0 + mse1) / 2)
    assert masked_loss("rmse", x, t, valid, scale).item() == pytest.approx((mse0**0.5 + mse1**0.5) / 2)
    with pytest.raises(ConfigError, match="loss.kind"):
        build_config(GuidedTrainConfig, TINY, ["loss.kind=huber"])


def test_prefetch_workers_give_the_same_batches():
    from optisr.guided.training_data import BatchPrefetcher

    cfg = build_config(GuidedTrainConfig, TINY)
    with BatchPrefetcher(cfg.datasets.train, 2, 7, 0, workers=2) as pf:
        for step in (3, 4, 6):
            a, b = pf.get(step), make_training_batch(cfg.datasets.train, 2, 7, step)
            assert torch.equal(a.guide, b.guide) and torch.equal(a.target, b.target)
            assert torch.equal(a.valid, b.valid) and torch.equal(a.source, b.source)
            assert (a.scale, a.operator) == (b.scale, b.operator)


def test_num_workers_run_equals_in_process_run(tmp_path):
    assert _train(tmp_path / "a", "train.total_steps=3") == 0
    assert _train(tmp_path / "b", "train.total_steps=3", "datasets.train.num_workers=1") == 0
    a = load_file(str(tmp_path / "a" / "last.safetensors"))
    b = load_file(str(tmp_path / "b" / "last.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_init_weights_starts_from_a_release(tmp_path, capsys):
    assert _train(tmp_path / "a") == 0
    release = tmp_path / "a" / "last.safetensors"
    assert _train(tmp_path / "b", "train.total_steps=1", f"init_weights={release}", "train.optim.lr=1e-12") == 0
    a, b = load_file(str(release)), load_file(str(tmp_path / "b" / "last.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)  # lr ~ 0: still the release
    assert _train(tmp_path / "c", f"init_weights={release}", "model.features=3") != 0
    assert "another architecture (model.features=4 there, 3 here)" in capsys.readouterr().err
    # the network may run at another resolution: same parameters
    assert _train(tmp_path / "d", "train.total_steps=1", f"init_weights={release}", "model.feature_stride=2") == 0


def test_failed_resume_leaves_nothing_behind(tmp_path, capsys):
    """A start that fails (bad resume file) must not leave the config.yaml / folders it created."""
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    run = tmp_path / "new" / "run"
    assert _train(run, "--resume", str(bad)) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.pt: cannot read training state" in err
    assert not (tmp_path / "new").exists()

    old = tmp_path / "old"  # an existing run folder: its config.yaml is kept as it was
    old.mkdir()
    (old / "config.yaml").write_text("name: previous\n")
    (old / "notes.txt").write_text("mine")
    assert _train(old, "--resume", str(bad), "train.total_steps=5") == 1
    assert sorted(p.name for p in old.iterdir()) == ["config.yaml", "notes.txt"]
    assert (old / "config.yaml").read_text() == "name: previous\n"
