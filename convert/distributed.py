"""Whole batches per process: how calibration and evaluation split data over ranks.

Under ``torch.distributed`` with ``W`` processes, global batch ``k`` (the ``k``-th batch one
process would read from the same sequential loader) goes to rank ``k mod W``
(:class:`RankBatches`). So every batch holds the same images as on one process, no image is
repeated or dropped (``DistributedSampler`` pads the last round with repeats, which would
count those images twice in an accuracy), and a seeded draw tied to a batch can be replayed
exactly: a rank fast-forwards its generator over the batches of the other ranks. Statistics
are then gathered in global batch order (:func:`gather_in_order`) or summed
(:func:`all_reduce_sum`), so a result equals the one-process result on the same images.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, SequentialSampler

__all__ = [
    "RankBatches",
    "all_reduce_sum",
    "gather_in_order",
    "rank_and_world",
    "rank_batches",
    "shard_batches",
]


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of the default process group; ``(0, 1)`` without one."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class RankBatches(Sampler[list[int]]):
    """Index batches ``k = rank, rank + W, …`` of a sequential pass over ``size`` samples.

    Args:
        size: samples in the dataset.
        batch_size: samples per batch (the last global batch may be smaller).
        rank, world: this process and the number of processes.
    """

    def __init__(self, size: int, batch_size: int, rank: int, world: int) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in 0..{world - 1}")
        self.size, self.batch_size, self.rank, self.world = size, batch_size, rank, world
        self.batches = math.ceil(size / batch_size)
        if self.batches < world:
            raise ValueError(
                f"{size} samples in batches of {batch_size} make {self.batches} batches, fewer "
                f"than the {world} processes: use fewer devices or smaller batches"
            )

    def global_index(self, local: int) -> int:
        """Global batch number of this rank's ``local``-th batch."""
        return self.rank + local * self.world

    def batch_length(self, k: int) -> int:
        """Samples in global batch ``k``."""
        return min(self.batch_size, self.size - k * self.batch_size)

    def full_batch_rows(self, k: int, rows: int) -> int:
        """Input rows of a full batch, given that global batch ``k`` collated to ``rows``
        (event loaders collate several rows per sample)."""
        return rows * self.batch_size // self.batch_length(k)

    def __iter__(self) -> Iterator[list[int]]:
        for k in range(self.rank, self.batches, self.world):
            yield list(range(k * self.batch_size, k * self.batch_size + self.batch_length(k)))

    def __len__(self) -> int:
        return len(range(self.rank, self.batches, self.world))


def shard_batches(
    loader: DataLoader, rank: int | None = None, world: int | None = None
) -> DataLoader:
    """``loader`` restricted to this rank's whole batches (see the module docstring).

    Returns ``loader`` itself on one process.

    Raises:
        ValueError: ``loader`` shuffles or has no fixed batch size (a sequential pass is
            what the ranks split).
    """
    if rank is None or world is None:
        rank, world = rank_and_world()
    if world == 1:
        return loader
    if not isinstance(loader.sampler, SequentialSampler) or loader.batch_size is None:
        raise ValueError(
            "only a sequential DataLoader with a batch_size (shuffle=False, no sampler) can be "
            f"split into whole batches per rank; got sampler {type(loader.sampler).__name__}"
        )
    batches = RankBatches(len(loader.dataset), loader.batch_size, rank, world)
    return DataLoader(
        loader.dataset,
        batch_sampler=batches,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
    )


def rank_batches(data: Any) -> RankBatches | None:
    """The :class:`RankBatches` that ``data`` (a loader from :func:`shard_batches`) reads."""
    sampler = getattr(data, "batch_sampler", None)
    return sampler if isinstance(sampler, RankBatches) else None


def gather_in_order(items: list[tuple[int, Any]]) -> list[Any]:
    """Every rank's ``(global batch, value)`` pairs, sorted by batch, on every rank."""
    _, world = rank_and_world()
    if world > 1:
        gathered: list[list[tuple[int, Any]] | None] = [None] * world
        torch.distributed.all_gather_object(gathered, items)
        items = [pair for part in gathered for pair in part or []]
    return [value for _, value in sorted(items, key=lambda pair: pair[0])]


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """``tensor`` summed over ranks (a copy; ``tensor`` itself on one process)."""
    _, world = rank_and_world()
    if world == 1:
        return tensor
    nccl = torch.distributed.get_backend() == "nccl"
    total = tensor.clone().cuda() if nccl else tensor.clone()
    torch.distributed.all_reduce(total)
    return total.to(tensor.device)
