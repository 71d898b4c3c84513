"""Fidelity models of the graph layer: confidence-weighted soft mode and robust (Huber / Tukey, IRLS) mode.

References: SciPy sparse direct solves (:mod:`optisr.solvers.direct`), scipy.optimize on the robust
energy written out below, and torch.autograd.gradcheck in float64.
"""

import math
import warnings

import numpy as np
import pytest
import scipy.optimize
import torch
from torch.autograd import gradcheck

from optisr.errors import ConfigError, ConvergenceWarning, ShapeError
from optisr.guided.layer import GraphRegularisation, graph_solve
from optisr.ops.lattice import laplacian_apply
from optisr.ops.operators import OPERATORS, make_operator
from optisr.solvers.direct import solve_direct, solve_robust_direct
from optisr.solvers.graph import SolverOptions
from optisr.solvers.robust import RobustOptions, mad_sigma, solve_robust

TIGHT = dict(tol=1e-13, max_iter=20000, floor=0)
IRLS_TIGHT = dict(robust_tol=1e-13, robust_max_iter=5000)


def _problem(H, W, f, kind, *, batch=2, seed=0, channels=1):
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(batch, 2, H, W, generator=g, dtype=torch.float64) * 0.99 + 0.01
    op = make_operator(kind, (H, W), f)
    s = torch.rand(batch, channels, *op.lr_size, generator=g, dtype=torch.float64) * 255
    conf = torch.rand(batch, 1, *op.lr_size, generator=g, dtype=torch.float64) * 3
    conf[..., 0, 1] = 0.0  # a pixel without any confidence
    mask = torch.rand(batch, 1, *op.lr_size, generator=g) > 0.25
    mask[..., 0, 0] = True
    return w, s, op, conf, mask


def _rel_err(x, ref):
    return float((x - ref).abs().max() / ref.abs().max())


# --------------------------------------------------------------------------- confidence (soft)


@pytest.mark.parametrize("kind", OPERATORS)
@pytest.mark.parametrize("H,W,f", [(13, 11, 3), (17, 9, 4)])
@pytest.mark.parametrize("masked", [False, True])
def test_confidence_soft_matches_scipy_direct(kind, H, W, f, masked):
    w, s, op, conf, mask = _problem(H, W, f, kind)
    mask = mask if masked else None
    x = graph_solve(s, w, f, operator=kind, mode="soft", lam=0.5, mask=mask, confidence=conf, **TIGHT)
    ref = solve_direct(w * 0.5, s, op, mode="soft", mask=mask, confidence=conf)
    assert _rel_err(x, ref) <= 1e-8
    # and the confidence matters: the plain soft solve is a different solution
    plain = solve_direct(w * 0.5, s, op, mode="soft", mask=mask)
    assert _rel_err(plain, ref) > 1e-3


def test_confidence_ones_is_plain_soft_and_scales_like_lambda():
    w, s, _op, conf, mask = _problem(13, 11, 3, "bicubic")
    kw = dict(operator="bicubic", mode="soft", mask=mask, **TIGHT)
    plain = graph_solve(s, w, 3, lam=0.5, **kw)
    ones = graph_solve(s, w, 3, lam=0.5, confidence=torch.ones_like(conf), **kw)
    assert _rel_err(ones, plain) <= 1e-10
    # (Dx − s)ᵀ kC (Dx − s) + λ xᵀLx has the minimiser of (Dx − s)ᵀ C (Dx − s) + (λ/k) xᵀLx
    a = graph_solve(s, w, 3, lam=0.5, confidence=4 * conf, **kw)
    b = graph_solve(s, w, 3, lam=0.125, confidence=conf, **kw)
    assert _rel_err(a, b) <= 1e-9


def test_confidence_broadcasts_over_batch_and_channels():
    w, s, op, conf, mask = _problem(12, 10, 2, "area", channels=2)
    shared = conf[:1]  # (1, 1, h, w): one map for every sample and channel
    x = graph_solve(s, w, 2, mode="soft", lam=0.3, mask=mask, confidence=shared, **TIGHT)
    ref = solve_direct(w * 0.3, s, op, mode="soft", mask=mask, confidence=shared.expand(2, 2, -1, -1))
    assert _rel_err(x, ref) <= 1e-8


