"""One benchmark run: :func:`run_bench` times every measurement the config asks for in one process and returns
(and prints, and writes) the JSON record; ``python -m ctx_inpaint.bench`` is its command.

Every ratio comes from interleaved rounds (``ctx_inpaint.benchmark.timing``): the Lightning training step (inside
``trainer.fit``), the same step in a bare PyTorch loop, the straightforward fp32 port of it, the step in bf16
(where the hardware has bf16), making one training batch, and the GEMM that defines the peak run one after
another in every round, the order rotated each round; each ratio is the median of the per-round ratios, with
their spread and the number of rounds. The peak GEMM is the best of a search over shapes, kernels and thread
layouts run first (``ctx_inpaint.benchmark.peak``); the theoretical FMA peak of the CPU is reported beside it.
Absolute figures (images/s, ms, GFLOP/s) are this machine's at that time, under ``machine_now``.
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

from ctx_inpaint.benchmark.contention import contention_rows, run_contention
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
    precision_choice,
    refuse_above_one,
    straightforward_config,
    want_bf16,
    with_overrides,
)
from ctx_inpaint.benchmark.peak import (
    Gemm,
    ThreadTeam,
    best,
    calls_per_timing,
    candidates,
    gemm_fn,
    search,
    theoretical,
)
from ctx_inpaint.benchmark.table import Row, print_table, table_rows
from ctx_inpaint.benchmark.timing import check_rounds, interleaved, put_ratio, ratio
from ctx_inpaint.common import machine
from ctx_inpaint.common.allocator import keep_freed_memory
from ctx_inpaint.common.threads import describe_thread_policy, reduced_threads_line
from ctx_inpaint.config.build import with_resolved_precision
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
    elif reduced_threads_line():
        applied = describe_thread_policy()
        # auto saw other running processes at start (a short-lived one too, if it overlapped its look)
        print(
            f"bench: warning: thread policy auto chose {applied['set']} (other processes were running at start); "
            f"the figures are for {torch.get_num_threads()} thread(s): CTX_INPAINT_THREAD_POLICY=spin or "
            "bench.threads=N measures a fixed count",
            file=sys.stderr,
        )
    device = device_of(cfg)
    setting = str(cfg.trainer.precision)
    why = precision_choice(setting, device)[1]
    cfg = with_resolved_precision(cfg, device.type)[0]  # trainer.precision: auto -> bf16-mixed or 32-true
    batch_size = int(b.batch_size)
    rounds, warmup = int(b.rounds), int(b.warmup)
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
        "precision": str(cfg.trainer.precision),  # as the steps ran: auto resolved
        "precision_setting": setting,
        "precision_reason": why,
        **machine_fields(),
        "bf16_supported": native,
        **theoretical(device),
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

    if "contention" in measure:  # first, while this process is idle: its children need the machine
        result["contention"] = run_contention(cfg)
        measure.discard("contention")
        if not measure:  # contention alone: its rows and the JSON, nothing else timed
            result["machine_now"] = now
            return _emit(cfg, result, contention_rows(result["contention"]), setting)

    data_ips, batch = data_rate(cfg, masks, batch_size)
    if "data" in measure:
        now["data_loader_images_per_s"] = data_ips
    dtypes = [configured] + (["bf16"] if bf16 and configured == "fp32" else [])
    gemms = candidates(b.gemm_shapes, b.gemm_kernels, b.gemm_threads, int(b.gemm_size), device)
    copies = max(g.copies for g in gemms)
    team = ThreadTeam(copies) if copies > 1 else None
    try:
        peaks = {d: find_peak(cfg, gemms, d, device, team, now) for d in dtypes}
        steps, inner, flops_from = build_steps(cfg, masks, batch, measure, device, configured, bf16, result)
        for d, peak in peaks.items():
            steps[f"matmul_{d}"] = gemm_fn(peak, DTYPES[d], device, team)
            inner[f"matmul_{d}"] = calls_per_timing(peak, int(b.gemm_size), cubes=int(b.gemm_calls))
        if flops_from is not None:
            result["flops_per_image"] = count_flops(*flops_from, batch)
        del flops_from
        if "train" in measure:
            timer = lightning_interleaved(cfg, masks, batch, steps, device, inner)
        else:
            timer = interleaved(steps, rounds, warmup, device, inner)
    finally:
        if team is not None:
            team.close()
    result["steps"] = timer["order"][0]  # round 0's order; later rounds rotate it
    derive(result, now, timer, batch_size, peaks)
    of_theoretical(result, now)
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
    if "contention" in result:
        rows += contention_rows(result["contention"])

    if b.sizes:
        result["sizes"] = sweep_sizes(cfg, masks, batch, [int(s) for s in b.sizes], rows)
    return _emit(cfg, result, rows, setting)


def _emit(cfg: DictConfig, result: dict[str, Any], rows: list, setting: str) -> dict[str, Any]:
    """Print the table, then the JSON record as one line (also written to ``bench.out_json``)."""
    print_table(cfg, rows, setting)
    line = json.dumps(result, sort_keys=False)
    if cfg.bench.get("out_json"):
        Path(cfg.bench.out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.bench.out_json).write_text(line + "\n")
    print(line, flush=True)
    return result


def find_peak(
    cfg: DictConfig, gemms: list[Gemm], dtype: str, device: torch.device, team: ThreadTeam | None, now: dict
) -> Gemm:
    """The best of ``gemms`` in ``dtype`` (:func:`ctx_inpaint.benchmark.peak.search`): every GEMM's GFLOP/s
    into ``now["peak_search"][dtype]``, and ``sgemm_gflops`` / ``bf16_gemm_gflops``, the figures of the bench's
    former peak (``torch.mm`` of the ``bench.gemm_size`` cube on torch's threads), where it is one of them."""
    n = int(cfg.bench.gemm_size)
    rates = search(
        gemms, lambda g: gemm_fn(g, DTYPES[dtype], device, team), int(cfg.bench.gemm_passes), n, device
    )
    now.setdefault("peak_search", {})[dtype] = rates
    now["peak_search_passes"] = int(cfg.bench.gemm_passes)
    cube = next((g for g in gemms if g.kernel == "mm" and g.copies == 1 and g.shape == f"{n}x{n}x{n}"), None)
    if cube is not None:
        now["sgemm_gflops" if dtype == "fp32" else "bf16_gemm_gflops"] = rates[cube.name]
    return best(gemms, rates)


def of_theoretical(result: dict[str, Any], now: dict[str, Any]) -> None:
    """``peak_<dtype>_of_theoretical``, the measured peak GEMM over the theoretical peak, and
    ``achieved_of_theoretical``, the measured step (``achieved_gflops``) over the theoretical peak of its dtype;
    each refused above 1 (:func:`~ctx_inpaint.benchmark.measure.refuse_above_one`)."""
    basis = result.get("theoretical_basis")
    configured = dtype_name(result.get("precision"))
    pairs = [(f"peak_{d}_of_theoretical", now.get(f"peak_{d}_gflops"), d, "peak GEMM") for d in DTYPES]
    pairs.append(("achieved_of_theoretical", now.get("achieved_gflops"), configured, "training step"))
    for key, measured, d, what in pairs:
        ceiling = result.get(f"theoretical_{d}_gflops")
        if not measured or not ceiling:
            continue
        why = (
            f"the {what} ran faster than the theoretical peak: the clock read is below the one it ran at "
            f"(boost?) or the FLOP/cycle assumption is wrong ({basis})"
        )
        if not refuse_above_one(now, key, measured / ceiling, why):
            now[key] = measured / ceiling


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
