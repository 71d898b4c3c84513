"""Training batches for the guided model, as a pure function of (seed, step, rank).

Every batch is drawn from a ``numpy.random.Generator`` seeded by ``(seed, step, rank)``, so a
resumed run sees exactly the batches an uninterrupted run would have seen, without any data
loader state to save. Sources:

* ``synthetic``: procedural RGB-D scenes (:func:`optisr.data.synthetic.make_scene`), rendered on
  the fly at crop size, unlimited and licence-free; the clean depth is the target.
* any dataset known to :func:`optisr.data.get_dataset` (e.g. ``rgbdd`` on RGB-D-D's test405
  split), read on demand with a small cache, random crops.

Augmentation: horizontal flip, 90° rotations (square crops), random crops. The LR source is
synthesised with the configured operator (``area``, ``bicubic``, ...) from the hole-filled HR
depth; the loss mask excludes invalid HR pixels. Optional (off by default): dim / noisy guides
(:mod:`optisr.degrade.low_light`, guide only) and depth-sensor degradations of the LR source
(:mod:`optisr.degrade.depth_noise`: misalignment, flying pixels, noise, quantisation, holes as
NaN); both draw from their own generators seeded by ``(seed, step, rank)``, so turning them on
changes neither the scenes and crops of a batch nor each other's draws. The target stays clean.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from optisr.degrade.depth_noise import LRNoiseConfig, apply_lr_noise, draw_lr_noise, shift_depth
from optisr.degrade.low_light import GuideDegradeConfig, degrade_guide
from optisr.errors import ConfigError

if TYPE_CHECKING:
    from concurrent.futures import Future


@dataclass
class DataSourceConfig:
    """One training source. ``name``: ``synthetic`` or a dataset name; ``weight``: sampling weight."""

    name: str = "synthetic"
    data_dir: str = ""
    weight: float = 1.0


@dataclass
class TrainDataConfig:
    """Batch synthesis settings (the ``datasets.train`` section).

    Attributes:
        sources: datasets mixed by weight.
        crop: HR crop size (square; a multiple of every scale).
        scales: factors; each batch uses one, drawn uniformly.
        operator: LR synthesis operator (``area`` | ``bicubic`` | ``gaussian`` | ``sum``).
        operator_mix: optional ``{operator: probability}`` overriding ``operator`` per batch.
        lr_noise_std: Gaussian noise added to the LR source, as a fraction of its std (0 = clean).
        flip, rot90: augmentation switches.
        guide_degrade: dim / low-contrast / noisy re-exposure of the guide (``prob`` 0 = off).
        lr_noise: depth-sensor degradations of the LR source (``prob`` 0 = off); holes are NaN
            in ``Batch.source``.
        num_workers: processes that synthesise upcoming batches ahead of the training step
            (0 = in the training process). Batches stay a pure function of (seed, step, rank),
            so the number of workers never changes what is trained on.
    """

    sources: list[DataSourceConfig] = field(default_factory=lambda: [DataSourceConfig()])
    crop: int = 128
    scales: list[int] = field(default_factory=lambda: [4, 8, 16])
    operator: str = "area"
    operator_mix: dict[str, float] = field(default_factory=dict)
    lr_noise_std: float = 0.0
    flip: bool = True
    rot90: bool = True
    guide_degrade: GuideDegradeConfig = field(default_factory=GuideDegradeConfig)
    lr_noise: LRNoiseConfig = field(default_factory=LRNoiseConfig)
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.num_workers < 0:
            raise ConfigError(f"datasets.train.num_workers must be ≥ 0, got {self.num_workers}")
        if not self.sources:
            raise ConfigError("datasets.train.sources is empty")
        for f in self.scales:
            if self.crop % int(f):
                raise ConfigError(f"datasets.train.crop={self.crop} must be a multiple of every scale (got {f})")


@dataclass
class Batch:
    """guide (B,3,H,W) float32 [0,1]; target (B,1,H,W); valid (B,1,H,W) bool; source (B,1,h,w), NaN = no measurement."""

    guide: Tensor
    target: Tensor
    valid: Tensor
    source: Tensor
    scale: int
    operator: str


_GUIDE_STREAM = 1  # generator keys (seed, step, rank, stream) of the optional augmentations
_LR_NOISE_STREAM = 2


@functools.lru_cache(maxsize=8)
def _dataset(name: str, data_dir: str):
    from optisr.data import get_dataset

    return get_dataset(name, data_dir)


@functools.lru_cache(maxsize=64)
def _sample(name: str, data_dir: str, index: int):
    s = _dataset(name, data_dir)[index]
    return s.guide.astype(np.float32), s.depth.astype(np.float32), s.mask.copy()


def _fill_invalid(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Nearest-valid fill (so the LR synthesis does not see holes); all-invalid → zeros."""
    if not mask.any():
        return np.zeros_like(depth)
    from optisr.guided.baselines import fill_nearest

    return fill_nearest(depth, mask)


