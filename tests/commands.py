"""Running a command (``python -m ctx_inpaint.<name> ARGS``) in the test process, without importing it.

Commands are entry points, never libraries (tests/test_layout.py checks that nothing imports one), so tests run
them as ``python -m`` would, through :mod:`runpy`: same argument parsing, same exit status, output captured by
pytest's ``capsys``/``capfd``, and no interpreter start-up per call. Library code is tested by importing it.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence

COMMANDS = ("train", "prepare", "inpaint", "evaluate", "export", "report", "bench", "demo")


def run_command(name: str, argv: Sequence[str] = ()) -> int:
    """Run ``python -m ctx_inpaint.<name> *argv`` here; its exit status (0 when it returns normally)."""
    if name not in COMMANDS:
        raise ValueError(f"unknown command {name!r}; expected one of {', '.join(COMMANDS)}")
    saved = sys.argv
    sys.argv = [f"ctx_inpaint.{name}", *map(str, argv)]
    try:
        runpy.run_module(f"ctx_inpaint.{name}", run_name="__main__", alter_sys=False)
    except SystemExit as stop:
        code = stop.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1
    finally:
        sys.argv = saved
    return 0
