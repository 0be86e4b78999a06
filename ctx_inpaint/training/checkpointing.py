"""Checkpointing: a run survives ``kill -9``, pre-emption and a kill during a save, and resumes where it was.

- ``ResumableCheckpoint``: Lightning's ``ModelCheckpoint`` plus a ``last.ckpt`` every few batches (not only at
  epoch ends), one more on SIGTERM (what clusters send before pre-emption), and the RNG states, so the random
  crops carry on instead of repeating.
- ``AtomicCheckpointIO``: the Trainer's checkpoint writer and reader. Writes go to a hidden temporary file next to
  the target, are flushed, then ``os.replace``d (readers see the old file or the new one, never half of one);
  reads go through ``loading.load_checkpoint`` (weights-only, one-line refusals), once.

Resume a run that was killed by repeating its command with the same run dir and ``ckpt_path=last``:
``python -m ctx_inpaint.train ... hydra.run.dir=RUN_DIR ckpt_path=last`` (Lightning finds the newest
``last.ckpt``; with none, it starts from scratch, so the same command can be requeued).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.cloud_io import get_filesystem
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from ctx_inpaint.files import atomic_write
from ctx_inpaint.loading import load_checkpoint

RNG_KEY = "ctx_inpaint_rng"


# ---- RNG states as plain tensors and numbers (checkpoints must load with torch.load(weights_only=True)) ----
def rng_states() -> dict[str, Any]:
    """torch (CPU and every CUDA device), numpy and Python RNG states."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    npy = states["numpy"]
    np.random.set_state(
        (
            "MT19937",
            npy["keys"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached_gaussian"],
        )
    )
    py = states["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


class ResumableCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` (every argument of it works) that also keeps a run resumable.

    Args:
        last_every_n_batches: also refresh ``last.ckpt`` every this many training batches, so a kill mid-epoch
            loses at most that many (``null``: at epoch ends only, Lightning's behaviour).
        save_on_sigterm: write ``last.ckpt`` when the process gets SIGTERM; Lightning finishes the current batch,
            then stops the run.
    """

    def __init__(
        self, *args: Any, last_every_n_batches: int | None = None, save_on_sigterm: bool = True, **kw: Any
    ):
        super().__init__(*args, **kw)
        self.last_every_n_batches = last_every_n_batches
        self.save_on_sigterm = save_on_sigterm

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        n = self.last_every_n_batches
        loop = trainer.fit_loop.epoch_loop
        if not n or not self.save_last or (loop.total_batch_idx + 1) % n != 0:
            return
        if loop.batch_progress.is_last_batch or self._should_skip_saving_checkpoint(trainer):
            return  # the epoch-end save follows right after
        self._save_current_as_last(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def _refresh_last(self, trainer: pl.Trainer) -> None:
        """Lightning 2.6 rewrites ``last.ckpt`` only when a top-k checkpoint is written; resuming needs the
        latest state, so it is refreshed at every epoch end that did not already write it."""
        if (
            self.save_last
            and not self._should_skip_saving_checkpoint(trainer)
            and self._last_global_step_saved != trainer.global_step
        ):
            self._save_current_as_last(trainer)  # under save_last="link" a link would point at an older epoch

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if (
            self.save_on_sigterm
            and isinstance(exception, SIGTERMException)
            and self.save_last
            and not trainer.sanity_checking
            and self._last_global_step_saved != trainer.global_step
        ):
            self._save_current_as_last(trainer)
            rank_zero_info(
                f"[ctx-inpaint] SIGTERM: saved {self.last_model_path} at global step {trainer.global_step}"
            )
        super().on_exception(trainer, pl_module, exception)

    def _save_current_as_last(self, trainer: pl.Trainer) -> None:
        """Write the current state to last.ckpt, also under ``save_last="link"`` (whose link would point at an
        older top-k file); a link is removed first, never written through."""
        candidates = self._monitor_candidates(trainer)
        if trainer.is_global_zero:
            link = Path(self.format_checkpoint_name(candidates, self.CHECKPOINT_NAME_LAST))
            if link.is_symlink():
                link.unlink()
        mode, self.save_last = self.save_last, True
        try:
            self._save_last_checkpoint(trainer, candidates)
        finally:
            self.save_last = mode

    # RNG states travel with every checkpoint: resumed crops continue the stream instead of repeating it.
    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        checkpoint[RNG_KEY] = rng_states()

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        for logger in trainer.loggers:  # metrics.csv continues instead of starting over
            if hasattr(logger, "mark_resumed"):
                logger.mark_resumed()
        if RNG_KEY not in checkpoint:
            return
        set_rng_states(checkpoint[RNG_KEY])
        if trainer.world_size > 1 and trainer.global_rank > 0:
            # Only rank 0's states are saved; the other ranks must not replay its stream.
            torch.manual_seed(int(torch.randint(2**62, ())) + trainer.global_rank)


# ---- atomic writes, safe reads ----------------------------------------------------------------------
def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` through a temporary file in the same folder, then rename over it."""
    atomic_write(path, lambda f: torch.save(obj, f))


def _is_local(path: _PATH) -> bool:
    protocol = get_filesystem(path).protocol
    return "file" in (protocol if isinstance(protocol, tuple) else (protocol,))


class AtomicCheckpointIO(TorchCheckpointIO):
    """The Trainer's checkpoint writer and reader (``trainer.plugins``): atomic writes, safe reads, on local disks.

    Lightning reads a resume checkpoint through this plugin, once: crafted, truncated or foreign files are refused
    in one line (``loading.CheckpointError``) before any state changes.
    """

    def load_checkpoint(
        self, path: _PATH, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        if not _is_local(path):
            return super().load_checkpoint(path, map_location, weights_only)
        rank_zero_info(f"[ctx-inpaint] resuming from {path}")
        return load_checkpoint(path)

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_torch_save(checkpoint, path)
