"""Starting ``trainer.fit`` safely from a checkpoint, and turning the errors a user can fix into one line.

Resume a run that was killed or pre-empted by repeating its command with the same run dir and ``ckpt_path=last``:
``python -m ctx_inpaint.train ... hydra.run.dir=RUN_DIR ckpt_path=last``. Every checkpoint is read with
``torch.load(weights_only=True)``: one whose unpickling would import or call anything is refused before it runs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf.errors import OmegaConfBaseException
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from ctx_inpaint.checkpoint import CheckpointError, load_checkpoint
from ctx_inpaint.errors import UserError, instantiation_message, one_line
from ctx_inpaint.faults import NonFiniteLossError

SIGTERM_EXIT = 143  # 128 + SIGTERM, what a shell reports for a process the signal ended


def resolve_ckpt_path(trainer: pl.Trainer, ckpt_path: str | None) -> str | None:
    """``last``: the newest ``last*.ckpt`` of the checkpoint callbacks (None, with a note, when there is none:
    a first launch with ``ckpt_path=last`` starts from scratch, so the same command can be requeued)."""
    if ckpt_path != "last":
        return ckpt_path
    found: set[str] = set()
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint):
            found |= cb._find_last_checkpoints(trainer)
    paths = [Path(p) for p in found if Path(p).is_file()]
    if not paths:
        dirs = ", ".join(
            str(cb.dirpath) for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)
        )
        rank_zero_info(
            f"[ctx-inpaint] ckpt_path=last: no last.ckpt in {dirs or 'the run dir'}; starting from scratch"
        )
        return None
    return str(max(paths, key=lambda p: p.stat().st_mtime))


def fit_resumable(
    trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule, ckpt_path: str | None
) -> None:
    """``trainer.fit`` resuming from ``ckpt_path`` (a file or ``last``), weights-only."""
    path = resolve_ckpt_path(trainer, ckpt_path)
    if path is not None and "://" not in path:
        load_checkpoint(
            path
        )  # one-line refusal of crafted, truncated or foreign files, before any state changes
        rank_zero_info(f"[ctx-inpaint] resuming from {path}")
    trainer.fit(module, datamodule=datamodule, ckpt_path=path, weights_only=True)


@contextmanager
def report_user_errors() -> Iterator[None]:
    """CLI wrapper: bad configs, data, checkpoints and diverged runs exit with one line on stderr, status 1;
    SIGTERM (after its checkpoint) exits with status 143.

    In a Hydra multirun the failing job prints its line and raises instead of exiting: Hydra records the
    failure, runs the sweep's other jobs, and fails the command at the end (an exit would end the sweep).
    """
    try:
        yield
    except SIGTERMException:
        print(
            "[ctx-inpaint] stopped by SIGTERM after writing last.ckpt; resume with the same command plus "
            "hydra.run.dir=<this run dir> ckpt_path=last",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(SIGTERM_EXIT)
    except (UserError, CheckpointError, NonFiniteLossError, OmegaConfBaseException) as err:
        _exit_with(err)
    except InstantiationException as err:  # a constructor refused its arguments
        _exit_with(instantiation_message(err, "config"))


def _exit_with(err: BaseException | str) -> None:
    message = one_line(err) if isinstance(err, BaseException) else err
    print(f"ctx-inpaint: error: {message}", file=sys.stderr, flush=True)
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise RuntimeError(message) from None
    sys.exit(1)
