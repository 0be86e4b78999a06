"""The machine's peak, which ``fraction_of_peak`` divides by: the best of several GEMMs, and the theoretical FMA
peak of the CPU beside it.

One n x n x n matmul under-measures some machines (the bench once printed a ``fraction_of_peak`` of 1.3: a step
"faster than the machine"), so the measured peak is the best of a family of GEMMs (:class:`Gemm`):

- **shapes** (``bench.gemm_shapes``), written in multiples of ``bench.gemm_size`` (n): cubes from n/4 to 3n/2 and
  the tall, skinny products of the model's 4x4 convolutions as GEMMs;
- **kernels**: ``mm`` (``torch.mm``: the BLAS, MKL on x86 CPUs) and ``conv1x1`` (a 1x1 convolution, the same
  product through oneDNN on a CPU, cuDNN on CUDA, the libraries the model's convolutions run in);
- **thread layouts** (CPU): ``all``, one GEMM on torch's threads, as the step runs; ``one_each``, as many
  single-thread GEMMs at once as torch has threads (a :class:`ThreadTeam` in this process), the cores' work
  without the threads of one GEMM waiting on each other.

Every GEMM does a known number of FLOPs (``2 M K N`` per copy) in a measured wall time, so each figure is a rate
the machine attained; the best of several can only raise the peak. :func:`search` times all of them in passes
(the order rotated each pass, as the bench's rounds) and the one with the highest median rate is then timed in
the bench's interleaved rounds beside the step, so ``fraction_of_peak`` stays a median of per-round ratios.

:func:`theoretical` is the hardware's ceiling: cores x clock x FLOPs per cycle from the CPU's flags
(``ctx_inpaint.common.machine``), with the assumption it rests on spelled out in ``theoretical_basis``.
"""

from __future__ import annotations

import math
import queue
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ctx_inpaint.benchmark.timing import Clock, round_order, synchronize, timed_call
from ctx_inpaint.common import machine, threads
from ctx_inpaint.errors import ConfigError

KERNELS = ("mm", "conv1x1")
LAYOUTS = ("all", "one_each")
_TERM = re.compile(r"^(\d+)?\s*(n)?\s*(?:/\s*(\d+))?$")


# ---- the GEMMs ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gemm:
    """``copies`` products of an M x K and a K x N matrix at once, each on ``threads`` threads, by ``kernel``."""

    kernel: str
    m: int
    k: int
    n: int
    threads: int
    copies: int = 1

    @property
    def shape(self) -> str:
        return f"{self.m}x{self.k}x{self.n}"

    @property
    def layout(self) -> str:
        """``threads x copies``: ``2x1`` is one GEMM on 2 threads, ``1x2`` two single-thread GEMMs at once."""
        return f"{self.threads}x{self.copies}"

    @property
    def name(self) -> str:
        return f"{self.kernel} {self.shape} {self.layout}"

    @property
    def flops(self) -> float:
        """FLOPs of one call (every copy)."""
        return 2.0 * self.m * self.k * self.n * self.copies


def parse_shape(text: Any, n: int) -> tuple[int, int, int]:
    """``"8n x n x n/8"`` -> (M, K, N) for ``n``; one term is a cube (``"3n/2"``); a term is ``[a]n[/b]`` or an
    integer."""
    terms = [t.strip() for t in str(text).lower().split("x")]
    if len(terms) == 1:
        terms *= 3
    dims = []
    for term in terms:
        match = _TERM.match(term)
        a, has_n, b = match.groups() if match else (None, None, None)
        if len(terms) != 3 or not (a or has_n) or int(a or 1) == 0 or int(b or 1) == 0:
            raise ConfigError(
                f"bench.gemm_shapes: cannot read {text!r}; expected M x K x N or one size, each a positive "
                "integer or a multiple of n such as n, 3n/2, n/8"
            )
        value = int(a or 1) * (n if has_n else 1) / int(b or 1)
        dims.append(max(1, round(value)))
    return dims[0], dims[1], dims[2]


def candidates(
    shapes: Iterable[Any], kernels: Iterable[str], layouts: Iterable[str], n: int, device: torch.device
) -> list[Gemm]:
    """Every shape by every kernel and thread layout (``one_each`` only on a CPU with more than one torch
    thread: on CUDA, or with one thread, it is the same as ``all``)."""
    kernels, layouts = [str(k) for k in kernels], [str(lay) for lay in layouts]
    for value, allowed, key in ((kernels, KERNELS, "gemm_kernels"), (layouts, LAYOUTS, "gemm_threads")):
        bad = sorted(set(value) - set(allowed))
        if bad or not value:
            raise ConfigError(f"bench.{key}: got {value}; expected some of {', '.join(allowed)}")
    threads = torch.get_num_threads() if device.type == "cpu" else 1
    out: list[Gemm] = []
    for text in shapes:
        m, k, nn = parse_shape(text, n)
        for kernel in kernels:
            for layout in layouts:
                if layout == "all":
                    g = Gemm(kernel, m, k, nn, threads, 1)
                elif device.type == "cpu" and threads > 1:
                    g = Gemm(kernel, m, k, nn, 1, threads)
                else:
                    continue
                if g not in out:
                    out.append(g)
    if not out:
        raise ConfigError("bench.gemm_shapes: no GEMM to measure the peak with")
    return out


