"""Exponential moving average (EMA) of model weights, the usual ``net_g_ema`` of SR trainers."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

__all__ = ["ModelEMA", "unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` / ``DataParallel`` / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


class ModelEMA:
    """Keep ``ema = d * ema + (1 - d) * param`` for every floating-point parameter.

    Buffers (BatchNorm running statistics, counters) are copied from the model at every update
    rather than averaged, and non-floating parameters are copied as well.

    The decay ``d`` of update number ``n`` (1-based) is ``decay`` when ``warmup_steps == 0``,
    otherwise ``decay * (1 - exp(-n / warmup_steps))``: early updates follow the model closely,
    so the average is not dominated by the random initial weights.

    Args:
        model: the model being trained (a DDP wrapper is unwrapped); it is deep-copied.
        decay: the target decay in ``[0, 1)``; BasicSR uses 0.999.
        warmup_steps: time constant of the decay warm-up in updates (0 = none).

    Attributes:
        module: the averaged model, in eval mode and with ``requires_grad=False``; use it for
            validation and for the released weights.
        num_updates: number of :meth:`update` calls so far.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup_steps: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        if warmup_steps < 0:
            raise ValueError(f"EMA warmup_steps must be >= 0, got {warmup_steps}")
        self.decay = float(decay)
        self.warmup_steps = int(warmup_steps)
        self.num_updates = 0
        self.module = copy.deepcopy(unwrap_model(model)).eval()
        self.module.requires_grad_(False)

    def current_decay(self, n: int | None = None) -> float:
        """The decay used by update number ``n`` (default: the next update)."""
        n = self.num_updates + 1 if n is None else n
        if self.warmup_steps == 0:
            return self.decay
        return self.decay * (1.0 - math.exp(-n / self.warmup_steps))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the current weights of ``model`` (same architecture) into the average."""
        d = self.current_decay()
        self.num_updates += 1
        src = unwrap_model(model)
        ema_params = dict(self.module.named_parameters())
        for name, p in src.named_parameters():
            e = ema_params[name]
            if e.dtype.is_floating_point or e.dtype.is_complex:
                e.lerp_(p.detach().to(e.device, e.dtype), 1.0 - d)
            else:
                e.copy_(p)
        ema_buffers = dict(self.module.named_buffers())
        for name, b in src.named_buffers():
            if name in ema_buffers:
                ema_buffers[name].copy_(b)

    def state_dict(self) -> dict[str, Any]:
        """``{"module": state dict of the averaged model, "decay", "warmup_steps", "num_updates"}``."""
        return {
            "module": self.module.state_dict(),
            "decay": self.decay,
            "warmup_steps": self.warmup_steps,
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.decay = float(state.get("decay", self.decay))
        self.warmup_steps = int(state.get("warmup_steps", self.warmup_steps))
        self.num_updates = int(state.get("num_updates", 0))

    def to(self, device: torch.device | str) -> ModelEMA:
        self.module.to(device)
        return self
