"""A small, generic training loop shared by the optisr trainers.

A trainer supplies a *task* (:class:`TrainTask`) — model, batches, loss, validation, release
export — and a :class:`TrainConfig`; :func:`fit` does the rest: optimizer and learning-rate
schedule, gradient clipping, EMA, logging, validation with best-model tracking, atomic training
states every ``save_every`` steps, exact resume, and data-parallel training under ``torchrun``.

Step semantics
--------------
``step`` counts completed optimisation steps. Iteration ``step`` (0-based) re-seeds the global
RNGs from ``(seed, step, rank)``, calls ``task.batch(step, rank)``, does one optimizer step and
one scheduler step, then updates the EMA. After it, ``done = step + 1`` steps are complete and
logging / validation / saving happen when ``done`` is a multiple of ``log_every`` /
``val_every`` / ``save_every`` (and always at ``total_steps``). A state file
``state_{done:08d}.pt`` resumes at iteration ``done``. Because batches and all global
randomness depend only on ``(seed, step, rank)`` (see :mod:`optisr.train.seeding`), a resumed
run computes exactly what the uninterrupted run would have computed.

Distributed
-----------
Under ``torchrun`` each rank calls ``task.batch(step, rank)`` for its own part of the global
batch (``world_size * batch_size`` samples per step when each rank draws ``batch_size``); DDP
averages the gradients. Only rank 0 validates, logs, and writes states and releases.

GAN / multi-network tasks
-------------------------
``build_model()`` may return ``{"net_g": G, "net_d": D}``; the *first* entry is the main model
(validated, EMA-averaged and released). By default each network with trainable parameters gets
an optimizer built from ``cfg.optim``; the task can instead implement
``build_optimizers(models, cfg) -> {name: Optimizer}`` (e.g. a different lr for D). Every
optimizer gets a scheduler from ``cfg.scheduler``. The task then implements
``train_step(models, optimizers, batch, step) -> {name: float}`` instead of ``loss``: it does its
own ``zero_grad`` / ``backward`` / ``step`` (G then D; use :func:`clip_gradients` if wanted);
``fit`` still steps the schedulers and updates the EMA of the main model afterwards.
"""

from __future__ import annotations

import argparse
import bisect
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Protocol, runtime_checkable

import torch
from torch import nn

from optisr.errors import ConfigError, InputFileError
from optisr.train.checkpoint import latest_state, load_training_state, prune_states, save_training_state, state_path
from optisr.config import to_dict
from optisr.train.distributed import DistInfo, all_reduce_mean, barrier, cleanup, init_distributed, wrap_ddp
from optisr.train.ema import ModelEMA
from optisr.train.logger import TrainLogger
from optisr.train.seeding import seed_everything, seed_step

__all__ = [
    "FitResult",
    "OptimConfig",
    "SchedulerConfig",
    "TrainConfig",
    "TrainTask",
    "add_common_train_args",
    "build_optimizer",
    "build_scheduler",
    "clip_gradients",
    "collect_overrides",
    "fit",
]


# ------------------------------------------------------------------------------------ configs


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
    PSNR) or smaller (``min``, RMSE) is better. ``time_limit_s`` ends training early once this
    process has trained that long (wall clock): the step reached is treated as the last one
    (validation, state, ``last`` release); the schedule keeps assuming ``total_steps``, so
    ``--resume`` continues the same run. ``batch_size`` is per process; the loop does not
    use it, the task does.
    """

    total_steps: int
    batch_size: int = 16
    seed: int = 0
    optim: OptimConfig = field(default_factory=OptimConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    clip_grad_norm: Optional[float] = None
    ema_decay: Optional[float] = None
    ema_warmup_steps: int = 0
    log_every: int = 100
    val_every: int = 1000
    save_every: int = 1000
    keep_states: int = 3
    best_metric: Optional[str] = None
    best_mode: Literal["max", "min"] = "max"
    time_limit_s: Optional[float] = None

    def __post_init__(self) -> None:
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ValueError(f"time_limit_s must be > 0 or null, got {self.time_limit_s}")
        for name in ("total_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("log_every", "val_every", "save_every", "keep_states", "ema_warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) or null, got {self.ema_decay}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be > 0 or null, got {self.clip_grad_norm}")


# ------------------------------------------------------------------------------- task protocol


@runtime_checkable
class TrainTask(Protocol):
    """What a trainer implements. Optional hooks: ``build_optimizers`` and ``train_step``.

    Batches are arbitrary nests of tensors (dict / list / tuple); ``fit`` moves them to the
    device. ``loss`` and ``train_step`` return ``{name: float}`` logs with the same keys on every
    rank (they are averaged across ranks for logging).
    """

    def build_model(self) -> nn.Module | Mapping[str, nn.Module]:
        """The network(s) on CPU; called after ``seed_everything(cfg.seed)``."""
        ...

    def batch(self, step: int, rank: int) -> Any:
        """This rank's batch for ``step``; a pure function of ``(seed, step, rank)``.

        Use :func:`optisr.train.seeding.step_generator` / ``step_rng``.
        """
        ...

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss (with graph) and logs. ``model`` may be DDP-wrapped: call it, don't poke it."""
        ...

    def validate(self, model: nn.Module, step: int) -> dict[str, float]:
        """Metrics of the eval model (EMA when enabled), rank 0 only, under ``torch.no_grad``."""
        ...

    # Optional: ``val_images(model, step) -> {tag: (H, W, 3) uint8}``, logged after ``validate``
    # (TensorBoard images, or PNGs under ``logs/images`` without TensorBoard).

    def save_release(self, model: nn.Module, path: Path, metrics: dict[str, float]) -> None:
        """Write release weights, e.g. ``save_model_safetensors(model, path)``.

        ``path`` is ``save_dir/best.safetensors`` or ``save_dir/last.safetensors``; the task may
        change the suffix. ``metrics`` holds the validation metrics and ``"step"``.
        """
        ...