def _crop_from_dataset(rng: np.random.Generator, src: DataSourceConfig, crop: int):
    n = len(_dataset(src.name, src.data_dir))
    for _ in range(16):  # redraw crops that are mostly invalid
        guide, depth, mask = _sample(src.name, src.data_dir, int(rng.integers(n)))
        H, W = depth.shape
        if H < crop or W < crop:
            raise ConfigError(f"{src.name}: image {H}×{W} is smaller than the training crop {crop}")
        y, x = int(rng.integers(H - crop + 1)), int(rng.integers(W - crop + 1))
        m = mask[y : y + crop, x : x + crop]
        if m.mean() >= 0.8:
            break
    d = depth[y : y + crop, x : x + crop]
    return guide[y : y + crop, x : x + crop], _fill_invalid(np.nan_to_num(d), m), m


def _synthetic(rng: np.random.Generator, crop: int):
    from optisr.data.synthetic import make_scene

    sc = make_scene(crop, crop, seed=rng)
    return sc.guide, sc.depth_clean, np.ones((crop, crop), bool)


def _augment(rng: np.random.Generator, cfg: TrainDataConfig, arrays: list[np.ndarray]) -> list[np.ndarray]:
    if cfg.flip and rng.random() < 0.5:
        arrays = [a[:, ::-1] for a in arrays]
    if cfg.rot90:
        k = int(rng.integers(4))
        arrays = [np.rot90(a, k, axes=(0, 1)) for a in arrays]
    return [np.ascontiguousarray(a) for a in arrays]


def make_training_batch(cfg: TrainDataConfig, batch_size: int, seed: int, step: int, rank: int = 0) -> Batch:
    """The batch of ``step`` (deterministic in ``(seed, step, rank)``)."""
    from optisr.ops.operators import make_operator

    rng = np.random.default_rng([int(seed), int(step), int(rank)])
    scale = int(cfg.scales[int(rng.integers(len(cfg.scales)))])
    operator = cfg.operator
    if cfg.operator_mix:
        names = sorted(cfg.operator_mix)
        p = np.array([cfg.operator_mix[k] for k in names], float)
        operator = names[int(rng.choice(len(names), p=p / p.sum()))]
    weights = np.array([s.weight for s in cfg.sources], float)
    guides, targets, masks = [], [], []
    for _ in range(batch_size):
        src = cfg.sources[int(rng.choice(len(cfg.sources), p=weights / weights.sum()))]
        if src.name == "synthetic":
            g, d, m = _synthetic(rng, cfg.crop)
        else:
            g, d, m = _crop_from_dataset(rng, src, cfg.crop)
        g, d, m = _augment(rng, cfg, [g, d, m])
        guides.append(g)
        targets.append(d)
        masks.append(m)
    if cfg.guide_degrade.prob > 0:
        grng = np.random.default_rng([int(seed), int(step), int(rank), _GUIDE_STREAM])
        guides = [degrade_guide(g, grng, cfg.guide_degrade) for g in guides]
    guide = torch.from_numpy(np.stack(guides)).permute(0, 3, 1, 2).contiguous()
    target = torch.from_numpy(np.stack(targets).astype(np.float32))[:, None]
    valid = torch.from_numpy(np.stack(masks))[:, None]
    op = make_operator(operator, (cfg.crop, cfg.crop), scale)
    plans = None
    measured = target  # the HR depth the sensor sees (misaligned from the guide when drawn so)
    if cfg.lr_noise.prob > 0:
        nrng = np.random.default_rng([int(seed), int(step), int(rank), _LR_NOISE_STREAM])
        plans = [draw_lr_noise(nrng, cfg.lr_noise) for _ in range(batch_size)]
        measured = torch.from_numpy(
            np.stack([d if p.shift is None else shift_depth(d, *p.shift) for d, p in zip(targets, plans)]).astype(
                np.float32
            )
        )[:, None]
    source = op.apply(measured)
    if cfg.lr_noise_std > 0:
        std = source.flatten(1).std(dim=1).view(-1, 1, 1, 1)
        noise = torch.from_numpy(rng.standard_normal(source.shape).astype(np.float32))
        source = source + cfg.lr_noise_std * std * noise
    if plans is not None:
        lrs = [
            apply_lr_noise(source[i, 0].numpy(), measured[i, 0].numpy(), scale, p, cfg.lr_noise, nrng)
            for i, p in enumerate(plans)
        ]
        source = torch.from_numpy(np.stack(lrs))[:, None]
    return Batch(guide, target, valid, source, scale, operator)


