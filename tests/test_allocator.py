"""keep_freed_memory: a freed large tensor's pages are reused by the next one instead of faulted in again, and
release_freed_memory gives them back at the end of a run."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from ctx_inpaint.config.check import check_config
from ctx_inpaint.errors import ConfigError

PROBE = """
import resource, sys, torch
from ctx_inpaint.common.allocator import keep_freed_memory
on = keep_freed_memory(sys.argv[1] == "1")
n = 65 * 2**20 // 4  # a 65 MiB float32 tensor, the size of a dense layer's gradient
faults = []
for _ in range(24):  # glibc needs a few rounds (memalign padding) before freed blocks fit again
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(n).fill_(1.0)  # allocated, touched, freed
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(int(on), max(faults[-5:]))
"""
# The tensor's pages: page faults are counted in this machine's pages (4 KiB on x86, up to 64 KiB on arm64).
PAGES = 65 * 2**20 // os.sysconf("SC_PAGE_SIZE")


def page_faults(keep: bool) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "1" if keep else "0"], capture_output=True, text=True, check=True
    )
    on, faults = out.stdout.split()
    return on == "1", int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_kept_memory_is_not_faulted_in_again() -> None:
    """Page faults are counted by the kernel, not timed: the same on a fast or a loaded machine. The bars are
    fractions of the tensor's own pages: half (every page faulted afresh, give or take prefaulting) and 1/20
    (a few pages of bookkeeping around a kept block)."""
    on, kept = page_faults(keep=True)
    off, default = page_faults(keep=False)
    assert on and not off
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not (thp.exists() and "[always]" in thp.read_text()):  # 2 MiB pages would fault 512x less
        assert default >= PAGES // 2  # glibc's default: every large block mapped afresh, every page faulted
    assert kept < PAGES // 20  # after the first allocations the heap serves them from kept pages


RELEASE = """
import os, sys, torch
from ctx_inpaint.common.allocator import keep_freed_memory, release_freed_memory
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
assert keep_freed_memory(True)
start = rss()
tensors = [torch.ones(2**20 * i) for i in range(8, 40, 4)]  # 8 blocks of 32-144 MiB, touched: 704 MiB
peak = rss()
del tensors
kept = rss()
assert release_freed_memory()
print(start, peak, kept, rss())
"""
TENSOR_BYTES = sum(range(8, 40, 4)) * 2**20 * 4


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_released_memory_leaves_the_process() -> None:
    """Every bar is a fraction of what the tensors added to the resident size, measured in the same process."""
    out = subprocess.run([sys.executable, "-c", RELEASE], capture_output=True, text=True, check=True)
    start, peak, kept, released = map(int, out.stdout.split())
    added = peak - start
    assert added > 0.95 * TENSOR_BYTES  # the premise: the tensors were resident (torch.ones touched them)
    # keep_freed_memory: freeing them gives back at most 15 %: glibc's default unmaps every one of these blocks
    # (all over its 32 MiB mmap threshold), i.e. 100 %.
    assert peak - kept < 0.15 * added
    # release_freed_memory: at least 80 % goes back; what stays is the heap's bookkeeping and partly used pages.
    assert kept - released > 0.8 * added


def test_keep_freed_memory_must_be_a_boolean(tiny_cfg) -> None:
    with pytest.raises(ConfigError, match=r"^keep_freed_memory: got 'yes'; expected true or false$"):
        check_config(tiny_cfg("+experiment=l2_1", "keep_freed_memory=yes"))
