"""OT-based and other training losses, checked against independent LP solves and formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import linprog

from optisr.blind.batch_ot import pairwise_sq_dist, released_lp_potentials, solve_batch_ot
from optisr.blind.critics import NLayerDiscriminator
from optisr.blind.losses import (
    EdgeLoss,
    LossConfig,
    OTSRAdversarial,
    PixelLoss,
    RaGANAdversarial,
    SSIMLoss,
    WGANQCAdversarial,
    build_adversarial,
    build_losses,
    laplacian_edges,
)
from optisr.errors import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore::optisr.blind.perceptual.PerceptualDisabledWarning")


class _LinearCritic(torch.nn.Module):
    """D(x) = <w, x> + c per image: its input gradient is w for every sample."""

    def __init__(self, shape, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(*shape, generator=g, dtype=torch.float64) * 0.1)
        self.c = torch.nn.Parameter(torch.tensor(0.3, dtype=torch.float64))

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1, keepdim=True) + self.c


def _batch(n, seed, shape=(3, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g, dtype=torch.float64)


# ------------------------------------------------------------------ exact OT vs HiGHS


@pytest.mark.parametrize("n, seed", [(4, 0), (5, 1), (6, 2), (8, 3)])
def test_emd_matches_highs_primal_and_dual(n, seed):
    real, fake = _batch(n, seed), _batch(n, seed + 100)
    cost = 0.5 / real[0].numel() * pairwise_sq_dist(real, fake)
    sol = solve_batch_ot(cost)

    # Primal LP with HiGHS: min <P, C>, rows and columns sum to 1/n, P >= 0.
    a_eq = np.zeros((2 * n, n * n))
    for i in range(n):
        for j in range(n):
            a_eq[i, i * n + j] = 1.0
            a_eq[n + j, i * n + j] = 1.0
    primal = linprog(cost.ravel(), A_eq=a_eq, b_eq=np.full(2 * n, 1.0 / n), bounds=(0, None), method="highs")
    assert primal.status == 0
    # Dual LP: max mean u + mean v s.t. u_i + v_j <= C_ij, free variables.
    a_ub = np.zeros((n * n, 2 * n))
    for i in range(n):
        for j in range(n):
            a_ub[i * n + j, i] = a_ub[i * n + j, n + j] = 1.0
    dual = linprog(-np.full(2 * n, 1.0 / n), A_ub=a_ub, b_ub=cost.ravel(), bounds=(None, None), method="highs")
    assert dual.status == 0

    tol = 1e-9 * max(1.0, cost.max())
    assert sol.value == pytest.approx(primal.fun, abs=tol)
    assert float((sol.plan * cost).sum()) == pytest.approx(primal.fun, abs=tol)
    assert sol.u.mean() + sol.v.mean() == pytest.approx(-dual.fun, abs=tol)  # strong duality
    np.testing.assert_allclose(sol.plan.sum(1), 1.0 / n, atol=1e-12)
    np.testing.assert_allclose(sol.plan.sum(0), 1.0 / n, atol=1e-12)
    slack = cost - (sol.u[:, None] + sol.v[None, :])
    assert slack.min() >= -tol  # dual feasibility
    assert np.abs(slack[sol.plan > 1e-12]).max() <= tol  # complementary slackness
    # A vertex of the assignment polytope: a permutation.
    assert sorted(sol.plan.argmax(0)) == list(range(n))


def test_wgan_qc_potentials_centred_and_unbounded():
    real, fake = _batch(6, 7), _batch(6, 8) * 3.0  # fakes far away: large potentials
    adv = WGANQCAdversarial(k=1.0)
    phi, psi, plan = adv.potentials(real, fake)
    cost = 0.5 * pairwise_sq_dist(real, fake)
    assert float(phi.sum() + psi.sum()) == pytest.approx(0.0, abs=1e-9)
    assert (phi[:, None] - psi[None, :]).numpy().max() > 1.0  # not boxed to [0, 1]
    assert ((phi[:, None] - psi[None, :]).numpy() <= cost + 1e-8).all()  # φ(x) − ψ(y) <= c
    assert float(phi.mean() - psi.mean()) == pytest.approx(float((plan * cost).sum()), rel=1e-9)


# ------------------------------------------------------------------ OTSR's released LP


def _released_lp_by_hand(real, fake, k):
    """The LP of note §2.2 step 1, built constraint by constraint (real i, fake j)."""
    n = real.shape[0]
    rf = real.reshape(n, -1).numpy()
    ff = fake.reshape(n, -1).numpy()
    rows, rhs = [], []
    for i in range(n):  # real potential y_i
        for j in range(n):  # fake potential x_j
            row = np.zeros(2 * n)
            row[i], row[n + j] = 1.0, -1.0
            rows.append(row)
            rhs.append(2 * k * ((ff[i] - rf[j]) ** 2).sum())  # transposed: fake i vs real j
    obj = np.concatenate([-np.ones(n), np.ones(n)]) / n
    res = linprog(obj, A_ub=np.array(rows), b_ub=np.array(rhs), bounds=[(0, 1)] * (2 * n), method="highs")
    assert res.status == 0
    return res.x[:n], res.x[n:], -res.fun


def _otsr_loss_from_potentials(d_real, d_fake, y, x, real, fake, gamma, k):
    grad = torch.autograd.grad(d_fake.sum(), fake, create_graph=True)[0]
    r_ot = ((grad.norm(dim=1) - k * (real - fake).norm(dim=1)) ** 2).mean() / math.sqrt(k)
    reg = 0.5 * (d_real.mean() - y.mean()) ** 2 + 0.5 * ((d_fake.flatten() - x) ** 2).mean()
    return reg + gamma * r_ot


@pytest.mark.parametrize("n, seed", [(4, 0), (6, 1), (8, 2)])
def test_otsr_closed_form_equals_released_lp(n, seed):
    real = _batch(n, seed)
    fake = (real + 0.2 * torch.randn(real.shape, generator=torch.Generator().manual_seed(seed + 9),
                                      dtype=torch.float64)).requires_grad_(True)
    critic = _LinearCritic(real.shape[1:], seed)
    d_real, d_fake = critic(real), critic(fake)
    y, x, objective = _released_lp_by_hand(real, fake.detach(), 1.0)
    assert objective == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(y, 1.0, atol=1e-9)
    np.testing.assert_allclose(x, 0.0, atol=1e-9)
    ref = _otsr_loss_from_potentials(d_real, d_fake, torch.as_tensor(y), torch.as_tensor(x), real, fake, 0.4, 1.0)
    for lp in ("closed-form", "auto", "solve"):
        adv = OTSRAdversarial(gamma=0.4, k=1.0, lp=lp)
        torch.testing.assert_close(adv.critic_loss(d_real, d_fake, real=real, fake=fake), ref)
    assert adv.last_stats["min_cost"] >= 1.0
    # Closed form, written out: ½(mean D(h) − 1)² + ½ mean D(s)² + γ R_OT.
    closed = OTSRAdversarial(gamma=0.0, lp="closed-form").critic_loss(d_real, d_fake, real=real, fake=fake)
    torch.testing.assert_close(closed, 0.5 * (d_real.mean() - 1) ** 2 + 0.5 * (d_fake**2).mean())


def test_otsr_small_costs_fall_back_to_the_lp():
    real = _batch(4, 5)
    fake = (real + 1e-3 * torch.randn(real.shape, generator=torch.Generator().manual_seed(1),
                                      dtype=torch.float64)).requires_grad_(True)
    critic = _LinearCritic(real.shape[1:])
    adv = OTSRAdversarial(lp="auto")
    y, x, min_cost = adv.potentials(real, fake.detach())
    assert min_cost < 1.0
    _, _, objective = _released_lp_by_hand(real, fake.detach(), 1.0)
    assert objective < 1.0  # the closed form would be wrong here
    assert float(y.mean() - x.mean()) == pytest.approx(objective, abs=1e-9)
    y2, x2 = released_lp_potentials(2.0 * pairwise_sq_dist(fake, real))
    np.testing.assert_allclose(y.numpy(), y2) and np.testing.assert_allclose(x.numpy(), x2)
    adv.critic_loss(critic(real), critic(fake), real=real, fake=fake)
    assert adv.last_stats["closed_form"] == 0.0


def test_otsr_generator_loss_and_gradient_flow():
    torch.manual_seed(0)
    gen = torch.nn.Conv2d(3, 3, 3, padding=1)
    critic = NLayerDiscriminator(num_feat=4, n_layers=2)
    lr, hr = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    sr = gen(lr)
    adv = OTSRAdversarial()

    fake = sr.detach().requires_grad_(True)
    loss_d = adv.critic_loss(critic(hr), critic(fake), real=hr, fake=fake)
    loss_d.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in critic.parameters())
    assert all(p.grad is None for p in gen.parameters())

    critic.zero_grad()
    critic.requires_grad_(False)
    hr_leaf = hr.clone().requires_grad_(True)
    d_real, d_fake = critic(hr_leaf), critic(sr)
    loss_g = adv.generator_loss(d_real, d_fake)
    torch.testing.assert_close(loss_g, (d_real.mean() - d_fake.mean()) ** 2)
    loss_g.backward()
    assert all(p.grad is not None for p in gen.parameters())
    assert hr_leaf.grad is None  # D(h) detached

    with pytest.raises(ConfigError, match="requires_grad"):
        adv.critic_loss(critic(hr), critic(sr.detach()), real=hr, fake=sr.detach())


# ------------------------------------------------------------------ WGAN-QC


@pytest.mark.parametrize("target", ["plan", "paired"])
def test_wgan_qc_loss_matches_manual_formula(target):
    n = 5
    real, fake = _batch(n, 11), _batch(n, 12).requires_grad_(True)
    critic = _LinearCritic(real.shape[1:], 3)
    d_real, d_fake = critic(real), critic(fake)
    gamma = 0.1
    adv = WGANQCAdversarial(gamma=gamma, target=target)
    loss = adv.critic_loss(d_real, d_fake, real=real, fake=fake)

    k = 1.0 / real[0].numel()
    cost = 0.5 * k * pairwise_sq_dist(real, fake)
    sol = solve_batch_ot(cost)
    phi, psi = sol.u, -sol.v
    phi, psi = phi - (phi.sum() + psi.sum()) / (2 * n), psi - (phi.sum() + psi.sum()) / (2 * n)
    sigma = sol.plan.argmax(0) if target == "plan" else np.arange(n)
    gnorm = critic.w.detach().norm().item()  # linear critic: ∇D = w for every fake
    tnorm = (real[sigma] - fake.detach()).flatten(1).norm(dim=1).numpy()
    r_ot = 0.5 * np.mean((gnorm / (2 * math.sqrt(k)) - 0.5 * math.sqrt(k) * tnorm) ** 2)
    dr, df = d_real.detach().flatten().numpy(), d_fake.detach().flatten().numpy()
    ref = 0.5 * (dr.mean() - phi.mean()) ** 2 + 0.5 * np.mean((df - psi) ** 2) + 4 * gamma * math.sqrt(k) * r_ot
    assert loss.item() == pytest.approx(ref, rel=1e-9)
    assert adv.last_stats["w_batch"] == pytest.approx(sol.value)
    loss.backward()
    assert critic.w.grad is not None and critic.c.grad is not None
    assert adv.generator_loss(None, d_fake).item() == pytest.approx(-df.mean())


# ------------------------------------------------------------------ RaGAN, pixel, edge


def test_ragan_matches_manual_formula():
    g = torch.Generator().manual_seed(0)
    d_real = torch.randn(6, 1, generator=g, requires_grad=True)
    d_fake = torch.randn(6, 1, generator=g, requires_grad=True)
    adv = RaGANAdversarial()

    def log_sig(t):
        return -torch.log1p(torch.exp(-t))

    a = d_real - d_fake.mean()
    b = d_fake - d_real.mean()
    ref_d = 0.5 * (-log_sig(a).mean() - log_sig(-b).mean())
    ref_g = 0.5 * (-log_sig(-a).mean() - log_sig(b).mean())
    torch.testing.assert_close(adv.critic_loss(d_real, d_fake), ref_d)
    loss_g = adv.generator_loss(d_real, d_fake)
    torch.testing.assert_close(loss_g, ref_g)
    loss_g.backward()
    assert d_real.grad is None and d_fake.grad is not None


def test_pixel_losses():
    sr, hr = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    assert PixelLoss()(sr, hr).item() == pytest.approx((sr - hr).abs().mean().item())
    ch = PixelLoss("charbonnier", eps=1e-3)(sr, hr)
    assert ch.item() == pytest.approx(torch.sqrt((sr - hr) ** 2 + 1e-6).mean().item(), rel=1e-6)
    with pytest.raises(ConfigError):
        PixelLoss("l2")


def test_edge_loss_equals_the_released_3to3_conv():
    sr, hr = torch.rand(2, 3, 12, 10), torch.rand(2, 3, 12, 10)
    kernel = torch.full((3, 3), -1.0)
    kernel[1, 1] = 8.0
    weight = (kernel / 3.0).expand(3, 3, 3, 3)  # the same kernel for every (out, in) pair
    e_sr, e_hr = F.conv2d(sr, weight, padding=1), F.conv2d(hr, weight, padding=1)
    torch.testing.assert_close(laplacian_edges(sr).expand_as(e_sr), e_sr, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(EdgeLoss()(sr, hr), F.mse_loss(e_sr, e_hr), rtol=1e-5, atol=1e-6)
    flat = torch.full((1, 3, 6, 6), 0.5)
    assert laplacian_edges(flat)[..., 1:-1, 1:-1].abs().max() < 1e-6  # zero on constants


# ------------------------------------------------------------------ config and factory


def test_ssim_loss_is_one_minus_the_metric_and_differentiable():
    from optisr.metrics.image_quality import ssim

    g = torch.Generator().manual_seed(0)
    hr = torch.rand(2, 3, 24, 20, generator=g, dtype=torch.float64)
    sr = (hr + 0.1 * torch.randn(2, 3, 24, 20, generator=g, dtype=torch.float64)).clamp(0, 1)
    loss = SSIMLoss()
    # the metric (y_channel, no crop) on each image, averaged
    want = 1.0 - float(ssim(sr, hr, y_channel=True).mean())
    assert float(loss(sr, hr)) == pytest.approx(want, rel=1e-12)
    assert float(loss(hr, hr)) == pytest.approx(0.0, abs=1e-12)
    small = sr[:1, :, :12, :12].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: loss(x, hr[:1, :, :12, :12]), (small,))
    cfg = build_losses({"pixel_weight": 0.0, "edge_weight": 0.0, "ssim_weight": 2.0, "perceptual_weight": 0.0, "gan_mode": "none"})
    total, terms = cfg.generator_loss(sr, hr)
    assert set(terms) == {"ssim"} and float(total) == pytest.approx(2.0 * want, rel=1e-12)


@pytest.mark.parametrize("sigma", [1.5, 2.0])
def test_gaussian_lowpass_matches_scipy_and_feeds_the_pixel_term(sigma):
    from scipy import ndimage

    from optisr.blind.losses import gaussian_lowpass

    x = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want = np.stack([[ndimage.gaussian_filter(c, sigma, mode="mirror", truncate=3.0) for c in b] for b in x.numpy()])
    np.testing.assert_allclose(gaussian_lowpass(x, sigma).numpy(), want, rtol=1e-12, atol=1e-12)
    assert gaussian_lowpass(x, 0.0) is x
    hr = x + 0.3 * (-1.0) ** torch.arange(24, dtype=torch.float64)  # a zero-mean Nyquist stripe: high band only
    ls = build_losses({"pixel_weight": 1.0, "edge_weight": 0.0, "perceptual_weight": 0.0, "gan_mode": "none",
                       "pixel_lowpass_sigma": sigma})  # fmt: skip
    _, terms = ls.generator_loss(x, hr)
    full = build_losses({"pixel_weight": 1.0, "edge_weight": 0.0, "perceptual_weight": 0.0, "gan_mode": "none"})
    _, full_terms = full.generator_loss(x, hr)
    assert full_terms["pixel"] == pytest.approx(0.3, rel=1e-9)
    assert terms["pixel"] == pytest.approx(float(F.l1_loss(gaussian_lowpass(x, sigma), gaussian_lowpass(hr, sigma))))
    assert terms["pixel"] < 1e-3  # the low band does not see the stripe


def test_build_losses_config_and_generator_total():
    cfg = LossConfig(perceptual_weight=0.0)
    losses = build_losses(cfg)
    assert isinstance(losses.adversarial, OTSRAdversarial) and losses.adversarial.gamma == 0.4
    assert losses.critic_needs_fake_grad and not losses.perceptual_enabled
    assert losses.perceptual_disabled_reason == "perceptual_weight is 0"
    critic = _LinearCritic((3, 8, 8))
    sr = _batch(2, 1).requires_grad_(True)
    hr = _batch(2, 2)
    total, terms = losses.generator_loss(sr, hr, d_real=critic(hr), d_fake=critic(sr))
    assert set(terms) == {"pixel", "edge", "gan"}
    assert total.item() == pytest.approx(0.01 * terms["pixel"] + 0.01 * terms["edge"] + terms["gan"], rel=1e-6)
    with pytest.raises(ConfigError, match="needs d_real and d_fake"):
        losses.generator_loss(sr, hr)

    assert isinstance(build_adversarial(LossConfig(gan_mode="wgan-qc")), WGANQCAdversarial)
    assert build_adversarial(LossConfig(gan_mode="wgan-qc")).gamma == 0.1
    assert build_adversarial(LossConfig(gan_mode="none")) is None
    rs = LossConfig.realsr(perceptual_weight=0.0)
    assert rs.gan_mode == "ragan" and rs.gan_weight == 5e-3 and rs.edge_weight == 0.0
    assert isinstance(build_losses(rs).adversarial, RaGANAdversarial)
    with pytest.raises(ConfigError, match="did you mean 'wgan-qc'"):
        build_adversarial(LossConfig(gan_mode="wgan_qc"))
    with pytest.raises(ConfigError, match="did you mean 'edge_weight'"):
        build_losses({"edge_weigth": 0.1})
