"""Test-only callbacks injected into real training runs with ``+callbacks.NAME._target_=...``."""

from __future__ import annotations

import gc
import json
import os
import signal
import warnings
import weakref
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig
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


def current_test() -> str:
    """The id of the pytest test running now, without its phase (``""`` outside pytest)."""
    return os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]


class SpiesOfThisTest:
    """``LastCheckpointSpy.instances``: the spies made by the test running now, in order. The list starts empty in
    every test, so a test whose run made no spy finds none (an IndexError), not an earlier test's."""

    def __get__(self, obj: object, owner: type[LastCheckpointSpy]) -> list[LastCheckpointSpy]:
        test = current_test()
        if owner._test != test:
            owner._test, owner._spies = test, []
        return owner._spies


class LastCheckpointSpy(Callback):
    """Records, at the start of every training batch, the global step stored in last.ckpt (None: no file).
    Hydra builds it inside ``train()``; the test reads it back as ``LastCheckpointSpy.instances[-1]``."""

    instances = SpiesOfThisTest()
    _test: str | None = None
    _spies: list[LastCheckpointSpy] = []

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


class RaiseAtBatch(Callback):
    """Raises ``NonFiniteLossError`` (what a diverged run raises) at the start of training batch ``at_batch``;
    a negative ``at_batch`` never raises, so a sweep over it fails only some of its jobs."""

    def __init__(self, at_batch: int) -> None:
        self.at_batch = at_batch

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int
    ) -> None:
        if trainer.fit_loop.epoch_loop.total_batch_idx == self.at_batch:
            from ctx_inpaint.training.callbacks import NonFiniteLossError

            raise NonFiniteLossError(f"test failure at batch {self.at_batch}")


class JobMemory(HydraCallback):
    """A Hydra callback (``+hydra.callbacks.NAME._target_=...``): after every job of a multirun, appends a JSON
    line to ``out``: the job's number and status, the process's resident memory in MB when the job started
    (``start_rss_mb``), at its peak (``peak_mb``; None where the kernel cannot reset the peak) and when it ended
    (``rss_mb``), and how many ``ContextEncoderModule`` and ``Trainer`` objects are still alive, counted without
    collecting garbage first."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.start_rss_mb: float | None = None
        self.peak_known = False

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.start_rss_mb = resident_mb()
        self.peak_known = reset_peak()

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        from ctx_inpaint.training.module import ContextEncoderModule

        record: dict[str, Any] = {
            "job": int(config.hydra.job.num),
            "status": job_return.status.name if job_return is not None else None,
            "start_rss_mb": self.start_rss_mb,
            "peak_mb": resident_mb("VmHWM") if self.peak_known else None,
            "rss_mb": resident_mb(),
        }
        with warnings.catch_warnings():  # isinstance on some torch objects warns of deprecated names
            warnings.simplefilter("ignore")
            objects = gc.get_objects()
            alive = [o for o in objects if not isinstance(o, weakref.ProxyTypes)]  # a proxy passes isinstance
            record["modules"] = sum(isinstance(o, ContextEncoderModule) for o in alive)
            record["trainers"] = sum(isinstance(o, pl.Trainer) for o in alive)
        del objects, alive
        with open(self.out, "a") as f:
            f.write(json.dumps(record) + "\n")


def resident_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (``VmRSS``), or its peak (``VmHWM``), in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> bool:
    """Reset this process's peak resident memory (VmHWM) to its current one (Linux 4.0+); False where the
    kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True
