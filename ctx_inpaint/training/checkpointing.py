"""Checkpointing: a run survives ``kill -9``, pre-emption and a kill during a save, and resumes where it was.

- ``ResumableCheckpoint``: Lightning's ``ModelCheckpoint`` plus a ``last.ckpt`` every few batches (not only at
  epoch ends), one more on SIGTERM (what clusters send before pre-emption) or SIGINT (Ctrl-C), and the RNG states,
  so the random crops carry on instead of repeating.
- ``catch_stop_signals`` and ``StopOnSignal``: SIGTERM and SIGINT, to the process or its whole group, stop a run at
  the next batch boundary through Lightning's own SIGTERM flag; a second Ctrl-C aborts at once.
- ``AtomicCheckpointIO``: the Trainer's checkpoint writer and reader. Writes go to a hidden temporary file next to
  the target, are flushed, then ``os.replace``d (readers see the old file or the new one, never half of one);
  reads go through ``config.checkpoint.load_checkpoint`` (weights-only, one-line refusals), once.

Resume a run that was killed by repeating its command with the same run dir and ``ckpt_path=last``:
``python -m ctx_inpaint.train ... hydra.run.dir=RUN_DIR ckpt_path=last`` (Lightning finds the newest
``last.ckpt``; with none, it starts from scratch, so the same command can be requeued).
Fine-tune with ``init_from=CKPT``: a new run starts from another run's network weights, or from a shipped model's
or safetensors export's generator (:func:`check_init_from`).
"""

from __future__ import annotations

import random
import re
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from lightning_fabric.utilities.cloud_io import get_filesystem
from lightning_fabric.utilities.types import _PATH
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from ctx_inpaint.common import run_folder
from ctx_inpaint.common.cli import STOP
from ctx_inpaint.common.files import atomic_write
from ctx_inpaint.config.build import model_config
from ctx_inpaint.config.checkpoint import CONFIG_KEY, CheckpointError, load_checkpoint
from ctx_inpaint.errors import one_line
from ctx_inpaint.inference.loading import load_model

