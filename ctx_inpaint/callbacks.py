"""Callbacks of our own; Lightning's (checkpointing, LR monitor, progress bar) come from the config."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, ModelCheckpoint


class RunSummary(Callback):
    """Closes a run with one line saying where its checkpoints, metrics and W&B files are."""

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        parts = []
        ckpt = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
        if ckpt is not None:
            best = ckpt.best_model_path or "none"
            score = f" (val/psnr {float(ckpt.best_model_score):.2f} dB)" if ckpt.best_model_score is not None else ""
            parts.append(f"best checkpoint {best}{score}, last {Path(ckpt.dirpath or '.') / 'last.ckpt'}")
        for logger in trainer.loggers:
            name = type(logger).__name__
            if name == "CSVLogger":
                parts.append(f"metrics {Path(logger.log_dir) / 'metrics.csv'}")
            elif name == "WandbLogger":
                run = logger.experiment
                parts.append(f"W&B run {getattr(run, 'dir', '?')} (mode {getattr(run.settings, 'mode', '?')})")
        print("[ctx-inpaint] done: " + "; ".join(parts), flush=True)
