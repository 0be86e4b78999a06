"""Training from a composed config: what ``python -m ctx_inpaint.train`` runs, callable from code and tests."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ctx_inpaint.config import build_module
from ctx_inpaint.config_check import check_config
from ctx_inpaint.errors import UserError
from ctx_inpaint.masks import MaskGenerator
from ctx_inpaint.training.loggers import ensure_wandb_mode, fill_wandb_group, fill_wandb_resume

LOCK_FILE = ".run.lock"
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


class RunDirBusyError(UserError):
    """Another run holds the run dir."""


@contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """An exclusive lock on ``run_dir`` for the life of a run: two trainings never write one metrics.csv.

    Taken by the launching process (rank 0) only; the lock is released by the kernel if the process dies, so a
    killed run never leaves a stale lock. The holder's pid is written into the lock file for the error line."""
    if any(os.environ.get(v, "0") != "0" for v in _RANK_VARIABLES):
        yield  # a DDP worker: rank 0 holds the lock for the run
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise RunDirBusyError(
                f"{run_dir}: another run (pid {holder}) is using this run dir; wait for it to end or choose "
                "another hydra.run.dir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def train(cfg: DictConfig) -> dict[str, float]:
    """Train and validate; returns the final callback metrics (used by tests and sweepers)."""
    check_config(cfg)  # refuse bad keys/values before anything is built or written
    output_dir = Path(cfg.paths.output_dir)
    with run_dir_lock(output_dir):
        return _train(cfg, output_dir)


def _train(cfg: DictConfig, output_dir: Path) -> dict[str, float]:
    pl.seed_everything(cfg.seed, workers=True)
    fill_wandb_group(cfg)
    output_dir.mkdir(parents=True, exist_ok=True)
    fill_wandb_resume(cfg, output_dir)
    (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    masks: MaskGenerator = instantiate(cfg.masks)
    datamodule = instantiate(cfg.data, masks=masks)
    module = build_module(cfg, masks)

    logger_cfgs = cfg.get("logger") or {}
    if "wandb" in logger_cfgs:
        ensure_wandb_mode()
    loggers = [instantiate(c) for c in logger_cfgs.values() if c is not None]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers, callbacks=callbacks)
    try:
        # ckpt_path=last: Lightning resumes from the newest last.ckpt, or starts from scratch when there is none;
        # the checkpoint is read once, safely, by training.checkpointing.AtomicCheckpointIO.
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    finally:
        if "wandb" in logger_cfgs:
            import wandb

            wandb.finish()  # never let multirun jobs merge into one W&B run
    return {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
