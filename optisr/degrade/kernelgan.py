"""Per-image ×2 / ×4 downscaling-kernel estimation in the manner of KernelGAN.

KernelGAN (Bell-Kligler, Shocher & Irani, NeurIPS 2019) finds the kernel ``k`` for which the
image ``I`` downscaled by ``k`` (``(I ⋆ k)↓2``) has the same patch distribution as ``I`` itself.

* **Generator**: a deep *linear* network -- convolutions with no bias and no nonlinearity
  (default kernel sizes 7, 5, 3, 1, 1, 1, so the effective kernel is 13×13), the last one with
  stride 2. Because the network is linear, ``G(x)`` equals one correlation of ``x`` with the
  product kernel. This implementation computes the effective kernel every iteration (a delta
  pushed through the layers, differentiable) and applies it as a single strided correlation:
  the same function and the same deep-linear parametrisation, at a fraction of the cost, which
  makes a few hundred iterations on small crops practical on a CPU.
* **Discriminator**: a fully-convolutional patch critic (a ``d_kernel``² spectral-norm conv, then
  1×1 convs with batch norm and ReLU, sigmoid output), trained with least-squares GAN targets to
  tell crops of ``I`` (real) from crops of ``G(I)`` (fake).
* **Regularisers on the effective kernel** ``k``: ``|Σk − 1|`` (sum to one), ``Σ|k·m|`` with a
  mask ``m`` growing away from the centre (boundaries), ``mean |k|^0.2`` (sparsity),
  ``‖centre of mass − centre‖²`` (centralised), and during a warm-up ``‖k − k_bic‖²`` towards
  the ×2 antialiased bicubic kernel (KernelGAN's "bicubic" start). KernelGAN's schedule is kept:
  sparsity and centring are switched on when the bicubic prior is switched off.

Crops are drawn with probability growing with the local gradient magnitude, as in KernelGAN.
The ×4 kernel is the analytic composition of the ×2 kernel with itself
(:func:`optisr.degrade.kernel_math.compose_x4_kernel`).

The returned kernel is a *correlation* kernel anchored at its middle pixel, ready for
:func:`optisr.degrade.kernels.degrade_with_kernel`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optisr.degrade._image import check_image
from optisr.degrade.bicubic import cubic
from optisr.degrade.kernel_math import compose_x4_kernel, normalise_kernel
from optisr.errors import ConfigError, ShapeError

__all__ = ["KernelGANConfig", "estimate_kernel"]


@dataclass(frozen=True, kw_only=True)
class KernelGANConfig:
    """Settings of :func:`estimate_kernel` (KernelGAN's defaults in brackets where they differ)."""

    iters: int = 400  # optimisation steps [3000]
    crop: int = 64  # side of the G input crops, image pixels; D crops are G's output size
    batch: int = 2  # crops per step (each colour channel is a separate sample)
    g_kernels: tuple[int, ...] = (7, 5, 3, 1, 1, 1)  # G conv sizes → effective 13×13 kernel
    g_channels: int = 32  # G hidden width [64]
    d_kernel: int = 7  # receptive field of the critic
    d_channels: int = 16  # critic width [64]
    d_layers: int = 2  # 1×1 conv + BN + ReLU layers after the first conv [6]
    lr_g: float = 2e-3  # Adam learning rate of G [2e-4]
    lr_d: float = 3e-3  # Adam learning rate of D [2e-4]
    betas: tuple[float, float] = (0.5, 0.999)
    warmup_fraction: float = 0.1  # fraction of iterations with the bicubic prior
    lambda_bicubic: float = 5.0  # weight of ‖k − k_bic‖² during warm-up
    lambda_sum2one: float = 0.5
    lambda_boundaries: float = 0.5
    lambda_sparse: float = 0.2  # after warm-up [5]
    lambda_centralized: float = 1.0  # after warm-up
    init_noise: float = 0.1  # std of the G weights around the bicubic initialisation (relative)
    threads: int | None = None  # torch intra-op threads during the call (None = unchanged)

    def __post_init__(self) -> None:
        if self.iters < 1 or self.batch < 1:
            raise ConfigError(f"iters and batch must be >= 1; got {self.iters}, {self.batch}")
        if any(k < 1 or k % 2 == 0 for k in self.g_kernels) or not self.g_kernels:
            raise ConfigError(f"g_kernels must be odd sizes >= 1; got {self.g_kernels}")
        if self.crop < self.kernel_size + 2 * self.d_kernel:
            raise ConfigError(
                f"crop {self.crop} is too small for a {self.kernel_size}² kernel and a {self.d_kernel}² critic"
            )
        if not 0.0 <= self.warmup_fraction <= 1.0:
            raise ConfigError(f"warmup_fraction must be in [0, 1]; got {self.warmup_fraction}")

    @property
    def kernel_size(self) -> int:
        """Side of the effective ×2 kernel: ``1 + Σ (k_l − 1)``."""
        return 1 + sum(k - 1 for k in self.g_kernels)


def _bicubic_x2_kernel(size: int) -> np.ndarray:
    """MATLAB's antialiased ×½ bicubic weights at integer offsets, centred on the middle pixel."""
    t = np.arange(size, dtype=np.float64) - size // 2
    w = 0.5 * cubic(0.5 * t)
    return normalise_kernel(np.outer(w, w))


def _crop_sampler(grey: np.ndarray, crop: int, rng: np.random.Generator):
    """Return ``draw(n) -> (rows, cols)`` of crop corners, weighted by local gradient magnitude."""
    import cv2

    gy, gx = np.gradient(grey)
    mag = cv2.GaussianBlur(np.sqrt(gx * gx + gy * gy).astype(np.float32), (0, 0), crop / 8.0)
    h, w = grey.shape
    valid = mag[crop // 2 : h - crop + crop // 2 + 1, crop // 2 : w - crop + crop // 2 + 1]
    p = valid.ravel().astype(np.float64)
    p = p / p.sum() + 1e-3 / p.size if p.sum() > 0 else np.full(p.size, 1.0 / p.size)
    p /= p.sum()
    vw = valid.shape[1]

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        flat = rng.choice(p.size, size=n, p=p)
        return flat // vw, flat % vw

    return draw


def estimate_kernel(
    x: np.ndarray,
    *,
    scale: int = 2,
    iters: int | None = None,
    cfg: KernelGANConfig | None = None,
    seed: int | np.random.Generator = 0,
) -> np.ndarray:
    """Estimate the downscaling kernel of one image (KernelGAN-style, CPU-sized).

    Experimental: on a 128² synthetic texture blurred with σ = 0.3 or 2.5 HR px (×2), the estimated
    widths did not follow the true blur reliably (seeds 0–3, 400 iterations: the wider blur got the
    wider kernel in 3 of 4, by 0.06–1.75 px, and the narrower one in the fourth; 1500 iterations
    were no better), so treat a single estimate as a guess, not a measurement.

    Args:
        x: ``(H, W, C)`` float32 in [0, 1]; needs ``H, W >= cfg.crop``.
        scale: 2 (the learned kernel) or 4 (its analytic composition with itself).
        iters: overrides ``cfg.iters``.
        cfg: the estimator settings.
        seed: seed or numpy Generator (torch is seeded from it; results are deterministic for
            a fixed seed and thread count).
    Returns:
        ``(13, 13)`` (×2) or ``(37, 37)`` (×4) float64 correlation kernel, sum 1, anchored at
        its middle pixel (for the default ``g_kernels``).
    Raises:
        ConfigError: scale not 2 or 4. ShapeError: image smaller than the crop.
    """
    import torch
    import torch.nn.functional as F

    cfg = cfg or KernelGANConfig()
    if iters is not None:
        cfg = KernelGANConfig(**{**cfg.__dict__, "iters": int(iters)})
    if scale not in (2, 4):
        raise ConfigError(f"estimate_kernel supports scale 2 or 4; got {scale}")
    x = check_image(x)
    h, w, _c = x.shape
    if min(h, w) < cfg.crop:
        raise ShapeError(f"image {h}×{w} is smaller than the estimator crop {cfg.crop}; lower crop")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(2**31)))
            k2 = _train(x, cfg, rng, torch, F)
    finally:
        torch.set_num_threads(old_threads)
    return compose_x4_kernel(k2) if scale == 4 else k2