def calls_per_timing(g: Gemm, n: int, cubes: float = 1.0) -> int:
    """Calls timed together so that one timing covers at least ``cubes`` n x n x n products' FLOPs (a small GEMM
    timed alone is mostly the clock's and the call's overhead)."""
    return max(1, math.ceil(cubes * 2.0 * float(n) ** 3 / g.flops))


class ThreadTeam:
    """``size`` threads of this process, each with one torch thread, that run one function each at the same time.

    torch's thread count is per thread (OpenMP and MKL read the calling thread's setting, which a thread takes
    from a process-wide default at its first parallel operation), so each member sets its own to 1 and reads it
    back once, before the constructor puts the process-wide default back to the caller's count; a member that did
    not get 1 thread is an error, not a slower peak. The members wait on their own queue, so every function of
    :meth:`run` runs on its own thread, all at once."""

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self._jobs: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in range(self.size)]
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        caller = torch.get_num_threads()
        self._threads = [
            threading.Thread(target=self._work, args=(q,), name=f"ctx-bench-gemm-{i}", daemon=True)
            for i, q in enumerate(self._jobs)
        ]
        self._counts: list[int] = []
        for t in self._threads:
            t.start()
        self.run([_nothing] * self.size)  # every member has set its thread count
        torch.set_num_threads(caller)
        if self._counts != [1] * self.size:
            self.close()
            raise RuntimeError(f"bench: the GEMM team's threads run {self._counts} torch threads each, not 1")

    def _work(self, jobs: queue.SimpleQueue) -> None:
        torch.set_num_threads(1)
        self._counts.append(torch.get_num_threads())  # also fixes this thread's count while the default is 1
        while (fn := jobs.get()) is not None:
            try:
                fn()
                self._done.put(None)
            except BaseException as error:  # noqa: BLE001 - handed to the caller
                self._done.put(error)

    def run(self, fns: Sequence[Callable[[], object]]) -> None:
        """Run ``fns[i]`` on member ``i``, all at once; return when every one has finished."""
        if len(fns) > self.size:
            raise ValueError(f"bench: {len(fns)} functions for a team of {self.size}")
        for q, fn in zip(self._jobs, fns):
            q.put(fn)
        errors = [e for e in (self._done.get() for _ in fns) if e is not None]
        if errors:
            raise errors[0]

    def close(self) -> None:
        for q in self._jobs:
            q.put(None)
        for t in self._threads:
            t.join()


def _nothing() -> None:
    return None


def _uniform(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, seed: int) -> torch.Tensor:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.empty(shape).uniform_(-1.0, 1.0, generator=gen).to(device=device, dtype=dtype)


