"""Data-parallel helpers for ``torchrun`` launches (multi-GPU, multi-node, or gloo on CPU).

``torchrun --nproc-per-node N -m dflab.cli train RECIPE ...`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; the
trainer then calls :func:`setup`, wraps the detector in ``DistributedDataParallel``, shards every stream's epoch
plan across ranks (:class:`dflab.train.data.PlanSampler`, ``set_epoch`` semantics of ``DistributedSampler``) and
reduces metrics with :func:`all_gather_objects` / :func:`mean_across`. Only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup(device_type: str) -> DistInfo:
    """Initialise the process group from torchrun's environment (nccl on CUDA, gloo otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    if device_type == "cuda":
        torch.cuda.set_device(local)
    return DistInfo(rank=rank, world=world, local_rank=local)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` (a list of one element when not distributed)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def mean_across(value: float, info: DistInfo) -> float:
    """Mean of a scalar over ranks."""
    if not info.enabled:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return float(t.item()) / info.world


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
