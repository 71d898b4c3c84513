"""``optisr train blind``: GAN fine-tuning of blind SR generators (OTSR, WGAN-QC, RealSR's RaGAN).

    optisr train blind -c configs/blind/otsr_df2k.yaml --save-dir runs/otsr_df2k
    optisr train blind -c configs/blind/otsr_df2k.yaml --resume train.total_steps=60000
    optisr train blind -c configs/blind/distill_compact.yaml

The config has BasicSR-shaped sections: ``name``, ``network_g`` (arch, hyperparameters,
``pretrained``: a registry name such as ``realsr-df2k-x4`` or a weights file), ``network_d``
(:class:`~optisr.blind.critics.CriticConfig`), ``datasets: {train, val}``
(:mod:`optisr.blind.training_data`), ``losses`` (:class:`~optisr.blind.losses.LossConfig`),
``train`` (:class:`~optisr.train.config.TrainConfig` plus ``optim_d`` and D settings), ``distill``
and ``path``. Any key can be overridden on the command line (``losses.gan_mode=ragan``).

One iteration (research note §2.1, §4): a **G step** — pixel + perceptual + edge + adversarial
loss with D frozen (``requires_grad`` off; ``D(h)`` detached), G gradients clipped to
``train.clip_grad_norm`` — then a **D step** on ``fake = sr.detach().requires_grad_(True)``
with the mode's critic loss (QC regression + OT regulariser, or RaGAN), clipped to
``train.clip_grad_norm_d``. The loop (:func:`optisr.train.loop.fit`) steps both schedulers,
keeps the EMA of G, validates the EMA (PSNR/SSIM on BT.601 Y with a ``scale``-pixel border,
optionally NIQE), and writes training states and the ``best``/``last`` releases: the EMA
generator with BasicSR key names and metadata (arch, scale, training data, loss mode, version).

``distill.teacher`` set: the student ``network_g`` (e.g. ``SRVGGNetCompact``) is trained with
L1 on the teacher's clamped outputs for the same LR patches; no critic.

``distill.cache_dir`` set (a cache of :mod:`optisr.blind.teacher_cache`): the training patches
(LR, HR, teacher output) come from the cache and the teacher never runs. With ``gan_mode: none``
the student is trained with ``pixel_weight · L1(sr, hr) + teacher_weight · L1(sr, teacher) +
edge_weight · edge(sr, hr)`` (:class:`CachedDistillTask`); with a ``gan_mode`` the GAN engine
fine-tunes ``network_g`` on the cached patches (plus ``teacher_weight · L1(sr, teacher)`` when
that weight is > 0). The LR crop is ``datasets.train.gt_size / scale``; ``distill.redraw`` draws
noise and JPEG anew on the cached clean LR every time.

``network_g.tail_blocks`` K > 0 with ``distill.feature_cache`` (:mod:`optisr.blind.feature_cache`):
:class:`TailTask` trains only the last K RRDBs of a pretrained RRDBNet and the layers after them on
cached trunk features (the head never runs; each patch's LR degradation is the cached one).

Distributed (``torchrun``): G runs under DDP; the critic runs unwrapped and its gradients are
averaged by hand, because DDP does not support the critic's double backward (OT regulariser)
nor two forwards (real, fake) per backward. BatchNorm running statistics of the critic are
per rank (the critic is never used in eval mode).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from optisr.blind.critics import CriticConfig
from optisr.blind.feature_cache import FeatureCache
from optisr.blind.losses import LossConfig, LossSet
from optisr.blind.teacher_cache import CachePatches
from optisr.blind.training_data import TrainDataConfig, ValDataConfig, ValSample
from optisr.degrade.blur_noise_jpeg import BlurNoiseJpegConfig
from optisr.errors import ConfigError, InputFileError, ShapeError
from optisr.train.config import OptimConfig, PathConfig, TrainConfig
from optisr.train.loop import FitResult
from optisr.train.run import run_training

__all__ = [
    "BlindDatasetsConfig",
    "BlindTask",
    "BlindTrainConfig",
    "BlindTrainSection",
    "CachedDistillTask",
    "DistillConfig",
    "DistillTask",
    "NetworkGConfig",
    "TailTask",
    "CONFIG_CLASS",
    "build_task",
    "check_config",
    "train",
]


# ------------------------------------------------------------------------------------ configs


@dataclass
class NetworkGConfig:
    """The generator: ``type`` and its hyperparameters; fields of the other arch are ignored."""

    type: Literal["RRDBNet", "SRVGGNetCompact"] = "RRDBNet"
    num_in_ch: int = 3
    num_out_ch: int = 3
    scale: int = 4  # RRDBNet: 4, 2 or 1; SRVGGNetCompact: any
    num_feat: int = 64
    num_block: int = 23  # RRDBNet
    num_grow_ch: int = 32  # RRDBNet
    num_conv: int = 16  # SRVGGNetCompact
    act_type: Literal["prelu", "relu", "leakyrelu"] = "prelu"  # SRVGGNetCompact
    pretrained: str | None = None  # registry name (optisr models list) or weights file; null: random
    init: Literal["torch", "kaiming"] = "torch"  # from scratch: kaiming = He-normal (SRVGGNetCompact only)
    tail_blocks: int = 0  # RRDBNet: K > 0 trains only body[num_block-K:] and what follows (distill.feature_cache)

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")
        if self.type == "RRDBNet" and self.scale not in (1, 2, 4):
            raise ValueError(f"scale: RRDBNet supports 1, 2 or 4, got {self.scale}")
        if self.init == "kaiming" and self.type != "SRVGGNetCompact":
            raise ValueError("init: kaiming is implemented for SRVGGNetCompact only")
        if self.tail_blocks and (self.type != "RRDBNet" or not 0 < self.tail_blocks <= self.num_block):
            raise ValueError(f"tail_blocks: must be 0 or in 1..num_block ({self.num_block}) of an RRDBNet")

    def hyperparameters(self) -> dict[str, Any]:
        """Constructor arguments of the arch (as ``hyperparameters()`` of the module returns them)."""
        if self.type == "RRDBNet":
            keys = ("num_in_ch", "num_out_ch", "scale", "num_feat", "num_block", "num_grow_ch")
        else:
            keys = ("num_in_ch", "num_out_ch", "num_feat", "num_conv", "scale", "act_type")
        return {k: getattr(self, k) for k in keys}


@dataclass
class BlindDatasetsConfig:
    train: TrainDataConfig = field(default_factory=TrainDataConfig)
    val: ValDataConfig = field(default_factory=ValDataConfig)


@dataclass
class BlindTrainSection(TrainConfig):
    """``train:`` = :class:`TrainConfig` (``optim`` is G's) plus the critic's settings."""

    optim_d: OptimConfig | None = None  # critic optimizer; null: same as optim
    clip_grad_norm_d: float | None = None  # critic gradient clipping; null: none (OTSR)
    net_d_iters: int = 1  # G steps every net_d_iters iterations (OTSR D_update_ratio)
    net_d_init_iters: int = 0  # D-only warm-up iterations before the first G step

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.net_d_iters < 1:
            raise ValueError(f"net_d_iters must be >= 1, got {self.net_d_iters}")
        if self.net_d_init_iters < 0:
            raise ValueError(f"net_d_init_iters must be >= 0, got {self.net_d_init_iters}")
        if self.clip_grad_norm_d is not None and not self.clip_grad_norm_d > 0:
            raise ValueError(f"clip_grad_norm_d must be > 0 or null, got {self.clip_grad_norm_d}")


@dataclass
class DistillConfig:
    """Distillation: train ``network_g`` (the student) on the teacher's outputs with L1."""

    teacher: str | None = None  # registry name or weights file; null: no distillation
    tile: int = 0  # teacher forward tile (LR pixels; 0: whole patch)
    cache_dir: str | None = None  # teacher cache (optisr.blind.teacher_cache); the teacher never runs
    pixel_weight: float = 1.0  # cache: α of α·L1(sr, hr)
    teacher_weight: float = 1.0  # cache: β of β·L1(sr, teacher)
    edge_weight: float = 0.0  # cache, gan_mode none: OTSR Laplacian-edge MSE to the HR
    redraw: bool = True  # cache: fresh noise + JPEG on the cached clean LR (else the cached degraded LR)
    feature_cache: str | None = None  # RRDBNet trunk features (optisr.blind.feature_cache) for network_g.tail_blocks

    def __post_init__(self) -> None:
        for name in ("pixel_weight", "teacher_weight", "edge_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class BlindTrainConfig:
    """The whole ``optisr train blind`` config."""

    name: str = "blind"
    network_g: NetworkGConfig = field(default_factory=NetworkGConfig)
    network_d: CriticConfig = field(default_factory=CriticConfig)
    datasets: BlindDatasetsConfig = field(default_factory=BlindDatasetsConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    train: BlindTrainSection = field(default_factory=lambda: BlindTrainSection(total_steps=40_000))
    distill: DistillConfig = field(default_factory=DistillConfig)
    path: PathConfig = field(default_factory=lambda: PathConfig("runs/blind"))
    threads: int = 0  # torch CPU threads (0: torch's default)
    training_data: str | None = None  # free text for the release metadata (default: from datasets)


def check_config(cfg: BlindTrainConfig) -> None:
    """Cross-section checks that no single section can make; messages start with the key.

    Raises:
        ConfigError: e.g. a vgg128 critic whose ``input_size`` is not ``datasets.train.gt_size``.
    """
    gt = cfg.datasets.train.gt_size
    scale = cfg.network_g.scale
    if gt % scale:
        raise ConfigError(f"datasets.train.gt_size: must be a multiple of network_g.scale {scale}; got {gt}")
    distill = cfg.distill.teacher is not None
    if cfg.distill.cache_dir and distill:
        raise ConfigError("distill.cache_dir: the cache replaces the teacher; set distill.teacher to null")
    _check_tail_config(cfg)
    if (
        not distill
        and cfg.losses.gan_mode != "none"
        and cfg.network_d.type == "vgg128"
        and cfg.network_d.input_size != gt
    ):
        raise ConfigError(
            f"network_d.input_size: the vgg128 critic takes exactly {cfg.network_d.input_size}² images but "
            f"datasets.train.gt_size is {gt}; make them equal or use network_d.type patchgan / unet-sn"
        )
    val = cfg.datasets.val
    has_val = bool(val.dataroot_gt or val.bench or val.photos_dir)
    if cfg.train.best_metric and not has_val:
        raise ConfigError(
            f"train.best_metric: {cfg.train.best_metric!r} needs a validation set "
            "(datasets.val.dataroot_gt or datasets.val.bench); set it to null"
        )
    if val.photos_dir and not Path(val.photos_dir).is_dir():
        raise ConfigError(f"datasets.val.photos_dir: folder {val.photos_dir} not found")
    valid = {"psnr_y", "ssim_y", "niqe", "niqe_photos"}
    if cfg.train.best_metric and cfg.train.best_metric not in valid:
        raise ConfigError(
            f"train.best_metric: expected one of {', '.join(sorted(valid))}, got {cfg.train.best_metric!r}"
        )
    if cfg.train.best_guard and cfg.train.best_guard != "noise_photos_excess":
        raise ConfigError(f"train.best_guard: expected noise_photos_excess or null, got {cfg.train.best_guard!r}")
    if cfg.train.best_guard and not val.photos_dir:
        raise ConfigError("train.best_guard: noise_photos_excess needs datasets.val.photos_dir")
    if cfg.threads < 0:
        raise ConfigError(f"threads: must be >= 0, got {cfg.threads}")


def _check_tail_config(cfg: BlindTrainConfig) -> None:
    """A tail fine-tune (``network_g.tail_blocks``) and ``distill.feature_cache`` come together."""
    g, d = cfg.network_g, cfg.distill
    if bool(g.tail_blocks) != bool(d.feature_cache):
        raise ConfigError(
            "distill.feature_cache: a tail fine-tune needs both network_g.tail_blocks > 0 and a feature cache "
            "(python tools/build_feature_cache.py); set both or neither"
        )
    if not g.tail_blocks:
        return
    if d.cache_dir or d.teacher:
        raise ConfigError(
            "distill.feature_cache: it carries the HR and teacher patches; set cache_dir and teacher to null"
        )
    if d.redraw:
        raise ConfigError(
            "distill.redraw: cached features fix the LR degradation of each patch; set distill.redraw to false"
        )
    if not g.pretrained:
        raise ConfigError("network_g.pretrained: a tail fine-tune starts from the weights whose head made the features")


# ------------------------------------------------------------------------------- generators


def _load_pretrained(source: str, expect_arch: str, expect_hp: dict[str, Any], key: str) -> dict[str, torch.Tensor]:
    """State dict of a registry model or weights file, checked against the configured arch."""
    from optisr.blind.registry import load_model

    try:
        loaded = load_model(source)
    except (ConfigError, InputFileError) as exc:
        raise ConfigError(f"{key}: {exc}") from exc
    if loaded.arch != expect_arch:
        raise ConfigError(f"{key}: {source} is a {loaded.arch}, but the config says type {expect_arch}")
    diff = [
        f"{k}={loaded.hyperparameters.get(k)!r} (config {v!r})"
        for k, v in expect_hp.items()
        if loaded.hyperparameters.get(k) != v
    ]
    if diff:
        raise ConfigError(f"{key}: {source} does not fit the configured {expect_arch}: {', '.join(diff)}")
    return {k: v.detach().clone() for k, v in loaded.model.state_dict().items()}


def _build_generator(cfg: NetworkGConfig, state: dict[str, torch.Tensor] | None) -> nn.Module:
    from optisr.blind.checkpoints import build_model

    net = build_model(cfg.type, cfg.hyperparameters())
    if state is not None:
        net.load_state_dict(state, strict=True)
    elif cfg.init == "kaiming":
        from optisr.blind.archs.compact import SRVGGNetCompact, kaiming_init_

        assert isinstance(net, SRVGGNetCompact)  # NetworkGConfig refuses other archs
        kaiming_init_(net)
    return net


def _photo_noise(sr: np.ndarray, shape: tuple[int, int]) -> float:
    """Noise σ (0–255 units) of an ×s output brought back to the photo's ``shape``.

    ``sr``: ``(H·s, W·s, 3)`` float in [0, 1]. It is resized to ``shape`` with MATLAB bicubic
    (antialiased) and measured with :func:`optisr.degrade.estimate.noise_sigma` (Immerkær, the
    flattest half). The round trip averages away fine noise, so what it measures is grain at the
    photo's scale, the kind NIQE tends to reward. See :func:`photo_noise_reference`.
    """
    from optisr.degrade.bicubic import imresize
    from optisr.degrade.estimate import noise_sigma

    return noise_sigma(np.clip(imresize(sr, output_shape=shape), 0.0, 1.0))


def photo_noise_reference(lr: np.ndarray, scale: int) -> float:
    """:func:`_photo_noise` of the photo upscaled with MATLAB bicubic: the guard's reference.

    ``lr``: ``(H, W, 3)`` uint8. ``noise_photos_excess`` (validation) is the mean over the photos
    of an output's σ minus this σ: an output no noisier than plain bicubic interpolation of the
    photo scores ``<= 0``. No reference image is needed, so it can guard ``optisr adapt``'s
    NIQE-based choice on the user's own photos (``train.best_guard: noise_photos_excess``).
    """
    from optisr.degrade.bicubic import imresize

    up = np.clip(imresize(lr.astype(np.float32) / 255.0, float(scale)), 0.0, 1.0)
    return _photo_noise(up, lr.shape[:2])


def _forward_sr(model: nn.Module, x: torch.Tensor, scale: int, tile: int) -> torch.Tensor:
    """``model(x)`` with padding to the model's size multiple (and tiles when ``tile > 0``)."""
    from optisr.blind.tiling import pad_to_multiple, tiled_forward

    mult = int(getattr(model, "size_multiple", 1))
    h, w = x.shape[-2:]
    xp, _, _ = pad_to_multiple(x, mult)
    out = tiled_forward(model, xp, scale=scale, tile=tile, multiple=mult) if tile > 0 else model(xp)
    return out[..., : h * scale, : w * scale]


def _allreduce_grads(module: nn.Module) -> None:
    """Average the gradients of ``module`` over ranks (a no-op without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    n = dist.get_world_size()
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= n


def _finite(name: str, value: torch.Tensor, step: int) -> float:
    v = float(value.detach())
    if not math.isfinite(v):
        raise FloatingPointError(f"step {step}: {name} is {v}; stopping (the last state is kept)")
    return v


# -------------------------------------------------------------------------------------- tasks


def _generator_step(
    net: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_norm: float | None, logs: dict[str, float]
) -> None:
    """One optimiser step of a generator: zero the gradients, backward, clip (logging ``g_grad_norm``), step."""
    from optisr.train.optim import clip_gradients

    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = clip_gradients(net.parameters(), max_norm)
    if norm is not None:
        logs["g_grad_norm"] = norm
    optimizer.step()


class BlindTask:
    """The :class:`optisr.train.loop.TrainTask` of GAN training (``{"net_g", "net_d"}``).

    Building it checks the config and the data folders and loads the pretrained generator, so
    every config error surfaces before anything is written.
    """

    def __init__(self, cfg: BlindTrainConfig) -> None:
        from optisr.blind.training_data import PairedImages

        check_config(cfg)
        self.cfg = cfg
        self.scale = cfg.network_g.scale
        self.images: PairedImages | None = None
        self.cache: CachePatches | None = None
        self.features: FeatureCache | None = None
        if cfg.distill.feature_cache:
            self.features = _open_feature_cache(cfg)
        elif cfg.distill.cache_dir:
            self.cache = _open_cache(cfg)
        else:
            self.images = PairedImages(cfg.datasets.train, self.scale)
        g = cfg.network_g
        self._g_state = (
            _load_pretrained(g.pretrained, g.type, g.hyperparameters(), "network_g.pretrained")
            if g.pretrained
            else None
        )
        self._losses: LossSet | None = None  # None: no loss set (DistillTask)
        self._losses_device: torch.device | None = None
        self._val: list[ValSample] | None = None
        self._photos = 0  # index of the first NIQE-only photo in self._val
        self._noise_ref: dict[int, float] = {}  # photo index -> photo_noise_reference (computed once)
        self.perceptual_note: str | None = None
        self._build_losses()

    # -- losses are built once, moved to the batch's device on first use
    def _build_losses(self) -> None:
        from optisr.blind.losses import build_losses
        from optisr.blind.perceptual import PerceptualDisabledWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PerceptualDisabledWarning)
            try:
                losses = build_losses(self.cfg.losses)
            except (ConfigError, InputFileError) as exc:
                raise ConfigError(f"losses: {exc}") from exc
        self._losses = losses
        for w in caught:
            if not issubclass(w.category, PerceptualDisabledWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if self.cfg.losses.perceptual_weight and not losses.perceptual_enabled:
            self.perceptual_note = f"perceptual term disabled: {losses.perceptual_disabled_reason}"
            warnings.warn(self.perceptual_note, stacklevel=2)

    def _losses_on(self, device: torch.device) -> LossSet:
        losses = self._losses
        assert losses is not None  # built by BlindTask._build_losses; DistillTask never asks for it
        if self._losses_device != device:
            losses = self._losses = losses.to(device)
            self._losses_device = device
        return losses

    # -- TrainTask
    def build_model(self) -> dict[str, nn.Module]:
        from optisr.blind.critics import build_critic

        models = {"net_g": _build_generator(self.cfg.network_g, self._g_state)}
        if self.cfg.losses.gan_mode != "none":
            models["net_d"] = build_critic(self.cfg.network_d)
        return models

    def build_optimizers(self, models: dict[str, nn.Module], cfg: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        """G's optimizer from ``cfg.optim``; the critic's from ``cfg.optim_d`` (a :class:`BlindTrainSection`)."""
        from optisr.train.optim import build_optimizer

        trainable = [p for p in models["net_g"].parameters() if p.requires_grad]  # TailTask freezes the head
        opts = {"net_g": build_optimizer(trainable, cfg.optim)}
        if "net_d" in models:
            optim_d = cfg.optim_d if isinstance(cfg, BlindTrainSection) else None
            opts["net_d"] = build_optimizer(models["net_d"].parameters(), optim_d or cfg.optim)
        return opts

    def batch(self, step: int, rank: int) -> dict[str, torch.Tensor]:
        from optisr.blind.training_data import make_batch

        t = self.cfg.train
        if self.features is not None:
            from optisr.blind.feature_cache import feature_batch

            lq_size = self.cfg.datasets.train.gt_size // self.scale
            return feature_batch(self.features, t.batch_size, lq_size, t.seed, step, rank)
        if self.cache is not None:
            from optisr.blind.teacher_cache import cache_batch

            redraw = self.cache_degradation() if self.cfg.distill.redraw else None
            lq_size = self.cfg.datasets.train.gt_size // self.scale
            return cache_batch(self.cache, t.batch_size, lq_size, t.seed, step, rank, redraw=redraw)
        assert self.images is not None
        return make_batch(self.images, t.batch_size, t.seed, step, rank)

    def cache_degradation(self) -> BlurNoiseJpegConfig:
        """The noise + JPEG recipe the cache was built with (for redraws)."""
        from optisr.blind.teacher_cache import CacheDegradationConfig
        from optisr.config import from_dict

        assert self.cache is not None
        raw = self.cache.manifest.get("config", {}).get("degradation", {})
        return from_dict(CacheDegradationConfig, raw).build(self.scale)

    def train_step(
        self,
        models: dict[str, nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        batch: dict[str, torch.Tensor],
        step: int,
    ) -> dict[str, float]:
        from optisr.train.ema import unwrap_model
        from optisr.train.optim import clip_gradients

        t = self.cfg.train
        gt = batch["gt"]
        losses = self._losses_on(gt.device)
        net_g = models["net_g"]
        net_d = unwrap_model(models["net_d"]) if "net_d" in models else None
        logs: dict[str, float] = {}

        if step >= t.net_d_init_iters and (step - t.net_d_init_iters) % t.net_d_iters == 0:
            if net_d is not None:
                net_d.requires_grad_(False)
            sr = self.generate(net_g, batch)
            d_real = d_fake = None
            if net_d is not None:
                with torch.no_grad():
                    d_real = net_d(gt)
                d_fake = net_d(sr)
            total, terms = losses.generator_loss(sr, gt, d_real=d_real, d_fake=d_fake)
            beta = self.cfg.distill.teacher_weight
            if "teacher" in batch and beta > 0:
                l1_t = torch.nn.functional.l1_loss(losses.lowpass(sr), losses.lowpass(batch["teacher"]))
                terms["l1_teacher"] = float(l1_t.detach())
                total = total + beta * l1_t
            logs["g_loss"] = _finite("generator loss", total, step)
            logs.update({f"g_{k}": v for k, v in terms.items()})
            logs["cpu_s"] = time.process_time()  # this process's CPU seconds so far (for the release's cost)
            _generator_step(net_g, optimizers["net_g"], total, t.clip_grad_norm, logs)
            if net_d is not None:
                net_d.requires_grad_(True)
        elif net_d is not None:
            with torch.no_grad():
                sr = self.generate(net_g, batch)

        if net_d is not None:
            fake = sr.detach().requires_grad_(losses.critic_needs_fake_grad)
            real = gt.detach()
            d_real = net_d(real)
            d_fake = net_d(fake)
            loss_d = losses.critic_loss(d_real, d_fake, real=real, fake=fake)
            logs["d_loss"] = _finite("critic loss", loss_d, step)
            optimizers["net_d"].zero_grad(set_to_none=True)
            loss_d.backward()
            _allreduce_grads(net_d)
            norm = clip_gradients(net_d.parameters(), t.clip_grad_norm_d)
            if norm is not None:
                logs["d_grad_norm"] = norm
            optimizers["net_d"].step()
            logs["d_real"] = float(d_real.detach().mean())
            logs["d_fake"] = float(d_fake.detach().mean())
            for k, v in (getattr(losses.adversarial, "last_stats", None) or {}).items():
                if v is not None and k != "min_cost":
                    logs[f"d_{k}"] = float(v)
        return logs

    def generate(self, net_g: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The generator's output for a training batch: ``net_g(batch["lq"])`` (:class:`TailTask`: the tail)."""
        return net_g(batch["lq"])

    # -- validation
    def _val_samples(self) -> list[ValSample]:
        if self._val is None:
            from optisr.blind.training_data import load_val_photos, load_val_samples

            v = self.cfg.datasets.val
            self._val = load_val_samples(v, self.scale)
            self._photos = len(self._val)  # samples from here on are the NIQE-only photos
            self._val += load_val_photos(v)
        return self._val

    def validate(self, model: nn.Module, step: int) -> dict[str, float]:
        from optisr.metrics.image_quality import psnr, ssim
        from optisr.metrics.niqe import niqe

        samples = self._val_samples()
        if not samples:
            return {}
        v = self.cfg.datasets.val
        device = next(model.parameters()).device
        ps: list[float] = []
        ss: list[float] = []
        nq: list[float] = []
        nq_photos: list[float] = []
        noise_out: list[float] = []
        noise_ref: list[float] = []
        for i, s in enumerate(samples):
            photo = i >= self._photos
            x = torch.from_numpy(s.lr).permute(2, 0, 1)[None].float().div(255.0).to(device)
            sr = _forward_sr(model, x, self.scale, v.tile).clamp(0.0, 1.0)
            sr = sr.mul(255.0).round().div(255.0).cpu()  # as the written 8-bit PNG
            if s.hr is not None:
                hr = torch.from_numpy(s.hr).permute(2, 0, 1)[None].float().div(255.0)
                p = psnr(sr, hr, crop_border=self.scale, y_channel=True)
                q = ssim(sr, hr, crop_border=self.scale, y_channel=True)
                assert isinstance(p, torch.Tensor) and isinstance(q, torch.Tensor)  # tensor input: (B,) tensors
                ps.append(float(p[0]))
                ss.append(float(q[0]))
            if v.niqe or photo:
                with contextlib.suppress(ShapeError):  # fewer than two whole 96×96 blocks: no NIQE
                    (nq_photos if photo else nq).append(niqe(sr, crop_border=0 if photo else self.scale))
            if photo:
                noise_out.append(_photo_noise(sr[0].detach().permute(1, 2, 0).numpy(), s.lr.shape[:2]))
                if i not in self._noise_ref:
                    self._noise_ref[i] = photo_noise_reference(s.lr, self.scale)
                noise_ref.append(self._noise_ref[i])
        out = {}
        if ps:
            out["psnr_y"] = float(np.mean(ps))
            out["ssim_y"] = float(np.mean(ss))
        if nq:
            out["niqe"] = float(np.mean(nq))
        if nq_photos:
            out["niqe_photos"] = float(np.mean(nq_photos))
        if noise_out:
            out["noise_photos"] = float(np.mean(noise_out))
            out["noise_photos_excess"] = float(np.mean(noise_out) - np.mean(noise_ref))
        return out

    # -- release
    def describe_training_data(self) -> str:
        if self.cfg.training_data:
            return self.cfg.training_data
        if self.cache is not None:
            return self.cache.describe()
        if self.features is not None:
            return self.features.describe()
        assert self.images is not None
        return self.images.describe()

    def release_metadata(self) -> dict[str, str]:
        import optisr

        c = self.cfg
        meta = {
            "name": c.name,
            "training_data": self.describe_training_data(),
            "loss_mode": c.losses.gan_mode,
            "losses": json.dumps({k: v for k, v in _plain(c.losses).items() if k != "perceptual_weights_path"}),
            "critic": c.network_d.type if c.losses.gan_mode != "none" else "none",
            "pretrained": c.network_g.pretrained or "none",
            "optisr_version": optisr.__version__,
            "version": "1",
        }
        if self.perceptual_note:
            meta["note"] = self.perceptual_note
        if self.cache is not None:
            meta.update(_cache_metadata(self.cache.manifest, len(self.cache), c.distill.redraw))
        return meta

    def save_release(self, model: nn.Module, path: Path, metrics: dict[str, float]) -> None:
        from optisr.io.state_dict import save_model_safetensors
        from optisr.train.ema import unwrap_model

        clean = {k: round(float(v), 6) for k, v in metrics.items() if math.isfinite(float(v))}
        step = int(clean.pop("step", 0))
        meta: dict[str, Any] = {**self.release_metadata(), "step": str(step), "metrics": json.dumps(clean)}
        save_model_safetensors(unwrap_model(model), path, **meta)


class DistillTask(BlindTask):
    """Student ``network_g`` trained with L1 on the teacher's outputs (``distill.teacher``)."""

    def __init__(self, cfg: BlindTrainConfig) -> None:
        super().__init__(cfg)
        from optisr.blind.registry import load_model

        if cfg.distill.teacher is None:
            raise ConfigError("distill.teacher: DistillTask needs a teacher (a registry name or weights file)")
        try:
            loaded = load_model(cfg.distill.teacher)
        except (ConfigError, InputFileError) as exc:
            raise ConfigError(f"distill.teacher: {exc}") from exc
        if loaded.scale != self.scale:
            raise ConfigError(
                f"distill.teacher: {cfg.distill.teacher} is ×{loaded.scale} but network_g.scale is {self.scale}"
            )
        self.teacher = loaded.model.eval().requires_grad_(False)

    def _build_losses(self) -> None:  # L1 only
        self._losses = None
        self.perceptual_note = None

    def build_model(self) -> dict[str, nn.Module]:
        return {"net_g": _build_generator(self.cfg.network_g, self._g_state)}

    def train_step(
        self,
        models: dict[str, nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        batch: dict[str, torch.Tensor],
        step: int,
    ) -> dict[str, float]:
        lq = batch["lq"]
        if next(self.teacher.parameters()).device != lq.device:
            self.teacher.to(lq.device)
        with torch.no_grad():
            target = _forward_sr(self.teacher, lq, self.scale, self.cfg.distill.tile).clamp(0.0, 1.0)
        out = models["net_g"](lq)
        loss = torch.nn.functional.l1_loss(out, target)
        logs = {"l1_teacher": _finite("distillation loss", loss, step)}
        _generator_step(models["net_g"], optimizers["net_g"], loss, self.cfg.train.clip_grad_norm, logs)
        return logs

    def release_metadata(self) -> dict[str, str]:
        meta = super().release_metadata()
        meta.update(
            loss_mode="distill-l1",
            losses=json.dumps({"l1_teacher": 1.0}),
            critic="none",
            teacher=str(self.cfg.distill.teacher),
        )
        return meta


class CachedDistillTask(BlindTask):
    """Student ``network_g`` trained on a teacher cache (``distill.cache_dir``, ``gan_mode: none``).

    Loss: ``pixel_weight · L1(sr, hr) + teacher_weight · L1(sr, teacher) + edge_weight · edge(sr, hr)``
    with the weights of the ``distill`` section; the teacher outputs come from the cache.
    """

    def _build_losses(self) -> None:
        from optisr.blind.losses import EdgeLoss

        self._losses = None
        self.perceptual_note = None
        self._edge = EdgeLoss()

    def build_model(self) -> dict[str, nn.Module]:
        return {"net_g": _build_generator(self.cfg.network_g, self._g_state)}

    def train_step(
        self,
        models: dict[str, nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        batch: dict[str, torch.Tensor],
        step: int,
    ) -> dict[str, float]:
        d = self.cfg.distill
        sr = models["net_g"](batch["lq"])
        l1_hr = torch.nn.functional.l1_loss(sr, batch["gt"])
        l1_t = torch.nn.functional.l1_loss(sr, batch["teacher"])
        total = d.pixel_weight * l1_hr + d.teacher_weight * l1_t
        logs = {"l1_hr": float(l1_hr.detach()), "l1_teacher": float(l1_t.detach())}
        if d.edge_weight:
            edge = self._edge(sr, batch["gt"])
            total = total + d.edge_weight * edge
            logs["edge"] = float(edge.detach())
        logs["loss"] = _finite("distillation loss", total, step)
        logs["cpu_s"] = time.process_time()  # this process's CPU seconds so far (for the release's cost)
        _generator_step(models["net_g"], optimizers["net_g"], total, self.cfg.train.clip_grad_norm, logs)
        return logs

    def release_metadata(self) -> dict[str, str]:
        meta = super().release_metadata()
        d = self.cfg.distill
        meta.update(
            loss_mode="distill-cache-l1",
            losses=json.dumps({"l1_hr": d.pixel_weight, "l1_teacher": d.teacher_weight, "edge": d.edge_weight}),
            critic="none",
        )
        return meta


def _check_crop(cfg: BlindTrainConfig, key: str, cache_scale: int, cached_side: int, what: str) -> None:
    """A one-line ConfigError when the cache at ``key`` does not fit the generator's scale or the crop."""
    scale = cfg.network_g.scale
    if cache_scale != scale:
        raise ConfigError(f"{key}: the cache is ×{cache_scale} but network_g.scale is {scale}")
    lq = cfg.datasets.train.gt_size // scale
    if lq > cached_side:
        raise ConfigError(
            f"datasets.train.gt_size: {cfg.datasets.train.gt_size} needs {lq}² LR crops; "
            f"the cached {what} are {cached_side}²"
        )


def _open_cache(cfg: BlindTrainConfig) -> CachePatches:
    """The teacher cache of ``distill.cache_dir``, checked against the generator's scale and the crop."""
    from optisr.blind.teacher_cache import load_teacher_cache

    assert cfg.distill.cache_dir
    try:
        cache = load_teacher_cache(cfg.distill.cache_dir)
    except InputFileError as exc:
        raise ConfigError(f"distill.cache_dir: {exc}") from exc
    _check_crop(cfg, "distill.cache_dir", cache.scale, cache.lr.shape[1], "LR patches")
    return cache


def _cache_metadata(manifest: dict, patches: int, redraw: bool) -> dict[str, str]:
    """Release metadata of a run on a teacher cache (its ``cache.json`` manifest and the number of
    patches used): the teacher, the recipe, the noise licence."""
    c = manifest.get("config", {})
    noise = c.get("noise", {})
    return {
        "teacher": str(c.get("teacher")),
        "teacher_input": str(c.get("teacher_input")),
        "teacher_seconds": f"{float(manifest.get('teacher_seconds', 0.0)):.0f}",
        "cache_patches": str(patches),
        "degradation": json.dumps({**c.get("degradation", {}), "redraw": redraw}),
        "noise_source": str(noise.get("photos_dir")),
        "noise_license": str(noise.get("license", "")),
    }


class TailTask(BlindTask):
    """Fine-tune only the tail of a pretrained RRDBNet on cached trunk features.

    ``network_g.tail_blocks`` = K and ``distill.feature_cache`` (built by
    ``tools/build_feature_cache.py`` from the same ``network_g.pretrained`` weights with the same K).
    Trained: ``body[num_block - K :]``, ``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``,
    ``conv_last``; frozen (``requires_grad`` off, so the EMA keeps them bit-exact): ``conv_first`` and
    ``body[: num_block - K]``, whose outputs come from the cache. The losses are :class:`BlindTask`'s
    (``gan_mode`` none, otsr, ...; plus ``teacher_weight · L1(sr, teacher)``) on
    :meth:`~optisr.blind.archs.RRDBNet.tail_forward` of the cached maps. Validation and the release use
    the whole RRDBNet (frozen head + trained tail), loadable by ``optisr upscale --model-path``.

    The cached features fix each patch's LR degradation (no redraw, no flips); the release metadata
    says so. Single process only (the tail is called on the unwrapped network).
    """

    def __init__(self, cfg: BlindTrainConfig) -> None:
        from optisr.blind.archs import RRDBNet
        from optisr.blind.feature_cache import head_sha256

        super().__init__(cfg)
        assert self.features is not None and self._g_state is not None  # check_config: both are set
        k = cfg.network_g.tail_blocks
        if self.features.tail_blocks != k:
            raise ConfigError(
                f"distill.feature_cache: {cfg.distill.feature_cache} holds features for tail_blocks "
                f"{self.features.tail_blocks}, but network_g.tail_blocks is {k}"
            )
        net = _build_generator(cfg.network_g, self._g_state)
        assert isinstance(net, RRDBNet)  # NetworkGConfig: tail_blocks only for RRDBNet
        self.tail_blocks = k
        self.head_sha256 = head_sha256(net, k)
        if self.features.manifest.get("head_sha256") != self.head_sha256:
            raise ConfigError(
                f"distill.feature_cache: {cfg.distill.feature_cache} was made by another head than "
                f"network_g.pretrained {cfg.network_g.pretrained} (model {self.features.manifest.get('model')})"
            )

    def build_model(self) -> dict[str, nn.Module]:
        from optisr.blind.archs import RRDBNet

        models = super().build_model()
        net = models["net_g"]
        assert isinstance(net, RRDBNet)  # NetworkGConfig: tail_blocks only for RRDBNet
        head = set(net.head_parameter_names(self.tail_blocks))
        for name, p in net.named_parameters():
            p.requires_grad_(name not in head)
        return models

    def generate(self, net_g: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        from optisr.blind.archs import RRDBNet
        from optisr.train.ema import unwrap_model

        net = unwrap_model(net_g)
        if net is not net_g:
            raise ConfigError("network_g.tail_blocks: a tail fine-tune runs in one process (no torchrun / DDP)")
        assert isinstance(net, RRDBNet)
        return net.tail_forward(batch["first"], batch["trunk"], self.tail_blocks)

    def release_metadata(self) -> dict[str, str]:
        meta = super().release_metadata()
        assert self.features is not None
        f = self.features
        n = self.cfg.network_g.num_block
        meta.update(_cache_metadata(f.manifest.get("teacher_cache_manifest", {}), len(f), False))
        meta.update(
            trainable=f"tail: body[{n - self.tail_blocks}:{n}], conv_body, conv_up1, conv_up2, conv_hr, conv_last",
            tail_blocks=str(self.tail_blocks),
            head_sha256=self.head_sha256,
            feature_cache_note=str(f.manifest.get("note", "")),
        )
        return meta


def _open_feature_cache(cfg: BlindTrainConfig) -> FeatureCache:
    """The feature cache of ``distill.feature_cache``, checked against the generator's scale and the crop."""
    from optisr.blind.feature_cache import load_feature_cache

    assert cfg.distill.feature_cache
    try:
        cache = load_feature_cache(cfg.distill.feature_cache)
    except InputFileError as exc:
        raise ConfigError(f"distill.feature_cache: {exc}") from exc
    _check_crop(cfg, "distill.feature_cache", cache.scale, cache.lr.shape[1], "feature maps")
    return cache


def _plain(obj: Any) -> dict:
    from optisr.config import to_dict

    return to_dict(obj)


def build_task(cfg: BlindTrainConfig) -> BlindTask:
    """:class:`TailTask` for ``network_g.tail_blocks`` > 0, :class:`CachedDistillTask` for
    ``distill.cache_dir`` with ``gan_mode: none``, :class:`DistillTask` when ``distill.teacher`` is set,
    else :class:`BlindTask`."""
    if cfg.network_g.tail_blocks:
        return TailTask(cfg)
    if cfg.distill.cache_dir and cfg.losses.gan_mode == "none":
        return CachedDistillTask(cfg)
    return DistillTask(cfg) if cfg.distill.teacher else BlindTask(cfg)


# ------------------------------------------------------------------------------------- entry


CONFIG_CLASS = BlindTrainConfig


def train(
    cfg: BlindTrainConfig,
    *,
    save_dir: str | os.PathLike | None = None,
    resume: bool | str | os.PathLike = False,
    progress: bool = True,
    device: str | torch.device | None = "auto",
) -> FitResult:
    """Train the blind generator described by ``cfg`` (``optisr train blind`` ends here).

    Args:
        cfg: the whole config (e.g. from :func:`optisr.config.build_config`).
        save_dir: run folder; None: ``cfg.path.save_dir``.
        resume: False, True (latest readable state in ``save_dir``), or a state file / folder.
        progress: progress bar on rank 0.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...

    Returns:
        the :class:`~optisr.train.loop.FitResult` (``save_dir`` holds ``last.safetensors``).

    Raises:
        ConfigError / InputFileError: bad settings, data folders, pretrained weights or resume
            state, found before training starts (nothing is left in ``save_dir`` then).
    """
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    task = build_task(cfg)  # checks the config, the data folders and the pretrained weights
    return run_training(
        task,
        cfg.train,
        save_dir=Path(save_dir or cfg.path.save_dir),
        resume=resume,
        progress=progress,
        device=device,
        config=cfg,
    )
