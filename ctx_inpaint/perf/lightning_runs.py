"""Timing the real LightningModule inside ``trainer.fit``: per-iteration wall time from a callback."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from ctx_inpaint.perf.timing import synchronize


class BatchClock(Callback):
    """Stamps every training-batch start; consecutive stamps span one whole loop iteration (fetching the batch,
    moving it, the step with its optimizers and logging, every hook). ``n`` batches give ``n - 1`` intervals."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def _stamp(self, trainer: pl.Trainer) -> None:
        synchronize(trainer.strategy.root_device)
        self.stamps.append(time.perf_counter())

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._stamp(trainer)

    def median_interval(self, warmup: int) -> float:
        intervals = [b - a for a, b in zip(self.stamps, self.stamps[1:])][warmup:]
        if not intervals:
            raise RuntimeError(
                f"bench: no timed iterations (got {len(self.stamps)} stamps, warm-up {warmup})"
            )
        return statistics.median(intervals)


class RepeatedBatch(torch.utils.data.IterableDataset):
    """The same (already collated) batch ``n`` times: the Lightning step timed without any data loading cost."""

    def __init__(self, batch: dict[str, torch.Tensor], n: int) -> None:
        self.batch, self.n = batch, n

    def __iter__(self):
        return iter([self.batch] * self.n)

    def __len__(self) -> int:
        return self.n


def repeated_loader(batch: dict[str, torch.Tensor], n: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(RepeatedBatch(batch, n), batch_size=None)
