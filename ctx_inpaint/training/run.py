"""Training from a composed config: what ``python -m ctx_inpaint.train`` runs (``train``) and what
``python -m ctx_inpaint.prepare`` runs ahead of it (``prepare``), callable from code and tests.

The config is checked once, up front, by ``config.check.check_config``; a resumed checkpoint is read once, by
``checkpointing.check_resume``, and handed to the trainer. The run dir is locked and claimed here.
"""

from __future__ import annotations

import fcntl
import gc
import os
import re
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from ctx_inpaint.common import run_folder
from ctx_inpaint.common.allocator import keep_freed_memory, release_freed_memory
from ctx_inpaint.common.threads import reduced_threads_line
from ctx_inpaint.config.build import build_module, with_resolved_precision
from ctx_inpaint.config.check import check_config
from ctx_inpaint.data.prepared import PreparedImages
from ctx_inpaint.errors import ConfigError, UserError
from ctx_inpaint.masks.generators import MaskGenerator
from ctx_inpaint.training.checkpointing import (
    InitWeights,
    ResumeCheckpoint,
    StopOnSignal,
    catch_stop_signals,
    check_init_from,
    check_resume,
    hand_over,
    own_checkpoint_name,
    remove_stale_temporaries,
)
from ctx_inpaint.training.loggers import ensure_wandb_mode, fill_wandb_group, fill_wandb_resume

LOCK_FILE = run_folder.LOCK
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


# What a run leaves in its run dir: a fresh run there would delete or mix them.
RUN_RECORDS = run_folder.RECORDS


class RunDirBusyError(UserError):
    """Another run holds the run dir."""


class RunDirUsedError(UserError):
    """A fresh run was asked for in a run dir that already holds a run."""


# The sample grids the module writes into samples/ (one per validated epoch): run_folder's name, any epoch.
SAMPLE_NAME = re.compile(
    "^" + re.escape(run_folder.RunFolder("").sample(0).name).replace("0000", r"\d{4,}") + "$"
)


def own_files(cfg: DictConfig, run_dir: Path, name: str) -> list[Path]:
    """The files of the run record ``name`` that a run wrote: the file itself, or in ``checkpoints/`` and
    ``samples/`` our checkpoints (``last.ckpt``, best files by ``callbacks.model_checkpoint.filename``, a killed
    save's temporary file) and sample grids only; anything else a user put there is not the run's."""
    path = run_dir / name
    if name not in (run_folder.CHECKPOINTS, run_folder.SAMPLES):
        return [path] if path.is_file() else []
    if not path.is_dir():
        return []
    pattern = (
        own_checkpoint_name(OmegaConf.select(cfg, "callbacks.model_checkpoint.filename", default=None))
        if name == run_folder.CHECKPOINTS
        else SAMPLE_NAME
    )
    return sorted(p for p in path.iterdir() if pattern.match(p.name) and (p.is_file() or p.is_symlink()))


def claim_run_dir(cfg: DictConfig, run_dir: Path) -> None:
    """A fresh run (no ``ckpt_path``) in a run dir that holds a run is refused in one line, unless
    ``overwrite=true``, which deletes that run's records first: metrics.csv would be deleted and checkpoints
    mixed (``last.ckpt`` beside ``last-v1.ckpt``) otherwise. Only what a run wrote is deleted: other files in
    ``checkpoints/`` or ``samples/`` stay (one line names them), and do not count as a run."""
    if cfg.get("ckpt_path") is not None or not _launching_process():
        return
    records = {name: own_files(cfg, run_dir, name) for name in RUN_RECORDS}
    found = [name for name, files in records.items() if files]
    if not found:
        return
    if not cfg.get("overwrite", False):
        raise RunDirUsedError(
            f"{run_dir}: already holds a run ({', '.join(found)}); resume it with ckpt_path=last, choose another "
            "hydra.run.dir, or pass overwrite=true to delete that run's records and start over"
        )
    for files in records.values():
        for path in files:
            path.unlink()
    kept = []
    for name in (run_folder.CHECKPOINTS, run_folder.SAMPLES):
        folder = run_dir / name
        if folder.is_dir() and not folder.is_symlink():
            if any(folder.iterdir()):
                kept += sorted(str(p.relative_to(run_dir)) for p in folder.iterdir())
            else:
                folder.rmdir()
    if kept:
        shown = ", ".join(kept[:3]) + (f" and {len(kept) - 3} more" if len(kept) > 3 else "")
        rank_zero_info(f"[ctx-inpaint] overwrite=true: kept {shown}, not written by a run")


