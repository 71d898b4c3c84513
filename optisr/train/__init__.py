"""Generic training infrastructure shared by the optisr trainers (guided and blind SR).

One concept per module:

* :mod:`optisr.config` (re-exported here) — YAML configs, ``key.path=value`` overrides, typed dataclasses;
* :mod:`~optisr.train.seeding` — seeding, RNG state, per-step generators (batches are a pure
  function of ``(seed, step, rank)``, so resume is exact without data-loader state);
* :mod:`~optisr.train.ema` — :class:`ModelEMA`;
* :mod:`~optisr.train.checkpoint` — atomic ``state_{step:08d}.pt`` training states;
* :mod:`~optisr.train.distributed` — torchrun / DDP helpers;
* :mod:`~optisr.train.logger` — TensorBoard + ``metrics.jsonl``;
* :mod:`~optisr.train.loop` — :func:`fit`, the :class:`TrainTask` protocol, :class:`TrainConfig`.

Importing this package imports torch but not tensorboard or tqdm.
"""

from optisr.config import apply_overrides, build_config, from_dict, load_yaml_config, to_dict
from optisr.train.checkpoint import latest_state, load_training_state, prune_states, save_training_state, state_path
from optisr.train.distributed import DistInfo, all_reduce_mean, barrier, cleanup, init_distributed, wrap_ddp
from optisr.train.ema import ModelEMA, unwrap_model
from optisr.train.logger import TrainLogger
from optisr.train.loop import (
    FitResult,
    OptimConfig,
    SchedulerConfig,
    PathConfig,
    TrainConfig,
    TrainTask,
    add_common_train_args,
    build_optimizer,
    build_scheduler,
    clip_gradients,
    collect_overrides,
    fit,
)
from optisr.train.seeding import rng_state, seed_everything, set_rng_state, step_generator, step_rng

__all__ = [
    "DistInfo",
    "FitResult",
    "ModelEMA",
    "OptimConfig",
    "SchedulerConfig",
    "PathConfig",
    "TrainConfig",
    "TrainLogger",
    "TrainTask",
    "add_common_train_args",
    "all_reduce_mean",
    "apply_overrides",
    "barrier",
    "build_config",
    "build_optimizer",
    "build_scheduler",
    "cleanup",
    "clip_gradients",
    "collect_overrides",
    "fit",
    "from_dict",
    "init_distributed",
    "latest_state",
    "load_training_state",
    "load_yaml_config",
    "prune_states",
    "rng_state",
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
