"""Callbacks of our own besides checkpointing (training/checkpointing.py); Lightning's (LR monitor, progress bar)
come from the config."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, Timer
from pytorch_lightning.loggers import CSVLogger, WandbLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from ctx_inpaint.common import run_folder
from ctx_inpaint.common.cli import say
from ctx_inpaint.common.files import atomic_write
from ctx_inpaint.common.machine import describe
from ctx_inpaint.errors import UserError, check_range


class NonFiniteLossError(UserError, RuntimeError):
    """A training loss became NaN or infinite; the message names the step and the loss terms."""


class RunSummary(Callback):
    """Closes a run with one line saying where its checkpoints, metrics and W&B files are."""

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        parts = []
        ckpt = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
        if ckpt is not None:
            best = ckpt.best_model_path or "none"
            score = (
                f" (val/psnr {float(ckpt.best_model_score):.2f} dB)"
                if ckpt.best_model_score is not None
                else ""
            )
            last = Path(ckpt.dirpath or ".") / run_folder.LAST_CHECKPOINT
            parts.append(f"best checkpoint {best}{score}, last {last}")
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger):
                parts.append(f"metrics {Path(logger.log_dir) / run_folder.METRICS}")
            elif isinstance(logger, WandbLogger):
                run = logger.experiment
                parts.append(
                    f"W&B run {getattr(run, 'dir', '?')} (mode {getattr(run.settings, 'mode', '?')})"
                )
        say("[ctx-inpaint] done: " + "; ".join(parts))


class RunStatus(Callback):
    """Writes ``run_status.json`` in the run dir: running / finished / failed, fit wall time and machine.

    The ablation report reads it (no W&B needed) to show crashed or cut-short runs and each run's wall time.
    """

    FILENAME = run_folder.STATUS

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        overrides: Callable[[], list[str] | None] | None = None,
    ) -> None:
        # Injectable so tests check the wall-time arithmetic on a fake clock, whatever the machine's speed, and
        # each launch's overrides without a Hydra run.
        self.clock = clock
        self.overrides = overrides or hydra_task_overrides
        self._start: float | None = None
        self._started_at: str | None = None
        self._earlier_s = 0.0  # wall time of the attempts before this resume
        self._attempt = 1
        # One entry per launch of this run (the first and each resume): when, with which overrides, on what.
        # overrides.yaml keeps only the last launch's, so a run resumed with another budget or thread count
        # would otherwise lose how its earlier part was trained.
        self._launches: list[dict[str, object]] = []

    def _write(self, trainer: pl.Trainer, status: str, **extra: object) -> None:
        if not trainer.is_global_zero:
            return
        now = self.clock()
        record = {
            "status": status,
            "started_at": self._started_at,
            "updated_at": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
            # Milliseconds: a short run's time does not round to zero.
            "wall_time_s": round(self._earlier_s + now - self._start, 3) if self._start is not None else None,
            "attempts": self._attempt,
            "epochs_completed": int(trainer.current_epoch),
            "max_epochs": trainer.max_epochs,
            "global_step": int(trainer.global_step),
            "machine": _machine(trainer),
            "launches": self._launches,
            **extra,
        }
        text = json.dumps(record, indent=2).encode()
        # Atomic: a kill or a full disk mid-write leaves the previous record, never half a JSON file.
        atomic_write(Path(trainer.default_root_dir) / self.FILENAME, lambda f: f.write(text))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self.clock()
        launch_start = datetime.fromtimestamp(self._start, timezone.utc).isoformat(timespec="seconds")
        self._started_at = launch_start  # the run's start, unless a resumed record has an earlier one
        if trainer.ckpt_path is not None:
            self._continue_record(Path(trainer.default_root_dir) / self.FILENAME)
        self._launches.append(
            {
                "attempt": self._attempt,
                "started_at": launch_start,
                "overrides": self.overrides(),
                "machine": _machine(trainer),
            }
        )
        self._write(trainer, "running")

    def _continue_record(self, path: Path) -> None:
        """A resumed run adds its time to the earlier attempts' and keeps the first start: the record is the
        whole run's, not the last attempt's."""
        try:
            earlier = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if not isinstance(earlier, dict):
            return
        wall, started, attempts = (
            earlier.get("wall_time_s"),
            earlier.get("started_at"),
            earlier.get("attempts"),
        )
        # a damaged record (hand-edited, wrong types) costs the earlier time, never the run
        if isinstance(wall, (int, float)) and not isinstance(wall, bool) and wall >= 0:
            self._earlier_s = float(wall)
        if isinstance(started, str) and started:
            self._started_at = started
        if isinstance(attempts, int) and not isinstance(attempts, bool) and attempts >= 1:
            self._attempt = attempts + 1
        else:
            self._attempt = 2  # a record exists, so this is at least the second attempt
        launches = earlier.get("launches")
        if isinstance(launches, list):
            self._launches = [entry for entry in launches if isinstance(entry, dict)]

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, "running")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """``time/wall_s`` beside each epoch's val metrics in metrics.csv (all attempts of a resumed run
        together): the time a run took to reach a quality is read from the record, not estimated."""
        if self._start is not None and not trainer.sanity_checking:
            wall = self._earlier_s + self.clock() - self._start
            pl_module.log("time/wall_s", wall, on_step=False, on_epoch=True, sync_dist=False)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, "interrupted" if trainer.interrupted else "finished")

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        # Ctrl-C and SIGTERM (pre-emption, after last.ckpt was written) stop a run that can resume.
        status = "interrupted" if isinstance(exception, KeyboardInterrupt | SIGTERMException) else "failed"
        try:
            self._write(trainer, status, error=f"{type(exception).__name__}: {exception}"[:500])
        except OSError:
            pass  # a full or read-only disk: the exception being handled says so; it must not be replaced


def hydra_task_overrides() -> list[str] | None:
    """The command line's overrides of this launch (``+experiment=...``, ``ckpt_path=last``), or None outside a
    Hydra run (a test, a notebook)."""
    if not HydraConfig.initialized():
        return None
    return [str(o) for o in HydraConfig.get().overrides.task]


def _machine(trainer: pl.Trainer) -> dict[str, object]:
    """Enough to say where a timing came from: ``common.machine.describe`` for the trainer's accelerator."""
    accelerator = type(trainer.accelerator).__name__.replace("Accelerator", "").lower()
    return describe(accelerator=accelerator, devices=trainer.num_devices)