def test_zero_confidence_pixel_has_no_influence():
    w, s, _op, conf, _ = _problem(13, 11, 3, "gaussian")
    kw = dict(operator="gaussian", mode="soft", lam=0.5, confidence=conf, **TIGHT)
    x = graph_solve(s, w, 3, **kw)
    s2 = s.clone()
    s2[..., 0, 1] += 1000.0  # the pixel whose confidence is 0
    assert _rel_err(graph_solve(s2, w, 3, **kw), x) <= 1e-10


# --------------------------------------------------------------------------- robust (IRLS)


@pytest.mark.parametrize("kind", OPERATORS)
@pytest.mark.parametrize("loss", ["huber", "tukey"])
def test_robust_matches_scipy_irls(kind, loss):
    w, s, op, conf, mask = _problem(13, 11, 3, kind)
    s[0, 0, 2, 2] += 300.0  # an outlier in each sample
    s[1, 0, 1, 3] -= 300.0
    sigma = 20.0
    x = graph_solve(
        s, w, 3, operator=kind, mode="robust", lam=0.5, mask=mask, confidence=conf, noise_sigma=sigma,
        robust_loss=loss, **TIGHT, **IRLS_TIGHT,
    )  # fmt: skip
    delta = 1.345 if loss == "huber" else 4.685
    ref = solve_robust_direct(w * 0.5, s, op, sigma=sigma, loss=loss, delta=delta, mask=mask, confidence=conf)
    assert _rel_err(x, ref) <= 1e-8
    soft = solve_direct(w * 0.5, s, op, mode="soft", mask=mask, confidence=conf)
    assert _rel_err(soft, ref) > 1e-3  # the robust term changed the solution


def _robust_energy(x, w, s, op, c, sigma, delta):
    """E(x) = Σ_b c_b 2σ² huber((Dx − s)_b / σ) + xᵀ L(w) x, written out independently of the solver."""
    t = (op.apply(x) - s) / sigma
    a = t.abs()
    huber = torch.where(a <= delta, 0.5 * t**2, delta * a - 0.5 * delta**2)
    return (c * 2 * sigma**2 * huber).sum() + (x * laplacian_apply(w, x)).sum()


def test_robust_is_the_minimiser_found_by_scipy_optimize():
    H, W, f = 8, 7, 2
    w, s, op, conf, mask = _problem(H, W, f, "bicubic", batch=1, seed=3)
    s[0, 0, 1, 1] += 400.0
    sigma, delta, lam = 15.0, 1.345, 0.7
    c = conf * mask
    x = graph_solve(
        s, w, f, operator="bicubic", mode="robust", lam=lam, mask=mask, confidence=conf, noise_sigma=sigma,
        **TIGHT, **IRLS_TIGHT,
    )  # fmt: skip

    def fun(v):
        xv = torch.from_numpy(v).reshape(1, 1, H, W).requires_grad_()
        e = _robust_energy(xv, w * lam, s, op, c, sigma, delta)
        (g,) = torch.autograd.grad(e, xv)
        return float(e.detach()), g.flatten().numpy()

    x0 = torch.nn.functional.interpolate(s, size=(H, W), mode="bicubic").flatten().numpy()
    res = scipy.optimize.minimize(
        fun, x0, jac=True, method="L-BFGS-B", options=dict(maxiter=20000, ftol=1e-15, gtol=1e-10)
    )
    x_opt = torch.from_numpy(res.x).reshape(1, 1, H, W)
    e_solver, g_solver = fun(x.flatten().numpy())
    assert e_solver <= fun(res.x)[0] + 1e-9 * abs(e_solver)  # at least as low as scipy's minimum
    assert float(np.abs(g_solver).max()) <= 1e-6 * float(s.abs().max())  # stationary: ∇E = 0
    assert _rel_err(x, x_opt) <= 1e-5  # the same (unique) minimiser, to L-BFGS accuracy


def _ramp_scene(H=48, W=48, f=4):
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    depth = (60 + 2.0 * xx + 1.0 * yy)[None, None]
    op = make_operator("area", (H, W), f)
    w = torch.ones(1, 2, H, W, dtype=torch.float64)
    g = torch.Generator().manual_seed(7)
    s = op.apply(depth) + 2.0 * torch.randn(1, 1, *op.lr_size, generator=g, dtype=torch.float64)
    return depth, op, w, s