def _remove_dead_saves(cfg: DictConfig) -> None:
    """A save killed mid-write (SIGKILL) left its temporary file: a checkpoint's size, never completed."""
    dirpath = OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath", default=None)
    if dirpath is None or not _launching_process():
        return
    removed = remove_stale_temporaries(dirpath)
    if removed:
        rank_zero_info(
            f"[ctx-inpaint] removed {len(removed)} temporary file(s) of a save that was killed: "
            + ", ".join(p.name for p in removed[:3])
        )


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
    resume: ResumeCheckpoint | None = None
    try:
        check_config(cfg)  # the one config check: refused before anything is built or written
        output_dir = Path(cfg.paths.output_dir)
        # SIGTERM and SIGINT stop the run at a batch boundary with last.ckpt written (checkpointing).
        with run_dir_lock(output_dir), catch_stop_signals(output_dir, _launching_process()):
            # A checkpoint the config cannot continue is refused before any record is touched; one it can
            # continue is read here once, and handed to the trainer.
            resume = check_resume(cfg)
            init = check_init_from(cfg) if resume is None else None  # a resumed run keeps its own weights
            claim_run_dir(cfg, output_dir)
            _remove_dead_saves(cfg)
            return _train(cfg, output_dir, resume, init)
    except BaseException as err:
        _release_frames(err)
        raise
    finally:
        if resume is not None:
            resume.drop()  # a checkpoint Lightning did not take (the run failed before it resumed)
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


def _train(
    cfg: DictConfig, output_dir: Path, resume: ResumeCheckpoint | None = None, init: InitWeights | None = None
) -> dict[str, float]:
    if cfg.get("keep_freed_memory", False) and not keep_freed_memory(True):
        rank_zero_info(
            "[ctx-inpaint] keep_freed_memory: not glibc malloc here; the allocator's defaults stay"
        )
    cfg, precision_line = with_resolved_precision(cfg)  # trainer.precision: auto -> bf16-mixed or 32-true
    if precision_line:
        rank_zero_info(f"[ctx-inpaint] {precision_line}")
    if threads_line := reduced_threads_line():
        rank_zero_info(f"[ctx-inpaint] {threads_line}")
    # config_resolved.yaml records the resolved value; a first comment line keeps `auto` visible
    precision_note = f"# trainer.{precision_line}\n" if precision_line else ""
    pl.seed_everything(cfg.seed, workers=True)
    fill_wandb_group(cfg)
    output_dir.mkdir(parents=True, exist_ok=True)
    fill_wandb_resume(cfg, output_dir)
    run_folder.RunFolder(output_dir).resolved_config.write_text(
        precision_note + OmegaConf.to_yaml(cfg, resolve=True)
    )

    masks: MaskGenerator = instantiate(cfg.masks)
    datamodule = instantiate(cfg.data, masks=masks)
    module = build_module(cfg, masks)
    if init is not None:
        init.load_into(module)
        rank_zero_info(f"[ctx-inpaint] init_from: starting from the weights of {init.path}")

    logger_cfgs = cfg.get("logger") or {}
    if "wandb" in logger_cfgs:
        ensure_wandb_mode()
    loggers = [instantiate(c) for c in logger_cfgs.values() if c is not None]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    callbacks.append(StopOnSignal())  # SIGTERM/SIGINT before the first batch stop the run there
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers, callbacks=callbacks)
    hand_over(resume, trainer)
    try:
        # ckpt_path=last: Lightning resumes from the newest last.ckpt, or starts from scratch when there is none;
        # the checkpoint check_resume read is the one Lightning takes (training.checkpointing.AtomicCheckpointIO).
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    finally:
        if "wandb" in logger_cfgs:
            import wandb

            wandb.finish()  # never let multirun jobs merge into one W&B run
    return {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}


def prepare(cfg: DictConfig) -> list[PreparedImages]:
    """Build (or validate) the train and val caches exactly as training would (same config check, datamodule and
    bad-image screening), so training finds them under the same key; returns them."""
    check_config(cfg)  # refuse bad keys/values as training does, before anything is read or written
    if not cfg.data.get("prepared_dir"):
        raise ConfigError("data.prepared_dir: null, so there is no cache to prepare (set a folder)")
    datamodule = instantiate(cfg.data, masks=instantiate(cfg.masks))  # as _train builds it
    datamodule.prepare_data()
    for split, store, seconds in datamodule.prepared:
        action = "built" if store.built else "up to date"
        print(f"[ctx-inpaint] {split}: {len(store)} photos {action} in {seconds:.1f} s: {store.dir}")
    return [store for _, store, _ in datamodule.prepared]
