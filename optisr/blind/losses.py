"""Losses for OTSR / RealSR / WGAN-QC training of blind SR generators.

* pixel: :class:`PixelLoss` (L1 or Charbonnier);
* edge: :func:`laplacian_edges` / :class:`EdgeLoss`, OTSR's fixed "sobel" operator (in fact a
  Laplacian-like 8/−1 kernel /3 on R+G+B) with an MSE, research note §1.3 and §2.1;
* perceptual: :class:`optisr.blind.perceptual.PerceptualLoss` (VGG19 conv5_4, pre-ReLU);
* adversarial, three modes with one interface (``critic_loss`` / ``generator_loss``):
  :class:`OTSRAdversarial` (``"otsr"``, the released behaviour), :class:`WGANQCAdversarial`
  (``"wgan-qc"``, faithful WGAN-QC) and :class:`RaGANAdversarial` (``"ragan"``, ESRGAN/RealSR).

:class:`LossConfig` + :func:`build_losses` assemble them into a :class:`LossSet` for a trainer.

Critic outputs: a scalar per image ``(B,)`` / ``(B, 1)`` (VGG-128) or a map ``(B, 1, H', W')``
(PatchGAN, U-Net). ``otsr`` and ``wgan-qc`` treat a critic as a function of the whole image
and reduce a map to its per-image mean first; ``ragan`` works element-wise, as ESRGAN.

The research note is ``../shared/research/blind_sr_method.md`` ("the note" below).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from optisr.blind.batch_ot import BatchOT, pairwise_sq_dist, released_lp_potentials, solve_batch_ot
from optisr.blind.perceptual import PerceptualLoss, load_vgg19
from optisr.errors import ConfigError, ShapeError
from optisr.metrics.image_quality import rgb_to_y, ssim_index

__all__ = [
    "GAN_MODES",
    "EdgeLoss",
    "LossConfig",
    "LossSet",
    "OTSRAdversarial",
    "PixelLoss",
    "RaGANAdversarial",
    "SSIMLoss",
    "WGANQCAdversarial",
    "build_adversarial",
    "build_losses",
    "gaussian_lowpass",
    "laplacian_edges",
]


# ----------------------------------------------------------------------------- pixel and edge


class PixelLoss(nn.Module):
    """Mean pixel distance: L1, or Charbonnier ``sqrt((s − h)² + ε²)``.

    Args:
        kind: ``"l1"`` or ``"charbonnier"``.
        eps: Charbonnier ε (1e-3).

    Shape:
        ``sr``, ``hr``: ``(B, C, H, W)``, same shape; returns a scalar.
    """

    def __init__(self, kind: Literal["l1", "charbonnier"] = "l1", *, eps: float = 1e-3) -> None:
        super().__init__()
        if kind not in ("l1", "charbonnier"):
            raise ConfigError(f"pixel loss kind must be 'l1' or 'charbonnier'; got {kind!r}")
        self.kind = kind
        self.eps = eps

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        _same_shape(sr, hr)
        if self.kind == "l1":
            return F.l1_loss(sr, hr)
        return torch.sqrt((sr - hr).square() + self.eps**2).mean()

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}" + (f", eps={self.eps}" if self.kind == "charbonnier" else "")


def gaussian_lowpass(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of each channel (std ``sigma`` pixels, radius ``ceil(3σ)``, reflect padding).

    The low band of the frequency separation of Fritsche, Gu & Timofte (ICCVW 2019): pixel losses
    on it leave the high band to the critic. ``sigma <= 0`` returns ``x`` unchanged.

    Args:
        x: ``(B, C, H, W)`` float, ``H, W > ceil(3σ)``.
    Returns:
        the same shape, dtype and device; differentiable.
    """
    if sigma <= 0:
        return x
    if x.ndim != 4:
        raise ShapeError(f"gaussian_lowpass expects (B, C, H, W); got {tuple(x.shape)}")
    r = max(1, math.ceil(3.0 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    c = x.shape[1]
    y = F.pad(x, (r, r, r, r), mode="reflect")
    y = F.conv2d(y, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def laplacian_edges(x: Tensor) -> Tensor:
    """OTSR's edge operator E: the 8/−1 Laplacian-like kernel, divided by 3, on the channel sum.

    The released code applies one fixed 3×3 kernel (centre 8, the eight neighbours −1, all /3)
    as a C→C convolution whose weight is that kernel for *every* (out, in) channel pair, so all
    C output channels are equal to the response of ``Σ_c x_c`` (note §1.3). This function
    returns that common channel once. Zero padding of 1 keeps the size.

    Args:
        x: ``(B, C, H, W)`` float.
    Returns:
        ``(B, 1, H, W)``, same dtype and device; the released code's output is this map
        repeated C times, which gives the same mean squared error.
    """
    if x.ndim != 4:
        raise ShapeError(f"laplacian_edges expects (B, C, H, W); got {tuple(x.shape)}")
    k = torch.full((1, 1, 3, 3), -1.0 / 3.0, dtype=x.dtype, device=x.device)
    k[0, 0, 1, 1] = 8.0 / 3.0
    return F.conv2d(x.sum(1, keepdim=True), k, padding=1)


class EdgeLoss(nn.Module):
    """OTSR's edge term: ``mean (E(h) − E(s))²`` with E = :func:`laplacian_edges` (note §2.1).

    Shape:
        ``sr``, ``hr``: ``(B, C, H, W)``; returns a scalar. No gradient flows into ``hr``.
    """

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        _same_shape(sr, hr)
        return F.mse_loss(laplacian_edges(sr), laplacian_edges(hr.detach()))


class SSIMLoss(nn.Module):
    """``1 − SSIM`` on BT.601 luma, the measure of the blind-SR bars (:func:`optisr.metrics.ssim` with
    ``y_channel=True``; shared formula :func:`optisr.metrics.image_quality.ssim_index`).

    An adversarial fine-tune buys texture (lower NIQE) with SSIM; this term lets the generator keep
    local structure while the critic asks for texture.

    Shape:
        ``sr``, ``hr``: ``(B, 3, H, W)`` RGB in [0, 1], ``H, W ≥ 11``; returns a scalar. No gradient
        flows into ``hr``.
    """

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        _same_shape(sr, hr)
        return 1.0 - ssim_index(rgb_to_y(sr) * 255.0, rgb_to_y(hr.detach()) * 255.0).mean()


def _same_shape(sr: Tensor, hr: Tensor) -> None:
    if sr.shape != hr.shape:
        raise ShapeError(f"sr and hr must have the same shape; got {tuple(sr.shape)} and {tuple(hr.shape)}")


# ----------------------------------------------------------------------------- adversarial


def _per_image(d: Tensor) -> Tensor:
    """Critic output ``(B,)``, ``(B, 1)`` or ``(B, 1, H, W)`` → per-image score ``(B,)``."""
    if d.ndim == 0:
        raise ShapeError("critic output must have a batch dimension; got a 0-d tensor")
    return d.reshape(d.shape[0], -1).mean(1)


def _grad_wrt(d_fake: Tensor, fake: Tensor | None, who: str) -> Tensor:
    """∇_s of Σ_b D(s_b) (per-image scores), keeping the graph so the penalty back-propagates."""
    if fake is None or not fake.requires_grad:
        raise ConfigError(
            f"{who}.critic_loss needs the fake batch that produced d_fake as a leaf with "
            "requires_grad: fake = sr.detach().requires_grad_(True); d_fake = critic(fake)"
        )
    (grad,) = torch.autograd.grad(_per_image(d_fake).sum(), fake, create_graph=True)
    return grad


def _qc_regression(d_real: Tensor, d_fake: Tensor, pot_real: Tensor, pot_fake: Tensor) -> Tensor:
    """``½(mean D(real) − mean φ)² + ½ mean_j (D(fake_j) − ψ_j)²`` (WGAN-QC's and OTSR's fit)."""
    dr, df = _per_image(d_real), _per_image(d_fake)
    return 0.5 * (dr.mean() - pot_real.mean()).square() + 0.5 * (df - pot_fake).square().mean()


class OTSRAdversarial(nn.Module):
    """OTSR's adversarial objective as released, in closed form (mode ``"otsr"``).

    **Critic** (note §2.2, §2.3), with ``D̄`` the batch mean of the per-image scores:

    .. math::
        \\mathcal L_D = \\tfrac12\\big(\\overline{D(h)} - \\bar y^*\\big)^2
        + \\tfrac12\\,\\operatorname{mean}_b\\big(D(s_b) - x^*_b\\big)^2 + \\gamma\\,\\mathcal R_{OT},
        \\qquad
        \\mathcal R_{OT} = \\tfrac{1}{\\sqrt K}\\operatorname{mean}_{b,p}
        \\big(\\lVert[\\nabla_s D(s_b)]_p\\rVert_2 - K\\lVert[h_b - s_b]_p\\rVert_2\\big)^2

    with per-pixel norms over the colour channels and ``h_b`` the **paired** HR of ``s_b``.

    **Why** ``y* ≡ 1, x* ≡ 0`` (the closed form ``½(D̄(h) − 1)² + ½ mean D(s)²``): the released
    code gets ``y*, x*`` from an LP (:func:`optisr.blind.batch_ot.released_lp_potentials`):
    maximise ``mean y − mean x`` subject to ``y_i − x_j <= 2K‖s_i − h_j‖²`` with both boxed to
    [0, 1]. The cost is a *sum* over 3·128·128 = 49,152 values, so with K = 1 every cost is
    ≥ 1 unless an SR patch is within MSE ≈ 1e-5 (PSNR > 50 dB) of an HR patch. Then
    ``y ≡ 1, x ≡ 0`` is feasible and reaches the objective's upper bound 1 set by the box;
    the objective is strictly increasing in each ``y_i`` and decreasing in each ``x_j``, so
    that optimum is unique (note §2.3). The "OT" solve thus degenerates to LSGAN-like targets
    (real mean → 1, each fake → 0) plus a gradient-matching penalty against the paired HR.

    ``lp="auto"`` (default) uses the closed form when every cost is ≥ 1 and otherwise solves
    the released LP with HiGHS (same result whenever the LP optimum is unique); ``"closed-form"``
    never solves; ``"solve"`` always solves (for checking).

    **Generator**: ``(D̄(h) − D̄(s))²`` with ``D(h)`` detached (note §2.1), adversarial weight 1.

    Args:
        gamma: weight of ``R_OT`` (0.4 in OTSR).
        k: ``K`` (``WQC_KCoef`` = 1).
        lp: ``"auto"``, ``"closed-form"`` or ``"solve"``.

    Attributes:
        last_stats: floats from the last ``critic_loss``: ``regression``, ``r_ot``,
            ``min_cost`` (None when not computed), ``closed_form`` (1.0 or 0.0).
    """

    mode = "otsr"

    def __init__(
        self, *, gamma: float = 0.4, k: float = 1.0, lp: Literal["auto", "closed-form", "solve"] = "auto"
    ) -> None:
        super().__init__()
        if lp not in ("auto", "closed-form", "solve"):
            raise ConfigError(f"OTSRAdversarial lp must be 'auto', 'closed-form' or 'solve'; got {lp!r}")
        if k <= 0:
            raise ConfigError(f"OTSRAdversarial k must be > 0; got {k}")
        self.gamma = gamma
        self.k = k
        self.lp = lp
        self.last_stats: dict[str, float | None] = {}

    def potentials(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor, float | None]:
        """Real and fake potentials ``(y*, x*)`` of the released LP, each ``(B,)``, and min cost."""
        b = real.shape[0]
        dtype, device = real.dtype, real.device
        if self.lp == "closed-form":
            return torch.ones(b, dtype=dtype, device=device), torch.zeros(b, dtype=dtype, device=device), None
        cost = 2.0 * self.k * pairwise_sq_dist(fake, real)  # (fake i, real j): transposed use
        min_cost = float(cost.min())
        if self.lp == "auto" and min_cost >= 1.0:
            return torch.ones(b, dtype=dtype, device=device), torch.zeros(b, dtype=dtype, device=device), min_cost
        y, x = released_lp_potentials(cost)
        return torch.as_tensor(y, dtype=dtype, device=device), torch.as_tensor(x, dtype=dtype, device=device), min_cost

    def critic_loss(self, d_real: Tensor, d_fake: Tensor, *, real: Tensor, fake: Tensor) -> Tensor:
        """Critic loss (scalar).

        Args:
            d_real: critic on the HR batch, ``(B, ...)``.
            d_fake: critic on ``fake``, ``(B, ...)``.
            real: HR batch ``(B, C, H, W)``, paired with ``fake``.
            fake: ``sr.detach().requires_grad_(True)``, ``(B, C, H, W)``.
        """
        _same_shape(fake, real)
        y, x, min_cost = self.potentials(real, fake)
        closed = self.lp == "closed-form" or (self.lp == "auto" and min_cost is not None and min_cost >= 1.0)
        regression = _qc_regression(d_real, d_fake, y, x)
        total = regression
        r_ot = None
        if self.gamma:
            grad = _grad_wrt(d_fake, fake, "OTSRAdversarial")
            gap = grad.norm(dim=1) - self.k * (real.detach() - fake.detach()).norm(dim=1)  # (B, H, W)
            r_ot = gap.square().mean() / math.sqrt(self.k)
            total = total + self.gamma * r_ot
        self.last_stats = {
            "regression": float(regression.detach()),
            "r_ot": None if r_ot is None else float(r_ot.detach()),
            "min_cost": min_cost,
            "closed_form": float(closed),
        }
        return total

    def generator_loss(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        """``(D̄(h) − D̄(s))²``; ``d_real`` is detached. Scalar."""
        return (_per_image(d_real).detach().mean() - _per_image(d_fake).mean()).square()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, k={self.k}, lp={self.lp!r}"


class WGANQCAdversarial(nn.Module):
    """Faithful WGAN-QC (Liu, Gu & Samaras, ICCV 2019) per batch (mode ``"wgan-qc"``).

    Per critic step (note §2.3, "theory-faithful variant"):

    1. Cost ``C_ij = K·½‖x_i − y_j‖²`` between flattened real ``x_i`` and fake ``y_j``, with
       ``K = 1/d`` by default (``d`` = values per image).
    2. Exact OT with uniform weights by POT's ``ot.emd(a, b, C, log=True)``
       (:func:`optisr.blind.batch_ot.solve_batch_ot`): plan ``P`` and duals ``u_i + v_j <= C_ij``.
       In the note's Kantorovich form ``φ(x) − ψ(y) <= c(x, y)`` this is ``φ = u`` (real) and
       ``ψ = −v`` (fake); both are shifted by one constant so that their values sum to zero.
       They are **not** clipped or boxed (unlike OTSR's released LP).
    3. Critic loss

       .. math::
           \\tfrac12(\\overline{D(x)} - \\bar\\varphi)^2 + \\tfrac12\\operatorname{mean}_j(D(y_j) - \\psi_j)^2
           + 4\\gamma\\sqrt K\\cdot\\tfrac12\\operatorname{mean}_j
           \\Big(\\frac{\\lVert\\nabla D(y_j)\\rVert}{2\\sqrt K}
           - \\frac{\\sqrt K}{2}\\lVert x_{\\sigma(j)} - y_j\\rVert\\Big)^2

       with whole-image norms and ``σ(j) = argmax_i P_ij`` (a permutation for equal batch
       sizes). ``target="paired"`` replaces ``x_σ(j)`` by the paired HR ``x_j``, the cheaper
       option the note suggests for SR.
    4. Generator loss ``−mean D(y)``: the critic on fakes models ``ψ``, and
       ``W = mean φ − mean ψ`` falls as ``ψ`` on the fakes rises. Use Adam β₁ = 0.5 (note).

    Args:
        gamma: γ (0.1 in WGAN-QC).
        k: ``K``; ``None`` → ``1/d``.
        target: ``"plan"`` (OT matching) or ``"paired"``.

    Attributes:
        last_stats: ``w_batch`` (OT cost of the batch), ``regression``, ``r_ot``.
        last_ot: the :class:`optisr.blind.batch_ot.BatchOT` of the last step.
    """

    mode = "wgan-qc"

    def __init__(
        self, *, gamma: float = 0.1, k: float | None = None, target: Literal["plan", "paired"] = "plan"
    ) -> None:
        super().__init__()
        if target not in ("plan", "paired"):
            raise ConfigError(f"WGANQCAdversarial target must be 'plan' or 'paired'; got {target!r}")
        if k is not None and k <= 0:
            raise ConfigError(f"WGANQCAdversarial k must be > 0 or None; got {k}")
        self.gamma = gamma
        self.k = k
        self.target = target
        self.last_stats: dict[str, float | None] = {}
        self.last_ot: BatchOT | None = None

    def _k_for(self, x: Tensor) -> float:
        return self.k if self.k is not None else 1.0 / x[0].numel()

    def potentials(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor, np.ndarray]:
        """Centred potentials ``φ`` (N,) on real, ``ψ`` (M,) on fake, and the plan (N, M)."""
        k = self._k_for(real)
        sol = solve_batch_ot(0.5 * k * pairwise_sq_dist(real, fake))
        self.last_ot = sol
        phi, psi = sol.u, -sol.v
        shift = (phi.sum() + psi.sum()) / (phi.size + psi.size)
        dtype, device = real.dtype, real.device
        return (
            torch.as_tensor(phi - shift, dtype=dtype, device=device),
            torch.as_tensor(psi - shift, dtype=dtype, device=device),
            sol.plan,
        )

    def critic_loss(self, d_real: Tensor, d_fake: Tensor, *, real: Tensor, fake: Tensor) -> Tensor:
        """Critic loss (scalar).

        Args:
            d_real: critic on ``real``, ``(N, ...)``.
            d_fake: critic on ``fake``, ``(M, ...)``.
            real: HR batch ``(N, C, H, W)``.
            fake: ``sr.detach().requires_grad_(True)``, ``(M, C, H, W)`` (M = N for ``"paired"``).
        """
        if real.shape[1:] != fake.shape[1:]:
            raise ShapeError(f"real and fake images differ in size: {tuple(real.shape)} vs {tuple(fake.shape)}")
        phi, psi, plan = self.potentials(real, fake)
        sol = self.last_ot
        assert sol is not None  # set by potentials()
        regression = _qc_regression(d_real, d_fake, phi, psi)
        total, r_ot = regression, None
        if self.gamma:
            if self.target == "paired":
                _same_shape(fake, real)
                matched = real.detach()
            else:
                sigma = torch.as_tensor(plan.argmax(0), device=real.device)  # fake j -> real σ(j)
                matched = real.detach()[sigma]
            k = self._k_for(real)
            grad = _grad_wrt(d_fake, fake, "WGANQCAdversarial")
            g_norm = grad.reshape(grad.shape[0], -1).norm(dim=1)
            t_norm = (matched - fake.detach()).reshape(fake.shape[0], -1).norm(dim=1)
            gap = g_norm / (2.0 * math.sqrt(k)) - 0.5 * math.sqrt(k) * t_norm
            r_ot = 0.5 * gap.square().mean()
            total = total + 4.0 * self.gamma * math.sqrt(k) * r_ot
        self.last_stats = {
            "w_batch": float(sol.value),
            "regression": float(regression.detach()),
            "r_ot": None if r_ot is None else float(r_ot.detach()),
        }
        return total

    def generator_loss(self, d_real: Tensor | None, d_fake: Tensor) -> Tensor:
        """``−mean D(fake)`` (``d_real`` unused). Scalar."""
        return -_per_image(d_fake).mean()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, k={self.k if self.k is not None else '1/d'}, target={self.target!r}"


class RaGANAdversarial(nn.Module):
    """Relativistic average GAN (ESRGAN / RealSR, mode ``"ragan"``), element-wise logits.

    With ``σ`` the BCE-with-logits against a label and bars batch means over all elements:

    .. math::
        \\mathcal L_D = \\tfrac12\\big[\\mathrm{BCE}(D(h) - \\overline{D(s)}, 1)
                        + \\mathrm{BCE}(D(s) - \\overline{D(h)}, 0)\\big],\\quad
        \\mathcal L_G = \\tfrac12\\big[\\mathrm{BCE}(D(h) - \\overline{D(s)}, 0)
                        + \\mathrm{BCE}(D(s) - \\overline{D(h)}, 1)\\big]

    with ``D(h)`` detached in ``L_G``. RealSR weights it 5e-3 (note §2.4).
    """

    mode = "ragan"

    def critic_loss(
        self, d_real: Tensor, d_fake: Tensor, *, real: Tensor | None = None, fake: Tensor | None = None
    ) -> Tensor:
        """Critic loss (scalar); ``real`` / ``fake`` are accepted for a uniform call and unused."""
        return 0.5 * (_bce(d_real - d_fake.mean(), 1.0) + _bce(d_fake - d_real.mean(), 0.0))

    def generator_loss(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        """Generator loss (scalar); ``d_real`` is detached."""
        d_real = d_real.detach()
        return 0.5 * (_bce(d_real - d_fake.mean(), 0.0) + _bce(d_fake - d_real.mean(), 1.0))


def _bce(logits: Tensor, label: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))


GAN_MODES = ("otsr", "wgan-qc", "ragan", "none")
_ALIASES = {"otsr-code": "otsr", "wganqc": "wgan-qc", "relativistic": "ragan"}
Adversarial = OTSRAdversarial | WGANQCAdversarial | RaGANAdversarial


# ----------------------------------------------------------------------------- config, factory


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    """Generator and critic loss settings; defaults are OTSR's final configs (note §2.1).

    ``LossConfig.realsr()`` gives RealSR's (note §2.4).
    """

    pixel_weight: float = 0.01  # L1 (or Charbonnier) on [0, 1] images
    pixel_kind: Literal["l1", "charbonnier"] = "l1"
    perceptual_weight: float = 0.7  # VGG19 feature L1; 0 disables
    perceptual_weights_path: str | None = None  # torchvision-layout vgg19 .pth/.safetensors; None: torch hub cache
    perceptual_layers: dict[str, float] = field(default_factory=lambda: {"conv5_4": 1.0})  # pre-ReLU
    edge_weight: float = 0.01  # OTSR Laplacian-edge MSE; 0 disables
    ssim_weight: float = 0.0  # 1 - SSIM on BT.601 luma (SSIMLoss); 0 disables
    pixel_lowpass_sigma: float = 0.0  # > 0: the pixel (and teacher) L1 compare Gaussian low-passed images (HR px)
    gan_mode: Literal["otsr", "wgan-qc", "ragan", "none"] = "otsr"
    gan_weight: float = 1.0  # adversarial weight in the generator loss
    gan_gamma: float | None = None  # OT regulariser weight; None: 0.4 (otsr), 0.1 (wgan-qc)
    gan_k: float | None = None  # transport-cost coefficient K; None: 1 (otsr), 1/d (wgan-qc)
    otsr_lp: Literal["auto", "closed-form", "solve"] = "auto"  # otsr: how to get the LP potentials
    wgan_qc_target: Literal["plan", "paired"] = "plan"  # wgan-qc: regulariser's transport target

    @classmethod
    def realsr(cls, **overrides: Any) -> LossConfig:
        """RealSR's loss: 0.01 L1 + 1.0 VGG19-54 + 0.005 RaGAN, no edge term."""
        base = dict(pixel_weight=0.01, perceptual_weight=1.0, edge_weight=0.0, gan_mode="ragan", gan_weight=5e-3)
        return cls(**{**base, **overrides})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LossConfig:
        """Strict construction: unknown keys raise :class:`ConfigError` with a suggestion."""
        from optisr.config import from_dict

        return from_dict(cls, d, "losses")


def build_adversarial(cfg: LossConfig) -> Adversarial | None:
    """The adversarial-mode object of ``cfg`` (``None`` for ``gan_mode="none"``)."""
    mode = _ALIASES.get(cfg.gan_mode, cfg.gan_mode)
    if mode == "otsr":
        return OTSRAdversarial(
            gamma=0.4 if cfg.gan_gamma is None else cfg.gan_gamma,
            k=1.0 if cfg.gan_k is None else cfg.gan_k,
            lp=cfg.otsr_lp,
        )
    if mode == "wgan-qc":
        return WGANQCAdversarial(
            gamma=0.1 if cfg.gan_gamma is None else cfg.gan_gamma, k=cfg.gan_k, target=cfg.wgan_qc_target
        )
    if mode == "ragan":
        return RaGANAdversarial()
    if mode == "none":
        return None
    close = difflib.get_close_matches(str(cfg.gan_mode), GAN_MODES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"unknown gan_mode {cfg.gan_mode!r}{hint}; choose one of {', '.join(GAN_MODES)}")


class LossSet(nn.Module):
    """All loss terms of one training run; built by :func:`build_losses`.

    Attributes:
        config: the :class:`LossConfig`.
        pixel, edge, ssim: :class:`PixelLoss`, :class:`EdgeLoss`, :class:`SSIMLoss`.
        perceptual: :class:`PerceptualLoss` or ``None`` when disabled.
        perceptual_enabled: False when the perceptual term is off (weight 0 or no VGG19
            weights); a trainer should log ``perceptual_disabled_reason`` in that case.
        perceptual_disabled_reason: why it is off, or ``None``.
        adversarial: the mode object, or ``None`` for ``gan_mode="none"``.
    """

    def __init__(
        self,
        config: LossConfig,
        perceptual: PerceptualLoss | None,
        adversarial: Adversarial | None,
        perceptual_disabled_reason: str | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.pixel = PixelLoss(config.pixel_kind)
        self.edge = EdgeLoss()
        self.ssim = SSIMLoss()
        self.perceptual = perceptual
        self.adversarial = adversarial
        self.perceptual_disabled_reason = perceptual_disabled_reason

    def lowpass(self, x: Tensor) -> Tensor:
        """``x`` low-passed for the pixel terms (:func:`gaussian_lowpass` with ``pixel_lowpass_sigma``)."""
        return gaussian_lowpass(x, self.config.pixel_lowpass_sigma)

    @property
    def perceptual_enabled(self) -> bool:
        return self.perceptual is not None

    @property
    def critic_needs_fake_grad(self) -> bool:
        """True when ``critic_loss`` differentiates the critic w.r.t. the fake batch."""
        return isinstance(self.adversarial, (OTSRAdversarial, WGANQCAdversarial)) and bool(self.adversarial.gamma)

    def generator_loss(
        self, sr: Tensor, hr: Tensor, *, d_real: Tensor | None = None, d_fake: Tensor | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """Weighted generator loss and its unweighted terms.

        Args:
            sr: generator output ``(B, 3, H, W)`` (with graph); hr: paired HR, same shape.
            d_real: critic on ``hr`` (needed by ``otsr`` and ``ragan``); d_fake: critic on ``sr``.
        Returns:
            ``(total, terms)``: a scalar tensor, and ``{"pixel", "perceptual", "edge", "ssim", "gan"}``
            as floats for the terms that are on.
        """
        c = self.config
        terms: dict[str, Tensor] = {}
        if c.pixel_weight:
            terms["pixel"] = self.pixel(self.lowpass(sr), self.lowpass(hr))
        if c.perceptual_weight and self.perceptual is not None:
            terms["perceptual"] = self.perceptual(sr, hr)
        if c.edge_weight:
            terms["edge"] = self.edge(sr, hr)
        if c.ssim_weight:
            terms["ssim"] = self.ssim(sr, hr)
        if self.adversarial is not None and c.gan_weight:
            adv = self.adversarial
            if d_fake is not None and isinstance(adv, WGANQCAdversarial):
                terms["gan"] = adv.generator_loss(d_real, d_fake)  # its d_real is optional
            elif d_fake is not None and d_real is not None:
                terms["gan"] = adv.generator_loss(d_real, d_fake)
            else:
                raise ConfigError(f"gan_mode {adv.mode!r} needs d_real and d_fake in generator_loss")
        weights = {
            "pixel": c.pixel_weight,
            "perceptual": c.perceptual_weight,
            "edge": c.edge_weight,
            "ssim": c.ssim_weight,
            "gan": c.gan_weight,
        }
        total = sr.new_zeros(())
        for name, value in terms.items():
            total = total + weights[name] * value
        return total, {name: float(v.detach()) for name, v in terms.items()}

    def critic_loss(self, d_real: Tensor, d_fake: Tensor, *, real: Tensor, fake: Tensor) -> Tensor:
        """The adversarial mode's critic loss (see the mode classes)."""
        if self.adversarial is None:
            raise ConfigError("gan_mode is 'none': there is no critic loss")
        return self.adversarial.critic_loss(d_real, d_fake, real=real, fake=fake)


def build_losses(cfg: LossConfig | dict[str, Any] | None = None) -> LossSet:
    """Build every loss term from a :class:`LossConfig` (or a dict of its fields).

    The perceptual term loads VGG19 with :func:`optisr.blind.perceptual.load_vgg19`. With no
    weights path and no torchvision cache file it is **disabled**: a
    :class:`~optisr.blind.perceptual.PerceptualDisabledWarning` is issued and
    ``LossSet.perceptual_enabled`` is False with the reason in ``perceptual_disabled_reason``.

    Raises:
        ConfigError: unknown option or mode.
        InputFileError: ``perceptual_weights_path`` was given but cannot be loaded.
    """
    if cfg is None:
        cfg = LossConfig()
    elif isinstance(cfg, dict):
        cfg = LossConfig.from_dict(cfg)
    elif not isinstance(cfg, LossConfig):
        raise ConfigError(f"loss config must be a LossConfig or a dict; got {type(cfg).__name__}")
    adversarial = build_adversarial(cfg)
    perceptual, reason = None, None
    if cfg.perceptual_weight:
        vgg = load_vgg19(cfg.perceptual_weights_path, layers=tuple(cfg.perceptual_layers))
        if vgg is None:
            reason = "no VGG19 weights (set perceptual_weights_path to a torchvision vgg19 file)"
        else:
            perceptual = PerceptualLoss(vgg, cfg.perceptual_layers)
    else:
        reason = "perceptual_weight is 0"
    return LossSet(cfg, perceptual, adversarial, reason)