@pytest.mark.parametrize("noise_sigma", [2.0, None])
@pytest.mark.parametrize("loss", ["huber", "tukey"])
def test_robust_downweights_a_flying_pixel(noise_sigma, loss):
    depth, _op, w, s = _ramp_scene()
    s[0, 0, 5, 6] += 150.0  # a flying pixel
    kw = dict(mode="soft", lam=0.3, tol=1e-10, max_iter=5000)  # λ small enough for the soft fit to follow the ramp
    soft = graph_solve(s, w, 4, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # IRLS converges within its default 20 iterations
        robust = graph_solve(s, w, 4, **{**kw, "mode": "robust"}, noise_sigma=noise_sigma, robust_loss=loss)
    block = (slice(None), slice(None), slice(20, 24), slice(24, 28))  # the HR block of LR pixel (5, 6)
    err_soft = float((soft - depth)[block].abs().max())
    err_robust = float((robust - depth)[block].abs().max())
    assert err_soft > 40  # the soft fit follows the outlier...
    assert err_robust < 0.1 * err_soft  # ...the robust one does not
    # away from the outlier both fit the ramp equally well
    far = (slice(None), slice(None), slice(36, None), slice(0, 12))
    assert float((robust - depth)[far].abs().max()) < 1.5 * float((soft - depth)[far].abs().max()) + 1.0
    assert float((robust - depth).square().mean()) < 0.25 * float((soft - depth).square().mean())


def test_huber_with_infinite_threshold_is_soft():
    w, s, _op, conf, mask = _problem(13, 11, 3, "area")
    kw = dict(lam=0.5, mask=mask, confidence=conf, **TIGHT)
    soft = graph_solve(s, w, 3, mode="soft", **kw)
    robust = graph_solve(s, w, 3, mode="robust", noise_sigma=1.0, robust_delta=1e12, **kw, **IRLS_TIGHT)
    assert _rel_err(robust, soft) <= 1e-10


def test_mad_sigma_estimates_gaussian_noise_and_ignores_outliers_and_invalid():
    g = torch.Generator().manual_seed(0)
    r = 3.0 * torch.randn(2, 1, 200, 200, generator=g, dtype=torch.float64)
    r[1] *= 2
    c = torch.ones(2, 1, 200, 200, dtype=torch.float64)
    r[:, :, :10] = 1e6  # 5 % gross outliers (they bias the MAD by a few %; the std would be ~2e5)...
    c[:, :, 100:110] = 0  # ...and invalid pixels with absurd residuals
    r[:, :, 100:110] = -1e9
    est = mad_sigma(r, c)
    assert torch.allclose(est, torch.tensor([3.0, 6.0], dtype=torch.float64), rtol=0.1)
    zero = mad_sigma(torch.zeros(1, 1, 4, 4, dtype=torch.float64), torch.ones(1, 1, 4, 4, dtype=torch.float64))
    assert float(zero) > 0  # a perfect fit still gets a usable, positive scale


def test_robust_info_and_warm_start_and_nonconvergence_warning():
    w, s, op, _conf, _mask = _problem(13, 11, 3, "area")
    s[0, 0, 2, 2] += 300.0
    _x, info = solve_robust(w, s, op, options=SolverOptions(tol=1e-12), robust=RobustOptions(tol=1e-10, max_iter=500))
    assert bool(info.converged.all()) and int(info.iterations.max()) > 1
    assert info.sigma.shape == (2,) and bool((info.sigma > 0).all())
    with pytest.warns(ConvergenceWarning, match="IRLS"):
        solve_robust(w, s, op, options=SolverOptions(tol=1e-12), robust=RobustOptions(tol=1e-14, max_iter=1))
    with pytest.raises(RuntimeError, match="IRLS"):
        solve_robust(
            w,
            s,
            op,
            options=SolverOptions(tol=1e-12, on_nonconvergence="raise"),
            robust=RobustOptions(tol=1e-14, max_iter=1),
        )


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("kind", OPERATORS)
def test_gradcheck_confidence(kind):
    H, W, f = 9, 11, 3
    h, w_ = math.ceil(H / f), math.ceil(W / f)
    g = torch.Generator().manual_seed(1)
    wts = (torch.rand(2, 2, H, W, generator=g, dtype=torch.float64) * 0.9 + 0.1).requires_grad_()
    s = torch.randn(2, 1, h, w_, generator=g, dtype=torch.float64).requires_grad_()
    conf = (torch.rand(2, 1, h, w_, generator=g, dtype=torch.float64) + 0.2).requires_grad_()
    lam = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(2, 1, h, w_, generator=g) > 0.2

    def fn(wts, s, conf, lam):
        return graph_solve(s, wts, f, operator=kind, mode="soft", lam=lam, mask=mask, confidence=conf, **TIGHT)

    assert gradcheck(fn, (wts, s, conf, lam), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_gradcheck_confidence_full_jacobian_and_formula():
    """Every Jacobian entry, with a confidence map shared across the batch (gradient summed over it)."""
    H, W, f = 6, 7, 2
    g = torch.Generator().manual_seed(2)
    wts = (torch.rand(2, 2, H, W, generator=g, dtype=torch.float64) * 0.9 + 0.1).requires_grad_()
    s = torch.randn(2, 1, 3, 4, generator=g, dtype=torch.float64).requires_grad_()
    conf = (torch.rand(1, 1, 3, 4, generator=g, dtype=torch.float64) + 0.2).requires_grad_()
    mask = torch.ones(2, 1, 3, 4, dtype=torch.bool)
    mask[0, 0, 1, 2] = False

    def fn(wts, s, conf):
        return graph_solve(s, wts, f, operator="bicubic", mode="soft", lam=0.5, mask=mask, confidence=conf, **TIGHT)

    assert gradcheck(fn, (wts, s, conf), eps=1e-6, atol=1e-6, rtol=1e-4)


def _robust_inputs(seed, H=6, W=7, f=2, batch=2):
    g = torch.Generator().manual_seed(seed)
    wts = torch.rand(batch, 2, H, W, generator=g, dtype=torch.float64) * 0.9 + 0.1
    h, w_ = math.ceil(H / f), math.ceil(W / f)
    s = torch.randn(batch, 1, h, w_, generator=g, dtype=torch.float64)
    s[:, 0, 1, 1] += 8.0  # an outlier per sample: some residuals beyond δσ
    conf = torch.rand(batch, 1, h, w_, generator=g, dtype=torch.float64) + 0.5
    return wts, s, conf


@pytest.mark.parametrize("kind", ["area", "bicubic"])
@pytest.mark.parametrize("loss", ["huber", "tukey"])
def test_gradcheck_robust(kind, loss):
    """Implicit differentiation at the IRLS fixed point (Hessian with ψ'), w.r.t. weights, source and confidence."""
    wts, s, conf = _robust_inputs(4)
    f, sigma, lam = 2, 0.6, 0.5
    delta = 1.345 if loss == "huber" else 4.685
    mask = torch.ones(2, 1, 3, 4, dtype=torch.bool)
    mask[1, 0, 2, 0] = False
    kw = dict(
        operator=kind, mode="robust", lam=lam, mask=mask, noise_sigma=sigma, robust_loss=loss, **TIGHT, **IRLS_TIGHT
    )
    x = graph_solve(s, wts, f, confidence=conf, **kw)
    t = ((make_operator(kind, (6, 7), f).apply(x) - s) / sigma)[mask]
    outside = t.abs() > delta
    assert bool(outside.any()) and bool((~outside).any())  # both branches of the loss are exercised
    assert float(((t.abs() - delta).abs()).min()) > 1e-3  # away from the kink, where ψ' jumps

    def fn(wts, s, conf):
        return graph_solve(s, wts, f, confidence=conf, **kw)

    inputs = (wts.requires_grad_(), s.requires_grad_(), conf.requires_grad_())
    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("loss", ["huber", "tukey"])
def test_gradcheck_robust_full_jacobian(loss):
    """Every Jacobian entry w.r.t. source and confidence (the weights: see the projected checks above)."""
    wts, s, conf = _robust_inputs(6, H=5, W=7, batch=1)
    kw = dict(mode="robust", lam=0.5, noise_sigma=0.6, robust_loss=loss, **TIGHT, **IRLS_TIGHT)
    x = graph_solve(s, wts, 2, confidence=conf, **kw)
    delta = 1.345 if loss == "huber" else 4.685
    t = (make_operator("area", (5, 7), 2).apply(x) - s) / 0.6
    assert bool((t.abs() > delta).any()) and float(((t.abs() - delta).abs()).min()) > 1e-3

    def fn(s, conf):
        return graph_solve(s, wts, 2, confidence=conf, **kw)

    assert gradcheck(fn, (s.requires_grad_(), conf.requires_grad_()), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradcheck_robust_lambda_and_estimated_sigma_held_constant():
    """λ is differentiable in robust mode; with σ estimated, gradients treat the estimate as a constant."""
    wts, s, _conf = _robust_inputs(5)
    lam = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)

    def fn(lam):
        return graph_solve(s, wts, 2, mode="robust", lam=lam, noise_sigma=0.6, **TIGHT, **IRLS_TIGHT)

    assert gradcheck(fn, (lam,), eps=1e-6, atol=1e-6, rtol=1e-4)
    x = graph_solve(s, wts.requires_grad_(), 2, mode="robust", lam=0.5, **TIGHT, **IRLS_TIGHT)
    x.square().sum().backward()
    assert wts.grad is not None and bool(torch.isfinite(wts.grad).all())


def test_module_robust_mode_backpropagates():
    layer = GraphRegularisation(2, mode="robust", tol=1e-10, max_iter=2000, noise_sigma=0.5).double()
    feats = torch.randn(1, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    s = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    conf = torch.rand(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    layer(s, feats, confidence=conf).square().sum().backward()
    for grad in (feats.grad, layer.log_mu.grad, layer.log_lam.grad, conf.grad):
        assert grad is not None and float(grad.abs().sum()) > 0


# --------------------------------------------------------------------------- validation


def test_mode_and_option_errors_are_one_line():
    w, s, _op, conf, _mask = _problem(13, 11, 3, "area")
    cases = [
        (ConfigError, dict(mode="bogus"), "mode must be one of exact, soft, robust"),
        (ConfigError, dict(mode="exact", confidence=conf), "confidence weights need mode"),
        (ConfigError, dict(mode="soft", confidence=-conf), "confidence must be finite and >= 0"),
        (ConfigError, dict(mode="soft", confidence=conf * float("nan")), "confidence must be finite"),
        (ShapeError, dict(mode="soft", confidence=conf[..., :-1]), "confidence is"),
        (ShapeError, dict(mode="soft", confidence=conf > 1), "floating point"),
        (ShapeError, dict(mode="soft", confidence=torch.zeros_like(conf)), "no source pixel with confidence > 0"),
        (ConfigError, dict(mode="robust", robust_loss="cauchy"), "robust_loss must be one of huber, tukey"),
        (ConfigError, dict(mode="robust", noise_sigma=0.0), "noise sigma must be"),
        (ConfigError, dict(mode="robust", noise_sigma=torch.tensor([1.0, -1.0])), "noise sigma must be > 0"),
        (ConfigError, dict(mode="robust", noise_sigma=torch.ones(3)), "one value or one per sample"),
        (ConfigError, dict(mode="robust", robust_delta=-1.0), "robust delta"),
        (ConfigError, dict(mode="robust", robust_max_iter=0), "robust max_iter"),
    ]
    for err, kw, msg in cases:
        with pytest.raises(err, match=msg) as ei:
            graph_solve(s, w, 3, **kw)
        assert "\n" not in str(ei.value)
    with pytest.raises(ConfigError, match="mode must be one of"):
        GraphRegularisation(2, mode="hard")


def test_robust_accepts_per_sample_sigma_tensor():
    w, s, _op, _conf, _mask = _problem(13, 11, 3, "area")
    kw = dict(mode="robust", lam=0.5, **TIGHT, **IRLS_TIGHT)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        both = graph_solve(s, w, 3, noise_sigma=torch.tensor([10.0, 40.0], dtype=torch.float64), **kw)
        first = graph_solve(s[:1], w[:1], 3, noise_sigma=10.0, **kw)
        second = graph_solve(s[1:], w[1:], 3, noise_sigma=40.0, **kw)
    assert _rel_err(both, torch.cat([first, second])) <= 1e-9
