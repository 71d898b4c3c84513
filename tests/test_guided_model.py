"""The learned guided model: colour-graph initialisation, any size, consistency, IO, gradients."""

import json

import pytest
import torch

from optisr.errors import ConfigError, InputFileError
from optisr.guided.api import color_weights
from optisr.guided.model import (
    GraphSRConfig,
    GraphSRModel,
    load_guided_model,
    save_guided_model,
    upsample_source,
)
from optisr.ops.operators import make_operator


def _scene(h=37, w=45, f=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    guide = torch.rand(2, 3, h, w, generator=g)
    depth = torch.rand(2, 1, h, w, generator=g) * 100
    op = make_operator("area", (h, w), f)
    return guide, depth, op.apply(depth)


def test_untrained_model_is_the_colour_graph():
    guide, _, src = _scene()
    model = GraphSRModel(GraphSRConfig(widths=(4, 8, 8), features=6))
    with torch.no_grad():
        assert (model.weights(guide, src, 4) - color_weights(guide)).abs().max() < 0.1  # near it
        model.net.head.weight.zero_()
        w = model.weights(guide, src, 4)
    assert torch.allclose(w, color_weights(guide), atol=1e-5)  # exactly it with a zero head


@pytest.mark.parametrize("shape", [(37, 45), (16, 16), (50, 21)])
def test_any_size_and_exact_consistency(shape):
    h, w = shape
    guide, depth, src = _scene(h, w, f=4)
    model = GraphSRModel(GraphSRConfig(widths=(4, 8, 8, 8), features=3))
    with torch.no_grad():
        torch.nn.init.normal_(model.net.head.weight, std=0.5)  # a non-trivial network output
        x = model(guide, src, 4, tol=1e-6)
    assert x.shape == (2, 1, h, w)
    op = make_operator("area", (h, w), 4)
    assert (op.apply(x) - src).abs().max() <= 1e-3 * 100


def test_upsample_source_zscores_valid_pixels_and_ignores_nan():
    src = torch.tensor([[[[1.0, 3.0], [float("nan"), 5.0]]]])
    up = upsample_source(src, 2, (4, 3))
    assert up.shape == (1, 1, 4, 3) and torch.isfinite(up).all()
    z = upsample_source(src * 10 + 7, 2, (4, 3))  # affine changes of units do not change the input
    assert torch.allclose(up, z, atol=1e-5)


def test_gradients_reach_network_and_colour_mu_float64():
    torch.manual_seed(1)
    model = GraphSRModel(GraphSRConfig(widths=(3, 4), features=2)).double()
    with torch.no_grad():
        torch.nn.init.normal_(model.net.head.weight, std=0.3)
    guide, depth, src = _scene(12, 12, f=4)
    guide, depth, src = guide.double(), depth.double(), src.double()
    target = depth + 0.0

    def loss_at(log_a):
        with torch.no_grad():
            model.log_color_mu.fill_(log_a)
        return float((model(guide, src, 4, tol=1e-12, max_iter=5000) - target).pow(2).mean().detach())

    a0 = float(model.log_color_mu.detach())
    model.zero_grad()
    loss = (model(guide, src, 4, tol=1e-12, max_iter=5000) - target).pow(2).mean()
    loss.backward()
    assert model.net.head.weight.grad.abs().sum() > 0
    assert model.net.down[0][0].weight.grad.abs().sum() > 0
    eps = 1e-5
    fd = (loss_at(a0 + eps) - loss_at(a0 - eps)) / (2 * eps)
    assert model.log_color_mu.grad.item() == pytest.approx(fd, rel=1e-4, abs=1e-9)


def test_soft_mode_learns_lambda_exact_mode_does_not():
    assert "log_lam" in dict(GraphSRModel(GraphSRConfig(mode="soft")).named_parameters())
    assert "log_lam" not in dict(GraphSRModel(GraphSRConfig(mode="exact")).named_parameters())


def test_save_load_roundtrip_with_metadata(tmp_path):
    model = GraphSRModel(GraphSRConfig(widths=(4, 8), features=3))
    with torch.no_grad():
        torch.nn.init.normal_(model.net.head.weight)
    path = save_guided_model(model, tmp_path / "m.safetensors", scales=[4, 8], operator="bicubic",
                             training_data="procedural scenes", metrics={"nrmse": 0.1})
    loaded, meta = load_guided_model(path)
    assert meta["arch"] == "GraphSRModel" and meta["operator"] == "bicubic"
    assert json.loads(meta["scales"]) == [4, 8] and meta["training_data"] == "procedural scenes"
    assert json.loads(meta["config"])["widths"] == [4, 8] and json.loads(meta["metrics"]) == {"nrmse": 0.1}
    guide, _, src = _scene()
    with torch.no_grad():
        assert torch.equal(loaded.weights(guide, src, 4), model.weights(guide, src, 4))


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        load_guided_model(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(InputFileError, match="bad.safetensors"):
        load_guided_model(bad)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(other), metadata={"arch": "RRDBNet"})
    with pytest.raises(InputFileError, match="not a guided optisr model"):
        load_guided_model(other)


def test_model_size_fits_in_package_budget():
    n = sum(p.numel() for p in GraphSRModel(GraphSRConfig(widths=(12, 24, 48, 96))).parameters())
    assert n * 4 < 10e6


# ------------------------------------------------------------------ the model through the API/CLI


@pytest.fixture
def trained_file(tmp_path):
    torch.manual_seed(3)
    model = GraphSRModel(GraphSRConfig(widths=(4, 8), features=3))
    with torch.no_grad():
        torch.nn.init.normal_(model.net.head.weight, std=0.5)
    return model, save_guided_model(model, tmp_path / "mine.safetensors", scales=[4], operator="area",
                                    training_data="test")


def test_guided_upsample_with_model_object_and_path(trained_file):
    import numpy as np

    from optisr import guided_upsample
    from optisr.guided.layer import graph_solve

    model, path = trained_file
    guide, depth, src = _scene(40, 36, f=4)
    g_np = guide[0].permute(1, 2, 0).numpy()
    s_np = src[0, 0].numpy()
    a = guided_upsample(s_np, g_np, 4, weights=model, refine=0, guide_filter=False)  # the model's own graph, as graph_solve below
    b = guided_upsample(s_np, g_np, 4, weights=str(path), refine=0, guide_filter=False)
    with torch.no_grad():
        ref = graph_solve(src[:1], model.weights(guide[:1], src[:1], 4), 4)[0, 0].numpy()
    assert np.allclose(a, ref, atol=1e-4 * 100) and np.allclose(a, b)
    assert not np.allclose(a, guided_upsample(s_np, g_np, 4, weights="color", refine=0, guide_filter=False), atol=1e-3)
    # tile-wise with a model: still exactly consistent, close to the untiled solve
    from optisr.guided.tiling import tiled_guided_upsample  # no minimum tile size: 3×3 tiles here

    t = tiled_guided_upsample(s_np, g_np, 4, weights=model, tile=16)
    op = make_operator("area", t.shape, 4)
    assert np.abs(op.apply(torch.from_numpy(t)).numpy() - s_np).max() <= 1e-3 * 100
    assert np.abs(t - a).max() < 0.05 * 100


def test_default_model_missing_falls_back_or_errors(monkeypatch, tmp_path):
    import numpy as np

    from optisr import guided_upsample
    from optisr.errors import ConfigError
    from optisr.guided import model as model_mod

    monkeypatch.setattr(model_mod, "default_model_path", lambda: tmp_path / "none.safetensors")
    model_mod.load_default_model.cache_clear()
    try:
        guide, _, src = _scene(16, 16, f=4)
        g_np, s_np = guide[0].permute(1, 2, 0).numpy(), src[0, 0].numpy()
        assert np.allclose(guided_upsample(s_np, g_np, 4), guided_upsample(s_np, g_np, 4, weights="color"))
        with pytest.raises(ConfigError, match="no default guided model"):
            guided_upsample(s_np, g_np, 4, weights="model")
    finally:
        model_mod.load_default_model.cache_clear()


def test_cli_method_model_file(trained_file, tmp_path, capsys):
    import cv2
    import numpy as np

    from optisr.cli.main import main
    from optisr.io.rasters import read_raster, write_raster

    _, path = trained_file
    guide, _, src = _scene(32, 32, f=4)
    cv2.imwrite(str(tmp_path / "rgb.png"), (guide[0].permute(1, 2, 0).numpy()[..., ::-1] * 255).astype(np.uint8))
    write_raster(tmp_path / "lr.tif", src[0, 0].numpy().astype(np.float32))
    out = tmp_path / "out.tif"
    rc = main(["guided", "--guide", str(tmp_path / "rgb.png"), "--source", str(tmp_path / "lr.tif"), "--scale", "4",
               "-o", str(out), "--method", str(path), "--quiet"])
    assert rc == 0
    x = read_raster(out).data
    assert np.abs(make_operator("area", x.shape, 4).apply(torch.from_numpy(x.astype(np.float64))).numpy()
                  - src[0, 0].numpy()).max() < 1e-3
    rc = main(["guided", "--guide", str(tmp_path / "rgb.png"), "--source", str(tmp_path / "lr.tif"), "--scale", "4",
               "-o", str(tmp_path / "o2.tif"), "--method", str(tmp_path / "nope.safetensors")])
    err = capsys.readouterr().err
    assert rc != 0 and "nope.safetensors: guided model file not found" in err and len(err.strip().splitlines()) == 1
    assert main(["guided", "--guide", "a.png", "--source", "b.png", "--scale", "4", "-o", "c.png",
                 "--method", "colr"]) != 0
    assert "did you mean 'color'" in capsys.readouterr().err


def test_shipped_default_model_loads_and_beats_the_colour_graph():
    """The model in the package: metadata, and better than its starting point on fresh scenes."""
    import numpy as np

    from optisr import guided_upsample
    from optisr.data.synthetic import make_scene
    from optisr.guided.model import default_model_path

    path = default_model_path()
    model, meta = load_guided_model(path)
    assert json.loads(meta["scales"]) == [4, 8, 16] and "RGB-D-D" in meta["training_data"]
    assert path.stat().st_size < 10e6
    for f in (4, 8):
        ours, colour = [], []
        for seed in (101, 202, 303, 404):  # procedural scenes, not the validation seeds (900000+)
            sc = make_scene(128, 128, seed=seed)
            s = make_operator("bicubic", sc.depth_clean.shape, f).apply(torch.from_numpy(sc.depth_clean)).numpy()
            for weights, acc in ((model, ours), ("color", colour)):
                x = guided_upsample(s, sc.guide, f, operator="bicubic", weights=weights)
                acc.append(float(np.sqrt(np.mean((x - sc.depth_clean) ** 2))))
        assert np.mean(ours) < 0.97 * np.mean(colour), (f, ours, colour)


def test_feature_stride_two_runs_the_network_at_half_resolution():
    torch.manual_seed(0)
    cfg = GraphSRConfig(widths=(4, 8), features=3, feature_stride=2)
    model = GraphSRModel(cfg)
    guide, source = torch.rand(1, 3, 37, 50), torch.rand(1, 1, 10, 13)
    seen = []
    model.net.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[-2:])))
    out = model.features(guide, source, 4)
    assert out.shape == (1, 4, 37, 50) and seen == [(19, 25)]
    model.double()
    x = model(guide.double(), source.double(), 4, operator="area", tol=1e-8)
    from optisr.ops.operators import make_operator

    assert torch.allclose(make_operator("area", (37, 50), 4).apply(x), source.double(), atol=1e-6)
    with pytest.raises(ConfigError, match="feature_stride"):
        GraphSRConfig(feature_stride=3)


