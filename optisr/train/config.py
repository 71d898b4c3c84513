"""The generic sections of a trainer config: ``train:`` (:class:`TrainConfig` with its
:class:`OptimConfig` and :class:`SchedulerConfig`) and ``path:`` (:class:`PathConfig`).

Trainers embed them in their own config dataclass (built with :func:`optisr.config.build_config`).
Invalid values raise ``ValueError`` on construction, which ``build_config`` turns into a one-line
:class:`~optisr.errors.ConfigError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["OptimConfig", "PathConfig", "SchedulerConfig", "TrainConfig"]


@dataclass
class OptimConfig:
    """Optimizer: ``type`` Adam or AdamW, learning rate, betas, weight decay."""

    type: Literal["Adam", "AdamW"] = "Adam"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be in [0, 1), got {list(self.betas)}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")


@dataclass
class SchedulerConfig:
    """Learning-rate schedule as a multiplier of ``optim.lr``, evaluated per step.

    * ``warmup_steps``: linear ramp ``(s + 1) / warmup_steps`` for the first steps (all types);
    * ``cosine``: from ``lr`` down to ``min_lr`` at ``total_steps`` (half cosine after warm-up);
    * ``multistep``: multiplied by ``gamma`` at each of ``milestones`` (absolute steps);
    * ``constant``: ``lr`` (after warm-up).
    """

    type: Literal["cosine", "multistep", "constant"] = "constant"
    warmup_steps: int = 0
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.5
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing, got {self.milestones}")
        if self.min_lr < 0:
            raise ValueError(f"min_lr must be >= 0, got {self.min_lr}")


@dataclass
class PathConfig:
    """The ``path:`` section: where a run writes states, releases and logs (``--save-dir`` wins)."""

    save_dir: str = "runs"


@dataclass
class TrainConfig:
    """The ``train:`` section of a trainer config (embed it in the trainer's own dataclass).

    ``ema_decay`` None or 0 disables the EMA; ``clip_grad_norm`` None disables clipping;
    ``log_every`` / ``val_every`` / ``save_every`` 0 disable (states and the ``last`` release
    are still written at ``total_steps``); ``keep_states`` 0 keeps every state;
    ``best_metric`` None disables best tracking, ``best_mode`` says whether larger (``max``,
    PSNR) or smaller (``min``, RMSE) is better; ``best_guard`` names a second metric that must be
    ``<= 0`` for a validation to become ``best`` (a constraint, e.g. "no grainier than bicubic
    upscaling"; the starting model, step 0, is exempt, so a run whose every step breaks it keeps
    the start); ``stop_after_guarded`` N > 0 ends training (as the last step) once N validations in
    a row broke it (0: never). ``time_limit_s`` ends training early once this process has trained that long
    (wall clock): the step reached is treated as the last one (validation, state, ``last``
    release); the schedule keeps assuming ``total_steps``, so ``--resume`` continues the same run. ``val_at_start`` also validates the starting model (step 0,
    a fresh run only; a candidate for ``best``, not written as ``last``): with ``best_metric`` the
    best release may then be the unchanged start. ``batch_size`` is per process; the loop does not
    use it, the task does.
    """

    total_steps: int
    batch_size: int = 16
    seed: int = 0
    optim: OptimConfig = field(default_factory=OptimConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    clip_grad_norm: float | None = None
    ema_decay: float | None = None
    ema_warmup_steps: int = 0
    log_every: int = 100
    val_every: int = 1000
    save_every: int = 1000
    keep_states: int = 3
    best_metric: str | None = None
    best_mode: Literal["max", "min"] = "max"
    best_guard: str | None = None
    stop_after_guarded: int = 0
    time_limit_s: float | None = None
    val_at_start: bool = False

    def __post_init__(self) -> None:
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ValueError(f"time_limit_s must be > 0 or null, got {self.time_limit_s}")
        for name in ("total_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("log_every", "val_every", "save_every", "keep_states", "ema_warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.best_guard is not None and not self.best_metric:
            raise ValueError("best_guard needs best_metric (it restricts which validation becomes best)")
        if self.stop_after_guarded < 0:
            raise ValueError(f"stop_after_guarded must be >= 0, got {self.stop_after_guarded}")
        if self.stop_after_guarded and not self.best_guard:
            raise ValueError("stop_after_guarded needs best_guard (it counts validations that broke it)")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) or null, got {self.ema_decay}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be > 0 or null, got {self.clip_grad_norm}")
