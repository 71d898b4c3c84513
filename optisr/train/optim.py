"""Optimizers, per-step learning-rate schedules and gradient clipping from the ``train:`` config."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable

import torch

from optisr.errors import ConfigError
from optisr.train.config import OptimConfig, SchedulerConfig

__all__ = ["build_optimizer", "build_scheduler", "clip_gradients"]


def build_optimizer(params: Iterable[torch.nn.Parameter] | Iterable[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` / ``AdamW`` from an :class:`OptimConfig`."""
    cls = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}.get(cfg.type)
    if cls is None:
        raise ConfigError(f"optim.type: expected Adam or AdamW, got {cfg.type!r}")
    return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def _lr_factor(cfg: SchedulerConfig, total_steps: int, min_ratio: float) -> Callable[[int], float]:
    warmup = cfg.warmup_steps
    milestones = list(cfg.milestones)

    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        if cfg.type == "cosine":
            progress = min(1.0, (s - warmup) / max(1, total_steps - warmup))
            return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if cfg.type == "multistep":
            return cfg.gamma ** bisect.bisect_right(milestones, s)
        return 1.0

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` (one multiplier per parameter group) stepped once per optimisation step.

    Its ``state_dict`` holds only numbers, so it loads with ``weights_only=True``.
    """
    if cfg.type not in ("cosine", "multistep", "constant"):
        raise ConfigError(f"scheduler.type: expected cosine, multistep or constant, got {cfg.type!r}")
    lambdas = []
    for group in optimizer.param_groups:
        base = float(group.get("initial_lr", group["lr"]))
        lambdas.append(_lr_factor(cfg, total_steps, min(1.0, cfg.min_lr / base) if base > 0 else 0.0))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


def clip_gradients(params: Iterable[torch.Tensor], max_norm: float | None) -> float | None:
    """``clip_grad_norm_`` when ``max_norm`` is set; returns the total norm before clipping."""
    if max_norm is None:
        return None
    return float(torch.nn.utils.clip_grad_norm_(list(params), max_norm))