def _train(x: np.ndarray, cfg: KernelGANConfig, rng: np.random.Generator, torch, F) -> np.ndarray:
    nn = torch.nn
    ks = cfg.kernel_size
    img = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))  # (C, H, W)
    grey = x.mean(axis=2)
    draw = _crop_sampler(grey, cfg.crop, rng)
    out_size = (cfg.crop - ks) // 2 + 1

    # --- G: deep linear conv stack 1 → ch → … → 1, no bias ---
    chans = [1] + [cfg.g_channels] * (len(cfg.g_kernels) - 1) + [1]
    # Initialise the product of the layers to the ×2 bicubic kernel (KernelGAN starts from it
    # too, through its bicubic loss): channel 0 carries the bicubic kernel through identity
    # maps, every other weight is small noise that lets the network move away from it.
    g_weights = nn.ParameterList()
    k_first = _bicubic_x2_kernel(cfg.g_kernels[0])
    for i, k in enumerate(cfg.g_kernels):
        wgt = cfg.init_noise * torch.randn(chans[i + 1], chans[i], k, k) / (chans[i] * k * k) ** 0.5
        if i == 0:
            wgt[0, 0] += torch.from_numpy(k_first).float()
        else:
            wgt[0, 0, k // 2, k // 2] += 1.0
        g_weights.append(nn.Parameter(wgt))
    delta = torch.zeros(1, 1, 2 * ks - 1, 2 * ks - 1)
    delta[0, 0, ks - 1, ks - 1] = 1.0

    def effective_kernel() -> torch.Tensor:
        y = delta
        for wgt in g_weights:
            y = F.conv2d(y, wgt)
        return torch.flip(y[0, 0], dims=(0, 1))  # (ks, ks) correlation kernel

    # --- D: patch critic ---
    layers: list = [nn.utils.parametrizations.spectral_norm(nn.Conv2d(1, cfg.d_channels, cfg.d_kernel))]
    for _ in range(cfg.d_layers):
        layers += [nn.Conv2d(cfg.d_channels, cfg.d_channels, 1), nn.BatchNorm2d(cfg.d_channels), nn.ReLU(True)]
    layers += [nn.Conv2d(cfg.d_channels, 1, 1), nn.Sigmoid()]
    disc = nn.Sequential(*layers)

    opt_g = torch.optim.Adam(g_weights.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=cfg.betas)

    k_bic = torch.from_numpy(_bicubic_x2_kernel(ks)).float()
    r = torch.arange(ks, dtype=torch.float32) - ks // 2
    dist = torch.sqrt(r[:, None] ** 2 + r[None, :] ** 2)
    radius = ks / 2.0
    boundary_mask = torch.clamp((dist - radius / 2.0) / (radius / 2.0), min=0.0) ** 2
    centre = torch.tensor(float(ks // 2))
    rr, cc = torch.meshgrid(torch.arange(ks, dtype=torch.float32), torch.arange(ks, dtype=torch.float32), indexing="ij")
    warmup = int(round(cfg.warmup_fraction * cfg.iters))

    def crops(size: int) -> torch.Tensor:
        rows, cols = draw(cfg.batch)
        off = (cfg.crop - size) // 2
        tiles = [img[:, r0 + off : r0 + off + size, c0 + off : c0 + off + size] for r0, c0 in zip(rows, cols)]
        return torch.cat(tiles, 0)[:, None]  # (batch·C, 1, size, size)

    for it in range(cfg.iters):
        in_warmup = it < warmup
        g_in = crops(cfg.crop)
        real = crops(out_size)

        # G step
        k = effective_kernel()
        fake = F.conv2d(g_in, k[None, None], stride=2)
        d_fake = disc(fake)
        loss_g = F.mse_loss(d_fake, torch.ones_like(d_fake))
        loss_g = loss_g + cfg.lambda_sum2one * (k.sum() - 1.0).abs()
        loss_g = loss_g + cfg.lambda_boundaries * (k * boundary_mask).abs().sum()
        if in_warmup:
            loss_g = loss_g + cfg.lambda_bicubic * ((k - k_bic) ** 2).sum()
        else:
            loss_g = loss_g + cfg.lambda_sparse * (k.abs() + 1e-8).pow(0.2).mean()
            mass = k.sum() + 1e-8
            com_r, com_c = (k * rr).sum() / mass, (k * cc).sum() / mass
            loss_g = loss_g + cfg.lambda_centralized * ((com_r - centre) ** 2 + (com_c - centre) ** 2)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

        # D step: real and fake crops in one batch (one pass instead of two)
        d_both = disc(torch.cat([real, fake.detach()], 0))
        d_real, d_fake = d_both[: real.shape[0]], d_both[real.shape[0] :]
        loss_d = 0.5 * (F.mse_loss(d_real, torch.ones_like(d_real)) + F.mse_loss(d_fake, torch.zeros_like(d_fake)))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

    with torch.no_grad():
        k = effective_kernel().double().numpy()
    k = np.clip(k, 0.0, None)  # KernelGAN zeroes negligible/negative taps before saving
    if k.sum() <= 1e-12:
        return _bicubic_x2_kernel(ks)
    return normalise_kernel(k)
