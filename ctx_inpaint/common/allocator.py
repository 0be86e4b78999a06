"""glibc malloc tuned for training on CPU: freed memory is kept for the next step instead of returned to the OS.

glibc serves blocks over its mmap threshold (at most 32 MB) with fresh ``mmap`` pages and unmaps them on free.
The paper model's two dense layers have 16 M weights each, so every training step allocates their 65 MB
gradients (and other large temporaries) anew: ~42,000 page faults a step, each zeroing a 4 KiB page in the
kernel, 0.11 s of kernel time in a 0.38 s 2-thread step of campus_cpu; keeping them made that step 1.14x faster
(``experiments/perf/time_to_quality/allocator_ab.json``). With the threshold
above any tensor and trimming off, the heap keeps those blocks and the next step reuses them; the process keeps
its peak footprint, which it needs again at the next step anyway. This is what the jemalloc/tcmalloc
``LD_PRELOAD`` of PyTorch's CPU tuning guide achieves, without a system package or a wrapper around Python.
When the run ends, ``release_freed_memory`` hands the kept pages back (``training.run.train`` calls it after
every job, so a multirun's next job starts lean).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# mallopt(3) parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4

KEEP_MMAP_THRESHOLD = 1 << 30  # 1 GiB: above any tensor of these models
KEEP_TRIM_THRESHOLD = (1 << 31) - 1  # an int: never give the top of the heap back
# Grow the heap in 64 MiB steps: fewer brk calls while the first steps find their peak.
KEEP_TOP_PAD = 64 << 20


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def keep_freed_memory(enabled: bool) -> bool:
    """With ``enabled``, make this process's glibc malloc keep freed blocks (see the module docstring); returns
    whether the setting is in effect (False: not glibc, e.g. macOS or musl, or ``enabled`` is false).

    Process-wide and one-way: call it once at start-up, before the model is built (DataLoader workers forked
    later inherit it); ``enabled=False`` changes nothing, so a later job of the same process keeps an earlier
    job's setting."""
    if not enabled:
        return False
    libc = _glibc()
    if libc is None:
        return False
    # The threshold first: glibc before 2.35 refuses one above 32 MiB, and any later mallopt would still freeze
    # the dynamic threshold at its 128 KiB start. There, serving every block from the heap (no mmap) does it.
    if libc.mallopt(M_MMAP_THRESHOLD, KEEP_MMAP_THRESHOLD) != 1 and libc.mallopt(M_MMAP_MAX, 0) != 1:
        return False
    libc.mallopt(M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD)
    libc.mallopt(M_TOP_PAD, KEEP_TOP_PAD)
    return True


def release_freed_memory() -> bool:
    """Give the pages of freed heap blocks back to the OS (glibc ``malloc_trim``); True where that ran.

    Kept blocks serve the steps of one run; between the jobs of a multirun they would only add up: the next job's
    tensors need not fit the old job's holes, and its first steps grow the heap again."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
