"""The one policy of every CLI: a user error (bad config, data, checkpoint, flag, a diverged run) ends with one line
``ctx-inpaint: error: ...`` on stderr and exit status 1; anything else is a bug and keeps its traceback. SIGTERM
(after its checkpoint) exits with status 143.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf.errors import OmegaConfBaseException
from pytorch_lightning.utilities.exceptions import SIGTERMException

from ctx_inpaint.errors import UserError, instantiation_message, one_line

PREFIX = "ctx-inpaint: error:"
USER_ERROR_EXIT = 1
SIGTERM_EXIT = 143  # 128 + SIGTERM, what a shell reports for a process the signal ended


def fail(message: str) -> None:
    """Print the one-line error and exit with the user-error status."""
    print(f"{PREFIX} {' '.join(str(message).split())}", file=sys.stderr, flush=True)
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
    except SIGTERMException:
        print(
            "[ctx-inpaint] stopped by SIGTERM after writing last.ckpt; resume with the same command plus "
            "hydra.run.dir=<this run dir> ckpt_path=last",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(SIGTERM_EXIT)
    except (UserError, OmegaConfBaseException) as err:  # checkpoints, data, diverged runs are UserErrors
        _exit_with(err)
    except InstantiationException as err:  # a constructor refused its arguments
        _exit_with(instantiation_message(err, "config"))


def _exit_with(err: BaseException | str) -> None:
    message = one_line(err) if isinstance(err, BaseException) else err
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        print(f"{PREFIX} {message}", file=sys.stderr, flush=True)
        raise RuntimeError(message) from None
    fail(message)
