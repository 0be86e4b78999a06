"""How PyTorch's CPU threads wait: one named policy, set in the environment before torch starts.

PyTorch's wheels run their CPU kernels on OpenMP threads (the bundled GNU libgomp). Between two parallel regions an
idle OpenMP thread spins (about 300,000 iterations, a few ms) before it sleeps. On a quiet machine that saves a
wake-up; beside one other busy process on 2 cores it burns the core the other thread needs: 120 training steps
took 16.9 s alone and 37.9 s beside ``python -c 'while 1: pass'`` (2.2x). libgomp reads its settings once, when
torch is imported, so every command applies a policy as its first statement (:func:`apply_thread_policy`):

- ``spin``: torch's default, nothing set;
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE``: idle threads sleep at once (25.0 s beside the busy process);
- ``short-spin``: ``GOMP_SPINCOUNT=10000``: spin about 0.1 ms, then sleep (a middle ground);
- ``one-thread``: ``OMP_NUM_THREADS=1``: no second thread to wait for (22.7 s beside it, slower alone);
- ``auto``: looks once at how many other processes are running (``procs_running`` in ``/proc/stat``, sampled a few
  times over ~50 ms): none, ``spin`` (nothing set: the quiet machine keeps PyTorch's speed); otherwise
  ``OMP_NUM_THREADS`` = the cores left free (at least 1): OpenMP threads that wait at a barrier for a thread the
  scheduler has parked behind the other process are what made the busy machine 2-3x slower.

``CTX_INPAINT_THREAD_POLICY=<name>`` chooses one (default :data:`DEFAULT_POLICY`, which the bench's contention mode,
``ctx_inpaint.benchmark.contention``, measures and recommends). A user's own ``OMP_WAIT_POLICY``,
``GOMP_SPINCOUNT`` or ``OMP_NUM_THREADS`` always wins: the wait variables are left alone when either is set, the
thread count when it is. DataLoader workers inherit the environment; PyTorch still gives each one thread.

This module must not import torch (nor anything that does): it runs before torch is loaded.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from types import MappingProxyType
from typing import Any

from ctx_inpaint.errors import InputError

POLICY_ENV = "CTX_INPAINT_THREAD_POLICY"
SHORT_SPINCOUNT = 10_000  # libgomp spin iterations before sleeping (its default: 300,000, about 3 ms)

# The environment of each policy. `spin` sets nothing: PyTorch's own behaviour.
POLICIES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "spin": MappingProxyType({}),
        "passive": MappingProxyType({"OMP_WAIT_POLICY": "PASSIVE"}),
        "short-spin": MappingProxyType({"GOMP_SPINCOUNT": str(SHORT_SPINCOUNT)}),
        "one-thread": MappingProxyType({"OMP_NUM_THREADS": "1"}),
    }
)
AUTO = "auto"  # chosen at start from the other running processes (auto_env)
CHOICES = (AUTO, *POLICIES)
# The bench's contention mode (`bench.measure=[contention]`, experiments/perf/threads/) measures every policy; the
# default is the one its rule recommends (lowest busy/quiet with at most 5% lost on a quiet machine).
DEFAULT_POLICY = AUTO
PROC_STAT = "/proc/stat"

# Variables a user may set; a group is left alone as a whole when any of its variables is set.
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
COUNT_VARS = ("OMP_NUM_THREADS",)
THREAD_VARS = WAIT_VARS + COUNT_VARS

# What the commands print for a user error (ctx_inpaint.common.cli.PREFIX and USER_ERROR_EXIT: that module imports
# torch, this one runs before it; tests/test_threads.py checks they agree).
ERROR_PREFIX = "ctx-inpaint: error:"
ERROR_EXIT = 1

# What apply_thread_policy did in this process (describe_thread_policy reports it).
_applied: dict[str, Any] = {}


def policy_name(environ: Mapping[str, str] | None = None) -> str:
    """The policy :envvar:`CTX_INPAINT_THREAD_POLICY` names (blank or unset: :data:`DEFAULT_POLICY`); an
    ``InputError`` naming the variable and the choices for any other name."""
    environ = os.environ if environ is None else environ
    name = environ.get(POLICY_ENV, "").strip()
    if not name:
        return DEFAULT_POLICY
    if name not in CHOICES:
        raise InputError(
            f"{POLICY_ENV}: got {name!r}; expected one of {', '.join(CHOICES)} (unset: {DEFAULT_POLICY})"
        )
    return name


def running_processes(read: Callable[[], str] | None = None) -> int | None:
    """``procs_running`` of ``/proc/stat`` (this process included), or None where there is no such file."""
    try:
        text = read() if read is not None else open(PROC_STAT).read()  # noqa: SIM115 (a one-shot read)
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("procs_running"):
            return int(line.split()[1])
    return None


def other_running(
    samples: int = 5,
    interval: float = 0.01,
    read: Callable[[], str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Other processes running now: the fewest ``procs_running`` seen over ``samples`` looks (a process that keeps
    a core busy is in every one; a short-lived one is not), less this one; 0 where it cannot be read."""
    seen = []
    for i in range(samples):
        if i:
            sleep(interval)
        n = running_processes(read)
        if n is None:
            return 0
        seen.append(n)
    return max(0, min(seen) - 1)