def test_shipped_model_metadata_records_every_config_field():
    """The header's config is the whole GraphSRConfig (``connect`` included), so a loaded model
    does not silently take a default that was added after training."""
    from dataclasses import fields

    from optisr.guided.model import default_model_path

    _, meta = load_guided_model(default_model_path())
    cfg = json.loads(meta["config"])
    assert {f.name for f in fields(GraphSRConfig)} == set(cfg)
    assert cfg["connect"] == 0.02


def test_unet_v1_is_shipped_and_runs_by_name(tmp_path):
    """The previous default stays usable by name: the API, the method registry and the CLI."""
    import numpy as np

    from optisr import guided_upsample
    from optisr.cli.main import main
    from optisr.guided.methods import METHODS, get_method
    from optisr.guided.model import SHIPPED_MODELS, default_model_path, shipped_model_path

    path = shipped_model_path("unet-v1")
    model, meta = load_guided_model(path)
    assert json.loads(meta["config"])["arch"] == "unet" and "unet-v1" in SHIPPED_MODELS
    assert shipped_model_path("default") == default_model_path()
    from optisr.guided.model import guided_model_path

    assert guided_model_path("unet-v1") == path and guided_model_path("default") == default_model_path()
    assert guided_model_path(tmp_path / "m.safetensors") == tmp_path / "m.safetensors"
    with pytest.raises(ConfigError, match="unet-v1"):
        shipped_model_path("unet-v9")
    assert "unet-v1" in METHODS and get_method("unet-v1").graph
    rng = np.random.default_rng(0)
    guide, src = rng.random((32, 32, 3)).astype(np.float32), rng.random((8, 8)).astype(np.float32)
    by_name = guided_upsample(src, guide, 4, weights="unet-v1")
    by_model = guided_upsample(src, guide, 4, weights=model)
    assert np.array_equal(by_name, by_model)
    assert not np.array_equal(by_name, guided_upsample(src, guide, 4))  # the default is another model
    import tifffile

    tifffile.imwrite(tmp_path / "src.tif", src)
    tifffile.imwrite(tmp_path / "guide.tif", (guide * 255).astype(np.uint8))
    out = tmp_path / "out.tif"
    assert main(["guided", "--guide", str(tmp_path / "guide.tif"), "--source", str(tmp_path / "src.tif"),
                 "--scale", "4", "-o", str(out), "--method", "unet-v1"]) == 0
    assert tifffile.imread(out).shape == (32, 32)


