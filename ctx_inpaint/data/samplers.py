"""Validation under DDP: each rank scores a disjoint share of the fixed val set, nothing repeated.

Lightning's default ``DistributedSampler`` pads the last share with repeated samples so that every rank gets as
many; the reduced val metrics would then weigh some crops twice. Subclassing ``DistributedSampler`` keeps
Lightning from replacing this sampler with its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

from torch.utils.data import DistributedSampler


class UnpaddedDistributedSampler(DistributedSampler):
    """Indices ``rank, rank + world, ...``: shares differ by at most one sample and add up to the whole set."""

    def __init__(self, dataset: Sized, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.indices = list(range(rank, len(dataset), num_replicas))
        self.num_samples = len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return self.num_samples
