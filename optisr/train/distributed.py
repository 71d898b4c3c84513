"""Multi-process data-parallel training launched by ``torchrun``.

``torchrun --nproc_per_node N script.py ...`` (or ``python -m torch.distributed.run``) sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them and joins the process group (``nccl`` on CUDA, ``gloo`` on
CPU). Without those variables it returns a single-process :class:`DistInfo` and every helper
here is a no-op, so trainer code is the same in both cases.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import torch
import torch.distributed as dist
from torch import nn

from optisr.devices import resolve_device as check_device

__all__ = ["DistInfo", "all_reduce_mean", "barrier", "cleanup", "init_distributed", "resolve_device", "wrap_ddp"]


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank in ``[0, world_size)``.
        world_size: number of processes (1 without torchrun).
        local_rank: rank on this machine (selects the GPU).
        device: the device this process computes on.
        is_main: ``rank == 0``; only the main process writes logs, checkpoints and releases.
        initialized: True when this process joined a ``torch.distributed`` process group.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    is_main: bool = True
    initialized: bool = False

    @property
    def distributed(self) -> bool:
        return self.initialized and self.world_size > 1


def resolve_device(device: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """This process's device: :func:`optisr.devices.resolve_device` (``None``/``"auto"`` = CUDA when
    available, else CPU; a one-line ConfigError for an unusable device), with an index-less
    ``cuda`` pinned to ``cuda:local_rank``."""
    dev = check_device(device, what="device")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev


def init_distributed(backend: str | None = None, device: str | torch.device | None = None) -> DistInfo:
    """Join the torchrun process group described by the environment, or run single-process.

    Args:
        backend: ``"nccl"``, ``"gloo"`` or None (nccl when the device is CUDA, else gloo).
        device: ``None``/``"auto"`` (CUDA ``local_rank`` if available, else CPU), ``"cpu"``,
            ``"cuda"``...

    Returns:
        :class:`DistInfo`. Call :func:`cleanup` at the end.
    """
    env = os.environ
    world_size = int(env.get("WORLD_SIZE", "1"))
    if "RANK" not in env or world_size <= 1:
        return DistInfo(device=resolve_device(device, 0))
    rank = int(env["RANK"])
    local_rank = int(env.get("LOCAL_RANK", rank))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    if not dist.is_initialized():
        if dev.type == "cuda" and backend == "nccl":  # bind NCCL to this rank's GPU
            dist.init_process_group(backend=backend, rank=rank, world_size=world_size, device_id=dev)
        else:
            dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(
        rank=rank, world_size=world_size, local_rank=local_rank, device=dev, is_main=rank == 0, initialized=True
    )


def wrap_ddp(model: nn.Module, info: DistInfo, **ddp_kwargs) -> nn.Module:
    """Wrap in ``DistributedDataParallel`` when running distributed; otherwise return ``model``.

    The model must already be on ``info.device``. DDP broadcasts rank 0's weights at wrap time.
    """
    if not info.distributed:
        return model
    if not any(p.requires_grad for p in model.parameters()):
        return model  # nothing to synchronise (a frozen perceptual network, say)
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, **ddp_kwargs)


def all_reduce_mean(value, info: DistInfo):
    """Average over ranks: a tensor -> tensor, or ``{name: float | tensor}`` -> ``{name: float}``.

    A collective: every rank must call it with the same keys. Single-process: returns the
    value (a dict is converted to floats).
    """
    if isinstance(value, Mapping):
        keys = sorted(value)
        if not keys:
            return {}
        vec = torch.tensor([float(value[k]) for k in keys], dtype=torch.float64)
        if info.distributed:
            vec = _reduce(vec.to(info.device), info).cpu()
        return {k: float(v) for k, v in zip(keys, vec.tolist())}
    if isinstance(value, torch.Tensor):
        if not info.distributed:
            return value
        return _reduce(value.detach().clone(), info)
    raise TypeError(f"all_reduce_mean takes a tensor or a dict of numbers, got {type(value).__name__}")


def _reduce(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    if t.dtype.is_floating_point or t.dtype.is_complex:
        t /= info.world_size
    else:
        t = t.double() / info.world_size
    return t


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op single-process)."""
    if info.distributed:
        dist.barrier()


def cleanup(info: DistInfo | None = None) -> None:
    """Leave the process group if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
