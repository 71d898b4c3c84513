"""Soft-mode training of the guided model on noisy sources (issue 11 item 3): per-sample λ, noisy validation."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from optisr.cli.main import main
from optisr.errors import ConfigError
from optisr.guided.fidelity import rule_lambda, source_spread
from optisr.guided.layer import graph_solve
from optisr.guided.model import GraphSRConfig, GraphSRModel, load_guided_model, save_guided_model
from optisr.ops.operators import make_operator
from optisr.train.guided import GuidedTask, GuidedTrainConfig, GuidedValConfig, LossConfig, rule_lams

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "guided" / "tiny.yaml"


def test_rule_lams_is_the_rule_of_each_samples_true_noise():
    torch.manual_seed(0)
    target = torch.rand(3, 1, 32, 32, dtype=torch.float64) * 100.0
    op = make_operator("area", (32, 32), 4)
    clean = op.apply(target)
    sigmas = [2.0, 0.0, 5.0]
    source = clean + torch.stack([s * torch.randn(1, 8, 8, dtype=torch.float64) for s in sigmas])
    source[2, 0, 3, 3] = float("nan")  # a hole: left out of σ
    lams = rule_lams(source, target, 4, "area")
    assert lams.shape == (3,) and lams.dtype == torch.float64
    for i in (0, 2):
        ok = torch.isfinite(source[i])
        sigma = float((source[i][ok] - clean[i][ok]).pow(2).mean().sqrt())
        assert float(lams[i]) == pytest.approx(rule_lambda(sigma, source_spread(source[i, 0]), 4), rel=1e-9)
    # the noise-free sample takes the smallest λ of the noisy ones (not 0, which would leave L's null space free)
    assert float(lams[1]) == float(lams.min()) == pytest.approx(float(lams[0]))
    assert float(rule_lams(clean, target, 4, "area")[0]) == 1e-6


def test_forward_takes_a_per_sample_lambda():
    torch.manual_seed(1)
    model = GraphSRModel(GraphSRConfig(widths=(4, 8), features=4, mode="soft")).double().eval()
    guide = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    source = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    lam = torch.tensor([0.01, 3.0], dtype=torch.float64)
    with torch.no_grad():
        x = model(guide, source, 4, lam=lam, tol=1e-10)
        w = model.weights(guide, source, 4)
        for i in range(2):
            ref = graph_solve(source[i : i + 1], w[i : i + 1], 4, mode="soft", lam=float(lam[i]), tol=1e-10,
                              floor=model.config.floor)  # fmt: skip
            assert torch.allclose(x[i : i + 1], ref, atol=1e-7)
        assert not torch.allclose(x, model(guide, source, 4, tol=1e-10))  # the learned λ (1.0) differs


def test_noisy_validation_is_seeded_and_solved_at_the_rule_lambda():
    with pytest.raises(ConfigError, match="noise"):
        GuidedValConfig(noise=-0.1)
    with pytest.raises(ConfigError, match="soft_lam"):
        LossConfig(soft_lam="gcv")
    from optisr.config import build_config

    over = ["datasets.val.size=48", "datasets.val.scenes=1", "model.mode=soft", "loss.soft_lam=rule"]
    clean = GuidedTask(build_config(GuidedTrainConfig, TINY, over))
    noisy = GuidedTask(build_config(GuidedTrainConfig, TINY, [*over, "datasets.val.noise=0.05"]))
    torch.manual_seed(0)
    model = GraphSRModel(noisy.cfg.model).eval()
    depth = noisy._val_scenes()[0][1]
    op = make_operator("area", depth.shape[-2:], 4)
    src, lam = noisy._val_source(op.apply(depth), 0, 4)
    again, _ = noisy._val_source(op.apply(depth), 0, 4)
    assert torch.equal(src, again)  # seeded by (seed + scene, scale)
    resid = (src - op.apply(depth)).std().item()
    assert resid == pytest.approx(0.05 * source_spread(op.apply(depth)), rel=0.3)
    assert lam == pytest.approx(rule_lambda(0.05 * source_spread(op.apply(depth)), source_spread(src), 4))
    assert clean._val_source(op.apply(depth), 0, 4)[1] is None  # clean: the model's own λ
    with torch.no_grad():
        a, b = clean.validate(model, 0), noisy.validate(model, 0)
    assert b["nrmse_x4"] > a["nrmse_x4"] and np.isfinite(b["color_nrmse_x4"]) and "step_mae" in b


def test_soft_fine_tune_starts_from_an_exact_release(tmp_path):
    """An exact model starts a soft run (mode and λ are not architecture); λ per sample by the rule."""
    torch.manual_seed(3)
    start = GraphSRModel(GraphSRConfig(widths=(4, 8), features=4))
    path = save_guided_model(start, tmp_path / "exact.safetensors", scales=[4], operator="area", training_data="t")
    run = tmp_path / "soft"
    args = ["train", "guided", "-c", str(TINY), "--save-dir", str(run), "--no-progress", "--device", "cpu",
            f"init_weights={path}", "model.mode=soft", "model.lam_init=0.5", "loss.soft_lam=rule",
            "datasets.train.lr_noise.prob=1", "datasets.train.lr_noise.kinds={gaussian: 1.0}",
            "datasets.val.noise=0.03", "train.total_steps=3", "train.log_every=1", "train.val_every=3"]  # fmt: skip
    assert main(args) == 0
    model, _ = load_guided_model(run / "last.safetensors")
    assert model.config.mode == "soft"
    assert float(model.log_lam.detach().exp()) == pytest.approx(0.5)  # the config's λ, untouched by the rule-λ steps
    rows = [json.loads(line) for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["train/rmse_norm"]) for r in rows if "train/rmse_norm" in r)
    assert any("val/nrmse_x4" in r for r in rows)
    cfg = GuidedTrainConfig()
    cfg.init_weights = str(path)
    cfg.model = GraphSRConfig(widths=(4, 16), features=4)
    with pytest.raises(ConfigError, match="another architecture"):
        GuidedTask(cfg).build_model()
