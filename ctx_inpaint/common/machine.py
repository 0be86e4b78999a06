"""One description of the machine: what a timing or a run record came from, and what the hardware can compute.

Training's ``run_status.json``, the bench's JSON, the load test and the report's machine line all describe the
machine with :func:`describe`; the precision choice asks :func:`bf16_native`. Reading ``/proc/cpuinfo`` happens
here only, so tests fake the capability by patching :func:`cpu_flags`.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@lru_cache(maxsize=1)
def _cpuinfo_lines() -> tuple[str, ...]:
    try:
        return tuple(CPUINFO.read_text().splitlines())
    except OSError:
        return ()


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what :mod:`platform` knows elsewhere."""
    for line in _cpuinfo_lines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str]:
    """The CPU's instruction-set flags (empty where ``/proc/cpuinfo`` does not exist)."""
    for line in _cpuinfo_lines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def bf16_native(device: Any = "cpu") -> bool:
    """Native bf16 arithmetic on ``device``: on CUDA ``torch.cuda.is_bf16_supported()``; on a CPU the AVX512-BF16
    or AMX-BF16 instructions. Without them bf16 is emulated and slower than fp32."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return bool(BF16_FLAGS & cpu_flags())


def describe(accelerator: str | None = None, devices: int | None = None) -> dict[str, Any]:
    """Enough to say where a figure came from: CPU, core and thread counts, platform, versions, GPU if used."""
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "bf16_native": bf16_native("cpu"),
    }
    if accelerator is not None:
        info["accelerator"] = accelerator
    if devices is not None:
        info["devices"] = devices
    if torch.cuda.is_available() and accelerator in (None, "cuda", "gpu"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