RNG_KEY = "ctx_inpaint_rng"
# In a checkpoint taken by SIGTERM during validation: that epoch's validation and epoch end are still owed.
VALIDATION_OWED_KEY = "ctx_inpaint_validation_owed"
# The classes of the optimizers and schedulers that made the checkpoint's states (a resume must use the same).
OPTIM_KEY = "ctx_inpaint_optim"


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
            loses at most that many (``null``: off).
        last_every_s: refresh ``last.ckpt`` when it is this many seconds old (checked after every training batch
            and at epoch ends), at the final epoch end and at the end of training, instead of at every epoch end:
            a kill loses at most that much training, and a run of short epochs does not spend its time writing
            the optimizer state (419 MB for the paper model) at each one. ``null``: every epoch end. Not with
            ``save_last="link"`` (the link would outlive the best file it points at).
        best_weights_only: the top-k (best) files hold the weights, config and loop counters but no optimizer
            state (a third of the size): they are for inference and evaluation; resuming uses ``last.ckpt``.
        save_on_sigterm: write ``last.ckpt`` when the run is stopped by SIGTERM or SIGINT (``catch_stop_signals``):
            the current batch finishes (a validation stops at its next batch and is owed to the resume), then the
            run stops. Nothing is written when last.ckpt already holds that step or nothing was trained yet.
    """

    def __init__(
        self,
        *args: Any,
        last_every_n_batches: int | None = None,
        last_every_s: float | None = None,
        best_weights_only: bool = False,
        save_on_sigterm: bool = True,
        **kw: Any,
    ):
        super().__init__(*args, **kw)
        if last_every_s is not None and self.save_last == "link":
            raise ValueError(
                "callbacks.model_checkpoint: save_last=link cannot be combined with last_every_s (the link "
                "would point at best files that are replaced in between); set last_every_s=null or save_last=true"
            )
        self.last_every_n_batches = last_every_n_batches
        self.last_every_s = last_every_s
        self.best_weights_only = best_weights_only
        self.save_on_sigterm = save_on_sigterm
        self._last_written_at: float | None = (
            None  # monotonic time of the latest last.ckpt, or of the fit start
        )
        self._writing_last = False  # set while a last.ckpt is written (not a top-k file)
        self._last_step_written: int | None = (
            None  # global step held by last.ckpt, as far as this process knows
        )
        self._last_epoch_written: int | None = None  # and its epoch
        self._last_owes_validation = False  # and whether it owes that epoch's validation
        self._validation_owed = (
            False  # set while the SIGTERM checkpoint of an interrupted validation is written
        )
        self._rng_before_validation: dict[str, Any] | None = None
        self._rng_at_train_start: dict[str, Any] | None = None  # an owed validation's resume: set again there
        self._owed_epoch_means: dict[str, float] = {}  # restored: logged at the owed epoch's end

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        n = self.last_every_n_batches
        loop = trainer.fit_loop.epoch_loop
        if loop.batch_progress.is_last_batch:  # validation may follow: where the RNG streams stood before it
            self._rng_before_validation = rng_states()
        if (
            loop.batch_progress.is_last_batch
            or trainer.should_stop  # the run stops here: the final save follows (epoch end or train end)
            or _max_steps_reached(trainer)
            or not self.save_last
            or self._should_skip_saving_checkpoint(trainer)
        ):
            return  # the epoch-end save follows right after
        if (n and (loop.total_batch_idx + 1) % n == 0) or self._due(trainer, final=False):
            self._save_current_as_last(trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """After an owed validation's resume, the streams restart where they stood before that validation:
        Lightning's fit start draws once more (a train loader iterator) than the uninterrupted run did there."""
        super().on_train_start(trainer, pl_module)
        self._last_written_at = time.monotonic()
        if self._rng_at_train_start is not None:
            _restore_rng(trainer, self._rng_at_train_start)
            self._rng_at_train_start = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The run's final state is always in last.ckpt, whatever ``last_every_s`` skipped (a stop mid-epoch)."""
        if (
            self.save_last
            and not (trainer.fast_dev_run or trainer.sanity_checking)
            and self._last_step_written != trainer.global_step
        ):
            self._save_current_as_last(trainer)
        super().on_train_end(trainer, pl_module)

    def _due(self, trainer: pl.Trainer, final: bool) -> bool:
        """``final`` or ``last_every_s`` passed, decided on rank 0: every rank must take part in the same saves."""
        if self.last_every_s is None:
            return final
        due = final or (
            self._last_written_at is not None
            and time.monotonic() - self._last_written_at >= self.last_every_s
        )
        return bool(trainer.strategy.broadcast(due, src=0)) if trainer.world_size > 1 else due

    def _epoch_end_due(self, trainer: pl.Trainer) -> bool:
        """Whether an epoch-end (or validation-end) refresh of last.ckpt is due under ``last_every_s``: it passed,
        or the run ends after this epoch (the final state is then saved as an epoch end, like every other)."""
        at_epoch_end = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        final = at_epoch_end and (
            trainer.should_stop
            or (
                trainer.max_epochs is not None
                and trainer.max_epochs >= 0
                and trainer.current_epoch + 1 >= trainer.max_epochs
            )
        )
        return self._due(trainer, final or _max_steps_reached(trainer))

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, Any]) -> None:
        """Every last.ckpt write (Lightning's after a top-k save, ours) comes here: under ``last_every_s`` the
        epoch-end ones are skipped until due. A link (``save_last="link"``) is made only to a best file written at
        this very step that holds the optimizer state; otherwise last.ckpt is a file of its own."""
        if self.last_every_s is not None and not self._writing_last and not self._epoch_end_due(trainer):
            return
        mode = self.save_last
        if mode == "link" and (self.best_weights_only or self._last_global_step_saved != trainer.global_step):
            self.save_last = True
        self._writing_last = True
        try:
            super()._save_last_checkpoint(trainer, monitor_candidates)
        finally:
            self._writing_last, self.save_last = False, mode
        self._last_written_at = time.monotonic()
        self._last_step_written = trainer.global_step
        self._last_epoch_written = trainer.current_epoch
        self._last_owes_validation = self._validation_owed

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        keep, self.save_weights_only = (
            self.save_weights_only,
            self.save_weights_only or (self.best_weights_only and not self._writing_last),
        )
        try:
            super()._save_checkpoint(trainer, filepath)
        finally:
            self.save_weights_only = keep

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for name, value in self._owed_epoch_means.items():  # the epoch means of an interrupted epoch end
            pl_module.log(name, value, on_step=False, on_epoch=True)
        self._owed_epoch_means = {}
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def _refresh_last(self, trainer: pl.Trainer) -> None:
        """Lightning 2.6 rewrites ``last.ckpt`` only when a top-k checkpoint is written; resuming needs the
        latest state, so it is refreshed at every epoch end that did not already write it."""
        if (
            self.save_last
            and not self._should_skip_saving_checkpoint(trainer)
            and self._last_step_written != trainer.global_step
            and (self.last_every_s is None or self._epoch_end_due(trainer))
        ):
            self._save_current_as_last(trainer)  # under save_last="link" a link would point at an older epoch

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """A stop (SIGTERM or SIGINT, raised by Lightning as ``SIGTERMException``) writes last.ckpt, atomically,
        unless it already holds this step or nothing was trained; the CLI's closing line names what it holds."""
        if not isinstance(exception, SIGTERMException | KeyboardInterrupt):
            super().on_exception(trainer, pl_module, exception)
            return
        self._record_stop(
            written=False
        )  # what a resume finds if the save below does not happen or is cut short
        if (
            self.save_on_sigterm
            and isinstance(exception, SIGTERMException)
            and self.save_last
            and not trainer.sanity_checking
            and trainer.global_step > 0
            and self._last_step_written != trainer.global_step
        ):
            self._validation_owed = trainer.validating  # validation inside fit, cut short
            try:
                self._save_current_as_last(trainer)
            finally:
                self._validation_owed = False
            self._record_stop(written=True)
        super().on_exception(trainer, pl_module, exception)

    def _record_stop(self, written: bool) -> None:
        """Tell the CLI's closing line which last.ckpt a resume continues from, and its step."""
        if self._last_step_written is None:
            return
        STOP.checkpoint = self.last_model_path or str(Path(self.dirpath or ".") / run_folder.LAST_CHECKPOINT)
        STOP.step, STOP.epoch = self._last_step_written, self._last_epoch_written
        STOP.written, STOP.validation_owed = written, self._last_owes_validation

    def _save_current_as_last(self, trainer: pl.Trainer) -> None:
        """Write the current state to last.ckpt, also under ``save_last="link"`` (whose link would point at an
        older top-k file); a link is removed first, never written through."""
        candidates = self._monitor_candidates(trainer)
        if trainer.is_global_zero:
            link = Path(self.format_checkpoint_name(candidates, self.CHECKPOINT_NAME_LAST))
            if link.is_symlink():
                link.unlink()
        mode, self.save_last, self._writing_last = self.save_last, True, True
        try:
            self._save_last_checkpoint(trainer, candidates)
        finally:
            self.save_last, self._writing_last = mode, False

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Lightning keeps absolute paths and drops "best" and "last" when the folder differs (a moved or copied
        run dir): it then writes ``last-v1.ckpt`` and forgets the best epoch. Paths inside the stored folder are
        mapped into this one, so a resume does not depend on where the run started."""
        super().load_state_dict(_moved_to(state_dict, self.dirpath))

    # RNG states travel with every checkpoint: resumed crops continue the stream instead of repeating it.
    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        checkpoint[RNG_KEY] = rng_states()
        checkpoint[OPTIM_KEY] = {
            "optimizers": [_class_name(type(opt)) for opt in trainer.optimizers],
            "schedulers": [_class_name(type(config.scheduler)) for config in trainer.lr_scheduler_configs],
        }
        if self._validation_owed:
            _owe_validation(checkpoint, trainer)
            if self._rng_before_validation is not None:
                checkpoint[RNG_KEY] = self._rng_before_validation

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        owed = checkpoint.get(VALIDATION_OWED_KEY)
        # A SIGTERM before the first batch must not rewrite the state just loaded (and drop an owed validation).
        self._last_step_written = int(checkpoint.get("global_step", -1))
        self._last_epoch_written = int(checkpoint.get("epoch", -1))
        self._last_owes_validation = owed is not None
        self._owed_epoch_means = dict(owed["train_epoch_means"]) if owed else {}
        for logger in trainer.loggers:  # metrics.csv continues instead of starting over
            if hasattr(logger, "mark_resumed"):
                logger.mark_resumed(validation_owed=owed is not None)
        if RNG_KEY not in checkpoint:
            return
        _restore_rng(trainer, checkpoint[RNG_KEY])
        if owed:
            self._rng_at_train_start = checkpoint[RNG_KEY]


def _max_steps_reached(trainer: pl.Trainer) -> bool:
    return trainer.max_steps is not None and 0 <= trainer.max_steps <= trainer.global_step


def _restore_rng(trainer: pl.Trainer, states: dict[str, Any]) -> None:
    set_rng_states(states)
    if trainer.world_size > 1 and trainer.global_rank > 0:
        # Only rank 0's states are saved; the other ranks must not replay its stream.
        torch.manual_seed(int(torch.randint(2**62, ())) + trainer.global_rank)


def _owe_validation(checkpoint: dict[str, Any], trainer: pl.Trainer) -> None:
    """Make a checkpoint taken during validation rerun it on resume. Lightning skips the validation of an epoch
    whose training batches are done (it assumes a checkpoint written after it); marking the validation loop as
    stopped inside its first batch takes Lightning's "restarted mid-evaluation" path, which runs it again from
    the start (the val crops are fixed), then the epoch end. The training epoch means logged so far are kept:
    the resumed run logs them at that epoch end."""
    loops = checkpoint.get("loops", {}).get("fit_loop", {})
    key = "epoch_loop.val_loop.batch_progress"
    if key not in loops:
        return
    in_first_batch = {"ready": 1, "started": 1, "processed": 0, "completed": 0}
    loops[key] = {"total": dict(in_first_batch), "current": dict(in_first_batch), "is_last_batch": False}
    checkpoint[VALIDATION_OWED_KEY] = {
        "epoch": int(trainer.current_epoch),
        "train_epoch_means": _train_epoch_means(trainer),
    }


def _train_epoch_means(trainer: pl.Trainer) -> dict[str, float]:
    """The ``on_epoch`` values logged by the training steps of the current epoch, as its end would log them."""
    means = {}
    for result in trainer.fit_loop.epoch_loop._results.values():
        meta = result.meta
        if not (meta.on_epoch and meta.logger and result.is_tensor) or result.cumulated_batch_size == 0:
            continue
        value = result.value / result.cumulated_batch_size if meta.is_mean_reduction else result.value
        means[meta.name] = float(value)
    return means


def _moved_to(state: dict[str, Any], dirpath: str | None) -> dict[str, Any]:
    """``ModelCheckpoint`` state with every path under its stored ``dirpath`` moved under ``dirpath``."""
    old = state.get("dirpath")
    if dirpath is None or old is None or Path(old) == Path(dirpath):
        return state

    def move(path: Any) -> Any:
        if not isinstance(path, str) or not path:
            return path
        try:
            return str(Path(dirpath) / Path(path).relative_to(old))
        except ValueError:
            return path  # outside the run's checkpoint folder: left as it was

    moved = {k: move(v) if k.endswith("_path") else v for k, v in state.items()}
    moved["best_k_models"] = {move(k): v for k, v in (state.get("best_k_models") or {}).items()}
    moved["dirpath"] = dirpath
    return moved


# ---- stop signals: SIGTERM (pre-emption, scancel, kill) and SIGINT (Ctrl-C) stop a run the same resumable way ----
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _StopSignals:
    """The process's SIGTERM and SIGINT handler while a run is under way (``catch_stop_signals``).

    The first signal sets Lightning's own stop flag (what its SIGTERM handler sets, checked at every batch
    boundary): the step under way finishes, ``ResumableCheckpoint`` writes last.ckpt and the CLI exits with one
    line. SIGINT takes the same path: a KeyboardInterrupt would unwind Lightning mid-step and leave no checkpoint.
    A second Ctrl-C aborts at once (KeyboardInterrupt: a checkpoint being written is abandoned and its temporary
    file removed, the previous last.ckpt stays whole); later signals are ignored, so the abort can clean up.
    Only in the launching process: a DDP rank it started gets a group's Ctrl-C twice (from the terminal and passed
    on by rank 0), and is ended by rank 0's abort anyway."""

    def __init__(self) -> None:
        self.trainer: pl.Trainer | None = None
        self.may_abort = True

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if STOP.signum is None:
            STOP.signum = int(signum)
            self.request()
        elif signum == signal.SIGINT and self.may_abort and not STOP.aborted:
            STOP.aborted = True
            raise KeyboardInterrupt

    def request(self) -> None:
        """Raise Lightning's stop flag on the attached trainer (again after fit registered its handlers, which
        clears it), and pass the signal on to the DDP ranks its launcher started, as Lightning does for SIGTERM."""
        trainer = self.trainer
        if trainer is None or STOP.signum is None:
            return
        connector = trainer._signal_connector
        if not connector.received_sigterm and trainer.strategy.launcher is not None:
            trainer.strategy.launcher.kill(STOP.signum)
        connector.received_sigterm = True


