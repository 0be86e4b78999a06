"""Wall-clock timing with warm-up and medians, and the machine's matmul peak measured in the same process."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from ctx_inpaint.errors import ConfigError


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall time covers it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], warmup: int, repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after ``warmup`` untimed ones."""
    if repeats < 1:
        raise ConfigError(f"bench.repeats: expected >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def gemm_gflops(n: int, dtype: torch.dtype, device: torch.device, warmup: int = 2, repeats: int = 7) -> float:
    """GFLOP/s of an n x n x n matmul: the attainable peak that ``fraction_of_peak`` divides by."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    seconds = median_seconds(lambda: torch.mm(a, b), warmup, repeats, device)
    return 2.0 * n**3 / seconds / 1e9
