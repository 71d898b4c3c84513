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

import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from optisr.config import to_dict
from optisr.errors import ConfigError, InputFileError
from optisr.train.checkpoint import (
    find_resumable_state,
    prune_states,
    read_training_state,
    restore_training_state,
    save_training_state,
    state_path,
)
from optisr.train.config import TrainConfig
from optisr.train.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
    wrap_ddp,
)
from optisr.train.ema import ModelEMA
from optisr.train.logger import TrainLogger
from optisr.train.optim import build_optimizer, build_scheduler, clip_gradients
from optisr.train.seeding import seed_everything, seed_step

__all__ = [
    "BuildsOptimizers",
    "Closable",
    "FitResult",
    "HasValImages",
    "LossTask",
    "StepTask",
    "TrainTask",
    "fit",
]


# ------------------------------------------------------------------------------- task protocol


@runtime_checkable
class TrainTask(Protocol):
    """What every trainer implements, plus ``loss`` (:class:`LossTask`) or ``train_step`` (:class:`StepTask`).

    Optional hooks: ``build_optimizers`` (:class:`BuildsOptimizers`), ``val_images``
    (:class:`HasValImages`) and ``close`` (:class:`Closable`).

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

    def validate(self, model: nn.Module, step: int) -> Mapping[str, float]:
        """Metrics of the eval model (EMA when enabled), rank 0 only, under ``torch.no_grad``."""
        ...

    def save_release(self, model: nn.Module, path: Path, metrics: dict[str, float]) -> None:
        """Write release weights, e.g. ``save_model_safetensors(model, path)``.

        ``path`` is ``save_dir/best.safetensors`` or ``save_dir/last.safetensors``; the task may
        change the suffix. ``metrics`` holds the validation metrics and ``"step"``.
        """
        ...


@runtime_checkable
class LossTask(Protocol):
    """The loss hook of a task that lets ``fit`` do the optimisation step."""

    def loss(self, model: nn.Module | dict[str, nn.Module], batch: Any) -> tuple[torch.Tensor, Mapping[str, float]]:
        """Scalar loss (with graph) and logs.

        ``model`` is the network when ``build_model`` returned one, else all networks by name.
        It may be DDP-wrapped: call it, don't poke it.
        """
        ...


@runtime_checkable
class StepTask(Protocol):
    """The hook of a task that does its own optimisation step (GANs, several networks)."""

    def train_step(
        self,
        models: dict[str, nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        batch: Any,
        step: int,
    ) -> Mapping[str, float]:
        """``zero_grad`` / ``backward`` / ``step`` of every network; returns the logs.

        ``models`` may be DDP-wrapped; ``fit`` steps the schedulers and the EMA afterwards.
        """
        ...


@runtime_checkable
class BuildsOptimizers(Protocol):
    """Optional hook: the optimizers instead of one ``cfg.optim`` optimizer per trainable network."""

    def build_optimizers(
        self, models: dict[str, nn.Module], cfg: TrainConfig
    ) -> Mapping[str, torch.optim.Optimizer]: ...


@runtime_checkable
class HasValImages(Protocol):
    """Optional hook: images logged after ``validate`` (TensorBoard, or PNGs under ``logs/images``)."""

    def val_images(self, model: nn.Module, step: int) -> Mapping[str, Any]:
        """``{tag: (H, W, 3) uint8}`` of the eval model, rank 0 only, under ``torch.no_grad``."""
        ...


@runtime_checkable
class Closable(Protocol):
    """Optional hook: release workers and files at the end of ``fit``."""

    def close(self) -> None: ...


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
    save_dir: Path | None = None

    @property
    def model(self) -> nn.Module:
        return next(iter(self.models.values()))


def _read_resume_state(
    resume: bool | str | os.PathLike[str] | None, save_dir: Path, device: torch.device, info: DistInfo
) -> tuple[Path, dict[str, Any]] | None:
    """``(state file, state)`` to resume from, or None to start fresh.

    A folder (or ``resume=True``: ``save_dir``) resumes from its newest readable state; newer
    unreadable ones (e.g. truncated) are skipped with a one-line warning naming both files. An
    explicit file must be readable.
    """
    if resume is None or resume is False or resume == "":
        return None
    folder = save_dir if resume is True else Path(resume)
    if resume is True or folder.is_dir():
        found = find_resumable_state(folder, map_location=device)
        if found is None:
            if resume is True:
                return None
            raise InputFileError(f"{folder}: no state_*.pt to resume from")
        path, state, skipped = found
        if skipped and info.is_main:
            bad = ", ".join(str(p) for p, _ in skipped)
            why = skipped[0][1].split(": ", 1)[-1]
            print(f"warning: {bad}: unreadable ({why}); resuming from {path} instead", file=sys.stderr, flush=True)
        return path, state
    if not folder.is_file():
        raise InputFileError(f"{folder}: training state to resume from not found")
    return folder, read_training_state(folder, map_location=device)


def fit(
    task: TrainTask,
    cfg_train: TrainConfig,
    *,
    save_dir: str | Path,
    resume: bool | str | os.PathLike[str] = False,
    progress: bool = True,
    dist_info: DistInfo | None = None,
    extra_state: Mapping[str, Any] | None = None,
    tensorboard: bool | None = None,
    ddp_kwargs: Mapping[str, Any] | None = None,
    on_start: Callable[[int], None] | None = None,
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
        on_start: called as ``on_start(start_step)`` on rank 0 once the models are built and the
            resumed state (if any) has been read, before anything is written to ``save_dir``
            (e.g. to write the run's ``config.yaml`` only when the start succeeded).

    Returns:
        :class:`FitResult`.
    """
    cfg = cfg_train
    save_dir = Path(save_dir)
    own_dist = dist_info is None
    info = init_distributed() if dist_info is None else dist_info
    device = info.device
    try:
        return _fit(task, cfg, save_dir, resume, progress, info, device, extra_state, tensorboard, ddp_kwargs, on_start)
    finally:
        if own_dist:
            cleanup(info)