def test_forward_both_is_the_solution_and_the_energies_of_one_pass():
    torch.manual_seed(0)
    model = GraphSRModel(GraphSRConfig(widths=(4, 8), features=3)).double()
    guide, source = torch.rand(1, 3, 16, 16, dtype=torch.float64), torch.rand(1, 1, 4, 4, dtype=torch.float64)
    x, energy = model(guide, source, 4, tol=1e-10, output="both")
    assert torch.equal(energy, model(guide, source, 4, output="energy"))
    assert torch.allclose(x, model(guide, source, 4, tol=1e-10), atol=1e-12)
    with pytest.raises(ConfigError, match="output"):
        model(guide, source, 4, output="weights")


def test_forward_and_training_config_take_the_preconditioner():
    from optisr.train.guided import SolverConfig

    torch.manual_seed(0)
    model = GraphSRModel(GraphSRConfig(widths=(4, 8), features=3)).double()
    guide = torch.rand(1, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    source = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    x_j = model(guide, source, 4, tol=1e-10)
    x_m = model(guide, source, 4, tol=1e-10, precond="multigrid")
    assert torch.allclose(x_j, x_m, atol=1e-8)
    (g_j,) = torch.autograd.grad(x_j.square().sum(), guide)
    (g_m,) = torch.autograd.grad(x_m.square().sum(), guide)  # the implicit backward with multigrid
    assert torch.allclose(g_j, g_m, atol=1e-7 * float(g_j.abs().max()))
    assert SolverConfig(precond="multigrid").precond == "multigrid"
    with pytest.raises(ConfigError, match="solver.precond"):
        SolverConfig(precond="ilu")
    with pytest.raises(ValueError, match="precond"):
        model(guide, source, 4, precond="ilu")
