"""One description of the machine: what a timing or a run record came from, and what the hardware can compute.

Training's ``run_status.json``, the bench's JSON, the load test and the report's machine line all describe the
machine with :func:`describe`; the precision choice (:func:`resolve_precision`, ``trainer.precision=auto``) asks
:func:`bf16_native`. Reading ``/proc/cpuinfo`` happens here only, so tests fake the capability by patching
:func:`cpu_flags`.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any

from ctx_inpaint.common.threads import describe_thread_policy

CPUINFO = Path("/proc/cpuinfo")
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
AUTO_PRECISION = "auto"
# What pytorch_lightning.Trainer(precision=...) takes (lightning_fabric's _PRECISION_INPUT), besides our "auto".
LIGHTNING_PRECISIONS: tuple[str | int, ...] = (
    "32-true",
    "bf16-mixed",
    "16-mixed",
    "bf16-true",
    "16-true",
    "64-true",
    "transformer-engine",
    "transformer-engine-float16",
    "32",
    "16",
    "64",
    "bf16",
    32,
    16,
    64,
)


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
        # including_emulation=False: before Ampere, torch reports bf16 "supported" by emulation, which is slow.
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type != "cpu":
        return False  # mps, xla, ...: bf16 autocast is not what this project measured there
    return bool(BF16_FLAGS & cpu_flags())


def accelerator_device(accelerator: Any) -> str:
    """The device type a Trainer with ``accelerator`` computes on: ``cuda`` for gpu/cuda (and for auto where CUDA
    is available, as Lightning chooses), ``mps`` for auto on a Mac with Metal, else the accelerator's name."""
    import torch

    name = str(accelerator if accelerator is not None else "auto").lower()
    if name in ("gpu", "cuda") or (name == "auto" and torch.cuda.is_available()):
        return "cuda"
    if name == "auto":
        return "mps" if torch.backends.mps.is_available() else "cpu"
    return name


def is_precision(value: Any) -> bool:
    """``value`` is a ``trainer.precision`` this project takes: ``auto``, null (Lightning's default, 32-true) or a
    value Lightning's ``Trainer`` takes."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return value is None
    return value == AUTO_PRECISION or value in LIGHTNING_PRECISIONS


def resolve_precision(value: Any, accelerator: Any = "auto") -> tuple[Any, str]:
    """``trainer.precision`` as the Trainer is given it, and why.

    ``auto`` becomes ``bf16-mixed`` where the device ``accelerator`` computes on has native bf16 arithmetic
    (:func:`bf16_native`: CUDA from Ampere on, CPUs with AVX512-BF16 or AMX-BF16), ``32-true`` elsewhere: emulated
    bf16 is slower than fp32 and saves nothing. Any other value (``32-true``, ``bf16-mixed``, ``16-mixed``, ...)
    is returned unchanged: an explicit choice always wins.
    """
    if not (isinstance(value, str) and value == AUTO_PRECISION):
        return value, "set explicitly"
    device = accelerator_device(accelerator)
    if device == "cuda" and bf16_native("cuda"):
        return "bf16-mixed", "cuda has native bf16"
    if device == "cpu":
        flags = sorted(BF16_FLAGS & cpu_flags())
        if flags:
            return "bf16-mixed", f"cpu has native bf16: {', '.join(flags)}"
    return "32-true", f"no native bf16 on {device}"


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
        "thread_policy": describe_thread_policy(),
        "bf16_native": bf16_native("cpu"),
    }
    if accelerator is not None:
        info["accelerator"] = accelerator
    if devices is not None:
        info["devices"] = devices
    if torch.cuda.is_available() and accelerator in (None, "cuda", "gpu"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