def auto_env(others: int, cores: int) -> tuple[dict[str, str], str]:
    """``auto``'s variables for ``others`` other running processes on ``cores`` cores, and what it chose."""
    if others <= 0:
        return {}, f"spin (no other running process on {cores} cores)"
    free = max(1, cores - others)
    if free >= cores:
        return {}, f"spin ({others} other running on {cores} cores)"
    return {"OMP_NUM_THREADS": str(free)}, f"{free} thread(s) ({others} other running on {cores} cores)"


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask; ``os.cpu_count()`` where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def policy_env(
    name: str, environ: Mapping[str, str] | None = None, others: Callable[[], int] | None = None
) -> dict[str, str]:
    """The variables policy ``name`` adds to ``environ``: its own (``auto``: :func:`auto_env` of ``others()``),
    less any group the user already set."""
    environ = os.environ if environ is None else environ
    own = dict(POLICIES[name]) if name != AUTO else auto_env((others or other_running)(), usable_cores())[0]
    out = {}
    for group in (WAIT_VARS, COUNT_VARS):
        if any(var in environ for var in group):
            continue  # the user's choice wins
        out |= {var: value for var, value in own.items() if var in group}
    return out


def apply_thread_policy(
    environ: MutableMapping[str, str] | None = None, modules: Mapping[str, object] | None = None
) -> bool:
    """Set the chosen policy's variables in ``environ`` (``os.environ``) where the user set none; True when they
    take effect, False when torch is already imported (``modules``: ``sys.modules``), which then sets nothing:
    libgomp has read its settings already (a command run inside a test process, a library caller).

    A bad :envvar:`CTX_INPAINT_THREAD_POLICY` is a user error either way: one line ``ctx-inpaint: error: ...`` on
    stderr and exit status 1, as every command reports one."""
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    try:
        name = policy_name(environ)
    except InputError as err:
        print(f"{ERROR_PREFIX} {' '.join(str(err).split())}", file=sys.stderr, flush=True)
        sys.exit(ERROR_EXIT)
    if "torch" in modules:
        return False
    added = policy_env(name, environ)
    environ.update(added)
    _applied.clear()
    _applied.update(policy=name, set=dict(added))
    return True


def describe_thread_policy(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """For a run record: the policy this process applied before torch (None: none was), what it set, and the
    thread variables in effect now."""
    environ = os.environ if environ is None else environ
    return {
        "policy": _applied.get("policy"),
        "set": dict(_applied.get("set", {})),
        "env": {var: environ[var] for var in THREAD_VARS if var in environ},
    }
