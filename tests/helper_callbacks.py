"""Test-only callbacks injected into real training runs with ``+callbacks.NAME._target_=...``."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback


class KillAtBatch(Callback):
    """Sends ``signum`` to its own process at the start of training batch number ``at_batch`` (counted over
    the whole run, from 0): a kill that lands at a known point mid-epoch."""

    def __init__(self, at_batch: int, signum: int = int(signal.SIGKILL)) -> None:
        self.at_batch = at_batch
        self.signum = signum

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int
    ) -> None:
        if trainer.fit_loop.epoch_loop.total_batch_idx == self.at_batch:
            os.kill(os.getpid(), self.signum)


class LastCheckpointSpy(Callback):
    """Records, at the start of every training batch, the global step stored in last.ckpt (None: no file)."""

    instances: list[LastCheckpointSpy] = []

    def __init__(self) -> None:
        self.seen: list[int | None] = []
        LastCheckpointSpy.instances.append(self)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int
    ) -> None:
        path = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"
        self.seen.append(int(torch.load(path, weights_only=True)["global_step"]) if path.exists() else None)


class RankReport(Callback):
    """Each rank writes ``rank<N>.json`` into the run dir when fit ends: proof it finished, and what it saw."""

    def __init__(self) -> None:
        self.first_batch: float | None = None
        self.batches = 0

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int
    ) -> None:
        self.batches += 1
        if self.first_batch is None:
            self.first_batch = float(batch["image"].double().sum())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        report = {
            "world_size": trainer.world_size,
            "batches": self.batches,
            "first_batch_sum": self.first_batch,
            "global_step": trainer.global_step,
        }
        path = Path(trainer.default_root_dir) / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps(report))