def _fit(
    task: TrainTask,
    cfg: TrainConfig,
    save_dir: Path,
    resume: bool | str | os.PathLike[str] | None,
    progress: bool,
    info: DistInfo,
    device: torch.device,
    extra_state: Mapping[str, Any] | None,
    tensorboard: bool | None,
    ddp_kwargs: Mapping[str, Any] | None,
    on_start: Callable[[int], None] | None,
) -> FitResult:
    if not isinstance(task, (StepTask, LossTask)):
        raise ConfigError(f"{type(task).__name__} implements neither loss(model, batch) nor train_step(...)")

    seed_everything(cfg.seed)
    built = task.build_model()
    models: dict[str, nn.Module] = dict(built) if isinstance(built, Mapping) else {"model": built}
    if not models:
        raise ConfigError("build_model() returned no network")
    main_name = next(iter(models))
    for m in models.values():
        m.to(device)
    if isinstance(task, BuildsOptimizers):
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
    guarded_streak = 0  # consecutive validations that broke best_guard (train.stop_after_guarded)
    found = _read_resume_state(resume, save_dir, device, info)
    if found is not None:
        state_file, state = found
        start, saved_extra = restore_training_state(
            state, path=state_file, model=models, optimizer=optimizers, scheduler=schedulers, ema=ema
        )
        del state
        best_value = saved_extra.get("best_value")
        best_step = saved_extra.get("best_step")
        guarded_streak = int(saved_extra.get("guarded_streak", 0))
        if info.is_main:
            print(f"resuming from {state_file} at step {start}", flush=True)
    elif resume is True and info.is_main:
        print(f"no training state in {save_dir}: starting from step 0", flush=True)
    if on_start is not None and info.is_main:
        on_start(start)
    barrier(info)  # every rank has read the state before rank 0 may prune it

    wrapped = {name: wrap_ddp(m, info, **dict(ddp_kwargs or {})) for name, m in models.items()}
    train_params = [p for opt in optimizers.values() for g in opt.param_groups for p in g["params"]]
    logger = TrainLogger(
        save_dir / "logs",
        enabled=info.is_main,
        purge_step=start + 1 if start > 0 else None,
        use_tensorboard=tensorboard,
    )
    total = cfg.total_steps
    last_metrics: dict[str, float] = {}
    released_last_at = -1

    def eval_model() -> nn.Module:
        return ema.module if ema is not None else models[main_name]

    def extra() -> dict[str, Any]:
        out = {
            "best_value": best_value,
            "best_step": best_step,
            "guarded_streak": guarded_streak,
            "train_config": to_dict(cfg),
        }
        out.update(extra_state or {})
        return out

    def validate_at(done: int) -> None:
        """Validate the eval model at step ``done``: log, track ``best``, write the releases (main rank)."""
        nonlocal best_value, best_step, last_metrics, released_last_at, guarded_streak
        if info.is_main:
            model = eval_model()
            model.eval()
            with torch.no_grad():
                metrics = {k: float(v) for k, v in (task.validate(model, done) or {}).items()}
                if isinstance(task, HasValImages):  # optional hook: {tag: HxWx3 uint8}
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
                better = best_value is None or (value > best_value if cfg.best_mode == "max" else value < best_value)
                if cfg.best_guard and done > 0:  # the start (step 0) is exempt from the guard
                    if cfg.best_guard not in metrics:
                        raise ConfigError(
                            f"train.best_guard: validate() returned no {cfg.best_guard!r} "
                            f"(it returned {', '.join(sorted(metrics)) or 'nothing'})"
                        )
                    guarded = metrics[cfg.best_guard] > 0.0
                    guarded_streak = guarded_streak + 1 if guarded else 0
                    better = better and not guarded
                if better:
                    best_value, best_step = value, done
                    task.save_release(model, save_dir / "best.safetensors", release_metrics)
            if done > 0:  # step 0 (val_at_start) is only a candidate for best
                task.save_release(model, save_dir / "last.safetensors", release_metrics)
                released_last_at = done
        barrier(info)

    from tqdm import tqdm

    bar = tqdm(total=total, initial=start, disable=not (progress and info.is_main), dynamic_ncols=True, desc="train")
    acc: dict[str, float] = {}
    n_acc = 0
    t_last = t_start = time.perf_counter()
    try:
        if cfg.val_at_start and cfg.val_every and start == 0:
            validate_at(0)  # the starting model, so "best" can be "no change"
        for step in range(start, total):
            seed_step(cfg.seed, step, info.rank)
            batch = _to_device(task.batch(step, info.rank), device)
            for m in wrapped.values():
                m.train()
            if isinstance(task, StepTask):
                logs = dict(task.train_step(wrapped, optimizers, batch, step) or {})
            else:
                for opt in optimizers.values():
                    opt.zero_grad(set_to_none=True)
                model_arg = wrapped[main_name] if len(wrapped) == 1 else wrapped
                loss, loss_logs = task.loss(model_arg, batch)
                logs = dict(loss_logs or {})
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
            if cfg.time_limit_s is not None and done < total:
                # With a time budget the step total is only a cap (optisr adapt: 10^6): show the time left.
                left = max(0.0, cfg.time_limit_s - (time.perf_counter() - t_start))
                bar.set_description(f"train [{int(left // 60)}:{int(left % 60):02d} left]", refresh=False)
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
                validate_at(done)
                if cfg.stop_after_guarded and done < total:
                    streak = float(guarded_streak >= cfg.stop_after_guarded)
                    if all_reduce_mean({"stop": streak}, info)["stop"] > 0:  # main rank decides
                        if info.is_main:
                            print(
                                f"stopping at step {done}: {guarded_streak} validations in a row broke "
                                f"train.best_guard ({cfg.best_guard})",
                                flush=True,
                            )
                        total = done

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
        if isinstance(task, Closable):  # optional hook: release workers, files
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
        save_dir=save_dir,
    )
