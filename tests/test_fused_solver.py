"""The fused Numba loop of exact mode (optisr.solvers.fused) against the PyTorch CG loop."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch

from optisr.errors import ConvergenceWarning
from optisr.guided.graph_weights import color_weights
from optisr.ops.operators import make_operator
from optisr.solvers import fused
from optisr.solvers.graph import SolverOptions, adjoint_exact, solve_exact

pytest.importorskip("numba")


@pytest.fixture(autouse=True)
def _small_problems_fused(monkeypatch):
    """The problems here are small: take the fused loops for them too (they keep the PyTorch loop below MIN_PIXELS)."""
    monkeypatch.setattr(fused, "MIN_PIXELS", 0)


TORCH = SolverOptions(tol=1e-4, backend="torch")  # the tolerance of guided_upsample
AUTO = SolverOptions(tol=1e-4)


def _problem(H: int, W: int, scale: int, kind: str = "area", B: int = 1, C: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    guide = torch.rand(B, 3, H // 4 + 1, W // 4 + 1, generator=g)
    guide = torch.nn.functional.interpolate(guide, size=(H, W), mode="nearest")  # piecewise-constant colours
    w = color_weights(guide)
    op = make_operator(kind, (H, W), scale)
    hr = torch.rand(B, C, H, W, generator=g).cumsum(-1) / W * 100.0
    return w, op, op.apply(hr)


@pytest.mark.parametrize(
    ("H", "W", "scale", "kind", "B", "C", "masked"),
    [
        (64, 96, 4, "area", 1, 1, False),
        (61, 70, 8, "area", 1, 1, True),  # partial (ceil) blocks at the bottom and right
        (48, 48, 3, "sum", 2, 1, True),
        (40, 56, 4, "area", 2, 2, True),  # channels, a per-channel mask
    ],
)
def test_fused_exact_solve_matches_the_torch_loop(H, W, scale, kind, B, C, masked):
    w, op, src = _problem(H, W, scale, kind, B, C)
    mask = None
    if masked:
        mask = torch.rand(B, C, *src.shape[-2:], generator=torch.Generator().manual_seed(1)) > 0.2
    assert fused.eligible(w, src.new_zeros(B, C, H, W), op)
    x_t, info_t = solve_exact(w, src, op, mask=mask, options=TORCH)
    x_f, info_f = solve_exact(w, src, op, mask=mask, options=AUTO)
    scale_of = float(src.abs().max())
    assert float((x_f - x_t).abs().max()) < 1e-4 * scale_of
    assert (info_f.iterations - info_t.iterations).abs().max() <= 1
    assert bool(info_f.converged.all())
    # consistency on the constrained pixels, as the PyTorch path guarantees
    dx = op.apply(x_f) - src
    if mask is not None:
        dx = dx * mask
    assert float(dx.abs().max()) < 1e-5 * scale_of


def test_fused_float64_solves_match_the_torch_loop_closely():
    """float64 (what `optisr guided` solves in up to 2048²): the same iterates to near float64 rounding."""
    from optisr.solvers.graph import solve_soft

    w, op, src = _problem(61, 70, 8, "area", 1, 2)
    w, src = w.double(), src.double()
    mask = torch.rand(1, 2, *src.shape[-2:], generator=torch.Generator().manual_seed(7)) > 0.2
    assert fused.eligible(w, src.new_zeros(1, 2, 61, 70), op)
    x_t, info_t = solve_exact(w, src, op, mask=mask, options=TORCH)
    x_f, info_f = solve_exact(w, src, op, mask=mask, options=AUTO)
    assert x_f.dtype == torch.float64 and torch.equal(info_f.iterations, info_t.iterations)
    assert float((x_f - x_t).abs().max()) < 1e-9 * float(src.abs().max())
    x_t, info_t = solve_soft(w * 0.3, src, op, mask=mask, options=TORCH)
    x_f, info_f = solve_soft(w * 0.3, src, op, mask=mask, options=AUTO)
    assert torch.equal(info_f.iterations, info_t.iterations)
    # soft mode on this weakly linked, masked problem: summation order shows at 4e-8 of the range
    assert float((x_f - x_t).abs().max()) < 1e-6 * float(src.abs().max())


def test_fused_path_is_not_taken_where_it_does_not_apply(monkeypatch):
    w, op, src = _problem(32, 32, 4)
    x0 = src.new_zeros(1, 1, 32, 32)
    assert fused.eligible(w, x0, op)
    monkeypatch.setattr(fused, "MIN_PIXELS", 512 * 512)
    assert not fused.eligible(w, x0, op)  # small images keep the PyTorch loop by default
    monkeypatch.setattr(fused, "MIN_PIXELS", 0)
    assert not fused.eligible(w.double(), x0, op)  # mixed dtypes
    assert not fused.eligible(w, x0, make_operator("bicubic", (32, 32), 4))
    with pytest.raises(ValueError, match="backend"):
        SolverOptions(backend="numba")


def test_fused_adjoint_matches_the_torch_loop():
    w, op, src = _problem(48, 64, 4, B=1, C=1)
    x, _ = solve_exact(w, src, op, options=TORCH)
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    g_t, eta_t = adjoint_exact(w.requires_grad_(True), grad, x, op, options=TORCH)
    g_f, eta_f = adjoint_exact(w, grad, x, op, options=AUTO)
    assert float((g_f - g_t).abs().max()) < 1e-4 * float(g_t.abs().max())
    assert float((eta_f - eta_t).abs().max()) < 1e-4 * float(eta_t.abs().max())


def test_fused_nonconvergence_warns_like_the_torch_loop():
    w, op, src = _problem(64, 64, 8)
    for options in (SolverOptions(tol=1e-8, max_iter=3, backend="torch"), SolverOptions(tol=1e-8, max_iter=3)):
        with pytest.warns(ConvergenceWarning, match="CG stopped after 3 iterations"):
            _, info = solve_exact(w, src, op, options=options)
        assert int(info.iterations.max()) == 3 and not bool(info.converged.all())
    with pytest.raises(RuntimeError, match="CG stopped"):
        solve_exact(w, src, op, options=SolverOptions(tol=1e-8, max_iter=3, on_nonconvergence="raise"))


def test_concurrent_callers_fall_back_to_the_torch_loop():
    """Numba's default threading layer must not be entered twice at once: the second caller uses PyTorch."""
    w, op, src = _problem(96, 96, 4)
    ref, _ = solve_exact(w, src, op, options=TORCH)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", ConvergenceWarning)
                results.append(solve_exact(w, src, op, options=AUTO)[0].numpy())
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 4
    for r in results:
        assert np.abs(r - ref.numpy()).max() < 1e-4 * float(src.abs().max())


