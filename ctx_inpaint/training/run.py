"""Training from a composed config: what ``python -m ctx_inpaint.train`` runs, callable from code and tests."""

from __future__ import annotations

import fcntl
import gc
import os
import shutil
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from ctx_inpaint.allocator import keep_freed_memory, release_freed_memory
from ctx_inpaint.config import build_module
from ctx_inpaint.config_check import check_config
from ctx_inpaint.errors import UserError
from ctx_inpaint.files import VAL_IMAGES_FILE
from ctx_inpaint.masks import MaskGenerator
from ctx_inpaint.training.checkpointing import check_resume, forget_preloaded
from ctx_inpaint.training.loggers import ensure_wandb_mode, fill_wandb_group, fill_wandb_resume

LOCK_FILE = ".run.lock"
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


# What a run leaves in its run dir: a fresh run there would delete or mix them.
RUN_RECORDS = (
    "metrics.csv",
    VAL_IMAGES_FILE,
    "run_status.json",
    "checkpoints",
    "samples",
    "wandb_run_id.txt",
)


class RunDirBusyError(UserError):
    """Another run holds the run dir."""


class RunDirUsedError(UserError):
    """A fresh run was asked for in a run dir that already holds a run."""


def _present(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def claim_run_dir(cfg: DictConfig, run_dir: Path) -> None:
    """A fresh run (no ``ckpt_path``) in a run dir that holds a run is refused in one line, unless
    ``overwrite=true``, which deletes that run's records first: metrics.csv would be deleted and checkpoints
    mixed (``last.ckpt`` beside ``last-v1.ckpt``) otherwise."""
    if cfg.get("ckpt_path") is not None or not _launching_process():
        return
    found = [name for name in RUN_RECORDS if _present(run_dir / name)]
    if not found:
        return
    if not cfg.get("overwrite", False):
        raise RunDirUsedError(
            f"{run_dir}: already holds a run ({', '.join(found)}); resume it with ckpt_path=last, choose another "
            "hydra.run.dir, or pass overwrite=true to delete that run's records and start over"
        )
    for name in found:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _launching_process() -> bool:
    """False in the processes DDP launches for ranks > 0: rank 0 owns the run dir."""
    return all(os.environ.get(v, "0") == "0" for v in _RANK_VARIABLES)


@contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """An exclusive lock on ``run_dir`` for the life of a run: two trainings never write one metrics.csv.

    Taken by the launching process (rank 0) only; the lock is released by the kernel if the process dies, so a
    killed run never leaves a stale lock. The holder's pid is written into the lock file for the error line."""
    if not _launching_process():
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
    """Train and validate; returns the final callback metrics (used by tests and sweepers).

    Nothing of the run outlives the call, failed or not, so the jobs of a Hydra multirun, one after the other in
    one process, do not add up (see ``_release_frames``)."""
    try:
        check_config(cfg)  # refuse bad keys/values before anything is built or written
        output_dir = Path(cfg.paths.output_dir)
        with run_dir_lock(output_dir):
            # A checkpoint the config cannot continue is refused before any record is touched.
            check_resume(cfg)
            claim_run_dir(cfg, output_dir)
            return _train(cfg, output_dir)
    except BaseException as err:
        _release_frames(err)
        raise
    finally:
        forget_preloaded()
        # Trainer, module, optimizers and data loaders refer to one another: only the cycle collector frees them,
        # and its full collections are rare in a process this size. Freed now, not jobs later.
        gc.collect()
        release_freed_memory()  # what keep_freed_memory kept for the steps goes back to the OS


def _release_frames(err: BaseException) -> None:
    """Clear the local variables of the finished frames ``err`` and the exceptions it chains to passed through.

    Hydra keeps every failed job's exception until its multirun ends; through the frames of its traceback it would
    keep that job's trainer, module, optimizer state and data alive. The traceback still prints as before."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [err]
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        traceback.clear_frames(exc.__traceback__)  # frames still running (this one) are skipped
        pending += [exc.__cause__, exc.__context__]


def _train(cfg: DictConfig, output_dir: Path) -> dict[str, float]:
    if cfg.get("keep_freed_memory", False) and not keep_freed_memory(True):
        rank_zero_info(
            "[ctx-inpaint] keep_freed_memory: not glibc malloc here; the allocator's defaults stay"
        )
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
