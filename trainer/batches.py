"""This rank's batches of one epoch, from a seeded ``DistributedSampler`` (the workers' side of
:mod:`trainer.data`)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DistributedSampler

__all__ = ["ShardedBatches"]


class ShardedBatches:
    """This rank's batches of one epoch, in the order a seeded DistributedSampler gives.

    Batches are gathered by tensor indexing (one gather per batch) rather than per-sample
    ``__getitem__`` plus collate, which costs more than the step itself for small models.
    """

    def __init__(
        self,
        features: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        rank: int,
        world_size: int,
        seed: int,
    ) -> None:
        self.features = features
        self.targets = targets
        self.batch_size = batch_size
        self.sampler: DistributedSampler[int] = DistributedSampler(
            range(len(features)),  # type: ignore[arg-type]
            num_replicas=world_size,
            rank=rank,
            shuffle=True,
            seed=seed % (2**63),
            drop_last=False,
        )

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size

    @property
    def samples_per_epoch(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.tensor(list(iter(self.sampler)), dtype=torch.long)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.features.index_select(0, idx), self.targets.index_select(0, idx)
