"""Generic training infrastructure shared by the optisr trainers (guided and blind SR).

One concept per module:

* :mod:`optisr.config` (re-exported here) — YAML configs, ``key.path=value`` overrides, typed dataclasses;
* :mod:`~optisr.train.seeding` — seeding, RNG state, per-step generators (batches are a pure
  function of ``(seed, step, rank)``, so resume is exact without data-loader state);
* :mod:`~optisr.train.ema` — :class:`ModelEMA`;
* :mod:`~optisr.train.checkpoint` — atomic ``state_{step:08d}.pt`` training states;
* :mod:`~optisr.train.distributed` — torchrun / DDP helpers;
* :mod:`~optisr.train.logger` — TensorBoard + ``metrics.jsonl``;
* :mod:`~optisr.train.config` — the ``train:`` / ``path:`` config sections (:class:`TrainConfig`...);
* :mod:`~optisr.train.optim` — optimizers, learning-rate schedules, gradient clipping;
* :mod:`~optisr.train.loop` — :func:`fit` and the :class:`TrainTask` protocol (plus :class:`LossTask` or
  :class:`StepTask`);
* :mod:`~optisr.train.run` — :func:`run_training`: one run in a run folder (``config.yaml``, resume,
  a failed start leaves the folder as it was).

Engines (imported on demand, not by this package): :mod:`~optisr.train.guided` (guided depth SR)
and :mod:`~optisr.train.blind` (blind real-world SR), each with ``CONFIG_CLASS`` and a plain
``train(cfg, ...)``; :mod:`~optisr.train.adapt` (``optisr adapt``) drives the blind engine to fine-tune a
shipped model on a camera's own photos. They sit above :mod:`optisr.guided` / :mod:`optisr.blind`, which know nothing
about training loops. The command line (``optisr train``: options, ``KEY=VALUE`` overrides) lives
in :mod:`optisr.cli.train`.

Importing this package imports torch but not tensorboard or tqdm.
"""

from optisr.config import (
    apply_overrides,
    build_config,
    from_dict,
    load_yaml_config,
    to_dict,
)
from optisr.train.checkpoint import (
    find_resumable_state,
    latest_state,
    load_training_state,
    prune_states,
    read_training_state,
    restore_training_state,
    save_training_state,
    state_path,
)
from optisr.train.config import OptimConfig, PathConfig, SchedulerConfig, TrainConfig
from optisr.train.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
    wrap_ddp,
)
from optisr.train.ema import ModelEMA, unwrap_model
from optisr.train.logger import TrainLogger
from optisr.train.loop import FitResult, LossTask, StepTask, TrainTask, fit
from optisr.train.optim import build_optimizer, build_scheduler, clip_gradients
from optisr.train.run import run_training
from optisr.train.seeding import (
    rng_state,
    seed_everything,
    set_rng_state,
    step_generator,
    step_rng,
)

__all__ = [
    "DistInfo",
    "FitResult",
    "LossTask",
    "ModelEMA",
    "OptimConfig",
    "PathConfig",
    "SchedulerConfig",
    "StepTask",
    "TrainConfig",
    "TrainLogger",
    "TrainTask",
    "all_reduce_mean",
    "apply_overrides",
    "barrier",
    "build_config",
    "build_optimizer",
    "build_scheduler",
    "cleanup",
    "clip_gradients",
    "find_resumable_state",
    "fit",
    "from_dict",
    "init_distributed",
    "latest_state",
    "load_training_state",
    "load_yaml_config",
    "prune_states",
    "read_training_state",
    "restore_training_state",
    "rng_state",
    "run_training",
    "save_training_state",
    "seed_everything",
    "set_rng_state",
    "state_path",
    "step_generator",
    "step_rng",
    "to_dict",
    "unwrap_model",
    "wrap_ddp",
]
