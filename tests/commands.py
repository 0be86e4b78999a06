"""Running a command (``python -m ctx_inpaint.<name> ARGS``) in the test process, without importing it.

Commands are entry points, never libraries (tests/test_layout.py checks that nothing imports one), so tests run
them as ``python -m`` would, through :mod:`runpy`: same argument parsing, same exit status, output captured by
pytest's ``capsys``/``capfd``, and no interpreter start-up per call. Library code is tested by importing it.
"""

from __future__ import annotations

import logging
import runpy
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ctx_inpaint.common.cli import LIBRARY_LOGGERS

COMMANDS = ("train", "prepare", "inpaint", "evaluate", "export", "report", "bench", "demo")


@contextmanager
def restored_logging() -> Iterator[None]:
    """The logging set-up as it was before: a Hydra command run in-process replaces the root logger's handlers with
    its console (bound to the stream of the moment: a test's ``capsys`` buffer, closed when that test ends) and
    ``train.log`` handlers, and makes Lightning's loggers propagate to them; left in place, a later test's first
    log line would fail on the closed stream and print a "Logging error" block to stderr."""
    root = logging.getLogger()
    root_handlers, root_level = list(root.handlers), root.level
    saved = {
        name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate)
        for name in LIBRARY_LOGGERS
    }
    warnings_captured = getattr(logging, "_warnings_showwarning", None) is not None
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in root_handlers:
                handler.close()  # Hydra's train.log handler among them: flushed and closed
        root.handlers[:] = root_handlers
        root.setLevel(root_level)
        for name, (handlers, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.propagate = propagate
        logging.captureWarnings(warnings_captured)


def run_command(name: str, argv: Sequence[str] = ()) -> int:
    """Run ``python -m ctx_inpaint.<name> *argv`` here; its exit status (0 when it returns normally). The logging
    set-up is restored afterwards (``restored_logging``)."""
    if name not in COMMANDS:
        raise ValueError(f"unknown command {name!r}; expected one of {', '.join(COMMANDS)}")
    saved = sys.argv
    sys.argv = [f"ctx_inpaint.{name}", *map(str, argv)]
    try:
        with restored_logging():
            runpy.run_module(f"ctx_inpaint.{name}", run_name="__main__", alter_sys=False)
    except SystemExit as stop:
        code = stop.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1
    finally:
        sys.argv = saved
    return 0