@pytest.mark.parametrize(
    ("H", "W", "scale", "kind", "B", "C", "masked", "confidence"),
    [
        (64, 96, 4, "area", 1, 1, False, False),
        (61, 70, 8, "area", 1, 1, True, True),  # partial blocks, a mask and a confidence map
        (48, 48, 3, "sum", 2, 1, True, False),
        (40, 56, 4, "area", 2, 2, False, True),
    ],
)
def test_fused_soft_solve_matches_the_torch_loop(H, W, scale, kind, B, C, masked, confidence):
    from optisr.solvers.graph import solve_soft

    w, op, src = _problem(H, W, scale, kind, B, C, seed=3)
    gen = torch.Generator().manual_seed(4)
    mask = torch.rand(B, C, *src.shape[-2:], generator=gen) > 0.2 if masked else None
    conf = torch.rand(B, C, *src.shape[-2:], generator=gen) + 0.1 if confidence else None
    w = w * 0.3  # a λ inside the weights
    x_t, info_t = solve_soft(w, src, op, mask=mask, confidence=conf, options=TORCH)
    x_f, info_f = solve_soft(w, src, op, mask=mask, confidence=conf, options=AUTO)
    assert bool(info_f.converged.all())
    # against a float64 solve to 1e-10: both loops reach the accuracy tol = 1e-4 buys (on these
    # weakly linked graphs float32 rounding steers the two loops apart by tens of iterations)
    ref, _ = solve_soft(
        w.double(), src.double(), op, mask=mask, confidence=None if conf is None else conf.double(),
        options=SolverOptions(tol=1e-10, max_iter=20000, backend="torch"),
    )  # fmt: skip
    span = float(src.abs().max())
    err_t, err_f = float((x_t.double() - ref).abs().max()), float((x_f.double() - ref).abs().max())
    if masked and confidence:  # the worst-conditioned case: both within 2 % of the range
        assert err_f < 2e-2 * span and err_t < 2e-2 * span, (err_f, err_t)
    else:
        assert err_f < 4 * err_t + 1e-4 * span, (err_f, err_t)
        assert (info_f.iterations - info_t.iterations).abs().max() <= 2


def test_fused_soft_adjoint_and_gradients_match_the_torch_loop():
    from optisr.solvers.graph import adjoint_soft

    w, op, _ = _problem(48, 64, 4, B=1, C=1, seed=5)
    grad = torch.randn(1, 1, 48, 64, generator=torch.Generator().manual_seed(6))
    g_t, ds_t = adjoint_soft(w, grad, op, options=TORCH)
    g_f, ds_f = adjoint_soft(w, grad, op, options=AUTO)
    assert float((g_f - g_t).abs().max()) < 1e-3 * float(g_t.abs().max())
    assert float((ds_f - ds_t).abs().max()) < 1e-3 * float(ds_t.abs().max())