class NonFiniteLossGuard(Callback):
    """Stops training at the first step whose logged ``train/`` losses are NaN or infinite.

    It runs before any checkpoint of that step is written (Lightning orders checkpoint callbacks last), so
    ``last.ckpt`` keeps the last good weights. Each check syncs one scalar per step with the device.
    """

    def __init__(self, prefix: str = "train/", check_every_n_batches: int = 1) -> None:
        self.prefix = prefix
        self.check_every_n_batches = check_every_n_batches

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if (trainer.fit_loop.epoch_loop.total_batch_idx + 1) % self.check_every_n_batches != 0:
            return
        terms = {
            k: v
            for k, v in trainer.callback_metrics.items()
            if k.startswith(self.prefix) and not k.endswith("_epoch") and v.numel() == 1
        }
        if not terms:
            return
        values = torch.stack([v.detach().float().reshape(()) for v in terms.values()])
        local_bad = not bool(torch.isfinite(values).all())
        if not trainer.strategy.reduce_boolean_decision(local_bad, all=False):
            return
        bad = ", ".join(f"{k}={float(v):g}" for k, v in terms.items() if not math.isfinite(float(v)))
        last = _last_checkpoint(trainer)
        raise NonFiniteLossError(
            f"non-finite loss at global step {trainer.global_step} (epoch {trainer.current_epoch}, batch {batch_idx})"
            f": {bad or 'on another rank'}; training stopped, last good checkpoint: {last}"
        )


def _last_checkpoint(trainer: pl.Trainer) -> str:
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.last_model_path and Path(cb.last_model_path).is_file():
            return cb.last_model_path
    return "none written yet"


def budget_fraction(
    batches_done: int, total_batches: float | None, elapsed_s: float | None, duration_s: float | None
) -> float:
    """How much of the run's budget is spent: the larger of the batch fraction (``max_epochs``) and the time
    fraction (``max_time``), clipped to [0, 1]; budgets that are not set (``None``) do not count."""
    fractions = [0.0]
    if total_batches:
        fractions.append(batches_done / total_batches)
    if duration_s:
        fractions.append((elapsed_s or 0.0) / duration_s)
    return min(max(fractions), 1.0)


class BudgetCosineLR(Callback):
    """Cosine learning-rate decay over the run's budget, whichever of ``trainer.max_epochs`` and
    ``trainer.max_time`` ends first, updated before every batch.

    An epoch-based cosine (``CosineAnnealingLR(T_max=max_epochs)``) never anneals when ``max_time`` stops the run
    first, as on a machine slower than the one the recipe was fitted on; this one ends at ``min_lr_fraction`` of
    each group's initial lr either way. The initial lr is kept in each param group (``initial_lr``), so it
    travels with the optimizer state and a resumed run continues the same curve.
    """

    def __init__(self, min_lr_fraction: float = 0.0) -> None:
        self.min_lr_fraction = check_range(
            "callbacks.budget_cosine.min_lr_fraction", min_lr_fraction, 0.0, 1.0
        )

    def fraction(self, trainer: pl.Trainer) -> float:
        total = None
        if (
            trainer.max_epochs is not None
            and trainer.max_epochs > 0
            and trainer.num_training_batches != math.inf
        ):
            total = trainer.max_epochs * trainer.num_training_batches
        timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)
        elapsed = duration = None
        if timer is not None and timer.time_remaining("train") is not None:
            elapsed = timer.time_elapsed("train")
            duration = elapsed + timer.time_remaining("train")
        return budget_fraction(trainer.fit_loop.epoch_loop.total_batch_idx, total, elapsed, duration)

    def scale(self, fraction: float) -> float:
        return self.min_lr_fraction + (1.0 - self.min_lr_fraction) * 0.5 * (
            1.0 + math.cos(math.pi * fraction)
        )

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        factor = self.scale(self.fraction(trainer))
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] * factor
