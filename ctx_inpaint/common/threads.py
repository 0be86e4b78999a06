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
- ``auto``: looks once at this process's CPUs (its affinity mask; the per-CPU counters of ``/proc/stat`` over
  0.1 s while it sleeps): when at least one core's worth of them is free for each of PyTorch's threads, ``spin``
  (nothing set: the quiet machine keeps PyTorch's speed); otherwise ``OMP_NUM_THREADS`` = the CPUs left free (at
  least 1): OpenMP threads that wait at a barrier for a thread the scheduler has parked behind another process
  are what made the busy machine 2-3x slower.

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
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from pathlib import Path
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
CPUINFO = "/proc/cpuinfo"

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


def allowed_cpus() -> list[int]:
    """The logical CPUs this process may run on (its affinity mask; all of them where that is unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def physical_cores(lines: Sequence[str] | None = None, cpus: Iterable[int] | None = None) -> int:
    """Cores (distinct ``physical id``, ``core id`` of ``/proc/cpuinfo``) among the logical CPUs ``cpus`` (this
    process's by default): SMT siblings share a core, and PyTorch starts one thread per core. Without core ids,
    the logical CPUs."""
    allowed = set(allowed_cpus() if cpus is None else cpus)
    if lines is None:
        try:
            lines = Path(CPUINFO).read_text().splitlines()
        except OSError:
            lines = []
    cores, block = set(), {}
    for line in [*lines, ""]:
        if line.strip():
            key, _, value = line.partition(":")
            block[key.strip()] = value.strip()
            continue
        if "processor" in block and (not allowed or int(block["processor"]) in allowed):
            p = int(block["processor"])
            cores.add((block.get("physical id", "0"), block.get("core id", f"cpu{p}")))
        block = {}
    return len(cores) or len(allowed) or 1


def cpu_times(read: Callable[[], str] | None = None) -> dict[int, tuple[int, int]]:
    """Per logical CPU of ``/proc/stat``: (busy, total) jiffies since boot (idle and iowait are not busy); empty
    where it cannot be read."""
    try:
        text = read() if read is not None else Path(PROC_STAT).read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            values = [int(v) for v in fields[:8]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            out[int(name[3:])] = (sum(values) - idle, sum(values))
    return out


def busy_cpus(
    cpus: Sequence[int],
    interval: float = 0.1,
    read: Callable[[], str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """How many of ``cpus`` other processes kept busy (at least half the time) over ``interval`` seconds, in which
    this process only sleeps: the per-CPU counters of ``/proc/stat`` read before and after (only this process's
    CPUs count, so a busy host outside its affinity mask or container does not). 0 where they cannot be read."""
    before = cpu_times(read)
    sleep(interval)
    after = cpu_times(read)
    busy = 0
    for cpu in cpus:
        if cpu in before and cpu in after:
            spent, total = (a - b for a, b in zip(after[cpu], before[cpu]))
            busy += total > 0 and spent >= total / 2
    return busy


def auto_env(busy: int, logical: int, cores: int) -> tuple[dict[str, str], str]:
    """``auto``'s variables when ``busy`` of this process's ``logical`` CPUs (``cores`` physical cores) are kept
    busy by others, and what it chose: nothing (PyTorch's one thread per core) when no fewer than ``cores`` CPUs
    are free, else one thread per free CPU (at least 1)."""
    free = max(1, min(cores, logical - busy))
    if free >= cores:
        return {}, f"spin ({busy} of {logical} CPUs busy, {cores} cores)"
    return {"OMP_NUM_THREADS": str(free)}, f"{free} thread(s) ({busy} of {logical} CPUs busy, {cores} cores)"


def auto_choice() -> dict[str, str]:
    """``auto``'s variables for this machine now."""
    cpus = allowed_cpus()
    return auto_env(busy_cpus(cpus), len(cpus), physical_cores(cpus=cpus))[0]


def policy_env(
    name: str, environ: Mapping[str, str] | None = None, choose: Callable[[], dict[str, str]] | None = None
) -> dict[str, str]:
    """The variables policy ``name`` adds to ``environ``: its own (``auto``: ``choose()``, by default
    :func:`auto_choice`), less any group the user already set."""
    environ = os.environ if environ is None else environ
    open_vars = {
        var for group in (WAIT_VARS, COUNT_VARS) if not any(v in environ for v in group) for var in group
    }
    if name == AUTO:
        # auto only ever sets the thread count: where the user set it, the look at the CPUs (0.1 s) is not taken.
        own = (choose or auto_choice)() if open_vars & set(COUNT_VARS) else {}
    else:
        own = dict(POLICIES[name])
    return {var: value for var, value in own.items() if var in open_vars}  # the user's choice wins


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


def reduced_threads_line() -> str | None:
    """One line for a run's log where ``auto`` set fewer threads than cores (other processes were busy during its
    look at start, a short-lived one too), else None: a run otherwise trains on fewer cores without saying so."""
    if _applied.get("policy") != AUTO or "OMP_NUM_THREADS" not in _applied.get("set", {}):
        return None
    n = _applied["set"]["OMP_NUM_THREADS"]
    return (
        f"threads: auto -> {n} thread(s): other processes were busy when this one started; "
        f"{POLICY_ENV}=spin uses every core whatever runs beside it"
    )


def describe_thread_policy(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """For a run record: the policy this process applied before torch (None: none was), what it set, and the
    thread variables in effect now."""
    environ = os.environ if environ is None else environ
    return {
        "policy": _applied.get("policy"),
        "set": dict(_applied.get("set", {})),
        "env": {var: environ[var] for var in THREAD_VARS if var in environ},
    }
