"""Timing the real LightningModule inside ``trainer.fit``: per-iteration wall time from a callback, alone
(:class:`BatchClock`) or interleaved with other steps (:class:`InterleavingClock`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from ctx_inpaint.benchmark.timing import (
    Clock,
    check_rounds,
    inner_of,
    record,
    round_order,
    synchronize,
    timed_call,
)


class BatchClock(Callback):
    """Stamps every training-batch start; consecutive stamps span one whole loop iteration (fetching the batch,
    moving it, the step with its optimizers and logging, every hook). ``n`` batches give ``n - 1`` intervals."""

    def __init__(self, clock: Clock = time.perf_counter) -> None:
        self.clock = clock
        self.stamps: list[float] = []

    def _stamp(self, trainer: pl.Trainer) -> None:
        synchronize(trainer.strategy.root_device)
        self.stamps.append(self.clock())

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._stamp(trainer)

    def median_interval(self, warmup: int) -> float:
        intervals = [b - a for a, b in zip(self.stamps, self.stamps[1:])][warmup:]
        if not intervals:
            raise RuntimeError(
                f"bench: no timed iterations (got {len(self.stamps)} stamps, warm-up {warmup})"
            )
        return statistics.median(intervals)


class InterleavingClock(Callback):
    """The Lightning training iteration as one step of :func:`ctx_inpaint.benchmark.timing.interleaved`'s rounds.

    ``trainer.fit`` cannot be called once per round, so the rounds run inside it: training batch ``warmup + r``
    is round ``r`` of the Lightning step (named ``host``). The round's order comes from the same
    :func:`~ctx_inpaint.benchmark.timing.round_order` as everywhere; the other steps that come before the host in it
    run in ``on_train_batch_start`` (before the iteration's stamp), those after it in ``on_train_batch_end``,
    each timed on its own. The stamps are taken where :class:`BatchClock` takes them, so the interval from one
    iteration's stamp to the next spans a whole loop iteration (batch fetch and transfer, the step with both
    optimizers, every hook and the logging); the Lightning step's time in round ``r`` is that interval minus
    the timed segments of the other steps that ran inside it. Nothing else runs in the interval, so the
    subtraction leaves exactly Lightning's own iteration, measured between the other steps of the same round.
    The first ``warmup`` iterations run every other step once, untimed; ``trainer.fit`` needs
    ``warmup + rounds + 1`` batches (the last one only closes the last interval). Stamps and segments are read
    from ``clock`` (tests pass a fake one).
    """

    def __init__(
        self,
        others: Mapping[str, Callable[[], object]],
        rounds: int,
        warmup: int,
        device: torch.device,
        host: str = "lightning",
        inner: int | Mapping[str, int] = 1,
        clock: Clock = time.perf_counter,
    ) -> None:
        check_rounds(rounds, warmup)
        if host in others:
            raise ValueError(f"bench: {host!r} is the host step and one of the others")
        self.others, self.rounds, self.warmup = dict(others), int(rounds), int(warmup)
        self.device, self.host, self.inner, self.clock = device, host, inner, clock
        self.names = [host, *self.others]
        self.iteration = 0
        self.stamps: list[float] = []
        self.segments: list[tuple[float, float]] = []  # (start, end) of every timed call of another step
        self.seconds: dict[str, list[float]] = {n: [] for n in self.others}
        self.order: list[list[str]] = []

    @property
    def batches(self) -> int:
        """Training batches ``trainer.fit`` must run."""
        return self.warmup + self.rounds + 1

    def _round(self) -> int | None:
        r = self.iteration - self.warmup
        return r if 0 <= r < self.rounds else None

    def _run(self, names: list[str]) -> None:
        with torch.enable_grad():
            for name in names:
                n = inner_of(self.inner, name)
                start, seconds = timed_call(self.others[name], self.device, n, self.clock)
                self.segments.append((start, start + seconds * n))
                self.seconds[name].append(seconds)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        r = self._round()
        if r is not None:
            order = round_order(self.names, r)
            self.order.append(order)
            self._run(order[: order.index(self.host)])
        synchronize(self.device)
        self.stamps.append(self.clock())

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        r = self._round()
        if r is not None:
            order = self.order[-1]
            self._run(order[order.index(self.host) + 1 :])
        elif self.iteration < self.warmup:
            with torch.enable_grad():
                for fn in self.others.values():
                    fn()
        self.iteration += 1

    def result(self) -> dict[str, Any]:
        """:func:`~ctx_inpaint.benchmark.timing.record` of every step, the host's times included."""
        if len(self.stamps) < self.batches:
            raise RuntimeError(
                f"bench: trainer.fit ran {len(self.stamps)} training batches, the rounds need {self.batches}"
            )
        host = []
        for r in range(self.rounds):
            s0, s1 = self.stamps[self.warmup + r], self.stamps[self.warmup + r + 1]
            inside = sum(e - s for s, e in self.segments if s >= s0 and e <= s1)
            host.append(s1 - s0 - inside)
        return record({self.host: host, **self.seconds}, self.order)


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
