"""One benchmark run: :func:`run_bench` times every measurement the config asks for in one process and returns
(and prints, and writes) the JSON record; ``python -m ctx_inpaint.bench`` is its command.

Every ratio comes from interleaved rounds (``ctx_inpaint.benchmark.timing``): the Lightning training step (inside
``trainer.fit``), the same step in a bare PyTorch loop, the straightforward fp32 port of it, the step in bf16
(where the hardware has bf16), making one training batch, and the matmul that defines the peak run one after
another in every round, the order rotated each round; each ratio is the median of the per-round ratios, with
their spread and the number of rounds. Absolute figures (images/s, ms, GFLOP/s) are this machine's at that time,
under ``machine_now``.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from ctx_inpaint.benchmark.measure import (
    MEASUREMENTS,
    count_flops,
    data_rate,
    data_step,
    derive,
    device_of,
    dtype_name,
    end_to_end_rate,
    gan_step_fn,
    infer_ms,
    lightning_interleaved,
    plain_parts,
    straightforward_config,
    want_bf16,
    with_overrides,
)
from ctx_inpaint.benchmark.table import Row, print_table, table_rows
from ctx_inpaint.benchmark.timing import check_rounds, interleaved, matmul_step, put_ratio, ratio
from ctx_inpaint.common import machine
from ctx_inpaint.common.allocator import keep_freed_memory
from ctx_inpaint.errors import ConfigError
from ctx_inpaint.masks.generators import MaskGenerator

SWEEP_SIZES = [16, 32, 64, 128]
MACHINE_NOTE = (
    "absolute figures: this machine at measured_at, with whatever else ran on it then; they are not "
    "reproducible on a shared machine. Compare ratios, which come from interleaved rounds."
)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def expand_sizes_flag(argv: Sequence[str]) -> list[str]:
    """``--sizes`` is shorthand for ``bench.sizes=[16,32,64,128]`` (Hydra owns the rest of the command line)."""
    if "--sizes" not in argv:
        return list(argv)
    return [a for a in argv if a != "--sizes"] + [f"bench.sizes=[{','.join(map(str, SWEEP_SIZES))}]"]


def machine_fields() -> dict[str, Any]:
    """:func:`ctx_inpaint.common.machine.describe`, plus ``threads``: the name the bench JSON's readers
    (tools/bench_summary.py, the files in experiments/perf) know the torch thread count by."""
    info = machine.describe()
    info["threads"] = info["torch_threads"]
    return info


def run_bench(cfg: DictConfig) -> dict[str, Any]:
    """Every measurement of ``cfg.bench``, in one process; prints the table, then the JSON record as one line
    (also written to ``bench.out_json``), and returns the record."""
    b = cfg.bench
    # Process-wide, as in training: every compared step (the straightforward loop too) runs with it, so no ratio
    # credits it; its own effect is measured by experiments/perf/time_to_quality/allocator_ab.py.
    kept = keep_freed_memory(bool(cfg.get("keep_freed_memory", False)))
    if b.threads:
        torch.set_num_threads(int(b.threads))
    device = device_of(cfg)
    batch_size = int(b.batch_size)
    rounds, warmup, gemm = int(b.rounds), int(b.warmup), int(b.gemm_size)
    check_rounds(rounds, warmup)
    measure = set(b.measure)
    unknown = measure - MEASUREMENTS
    if unknown:
        raise ConfigError(
            f"bench.measure: unknown {sorted(unknown)}; expected some of {sorted(MEASUREMENTS)}"
        )
    masks: MaskGenerator = instantiate(cfg.masks)
    configured = dtype_name(cfg.trainer.precision)
    bf16 = want_bf16(b.get("bf16", "auto"), device)
    native = machine.bf16_native(device)
    if configured == "bf16" and not native:
        print(
            f"bench: warning: trainer.precision=bf16-mixed but {device} has no native bf16", file=sys.stderr
        )
    result: dict[str, Any] = {
        "name": str(cfg.name),
        "batch_size": batch_size,
        "device": str(device),
        "precision": str(cfg.trainer.precision),
        **machine_fields(),
        "bf16_supported": native,
        "timing": "interleaved rounds; each ratio = median of per-round ratios, _spread = [lowest, highest], "
        "_rounds = rounds",
        "rounds": rounds,
        "warmup": warmup,
        "keep_freed_memory": kept,
    }
    now: dict[str, Any] = {
        "note": MACHINE_NOTE,
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }

    data_ips, batch = data_rate(cfg, masks, batch_size)
    if "data" in measure:
        now["data_loader_images_per_s"] = data_ips
    steps, inner, flops_from = build_steps(cfg, masks, batch, measure, device, configured, bf16, result)
    for dt_name in [configured] + (["bf16"] if bf16 and configured == "fp32" else []):
        steps[f"matmul_{dt_name}"] = matmul_step(gemm, DTYPES[dt_name], device)
        inner[f"matmul_{dt_name}"] = int(b.gemm_calls)
    if flops_from is not None:
        result["flops_per_image"] = count_flops(*flops_from, batch)
    del flops_from
    if "train" in measure:
        timer = lightning_interleaved(cfg, masks, batch, steps, device, inner)
    else:
        timer = interleaved(steps, rounds, warmup, device, inner)
    result["steps"] = timer["order"][0]  # round 0's order; later rounds rotate it
    derive(result, now, timer, batch_size, gemm)
    del steps
    gc.collect()

    if "infer" in measure:
        infer = infer_ms(cfg, masks, batch, [int(n) for n in b.infer_batches], device)
        now["infer_ms_per_image"] = infer[min(infer)]  # the smallest batch (1 by default): the latency target
        now.update({f"infer_ms_per_image_b{n}": v for n, v in infer.items()})
    if "fit" in measure:
        now["end_to_end_images_per_s"] = end_to_end_rate(cfg, masks, batch_size)
    result["machine_now"] = now
    rows = table_rows(result)

    if b.sizes:
        result["sizes"] = sweep_sizes(cfg, masks, batch, [int(s) for s in b.sizes], rows)

    print_table(cfg, rows)
    line = json.dumps(result, sort_keys=False)
    if b.get("out_json"):
        Path(b.out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(b.out_json).write_text(line + "\n")
    print(line, flush=True)
    return result


def build_steps(
    cfg: DictConfig,
    masks: MaskGenerator,
    batch: dict[str, torch.Tensor],
    measure: set[str],
    device: torch.device,
    configured: str,
    bf16: bool,
    result: dict[str, Any],
) -> tuple[dict, dict, tuple | None]:
    """The functions the rounds time besides the Lightning step: the bare loop (``plain``), the straightforward
    fp32 port (``baseline``), the bare loop in bf16 (``plain_bf16``, when the configured precision is fp32 and
    bf16 is measured) and batch making (``data``). Also the networks the FLOPs are counted on."""
    steps: dict[str, Any] = {}
    inner: dict[str, int] = {}  # calls per round, timed together
    flops_from = None
    if "plain" in measure:
        parts, prepare = plain_parts(cfg, masks, device)
        result["generator_params"] = sum(p.numel() for p in parts.generator.parameters())
        result["discriminator_params"] = sum(
            p.numel() for p in (parts.discriminator or nn.Identity()).parameters()
        )
        steps["plain"] = gan_step_fn(cfg, parts, prepare, batch, toggle=True)
        if bf16 and configured == "fp32":
            bf_cfg = with_overrides(cfg, ["trainer.precision=bf16-mixed"])
            bf_parts, bf_prepare = plain_parts(bf_cfg, masks, device)
            steps["plain_bf16"] = gan_step_fn(bf_cfg, bf_parts, bf_prepare, batch, toggle=True)
    if "baseline" in measure:
        base_cfg = straightforward_config(cfg)
        base_parts, base_prepare = plain_parts(base_cfg, masks, device)
        steps["baseline"] = gan_step_fn(base_cfg, base_parts, base_prepare, batch, toggle=False)
        flops_from = (base_parts, base_prepare)  # counted on the straightforward networks (no compile)
    if "data" in measure:
        steps["data"] = data_step(cfg, masks, int(cfg.bench.batch_size))
        inner["data"] = int(cfg.bench.data_calls)
    if flops_from is None and measure & {"train", "plain"}:  # same FLOPs; no torch.compile in the way
        flops_from = plain_parts(straightforward_config(cfg), masks, device)
    return steps, inner, flops_from


def sweep_sizes(
    cfg: DictConfig, masks: MaskGenerator, batch: dict[str, torch.Tensor], sizes: list[int], rows: list[Row]
) -> dict[str, dict[str, Any]]:
    """The bare-loop step at each batch size, the sizes interleaved round by round (same networks): the step's
    cost relative to the first size (median of per-round ratios, spread, rounds), and this machine's images/s
    and ms per step. Appends one table row per size to ``rows``."""
    device = device_of(cfg)
    parts, prepare = plain_parts(cfg, masks, device)
    fns = {}
    for n in sizes:
        reps = math.ceil(n / batch["image"].shape[0])
        big = {k: v.repeat(reps, *([1] * (v.dim() - 1)))[:n] for k, v in batch.items()}
        fns[str(n)] = gan_step_fn(cfg, parts, prepare, big, toggle=True)
    timer = interleaved(fns, int(cfg.bench.rounds), int(cfg.bench.warmup), device)
    out: dict[str, dict[str, Any]] = {}
    first = str(sizes[0])
    for n in sizes:
        seconds = timer["median_s"][str(n)]
        entry: dict[str, Any] = {}
        put_ratio(entry, "step_cost_vs_first", ratio(timer, str(n), first))
        entry["machine_now"] = {"images_per_s": n / seconds, "ms_per_step": 1000.0 * seconds}
        out[str(n)] = entry
        lo, hi = entry["step_cost_vs_first_spread"]
        rows.append(
            (
                f"sweep batch {n}",
                n / seconds,
                f"images/s now ({1000 * seconds:.0f} ms/step, x{entry['step_cost_vs_first']:.2f} [{lo:.2f}..{hi:.2f}])",
            )
        )
    del parts, prepare, fns
    gc.collect()
    return out