_SIGNALS = _StopSignals()


@contextmanager
def catch_stop_signals(run_dir: str | Path, launching: bool = True) -> Iterator[None]:
    """Handle SIGTERM and SIGINT for the life of a run (see ``_StopSignals``; Lightning's SIGTERM handler, set at
    fit start, calls this one too); the previous handlers come back afterwards. Resets ``cli.STOP``. ``launching``:
    False in the DDP ranks the launching process started (they never abort on a second Ctrl-C)."""
    STOP.reset(str(run_dir))
    _SIGNALS.may_abort = launching
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        signal.signal(signum, _SIGNALS.handle)
    try:
        yield
    finally:
        _SIGNALS.trainer = None
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


class StopOnSignal(Callback):
    """Connects the trainer to ``catch_stop_signals`` (``run.train`` adds it to every run): a signal that came
    before the training loop (while data was screened, workers started or a checkpoint loaded) stops the run
    before its first batch, with nothing trained and nothing written."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        _SIGNALS.trainer = trainer

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if STOP.signum is not None:
            _SIGNALS.request()
            raise SIGTERMException

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if _SIGNALS.trainer is trainer:
            _SIGNALS.trainer = None


# ---- atomic writes, safe reads ----------------------------------------------------------------------
class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (a full disk, a quota); the previous file of that name is intact."""


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` through a temporary file in the same folder, then rename over it. A failed
    write (torch reports a full disk as ``unexpected pos``, after 90 lines of C++ frames) is one line."""
    try:
        atomic_write(path, lambda f: torch.save(obj, f))
    except OSError as err:
        raise CheckpointWriteError(_write_failure(path, err.strerror or str(err))) from None
    except RuntimeError as err:
        if not any(
            sign in str(err) for sign in ("inline_container", "unexpected pos", "PytorchStreamWriter")
        ):
            raise
        cause = err.__context__ if isinstance(err.__context__, OSError) else None
        raise CheckpointWriteError(
            _write_failure(path, cause.strerror if cause else "the disk may be full")
        ) from None


def _write_failure(path: str | Path, reason: str) -> str:
    return (
        f"{path}: could not write the checkpoint ({reason}); the previous file of that name, if any, is intact; "
        "free some space, then resume with ckpt_path=last"
    )


# files.atomic_write's temporary file of a checkpoint: ".<name>.ckpt.tmp-<pid>-<thread>".
_TEMPORARY = re.compile(r"^\..+\.ckpt\.tmp-\d+-\d+$")


def remove_stale_temporaries(dirpath: str | Path) -> list[Path]:
    """Delete the temporary files that saves killed mid-write (SIGKILL, a node lost) left in ``dirpath``.

    Called while the run dir's lock is held (``run.train``): no other process writes there, so every such file is
    a dead save's, as large as a checkpoint (419 MB for the paper model) and never to be completed."""
    folder = Path(dirpath)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if _TEMPORARY.match(p.name) and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def own_checkpoint_name(filename: str | None) -> re.Pattern[str]:
    """The names ``ResumableCheckpoint`` gives files in its folder: ``last.ckpt``, the best files after the
    ``filename`` template (``epoch{epoch:03d}-psnr{val/psnr:.2f}``: any value in each field), either with
    Lightning's ``-vN`` suffix, and a killed save's temporary file. ``overwrite=true`` deletes these only."""
    template = filename or "{epoch}-{step}"
    best = "".join(
        ".+" if part.startswith("{") else re.escape(part)
        for part in re.split(r"(\{[^}]*\})", template)
        if part
    )
    return re.compile(rf"^(?:(?:last|{best})(?:-v\d+)?\.ckpt|{_TEMPORARY.pattern[1:-1]})$")


def _is_local(path: _PATH) -> bool:
    protocol = get_filesystem(path).protocol
    return "file" in (protocol if isinstance(protocol, tuple) else (protocol,))


# ---- resuming: the checkpoint must fit the new config, checked before any record of the run is touched -----------
# Settings that change neither the weights nor what is trained: a resume may change them.
RUNTIME_KEYS = frozenset({"channels_last", "compile", "matmul", "grid_images"})


@dataclass
class ResumeCheckpoint:
    """The checkpoint ``check_resume`` read, owned by the run: ``run.train`` hands it to the trainer's
    ``AtomicCheckpointIO`` (``hand_over``), which gives it to Lightning instead of reading the file a second time."""

    path: Path
    mtime_ns: int  # the file's when it was read: a file replaced since is read again
    ckpt: dict[str, Any] | None

    def take(self, path: Path) -> dict[str, Any] | None:
        """The checkpoint, if ``path`` is the file it was read from and that file is unchanged; given once, then
        forgotten (Lightning holds it from there)."""
        ckpt, self.ckpt = self.ckpt, None
        same = (
            path.resolve() == self.path.resolve()
            and path.is_file()
            and path.stat().st_mtime_ns == self.mtime_ns
        )
        return ckpt if same else None

    def drop(self) -> None:
        """Forget the checkpoint (a run that failed before Lightning took it): its memory goes back at once."""
        self.ckpt = None


class ResumeMismatchError(CheckpointError):
    """The checkpoint cannot be resumed under this config: another architecture or other masks, or weights only."""


def last_checkpoint(dirpath: str | Path) -> Path | None:
    """The file ``ckpt_path=last`` resumes: the newest ``last*.ckpt`` in ``dirpath``, as Lightning picks it."""
    folder = Path(dirpath)
    if not folder.is_dir():
        return None
    found = [p for p in folder.iterdir() if p.suffix == ".ckpt" and re.match(r"^last(-\d+)?$", p.stem)]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def resume_checkpoint(cfg: DictConfig) -> Path | None:
    """The local checkpoint file ``cfg.ckpt_path`` names (``last``: the run dir's), None when nothing resumes."""
    path = cfg.get("ckpt_path")
    if path is None or "://" in str(path):
        return None
    if path == "last":
        dirpath = OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath", default=None)
        return last_checkpoint(dirpath) if dirpath is not None else None
    return Path(str(path)).expanduser()


def _flat(value: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(_flat(item, f"{prefix}.{key}"))
    return out


def config_differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, stored value, current value)`` for every model, mask or input-size setting that differs, except
    the runtime-only ``RUNTIME_KEYS``, and settings an older checkpoint lacks while the new config leaves them
    off (false, null or 0: options added since, at their default)."""
    old, new = {}, {}
    for section, key in (("model", "model"), ("masks", "masks"), ("input_size", "data.input_size")):
        old.update(_flat(stored.get(section), key))
        new.update(_flat(current.get(section), key))
    differences = []
    for key in sorted(old.keys() | new.keys()):
        was, now = old.get(key, _UNSET), new.get(key, _UNSET)
        if was == now or key.rsplit(".", 1)[-1] in RUNTIME_KEYS:
            continue
        if _UNSET in (was, now) and (now if was is _UNSET else was) in (None, False, 0):
            continue
        differences.append((key, was, now))
    return differences


_UNSET = object()


def _shown(value: Any) -> str:
    return "not set" if value is _UNSET else str(value)


def check_resume(cfg: DictConfig) -> ResumeCheckpoint | None:
    """Refuse, in one line naming what differs, a checkpoint that the new config cannot continue (another
    architecture, other masks): Lightning would fail only after the run's records were rewritten, with a
    size-mismatch traceback. Returns the checkpoint read here (None when nothing resumes), for the run to hand
    to its trainer (``hand_over``): Lightning then uses it, so the file is read once."""
    path = resume_checkpoint(cfg)
    if path is None:
        return None
    ckpt = load_checkpoint(path)  # weights-only; truncated or foreign files are refused here, in one line
    if "optimizer_states" not in ckpt:
        raise ResumeMismatchError(
            f"ckpt_path={cfg.ckpt_path}: {path} holds the weights only (a best file, written without optimizer "
            "state); resume from the run's last.ckpt (ckpt_path=last), or start from these weights with "
            "Inpainter.load / ContextEncoderModule.load_from_checkpoint"
        )
    differences = config_differences(ckpt[CONFIG_KEY], model_config(cfg)) + optimizer_differences(ckpt, cfg)
    if not differences:
        return ResumeCheckpoint(path, path.stat().st_mtime_ns, ckpt)
    whose = "the run's" if cfg.ckpt_path == "last" else "the checkpoint's"
    shown = "; ".join(
        f"{key} is {_shown(old)}, the new config has {_shown(new)}" for key, old, new in differences[:3]
    )
    more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
    raise ResumeMismatchError(
        f"ckpt_path={cfg.ckpt_path}: {whose} {shown}{more}; resume with the settings the checkpoint was trained "
        "with, or start a new run in another hydra.run.dir"
    )


@dataclass
class InitWeights:
    """The networks' weights a fine-tuning run starts from (``init_from``), read and checked before the run."""

    path: Path
    state_dict: Mapping[str, torch.Tensor]
    generator_only: bool = False  # a safetensors export: the discriminator starts from its initialisation

    def load_into(self, module: torch.nn.Module) -> None:
        for name in ("generator", "discriminator"):
            network = getattr(module, name, None)
            # no discriminator (lambda_rec 1): the same model settings, so none stored either
            if network is None or (name == "discriminator" and self.generator_only):
                continue
            prefix = f"{name}."
            own = {k[len(prefix) :]: v for k, v in self.state_dict.items() if k.startswith(prefix)}
            network.load_state_dict(own)  # strict: every tensor of the network, no stray ones


def check_init_from(cfg: DictConfig) -> InitWeights | None:
    """``cfg.init_from``'s weights for a new run (fine-tuning: the optimizer, steps and timer start afresh), None
    when ``init_from`` is null: a training checkpoint's generator and discriminator, or the generator of a
    shipped model (``freeform``, ``center``) or of a ``.safetensors`` export, whose discriminator was not kept.

    The networks must be the same (model settings and input size; the masks may differ: a centre-hole model
    fine-tuned from a free-form one); anything else is refused in one line naming what differs, before any record
    of the run is written."""
    if cfg.get("init_from") is None:
        return None
    source = str(cfg.init_from)
    path = Path(source).expanduser()
    if path.suffix == ".safetensors" or not path.is_file():  # an export, or a name: a shipped model's or none
        try:
            loaded = load_model(source)  # its tensors checked against its own config, in one line
        except CheckpointError as err:
            raise ResumeMismatchError(f"init_from: {one_line(err)}") from None
        path, stored = loaded.path, loaded.config
        state = {f"generator.{k}": v for k, v in loaded.generator.state_dict().items()}
    else:
        ckpt = load_checkpoint(path)  # weights-only; truncated or foreign files are refused here, in one line
        stored, state = ckpt.get(CONFIG_KEY), ckpt["state_dict"]
    if not isinstance(stored, Mapping):
        raise ResumeMismatchError(
            f"init_from: {path} records no model config; expected a checkpoint written by ctx_inpaint.train"
        )
    differences = [d for d in config_differences(stored, model_config(cfg)) if not d[0].startswith("masks.")]
    if differences:
        shown = "; ".join(
            f"{key} is {_shown(old)}, the new config has {_shown(new)}" for key, old, new in differences[:3]
        )
        more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
        raise ResumeMismatchError(f"init_from: {path}'s {shown}{more}; expected the same networks")
    return InitWeights(path, state, generator_only=not any(k.startswith("discriminator.") for k in state))


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def optimizer_differences(ckpt: Mapping[str, Any], cfg: DictConfig) -> list[tuple[str, Any, Any]]:
    """``(key, stored, current)`` for an optimizer or scheduler of another class than the one whose state the
    checkpoint holds: Lightning would load Adam's state into SGD and fail at the first step (``KeyError:
    'momentum'``), after metrics.csv was rewritten. Checkpoints name their classes (``OPTIM_KEY``); for older
    ones, another optimizer shows in the state's hyperparameters (each side has keys the other lacks). The
    learning rates and other values may change; a scheduler may be added or dropped."""
    stored = ckpt.get(OPTIM_KEY) or {}
    states = ckpt.get("optimizer_states") or []
    keys = ["optim.generator"] + (["optim.discriminator"] if len(states) > 1 else [])
    differences = []
    built: torch.optim.Optimizer | None = None
    for index, key in enumerate(keys):
        optimizer = _build_optimizer(cfg, key)
        if index == 0:
            built = optimizer
        if optimizer is None:
            continue
        target = OmegaConf.select(cfg, f"{key}._target_")
        names = stored.get("optimizers") or []
        if index < len(names):
            if names[index] != _class_name(type(optimizer)):
                differences.append((f"{key}._target_", names[index], target))
            continue
        groups = (states[index].get("param_groups") if index < len(states) else None) or [{}]
        have, want = set(groups[0]) - _BOOKKEEPING, set(optimizer.param_groups[0]) - _BOOKKEEPING
        if have - want and want - have:
            differences.append(
                (f"{key}._target_", f"an optimizer with {', '.join(sorted(have - want))}", target)
            )
    schedulers, node = stored.get("schedulers") or [], OmegaConf.select(cfg, "optim.scheduler")
    if schedulers and node is not None and built is not None:
        try:
            scheduler = instantiate(node)(built)
        except Exception:  # noqa: BLE001 - whatever it is, the run itself reports it
            scheduler = None
        if scheduler is not None and schedulers[0] != _class_name(type(scheduler)):
            differences.append(("optim.scheduler._target_", schedulers[0], node.get("_target_")))
    return differences


# Keys torch and the schedulers keep in every param group, whatever the optimizer.
_BOOKKEEPING = frozenset({"params", "param_names", "initial_lr", "lr"})


def _build_optimizer(cfg: DictConfig, key: str) -> torch.optim.Optimizer | None:
    """The optimizer ``cfg``'s ``key`` builds, over one scalar parameter (None when it cannot be built so)."""
    node = OmegaConf.select(cfg, key)
    if node is None:
        return None
    try:
        return instantiate(node)([torch.nn.Parameter(torch.zeros(1))])
    except Exception:  # noqa: BLE001 - the run builds it again and reports what is wrong
        return None


class AtomicCheckpointIO(TorchCheckpointIO):
    """The Trainer's checkpoint writer and reader (``trainer.plugins``): atomic writes, safe reads, on local disks.

    Lightning reads a resume checkpoint through this plugin, once: crafted, truncated or foreign files are refused
    in one line (``config.checkpoint.CheckpointError``) before any state changes. A checkpoint the run already
    read (``check_resume``, given by ``hand_over``) is used instead of reading the file again.
    """

    def __init__(self) -> None:
        super().__init__()
        self.preloaded: ResumeCheckpoint | None = None

    def load_checkpoint(
        self, path: _PATH, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        if not _is_local(path):
            return super().load_checkpoint(path, map_location, weights_only)
        rank_zero_info(f"[ctx-inpaint] resuming from {path}")
        preloaded, self.preloaded = self.preloaded, None
        ckpt = preloaded.take(Path(path)) if preloaded is not None else None
        return ckpt or load_checkpoint(path)

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_torch_save(checkpoint, path)


def hand_over(resume: ResumeCheckpoint | None, trainer: pl.Trainer) -> None:
    """Give ``check_resume``'s checkpoint to the trainer's ``AtomicCheckpointIO``, which passes it to Lightning;
    a trainer without that plugin (configured away) reads the file itself, and the copy is dropped now."""
    if resume is None:
        return
    io = trainer.strategy.checkpoint_io
    if isinstance(io, AtomicCheckpointIO):
        io.preloaded = resume
    else:
        resume.drop()
