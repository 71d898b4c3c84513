"""Random streams that are pure functions of ``(seed, step, rank)``.

Batches, crops and degradations drawn from these generators depend on nothing but their keys,
which is what makes training exactly resumable (see :mod:`optisr.train.seeding`) and lets data
code below the training layer (e.g. :mod:`optisr.blind.training_data`) draw reproducible samples.
Seeds are mixed with :class:`numpy.random.SeedSequence`, so neighbouring steps give independent
streams (not ``seed + step``, whose streams overlap between runs with nearby seeds).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["derive_seed", "step_generator", "step_rng"]

_MASK64 = (1 << 64) - 1


def derive_seed(seed: int, *keys: int) -> int:
    """A 64-bit seed mixed from ``seed`` and integer ``keys`` (e.g. step, rank) by SeedSequence."""
    entropy = [int(seed) & _MASK64] + [int(k) & _MASK64 for k in keys]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


def step_generator(seed: int, step: int, rank: int = 0, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` whose stream depends only on ``(seed, step, rank)``.

    Use it for everything random in ``task.batch(step, rank)``::

        g = step_generator(cfg.seed, step, rank)
        idx = torch.randint(len(dataset), (batch_size,), generator=g)
    """
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, step, rank, 0x70C4))
    return g


def step_rng(seed: int, step: int, rank: int = 0) -> np.random.Generator:
    """A fresh numpy ``Generator`` (PCG64) whose stream depends only on ``(seed, step, rank)``.

    Its stream differs from that of :func:`step_generator` for the same arguments.
    """
    return np.random.default_rng(np.random.SeedSequence([int(seed) & _MASK64, int(step), int(rank), 0x4E70]))
