"""Direct edge supervision (issue 10): the targets, the loss, the edge network, the training regimes."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from optisr.cli.main import main
from optisr.guided.graph_weights import color_weights, depth_affinity, depth_jump_affinity
from optisr.guided.model import GraphSRConfig, GraphSRModel, load_guided_model, save_guided_model
from optisr.train.guided import edge_bce_loss

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "guided" / "tiny.yaml"
EDGE = ["model.arch=edge", "model.widths=[4,8]", "model.feature_stride=2"]


def _col(values):
    """(1, 1, N, 1) column: its vertical edges are the 1-D differences."""
    return torch.tensor(values, dtype=torch.float64).view(1, 1, -1, 1)


def test_jump_affinity_hand_checked_step_ramp_and_step_on_a_ramp():
    # range 0..255 so the 0–255 mapping is the identity
    step = _col([0, 0, 0, 0, 255, 255, 255, 255])
    a, valid = depth_jump_affinity(step, mu=10.0, window=2)
    v = a[0, 0, :-1, 0]
    # only the edge 3→4 carries the jump: J = 255 − median(0, 0, 0, 0) = 255
    assert v[3] == pytest.approx(math.exp(-(255 / 10) ** 2))
    assert torch.all(torch.cat([v[:3], v[4:]]) == 1.0)
    assert valid[0, 0, :-1, 0].all() and not valid[0, 0, -1, 0] and not valid[0, 1].any()  # W = 1: no horizontal edges

    ramp = _col(np.linspace(0, 255, 8))
    assert torch.allclose(depth_jump_affinity(ramp)[0][0, 0, :-1, 0], torch.ones(7, dtype=torch.float64))
    # the oracle's plain affinity cuts every edge of this steep ramp (ΔD = 36.4 in 0–255 units)
    assert depth_affinity(ramp)[0][0, 0, :-1, 0].max() < 1e-6

    # a step of 100 on a ramp of slope 10: J = 100 exactly, neighbours J = 0
    d = _col([0, 10, 20, 30, 140, 150, 160, 170])
    d255 = d * 255 / 170
    a = depth_jump_affinity(d)[0][0, 0, :-1, 0]
    jump = (d255[0, 0, 4, 0] - d255[0, 0, 3, 0]) - (d255[0, 0, 1, 0] - d255[0, 0, 0, 0])
    assert a[3] == pytest.approx(math.exp(-(float(jump) / 10) ** 2))
    assert torch.allclose(a[[0, 1, 5, 6]], torch.ones(4, dtype=torch.float64))


def test_affinities_respect_invalid_pixels_and_units():
    torch.manual_seed(0)
    d = torch.rand(2, 1, 9, 7, dtype=torch.float64)
    valid = torch.ones_like(d, dtype=torch.bool)
    valid[0, 0, 4, 3] = False
    for fn in (depth_affinity, depth_jump_affinity):
        a, ev = fn(d, valid)
        assert not ev[0, 0, 3, 3] and not ev[0, 0, 4, 3] and not ev[0, 1, 4, 2] and not ev[0, 1, 4, 3]
        assert ev[1].sum() == 8 * 7 + 9 * 6 and torch.all(a[~ev] == 0)
        # scale-free: mm vs metres give the same affinities (each sample's range maps onto 0–255)
        assert torch.allclose(fn(d * 1000.0, valid)[0], a)


def test_depth_affinity_is_the_oracle_weight_before_its_floor():
    from optisr.bench.guided_protocols import ORACLE_FLOOR, oracle_weights

    rng = np.random.default_rng(1)
    d = np.cumsum(rng.normal(size=(12, 10)), axis=1)
    valid = np.ones_like(d, dtype=bool)
    w = oracle_weights(d, valid)
    a, ev = depth_affinity(torch.from_numpy(d)[None, None])
    expect = ORACLE_FLOOR + (1 - ORACLE_FLOOR) * a[0].numpy()
    assert np.allclose(w[ev[0].numpy()], expect[ev[0].numpy()])


def test_edge_bce_against_the_formula_and_its_gradient_sign():
    e = torch.tensor([0.5, 3.0], dtype=torch.float64).view(1, 2, 1, 1).requires_grad_()
    a = torch.tensor([1.0, 0.0], dtype=torch.float64).view(1, 2, 1, 1)
    ok = torch.ones_like(a, dtype=torch.bool)
    loss = edge_bce_loss(e, a, ok, pos_weight=4.0)
    # smooth edge (a* = 1): cost E = 0.5; cut edge (a* = 0): 4·(−log(1 − e^−3))
    assert float(loss.detach()) == pytest.approx((0.5 + 4 * -math.log(1 - math.exp(-3.0))) / 2)
    loss.backward()
    assert e.grad[0, 0] > 0 and e.grad[0, 1] < 0  # lower the smooth edge's energy, raise the cut's
    # masked edges do not count
    ok[0, 1] = False
    assert float(edge_bce_loss(e, a, ok, 4.0)) == pytest.approx(0.5)


def test_untrained_edge_network_is_nearly_the_colour_graph_and_any_size_works():
    torch.manual_seed(0)
    model = GraphSRModel(GraphSRConfig(arch="edge", widths=(8, 16), feature_stride=4, connect=0.0)).eval()
    guide = torch.rand(1, 3, 37, 29)
    source = torch.rand(1, 1, 10, 8)  # ceil(37/4) × ceil(29/4)
    with torch.no_grad():
        w = model.weights(guide, source, 4)
    ref = color_weights(guide, mu=0.02, floor=1e-3, connect=0.0)
    assert w.shape == (1, 2, 37, 29)
    # gate ≈ e^0 = 1 and extra energy softplus(−5) ≈ 0.0067: weights within ~2 % of the colour graph
    assert torch.allclose(w, ref, rtol=0.03, atol=1e-6)
    assert torch.all(w[:, 0, -1] == 0) and torch.all(w[:, 1, :, -1] == 0)  # unused slots stay empty


def test_edge_model_round_trips_through_safetensors(tmp_path):
    torch.manual_seed(0)
    model = GraphSRModel(GraphSRConfig(arch="edge", widths=(8, 16), feature_stride=2)).eval()
    path = save_guided_model(model, tmp_path / "m.safetensors", scales=[4], operator="area", training_data="t")
    loaded, meta = load_guided_model(path)
    assert json.loads(meta["config"])["arch"] == "edge"
    g, s = torch.rand(1, 3, 16, 16), torch.rand(1, 1, 4, 4)
    with torch.no_grad():
        assert torch.equal(model.weights(g, s, 4), loaded.weights(g, s, 4))


def test_bad_arch_and_stride_are_config_errors():
    from optisr.errors import ConfigError

    with pytest.raises(ConfigError, match="arch"):
        GraphSRConfig(arch="transformer")
    with pytest.raises(ConfigError, match="feature_stride"):
        GraphSRConfig(arch="edge", feature_stride=1)


def _train(save_dir, *extra):
    return main(["train", "guided", "-c", str(TINY), "--save-dir", str(save_dir), "--no-progress", "--device", "cpu",
                 *EDGE, *extra])


def _losses(run: Path, key: str) -> list[float]:
    rows = [json.loads(line) for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()]
    return [r[key] for r in rows if key in r]


def test_direct_regime_learns_and_resumes_bit_identically(tmp_path):
    common = ["loss.kind=edge_bce", "train.log_every=1", "train.val_every=0", "train.optim.lr=3e-3"]
    assert _train(tmp_path / "full", *common, "train.total_steps=30", "train.save_every=10") == 0
    loss = _losses(tmp_path / "full", "train/edge_bce")
    assert len(loss) == 30 and np.mean(loss[-5:]) < 0.8 * np.mean(loss[:5])  # no solver, and it learns
    assert _train(tmp_path / "part", *common, "train.total_steps=20", "train.save_every=10") == 0
    assert _train(tmp_path / "part", *common, "train.total_steps=30", "train.save_every=10", "--resume") == 0
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "full" / "last.safetensors"))
    b = load_file(str(tmp_path / "part" / "last.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_direct_then_end_to_end_regime(tmp_path):
    """(c) direct → end-to-end: the end-to-end run starts from the direct release and trains through the solver."""
    assert _train(tmp_path / "direct", "loss.kind=edge_bce", "train.total_steps=4") == 0
    release = tmp_path / "direct" / "last.safetensors"
    assert _train(tmp_path / "e2e", "loss.kind=rmse", f"init_weights={release}", "train.total_steps=3",
                  "train.log_every=1") == 0
    assert _losses(tmp_path / "e2e", "train/rmse_norm")  # the end-to-end loss, through the solve
    _, meta = load_guided_model(tmp_path / "e2e" / "last.safetensors")
    assert json.loads(meta["config"])["arch"] == "edge"


def test_kkt_loss_is_zero_when_the_ground_truth_is_the_layers_solution_and_scale_free():
    from optisr.ops.lattice import weights_from_edges
    from optisr.ops.operators import make_operator
    from optisr.train.guided import kkt_loss

    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    x[..., 3:] = 5.0  # a vertical step between columns 2 and 3
    vertical = torch.ones(1, 1, 7, 8, dtype=torch.float64)
    horizontal = torch.ones(1, 1, 8, 7, dtype=torch.float64)
    op = make_operator("area", (8, 8), 4)
    uniform = weights_from_edges(vertical, horizontal)
    horizontal[..., 2] = 0.0  # cut exactly the edges across the step
    cut = weights_from_edges(vertical, horizontal)
    assert float(kkt_loss(cut, x, op)) < 1e-9  # piecewise constant on the cut graph: L x = 0
    bad = float(kkt_loss(uniform, x, op))
    assert bad > 0.05
    assert float(kkt_loss(3.0 * uniform, x, op)) == pytest.approx(bad)  # a common weight scale does not matter
    # the solver agrees: exact with the cut graph reproduces the step, the uniform graph does not
    from optisr.guided.layer import graph_solve

    s = op.apply(x)
    err_cut = (graph_solve(s, cut, 4, operator=op, tol=1e-12, max_iter=500) - x).abs().max()
    err_uniform = (graph_solve(s, uniform, 4, operator=op, tol=1e-12, max_iter=500) - x).abs().max()
    assert err_cut < 0.01 < 0.5 < err_uniform  # (the solver floors the cut edges at 1e-4)


def test_kkt_regime_trains_without_a_solver(tmp_path, monkeypatch):
    import optisr.guided.layer as layer

    def no_solve(*a, **k):
        raise AssertionError("the direct regime must not solve in the training step")

    assert _train(tmp_path / "warm", "loss.kind=kkt", "train.total_steps=1", "train.val_every=0") == 0
    monkeypatch.setattr(layer, "graph_solve", no_solve)
    import optisr.guided.model as model_mod

    monkeypatch.setattr(model_mod, "graph_solve", no_solve)
    assert _train(tmp_path / "run", "loss.kind=kkt", "train.total_steps=3", "train.val_every=0",
                  "train.log_every=1") == 0
    assert len(_losses(tmp_path / "run", "train/kkt")) == 3


def test_distill_loss_is_minimal_at_the_teachers_energies():
    """With pos_weight 1 the cross-entropy against soft targets exp(−E_t) is stationary exactly at E = E_t."""
    e_t = torch.tensor([0.05, 0.7, 3.0, 9.0], dtype=torch.float64).view(1, 1, 2, 2).expand(1, 2, 2, 2).contiguous()
    valid = torch.ones_like(e_t, dtype=torch.bool)
    e = e_t.clone().requires_grad_(True)
    edge_bce_loss(e, torch.exp(-e_t), valid, 1.0).backward()
    assert e.grad is not None and float(e.grad.abs().max()) < 1e-12
    for shift in (-0.3, 0.3):  # moving every energy either way costs more
        moved = float(edge_bce_loss((e_t + shift).clamp_min(1e-3), torch.exp(-e_t), valid, 1.0))
        assert moved > float(edge_bce_loss(e_t, torch.exp(-e_t), valid, 1.0))


def test_distill_regime_learns_the_teachers_energies_without_a_solver(tmp_path, monkeypatch):
    # the teacher: a small unet release with a trained-looking (non-trivial) output layer
    torch.manual_seed(1)
    teacher = GraphSRModel(GraphSRConfig(widths=(4, 8), features=4))
    with torch.no_grad():
        teacher.net.head.weight.normal_(std=0.5)
    path = save_guided_model(teacher, tmp_path / "teacher.safetensors", scales=[4], operator="area", training_data="t")
    import optisr.guided.layer as layer
    import optisr.guided.model as model_mod

    def no_solve(*a, **k):
        raise AssertionError("distillation must not solve in the training step")

    monkeypatch.setattr(layer, "graph_solve", no_solve)
    monkeypatch.setattr(model_mod, "graph_solve", no_solve)
    common = ["loss.kind=distill", f"loss.teacher={path}", "loss.pos_weight=1", "train.log_every=1",
              "train.val_every=0", "train.optim.lr=3e-3"]
    assert _train(tmp_path / "run", *common, "train.total_steps=40") == 0
    loss = _losses(tmp_path / "run", "train/distill_bce")
    assert len(loss) == 40 and np.mean(loss[-5:]) < 0.9 * np.mean(loss[:5])
    _, meta = load_guided_model(tmp_path / "run" / "last.safetensors")
    assert "distilled from the guided model" in meta["training_data"] and "teacher.safetensors" in meta["training_data"]
    # tools/ship_guided_release.py: the release with its training cost and its teacher's provenance
    import importlib.util

    spec = importlib.util.spec_from_file_location("ship_guided_release", REPO / "tools" / "ship_guided_release.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "shipped.safetensors"
    assert tool.main([str(tmp_path / "run"), "--release", "last", "-o", str(out)]) == 0
    shipped, meta = load_guided_model(out)
    assert meta["train_steps"] == "40" and meta["teacher"] == str(path)
    assert json.loads(meta["teacher_config"])["arch"] == "unet" and json.loads(meta["config"])["arch"] == "edge"
    student, _ = load_guided_model(tmp_path / "run" / "last.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), shipped.state_dict().values()))


def test_distill_with_a_missing_teacher_is_a_one_line_error(tmp_path, capsys):
    code = _train(tmp_path / "run", "loss.kind=distill", f"loss.teacher={tmp_path / 'nope.safetensors'}",
                  "train.total_steps=2", "train.val_every=0")
    assert code != 0
    err = capsys.readouterr().err
    assert "nope.safetensors" in err and "Traceback" not in err


def test_end_to_end_with_a_distillation_anchor(tmp_path):
    """loss.distill_weight adds the teacher cross-entropy to the end-to-end loss (and only to it)."""
    from optisr.errors import ConfigError
    from optisr.train.guided import LossConfig

    torch.manual_seed(2)
    teacher = GraphSRModel(GraphSRConfig(widths=(4, 8), features=4))
    path = save_guided_model(teacher, tmp_path / "t.safetensors", scales=[4], operator="area", training_data="t")
    common = ["loss.kind=rmse", f"loss.teacher={path}", "loss.pos_weight=1", "train.log_every=1", "train.val_every=0"]
    assert _train(tmp_path / "plain", *common, "train.total_steps=2") == 0
    assert _train(tmp_path / "anchored", *common, "loss.distill_weight=2", "train.total_steps=2") == 0
    plain, anchored = _losses(tmp_path / "plain", "train/loss"), _losses(tmp_path / "anchored", "train/loss")
    anchor = _losses(tmp_path / "anchored", "train/distill_bce")
    rmse = _losses(tmp_path / "anchored", "train/rmse_norm")
    assert not _losses(tmp_path / "plain", "train/distill_bce") and len(anchor) == 2
    # the first step (same weights, same batch) decomposes exactly: loss = rmse + 2·anchor
    assert anchored[0] == pytest.approx(rmse[0] + 2 * anchor[0], rel=1e-5) and plain[0] == pytest.approx(rmse[0], rel=1e-5)
    with pytest.raises(ConfigError, match="distill_weight"):
        LossConfig(kind="edge_bce", distill_weight=1.0)
    with pytest.raises(ConfigError, match="distill_weight"):
        LossConfig(kind="rmse", distill_weight=-1.0)


def test_distill_teacher_by_shipped_name():
    """``loss.teacher`` takes the shipped names (the configs name ``unet-v1``, the default's teacher)."""
    from optisr.config import build_config
    from optisr.train.guided import GuidedTask, GuidedTrainConfig

    cfg = build_config(GuidedTrainConfig, REPO / "configs" / "guided" / "distill_edge.yaml")
    assert cfg.loss.kind == "distill" and cfg.loss.teacher == "unet-v1"
    teacher = GuidedTask(cfg).teacher()
    assert teacher.config.arch == "unet" and not any(p.requires_grad for p in teacher.parameters())


def test_validation_reports_the_aligned_step_diagnostic():
    """``val/step_mae``: a clean step marked by its colour edge comes back sharp through a graph that
    cuts it (the untrained model is the colour graph) and blurred through one that does not."""
    from optisr.config import build_config
    from optisr.ops.operators import make_operator
    from optisr.train.guided import GuidedTask, GuidedTrainConfig, aligned_step_scene

    guide, depth = aligned_step_scene(16)
    assert guide.shape == (1, 3, 16, 16) and depth.shape == (1, 1, 16, 16)
    assert torch.all(depth[..., :8] == 0) and torch.all(depth[..., 8:] == 1)
    assert float((guide[:, :, :, 8:].mean() - guide[:, :, :, :8].mean())) > 0.98
    cfg = build_config(GuidedTrainConfig, TINY, ["datasets.val.size=48", "datasets.val.scenes=1"])
    task = GuidedTask(cfg)
    torch.manual_seed(0)
    model = GraphSRModel(cfg.model).eval()
    with torch.no_grad():
        out = task.validate(model, 0)
    assert out["step_mae"] < 0.02
    # the same solve with uniform weights (no cut at the step) is far worse
    f = cfg.datasets.val.scales[len(cfg.datasets.val.scales) // 2]
    g, d = aligned_step_scene(48)
    op = make_operator(cfg.datasets.val.operator, (48, 48), f)
    src = op.apply(d)
    uniform = torch.ones(1, 2, 48, 48)
    uniform[:, 0, -1, :] = 0
    uniform[:, 1, :, -1] = 0
    blurred = float((task._val_solve(src, uniform, f, op) - d).abs().mean())
    assert blurred > 5 * out["step_mae"] and blurred > 0.02
