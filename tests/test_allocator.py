"""keep_freed_memory: a freed large tensor's pages are reused by the next one instead of faulted in again, and
release_freed_memory gives them back at the end of a run."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from ctx_inpaint.config_check import check_config
from ctx_inpaint.errors import ConfigError

PROBE = """
import resource, sys, torch
from ctx_inpaint.allocator import keep_freed_memory
on = keep_freed_memory(sys.argv[1] == "1")
n = 65 * 2**20 // 4  # a 65 MiB float32 tensor, the size of a dense layer's gradient
faults = []
for _ in range(24):  # glibc needs a few rounds (memalign padding) before freed blocks fit again
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(n).fill_(1.0)  # allocated, touched, freed
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(int(on), max(faults[-5:]))
"""
PAGES = 65 * 2**20 // 4096


def page_faults(keep: bool) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "1" if keep else "0"], capture_output=True, text=True, check=True
    )
    on, faults = out.stdout.split()
    return on == "1", int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_kept_memory_is_not_faulted_in_again() -> None:
    on, kept = page_faults(keep=True)
    off, default = page_faults(keep=False)
    assert on and not off
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not (thp.exists() and "[always]" in thp.read_text()):  # 2 MiB pages would fault 512x less
        assert default >= PAGES // 2  # glibc's default: every large block mapped afresh, every page faulted
    assert kept < PAGES // 20  # after the first allocations the heap serves them from kept pages


RELEASE = """
import sys, torch
from ctx_inpaint.allocator import keep_freed_memory, release_freed_memory
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
assert keep_freed_memory(True)
tensors = [torch.ones(2**20 * i) for i in range(8, 40, 4)]  # 8 blocks of 32-156 MiB, touched
peak = rss_mb()
del tensors
kept = rss_mb()
assert release_freed_memory()
print(peak, kept, rss_mb())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_released_memory_leaves_the_process() -> None:
    out = subprocess.run([sys.executable, "-c", RELEASE], capture_output=True, text=True, check=True)
    peak, kept, released = map(float, out.stdout.split())
    assert kept > peak - 100  # keep_freed_memory: freed blocks stay resident
    assert released < kept - 600  # of the ~750 MiB freed, nearly all goes back


def test_keep_freed_memory_must_be_a_boolean(tiny_cfg) -> None:
    with pytest.raises(ConfigError, match=r"^keep_freed_memory: got 'yes'; expected true or false$"):
        check_config(tiny_cfg("+experiment=l2_1", "keep_freed_memory=yes"))
