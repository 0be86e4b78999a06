"""The one policy of every CLI: a user error (bad config, data, checkpoint, flag, a diverged run) ends with one line
``ctx-inpaint: error: ...`` on stderr and exit status 1; anything else is a bug and keeps its traceback. A run
stopped by SIGTERM or SIGINT (Ctrl-C) ends with one line naming the checkpoint it left and how to resume, and the
status a shell gives a process that signal ended: 143 or 130.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback as HydraCallback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from ctx_inpaint.errors import UserError, instantiation_message, one_line

PREFIX = "ctx-inpaint: error:"
USER_ERROR_EXIT = 1
SIGTERM_EXIT = 143  # 128 + SIGTERM, what a shell reports for a process the signal ended
SIGINT_EXIT = 130  # 128 + SIGINT (Ctrl-C)
STOP_EXITS = {int(signal.SIGTERM): SIGTERM_EXIT, int(signal.SIGINT): SIGINT_EXIT}


@dataclass
class StopRecord:
    """What a stop signal did to the run in this process, for its closing line: set by
    ``training.checkpointing`` (the handlers and the save), read by ``report_user_errors``."""

    signum: int | None = None  # the first SIGTERM or SIGINT
    run_dir: str | None = None
    checkpoint: str | None = None  # the last.ckpt a resume continues from (None: none written)
    step: int | None = None  # the global step it holds
    epoch: int | None = None
    written: bool = False  # written at the stop (False: it already held that step, or nothing was written)
    validation_owed: bool = False  # the stop cut a validation short: the resume runs it first
    aborted: bool = False  # a second Ctrl-C cut the stop itself short

    def reset(self, run_dir: str | None = None) -> None:
        self.__init__(run_dir=run_dir)  # type: ignore[misc]

    def exit_status(self) -> int:
        return STOP_EXITS.get(self.signum or 0, SIGTERM_EXIT)

    def line(self) -> str:
        """One line: which signal, what ``last.ckpt`` holds (the step, so the signal's save can be told from an
        earlier one), and the command that resumes."""
        name = signal.Signals(self.signum).name if self.signum else "SIGTERM"
        head = f"[ctx-inpaint] stopped by {name}"
        if self.aborted:
            head += (
                " (a second Ctrl-C cut the shutdown short)"
                if self.written
                else ", aborted by a second Ctrl-C before the stop's checkpoint was written"
            )
        if self.checkpoint is None:
            where = "no last.ckpt written yet"
        else:
            verb = "wrote" if self.written else "kept"
            owed = ", its validation to be rerun" if self.validation_owed else ""
            where = f"{verb} {self.checkpoint} at global step {self.step} (epoch {self.epoch}{owed})"
        run_dir = self.run_dir or "<this run dir>"
        return f"{head}: {where}; resume with the same command plus hydra.run.dir={run_dir} ckpt_path=last"


STOP = StopRecord()


# Libraries that log through handlers of their own unless the root logger had one when they were imported.
LIBRARY_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning")


def job_log(message: str, level: int = logging.INFO) -> None:
    """Copy a console line into the job log (``<run dir>/train.log``, Hydra's file handler) when there is one."""
    root = logging.getLogger()
    record = root.makeRecord("ctx_inpaint", level, __file__, 0, message, None, None)
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def say(message: str, file=None, level: int = logging.INFO) -> None:
    """Print one line (stdout unless ``file``) and keep it in the job log."""
    print(message, file=file or sys.stdout, flush=True)
    job_log(message, level)


def join_job_log() -> None:
    """Send Lightning's messages and Python warnings through Hydra's job logging (console and
    ``<run dir>/train.log``): Lightning, imported before Hydra configured logging, keeps them to its own handler."""
    if not logging.getLogger().handlers:
        return
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True
    logging.captureWarnings(True)


def fail(message: str) -> None:
    """Print the one-line error and exit with the user-error status."""
    say(f"{PREFIX} {' '.join(str(message).split())}", file=sys.stderr, level=logging.ERROR)
    sys.exit(USER_ERROR_EXIT)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the policy's error line and exit status (argparse's own: a usage block and status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        fail(f"{message} (--help for usage)")


@contextmanager
def report_user_errors() -> Iterator[None]:
    """Every CLI's wrapper (see the module docstring).

    In a Hydra multirun the failing job prints its line and raises instead of exiting: Hydra records the
    failure, runs the sweep's other jobs, and fails the command at the end (an exit would end the sweep).
    """
    try:
        yield
    except SIGTERMException:  # Lightning's stop at a batch boundary, for SIGTERM and (ours) SIGINT alike
        _say_stop()
        sys.exit(STOP.exit_status())
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the run's handlers
        _interrupted()
    except SystemExit as err:
        if not isinstance(err.__context__, KeyboardInterrupt):
            raise
        _interrupted()  # Lightning's own Ctrl-C path ends in sys.exit(1)
    except (UserError, OmegaConfBaseException) as err:  # checkpoints, data, diverged runs are UserErrors
        _exit_with(err)
    except InstantiationException as err:  # a constructor refused its arguments
        _exit_with(instantiation_message(err, "config"))
    except OSError as err:
        if err.errno not in DISK_ERRORS:
            raise  # anything else is a bug
        _exit_with(disk_message(err))


def _interrupted() -> None:
    """Ctrl-C that Lightning's batch-boundary stop did not take: one line and status 130, no traceback."""
    if STOP.signum is None:  # before the run's handlers were installed: nothing trained
        STOP.signum = int(signal.SIGINT)
    else:  # a second Ctrl-C (the handler set this too)
        STOP.aborted = True
    _say_stop()
    sys.exit(SIGINT_EXIT)


def _say_stop() -> None:
    """The closing line of a stopped run, once: by rank 0 (the other DDP ranks stop with it, silently)."""
    if getattr(rank_zero_only, "rank", 0) == 0:
        say(STOP.line(), file=sys.stderr)


# What a full disk, a quota or a read-only folder raise: the user frees space or picks another place.
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def disk_message(err: OSError) -> str:
    """One line for what the disk or the file system refused, naming the file."""
    where = f"{err.filename}: " if err.filename else ""
    hint = {
        errno.ENOSPC: "free some space",
        errno.EDQUOT: "free some space",
        errno.EROFS: "choose a writable place",
    }.get(err.errno or 0, "check its permissions")
    return f"{where}{err.strerror or os.strerror(err.errno or 0)}; {hint}, then run the command again"


class RunDirCheck(HydraCallback):
    """A Hydra callback (conf/hydra/default.yaml): the run or sweep dir must be creatable and writable before
    Hydra creates it, which it does with a traceback when it cannot (a read-only ``paths.log_dir``, a path
    through a file)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, key: str) -> None:
        folder = Path(str(OmegaConf.select(config, key)))
        try:
            folder.mkdir(parents=True, exist_ok=True)
            writable = os.access(folder, os.W_OK)
            reason = "not writable"
        except OSError as err:
            writable, reason = False, err.strerror or type(err).__name__
        if not writable:
            log_dir = OmegaConf.select(config, "paths.log_dir", default=None)
            fail(
                f"{key}: cannot create or write {folder} ({reason}); choose a writable paths.log_dir "
                f"(now {log_dir}) or {key}"
            )


def _exit_with(err: BaseException | str) -> None:
    message = one_line(err) if isinstance(err, BaseException) else err
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        say(f"{PREFIX} {message}", file=sys.stderr, level=logging.ERROR)
        raise RuntimeError(message) from None
    fail(message)


def int_at_least(low: int):
    """argparse type: an integer >= ``low`` (the parser names the flag: one line, exit 1)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    return parse


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a library parser that raises ``UserError("name: why")``: argparse then names the
    flag itself, in the one-line error every CLI prints."""

    def run(text: str) -> Any:
        try:
            return parse(text)
        except UserError as err:
            raise argparse.ArgumentTypeError(str(err).split(": ", 1)[-1]) from None

    return run
