"""Sharing a batch or a video between processes started by ``torchrun``.

``torchrun --nproc_per_node N -m painterly stylize ...`` sets RANK, WORLD_SIZE and LOCAL_RANK in
each process's environment. A :class:`Shard` says which part of the work is this process's:
every ``world_size``-th image of a folder, a contiguous run of a video's frames. The processes
share the output folder (one machine, or a shared file system), meet at barriers, and rank 0
alone writes what all of them contributed to (a video's final file).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import torch

from .errors import SettingsError

Item = TypeVar("Item")


@dataclass(frozen=True)
class Shard:
    """This process's place among ``world_size`` (1: the whole work, no communication)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def chunk(self, count: int) -> range:
        """This rank's contiguous run of ``count`` items: the first ``count % world_size`` ranks take one more."""
        size, extra = divmod(count, self.world_size)
        start = self.rank * size + min(self.rank, extra)
        return range(start, start + size + (self.rank < extra))

    def take(self, items: Sequence[Item]) -> list[Item]:
        """Every ``world_size``-th item, starting at this rank's: even shares of a folder."""
        return list(items[self.rank :: self.world_size])

    def barrier(self) -> None:
        """Wait until every rank is here."""
        if self.world_size > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        """Leave the process group once every rank is done (a rank that left early could cut
        another's last message short)."""
        if self.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (so all ranks act on one view of the files)."""
        if self.world_size == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


SINGLE = Shard()


def shard_from_environment(device: torch.device) -> Shard:
    """The :class:`Shard` torchrun describes in the environment, joining its process group
    (gloo on CPUs, NCCL on CUDA); :data:`SINGLE` when not started by torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE
    try:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError):
        raise SettingsError("WORLD_SIZE is set but RANK is not: start several processes with torchrun") from None
    if not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)  # NCCL's collectives run on the current device
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Shard(rank=rank, world_size=world_size, local_rank=local_rank)
