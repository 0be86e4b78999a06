"""What every command does first, when it is imported, before anything loads torch: the thread policy.

Each command's first statement is ``import ctx_inpaint.common.startup``; ruff's import sorting keeps it there (its
own section, first: ``[tool.ruff.lint.isort]`` in pyproject.toml) and ``tests/test_threads.py`` checks that torch
is not loaded before it. Importing it runs :func:`ctx_inpaint.common.threads.apply_thread_policy` once, so a bad
``CTX_INPAINT_THREAD_POLICY`` ends the command with one line before anything else happens. Library code never
imports this module: a library caller keeps whatever its process set.
"""

from __future__ import annotations

from ctx_inpaint.common.threads import apply_thread_policy

APPLIED = apply_thread_policy()  # False where torch was loaded first (a command run inside a test process)