def source_std(source: Tensor) -> Tensor:
    """Per-sample unbiased standard deviation (B, 1, 1, 1) of (B, 1, h, w) ``source`` over its finite pixels.

    Equals ``source.flatten(1).std(dim=1)`` when every pixel is finite (the loss's unit).
    """
    flat = source.flatten(1)
    if bool(torch.isfinite(flat).all()):
        return flat.std(dim=1).view(-1, 1, 1, 1)
    return torch.stack([row[torch.isfinite(row)].std() for row in flat]).view(-1, 1, 1, 1)


def _worker_init() -> None:
    torch.set_num_threads(1)


def _batch_arrays(cfg: TrainDataConfig, batch_size: int, seed: int, step: int, rank: int) -> dict[str, Any]:
    """:func:`make_training_batch` as numpy arrays (cheap to send between processes)."""
    b = make_training_batch(cfg, batch_size, seed, step, rank)
    return {
        "guide": b.guide.numpy(),
        "target": b.target.numpy(),
        "valid": b.valid.numpy(),
        "source": b.source.numpy(),
        "scale": b.scale,
        "operator": b.operator,
    }


class BatchPrefetcher:
    """Synthesises the batches of the next steps in ``workers`` spawned processes.

    ``get(step)`` returns exactly ``make_training_batch(cfg, batch_size, seed, step, rank)`` and
    queues the following ``2·workers`` steps. Call :meth:`close` when done (also a context manager).
    """

    def __init__(self, cfg: TrainDataConfig, batch_size: int, seed: int, rank: int, workers: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._args = (cfg, int(batch_size), int(seed))
        self._rank = int(rank)
        self._ahead = 2 * int(workers)
        self._pool = ProcessPoolExecutor(
            int(workers), mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
        )
        self._pending: dict[int, Future[dict[str, Any]]] = {}

    def _submit(self, step: int) -> None:
        if step not in self._pending:
            self._pending[step] = self._pool.submit(_batch_arrays, *self._args, step, self._rank)

    def get(self, step: int) -> Batch:
        for old in [k for k in self._pending if k < step]:
            self._pending.pop(old).cancel()
        for k in range(step, step + self._ahead + 1):
            self._submit(k)
        a = self._pending.pop(step).result()
        return Batch(
            torch.from_numpy(a["guide"]),
            torch.from_numpy(a["target"]),
            torch.from_numpy(a["valid"]),
            torch.from_numpy(a["source"]),
            a["scale"],
            a["operator"],
        )

    def close(self) -> None:
        for f in self._pending.values():
            f.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BatchPrefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