def one_product(g: Gemm, dtype: torch.dtype, device: torch.device, seed: int = 0) -> Callable[[], object]:
    """One copy of ``g`` on freshly filled operands (uniform in [-1, 1]: no denormals)."""
    if g.kernel == "mm":
        a = _uniform((g.m, g.k), dtype, device, seed)
        b = _uniform((g.k, g.n), dtype, device, seed + 1)
        c = torch.empty((g.m, g.n), dtype=dtype, device=device)
        return lambda: torch.mm(a, b, out=c)
    # M rows as batch x width: a batch of 16 keeps PyTorch on oneDNN even with one thread.
    batch = 16 if g.m % 16 == 0 else 1
    x = _uniform((batch, g.k, 1, g.m // batch), dtype, device, seed)
    w = _uniform((g.n, g.k, 1, 1), dtype, device, seed + 1)
    return lambda: F.conv2d(x, w)


def gemm_fn(
    g: Gemm, dtype: torch.dtype, device: torch.device, team: ThreadTeam | None = None
) -> Callable[[], object]:
    """One call of ``g``: its product on the calling thread, or ``copies`` products at once on ``team``."""
    if g.copies == 1:
        return one_product(g, dtype, device)
    if team is None or team.size < g.copies:
        raise ValueError(f"bench: {g.name} needs a team of {g.copies} threads")
    products = [one_product(g, dtype, device, seed=2 * i) for i in range(g.copies)]
    return lambda: team.run(products)


# ---- the search -----------------------------------------------------------------------------------------------
def search(
    gemms: Sequence[Gemm],
    build: Callable[[Gemm], Callable[[], object]],
    passes: int,
    n: int,
    device: torch.device,
    clock: Clock = time.perf_counter,
) -> dict[str, float]:
    """GFLOP/s of every GEMM: the median over ``passes`` passes, each pass timing every GEMM once in the order
    :func:`~ctx_inpaint.benchmark.timing.round_order` gives. A GEMM's operands are built for its turn and
    dropped after it (all of them at once may not fit); one untimed call touches their pages first."""
    if int(passes) < 1:
        raise ConfigError(f"bench.gemm_passes: expected >= 1, got {passes}")
    rates: dict[str, list[float]] = {g.name: [] for g in gemms}
    for p in range(int(passes)):
        for g in round_order(list(gemms), p):
            fn = build(g)
            fn()
            seconds = timed_call(fn, device, calls_per_timing(g, n), clock)[1]
            rates[g.name].append(g.flops / seconds / 1e9)
            del fn
            synchronize(device)
    return {name: statistics.median(r) for name, r in rates.items()}


def best(gemms: Sequence[Gemm], rates: Mapping[str, float]) -> Gemm:
    """The GEMM of the highest rate (the first of equals)."""
    return max(gemms, key=lambda g: rates[g.name])


# ---- the theoretical peak -------------------------------------------------------------------------------------
MAX_FREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")  # kHz


def clock_ghz(lines: Sequence[str]) -> tuple[float, str] | None:
    """The highest clock the kernel names: sysfs ``cpuinfo_max_freq`` (boost included where it is exposed),
    else the highest ``cpu MHz`` of ``/proc/cpuinfo`` (the current clock; in a VM usually the nominal one)."""
    try:
        return int(MAX_FREQ.read_text().strip()) / 1e6, "cpuinfo_max_freq"
    except (OSError, ValueError):
        pass
    mhz = []
    for line in lines:
        if line.startswith("cpu MHz"):
            try:
                mhz.append(float(line.split(":", 1)[1]))
            except ValueError:
                continue
    return (max(mhz) / 1e3, "/proc/cpuinfo cpu MHz") if mhz else None


def _field(lines: Sequence[str], name: str) -> str:
    for line in lines:
        if line.split(":", 1)[0].strip() == name:
            return line.split(":", 1)[1].strip()
    return ""


def fp32_per_cycle(flags: frozenset[str], lines: Sequence[str]) -> tuple[int, str] | None:
    """fp32 FLOPs per cycle and core from the widest FMA the flags show, and what that assumes."""
    if "avx512f" in flags:
        if _field(lines, "vendor_id") == "AuthenticAMD" and _field(lines, "cpu family") == "25":
            return 32, "AVX-512 on AMD Zen 4 (family 25): 2 FMA units of 256 bits x 8 fp32 lanes x 2"
        return 64, (
            "AVX-512 FMA: 2 FMA units x 16 fp32 lanes x 2, assuming 2 units of 512 bits (Xeon Gold/Platinum and "
            "later, Zen 5 server and desktop; parts with 1 unit or a 256-bit datapath reach half)"
        )
    if {"avx2", "fma"} <= flags:
        return 32, "AVX2 FMA: 2 FMA units x 8 fp32 lanes x 2"
    if "avx" in flags:
        return 16, "AVX without FMA: 1 add and 1 multiply unit x 8 fp32 lanes"
    if "sse2" in flags:
        return 8, "SSE2: 1 add and 1 multiply unit x 4 fp32 lanes"
    return None


def bf16_per_cycle(flags: frozenset[str], fp32: int) -> tuple[int, str] | None:
    """bf16 FLOPs per cycle and core where the CPU has native bf16 (else none: emulated bf16 has no ceiling of
    its own)."""
    if "amx_bf16" in flags:
        return 1024, "AMX-BF16 tiles: 1024 bf16 FLOP/cycle (Intel's figure for Sapphire Rapids)"
    if "avx512_bf16" in flags:
        return 2 * fp32, f"AVX512-BF16 dot products: 2 x the fp32 FMA rate ({2 * fp32})"
    return None


def theoretical(device: torch.device, cpus: Iterable[int] | None = None) -> dict[str, Any]:
    """``theoretical_fp32_gflops`` (and ``theoretical_bf16_gflops`` where bf16 is native) = cores x clock GHz x
    FLOPs per cycle, with ``theoretical_basis`` saying which numbers and assumptions; only a basis where it
    cannot be known (CUDA, an unknown clock or instruction set)."""
    if device.type != "cpu":
        return {"theoretical_basis": f"not computed for {device.type}"}
    lines = machine._cpuinfo_lines()
    flags = machine.cpu_flags()
    clock = clock_ghz(lines)
    per = fp32_per_cycle(flags, lines)
    if clock is None or per is None:
        missing = "clock" if clock is None else "FMA width (no avx/sse2 flag)"
        return {"theoretical_basis": f"unknown: no {missing} in /proc/cpuinfo or sysfs"}
    cores = threads.physical_cores(lines, cpus)
    ghz, source = clock
    out: dict[str, Any] = {
        "theoretical_fp32_gflops": cores * ghz * per[0],
        "theoretical_basis": f"{cores} cores x {ghz:.3f} GHz ({source}) x {per[0]} fp32 FLOP/cycle ({per[1]})",
    }
    bf16 = bf16_per_cycle(flags, per[0])
    if bf16 is not None:
        out["theoretical_bf16_gflops"] = cores * ghz * bf16[0]
        out["theoretical_basis"] += f"; bf16: x {bf16[0]} FLOP/cycle ({bf16[1]})"
    return out