# ------------------------------------------------------------------------------------ builders


def build_optimizer(params: Iterable[torch.nn.Parameter] | Iterable[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` / ``AdamW`` from an :class:`OptimConfig`."""
    cls = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}.get(cfg.type)
    if cls is None:
        raise ConfigError(f"optim.type: expected Adam or AdamW, got {cfg.type!r}")
    return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def _lr_factor(cfg: SchedulerConfig, total_steps: int, min_ratio: float):
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


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(_to_device(v, device) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


# ---------------------------------------------------------------------------------------- fit


@dataclass
class FitResult:
    """What :func:`fit` returns (on every rank).

    ``models`` are the unwrapped networks, ``ema`` the :class:`ModelEMA` or None,
    ``last_metrics`` the last validation metrics (rank 0; ``{}`` elsewhere).
    """

    step: int
    start_step: int
    best_value: float | None
    best_step: int | None
    last_metrics: dict[str, float]
    models: dict[str, nn.Module]
    ema: ModelEMA | None

    @property
    def model(self) -> nn.Module:
        return next(iter(self.models.values()))


def _resolve_resume(resume: bool | str | Path | None, save_dir: Path) -> Path | None:
    if resume is None or resume is False or resume == "":
        return None
    if resume is True:
        return latest_state(save_dir)
    path = Path(resume)
    if path.is_dir():
        found = latest_state(path)
        if found is None:
            raise InputFileError(f"{path}: no state_*.pt to resume from")
        return found
    if not path.is_file():
        raise InputFileError(f"{path}: training state to resume from not found")
    return path


def fit(
    task: TrainTask,
    cfg_train: TrainConfig,
    *,
    save_dir: str | Path,
    resume: bool | str | Path = False,
    progress: bool = True,
    dist_info: DistInfo | None = None,
    extra_state: Mapping[str, Any] | None = None,
    tensorboard: bool | None = None,
    ddp_kwargs: Mapping[str, Any] | None = None,
) -> FitResult:
    """Train ``task`` for ``cfg_train.total_steps`` steps; see the module docstring.

    Args:
        task: a :class:`TrainTask`.
        cfg_train: the :class:`TrainConfig`.
        save_dir: run folder: ``state_*.pt``, ``best/last`` releases, ``logs/``.
        resume: False (start fresh), True (latest state in ``save_dir``, fresh when none), or a
            state file / folder path.
        progress: show a tqdm bar on rank 0.
        dist_info: from :func:`init_distributed`; None = initialise from the environment here
            (and leave the process group at the end).
        extra_state: stored in every state's ``extra`` (e.g. the whole config as ``to_dict``).
        tensorboard: None = TensorBoard event files when tensorboard is installed, False = only
            ``logs/metrics.jsonl``.
        ddp_kwargs: extra ``DistributedDataParallel`` arguments, e.g.
            ``{"find_unused_parameters": True}``.

    Returns:
        :class:`FitResult`.
    """
    cfg = cfg_train
    save_dir = Path(save_dir)
    own_dist = dist_info is None
    info = init_distributed() if own_dist else dist_info
    device = info.device
    try:
        return _fit(task, cfg, save_dir, resume, progress, info, device, extra_state, tensorboard, ddp_kwargs)
    finally:
        if own_dist:
            cleanup(info)


def _fit(
    task, cfg: TrainConfig, save_dir: Path, resume, progress: bool, info: DistInfo, device, extra_state, tensorboard, ddp_kwargs
):
    custom_step = callable(getattr(task, "train_step", None))
    if not custom_step and not callable(getattr(task, "loss", None)):
        raise ConfigError(f"{type(task).__name__} implements neither loss(model, batch) nor train_step(...)")

    seed_everything(cfg.seed)
    built = task.build_model()
    models: dict[str, nn.Module] = dict(built) if isinstance(built, Mapping) else {"model": built}
    if not models:
        raise ConfigError("build_model() returned no network")
    main_name = next(iter(models))
    for m in models.values():
        m.to(device)
    if callable(getattr(task, "build_optimizers", None)):
        optimizers = dict(task.build_optimizers(models, cfg))
    else:
        optimizers = {
            name: build_optimizer(m.parameters(), cfg.optim)
            for name, m in models.items()
            if any(p.requires_grad for p in m.parameters())
        }
    if not optimizers:
        raise ConfigError("no trainable parameters: the models have no parameter with requires_grad")
    schedulers = {name: build_scheduler(opt, cfg.scheduler, cfg.total_steps) for name, opt in optimizers.items()}
    ema = ModelEMA(models[main_name], cfg.ema_decay, cfg.ema_warmup_steps) if cfg.ema_decay else None

    start = 0
    best_value: float | None = None
    best_step: int | None = None
    state_file = _resolve_resume(resume, save_dir)
    if state_file is not None:
        start, saved_extra = load_training_state(
            state_file, model=models, optimizer=optimizers, scheduler=schedulers, ema=ema, map_location=device
        )
        best_value = saved_extra.get("best_value")
        best_step = saved_extra.get("best_step")
        if info.is_main:
            print(f"resuming from {state_file} at step {start}", flush=True)
    elif resume is True and info.is_main:
        print(f"no training state in {save_dir}: starting from step 0", flush=True)
    barrier(info)  # every rank has read the state before rank 0 may prune it

    wrapped = {name: wrap_ddp(m, info, **dict(ddp_kwargs or {})) for name, m in models.items()}
    train_params = [p for opt in optimizers.values() for g in opt.param_groups for p in g["params"]]
    logger = TrainLogger(
        save_dir / "logs", enabled=info.is_main, purge_step=start + 1 if start > 0 else None, use_tensorboard=tensorboard
    )
    total = cfg.total_steps
    last_metrics: dict[str, float] = {}
    released_last_at = -1

    def eval_model() -> nn.Module:
        return ema.module if ema is not None else models[main_name]

    def extra() -> dict[str, Any]:
        out = {"best_value": best_value, "best_step": best_step, "train_config": to_dict(cfg)}
        out.update(extra_state or {})
        return out

    from tqdm import tqdm

    bar = tqdm(total=total, initial=start, disable=not (progress and info.is_main), dynamic_ncols=True, desc="train")
    acc: dict[str, float] = {}
    n_acc = 0
    t_last = t_start = time.perf_counter()
    try:
        for step in range(start, total):
            seed_step(cfg.seed, step, info.rank)
            batch = _to_device(task.batch(step, info.rank), device)
            for m in wrapped.values():
                m.train()
            if custom_step:
                logs = dict(task.train_step(wrapped, optimizers, batch, step) or {})
            else:
                for opt in optimizers.values():
                    opt.zero_grad(set_to_none=True)
                model_arg = wrapped[main_name] if len(wrapped) == 1 else wrapped
                loss, logs = task.loss(model_arg, batch)
                logs = dict(logs or {})
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    raise FloatingPointError(f"step {step}: loss is {loss_value}; stopping (last state is kept)")
                logs.setdefault("loss", loss_value)
                loss.backward()
                norm = clip_gradients(train_params, cfg.clip_grad_norm)
                if norm is not None:
                    logs["grad_norm"] = norm
                for opt in optimizers.values():
                    opt.step()
            for sch in schedulers.values():
                sch.step()
            if ema is not None:
                ema.update(models[main_name])
            done = step + 1
            if cfg.time_limit_s is not None and done < total:
                out_of_time = float(time.perf_counter() - t_start > cfg.time_limit_s)
                if all_reduce_mean({"stop": out_of_time}, info)["stop"] > 0:  # any rank: all stop
                    if info.is_main:
                        print(f"time limit {cfg.time_limit_s:g} s reached at step {done}", flush=True)
                    total = done
            for k, v in logs.items():
                acc[k] = acc.get(k, 0.0) + float(v)
            n_acc += 1
            bar.update(1)

            if cfg.log_every and (done % cfg.log_every == 0 or done == total):
                means = all_reduce_mean({k: v / n_acc for k, v in acc.items()}, info)
                now = time.perf_counter()
                means["lr"] = next(iter(optimizers.values())).param_groups[0]["lr"]
                means["sec_per_step"] = (now - t_last) / n_acc
                t_last = now
                logger.scalars(done, means, prefix="train/")
                bar.set_postfix({k: f"{v:.4g}" for k, v in list(means.items())[:4]}, refresh=False)
                acc, n_acc = {}, 0

            if cfg.val_every and (done % cfg.val_every == 0 or done == total):
                if info.is_main:
                    model = eval_model()
                    model.eval()
                    with torch.no_grad():
                        metrics = {k: float(v) for k, v in (task.validate(model, done) or {}).items()}
                        if callable(getattr(task, "val_images", None)):  # optional hook: {tag: HxWx3 uint8}
                            for tag, img in (task.val_images(model, done) or {}).items():
                                logger.image(done, tag, img)
                    models[main_name].train()
                    last_metrics = metrics
                    logger.scalars(done, metrics, prefix="val/")
                    release_metrics = {**metrics, "step": float(done)}
                    if cfg.best_metric:
                        if cfg.best_metric not in metrics:
                            raise ConfigError(
                                f"train.best_metric: validate() returned no {cfg.best_metric!r} "
                                f"(it returned {', '.join(sorted(metrics)) or 'nothing'})"
                            )
                        value = metrics[cfg.best_metric]
                        better = best_value is None or (
                            value > best_value if cfg.best_mode == "max" else value < best_value
                        )
                        if better:
                            best_value, best_step = value, done
                            task.save_release(model, save_dir / "best.safetensors", release_metrics)
                    task.save_release(model, save_dir / "last.safetensors", release_metrics)
                    released_last_at = done
                barrier(info)

            if (cfg.save_every and done % cfg.save_every == 0) or done == total:
                if info.is_main:
                    save_training_state(
                        state_path(save_dir, done),
                        step=done,
                        model=models,
                        optimizer=optimizers,
                        scheduler=schedulers,
                        ema=ema,
                        extra=extra(),
                    )
                    prune_states(save_dir, cfg.keep_states)
                barrier(info)
            if done >= total:
                break

        if info.is_main and released_last_at != total and start < total:
            model = eval_model()
            model.eval()
            task.save_release(model, save_dir / "last.safetensors", {**last_metrics, "step": float(total)})
        barrier(info)
    finally:
        bar.close()
        logger.close()
        if callable(getattr(task, "close", None)):  # optional hook: release workers, files
            task.close()

    for m in models.values():
        m.eval()
    return FitResult(
        step=max(start, total),
        start_step=start,
        best_value=best_value,
        best_step=best_step,
        last_metrics=last_metrics,
        models=models,
        ema=ema,
    )


# ------------------------------------------------------------------------------------- CLI args


def add_common_train_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options every ``optisr train ENGINE`` shares.

    ``--config FILE``, ``--save-dir DIR``, ``--resume [STATE]`` (bare: latest state in the save
    folder), ``--opt KEY=VALUE`` (repeatable), trailing ``KEY=VALUE`` tokens, ``--no-progress``
    and ``--device``. Read the overrides with :func:`collect_overrides`.
    """
    parser.add_argument("--config", "-c", type=Path, default=None, metavar="FILE", help="YAML config (BasicSR layout)")
    parser.add_argument("--save-dir", type=Path, default=None, metavar="DIR", help="run folder: states, releases, logs")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="STATE",
        help="resume: bare = the latest state_*.pt in --save-dir (fresh start when none); or a state file",
    )
    parser.add_argument(
        "--opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --opt train.optim.lr=2e-4 (repeatable)",
    )
    parser.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE", help="more overrides, e.g. train.total_steps=1000")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: CUDA when available)")
    return parser


def collect_overrides(args: argparse.Namespace) -> list[str]:
    """All ``KEY=VALUE`` overrides of ``args`` in command-line order of kind (``--opt`` first).

    ``--resume key=value`` (a bare ``--resume`` that swallowed an override) is repaired:
    the token becomes an override and ``args.resume`` becomes True.
    """
    tokens = list(getattr(args, "opt", None) or [])
    resume = getattr(args, "resume", False)
    if isinstance(resume, str) and "=" in resume and not Path(resume).exists():
        tokens.append(resume)
        args.resume = True
    tokens += list(getattr(args, "overrides", None) or [])
    for t in tokens:
        key, sep, _ = t.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"unexpected argument {t!r}: config overrides are KEY=VALUE, e.g. train.optim.lr=2e-4")
    return tokens

