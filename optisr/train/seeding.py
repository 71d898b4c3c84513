"""Seeding and random-number-generator state for reproducible, exactly resumable training.

Design: batches are a pure function of ``(seed, step, rank)``
------------------------------------------------------------------
A resumed run must see exactly the batches (random crops, flips, degradations, noise) that the
uninterrupted run would have seen. Saving and restoring data-loader iterators and worker RNGs is
fragile, so the trainers do not keep any sampling state at all: the batch for optimisation step
``step`` on process ``rank`` is drawn from a fresh generator seeded by
``(seed, step, rank)`` — :func:`optisr.rng.step_generator` (torch) or :func:`optisr.rng.step_rng`
(numpy). Resuming at
step ``k`` then needs only ``k``; nothing about the data pipeline goes into the checkpoint.
Different ranks draw different samples, and the stream of a given rank does not depend on the
number of ranks.

The seeds are mixed with :class:`numpy.random.SeedSequence`, so neighbouring steps give
independent streams (not ``seed + step``, whose streams overlap between runs with nearby seeds).

The *global* generators (python ``random``, numpy, torch CPU/CUDA, used by dropout and by any
library code) are handled two ways: :func:`optisr.train.loop.fit` re-seeds them at the start of
every step with :func:`seed_step` (so they too are a function of ``(seed, step, rank)``), and
:func:`rng_state` / :func:`set_rng_state` capture them in checkpoints for code that manages the
generators itself.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from optisr.rng import derive_seed, step_generator, step_rng  # re-exported: the training-facing names

__all__ = [
    "derive_seed",
    "rng_state",
    "seed_everything",
    "seed_step",
    "set_rng_state",
    "step_generator",
    "step_rng",
]


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy's global generator, torch CPU and every CUDA device."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds all CUDA devices (lazily when CUDA is not initialised)


def seed_step(seed: int, step: int, rank: int = 0) -> None:
    """Seed the global generators from ``(seed, step, rank)``; called by ``fit`` before each step."""
    seed_everything(derive_seed(seed, step, rank, 0x5EED))


def rng_state() -> dict[str, Any]:
    """Capture the global RNG states in a form ``torch.load(weights_only=True)`` accepts.

    Returns:
        ``{"python": {"version": int, "state": LongTensor[625], "gauss": float | None},
        "numpy": {"kind": str, "keys": LongTensor[624], "pos": int, "has_gauss": int,
        "gauss": float}, "torch": ByteTensor, "cuda": list[ByteTensor]}`` (``cuda`` is empty
        without CUDA).
    """
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states captured by :func:`rng_state` (CUDA states only for devices present)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state(
        (npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["gauss"])
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        n = min(len(cuda), torch.cuda.device_count())
        for i in range(n):
            torch.cuda.set_rng_state(cuda[i].cpu(), i)
