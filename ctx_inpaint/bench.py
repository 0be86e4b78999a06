"""Benchmark: ``python -m ctx_inpaint.bench +experiment=l2_0999 [--sizes] [key=value ...]``.

Measures in one process, after warm-up, medians of several repeats: the real LightningModule's training step, the
same step in a bare PyTorch loop, the straightforward float32 port of it, the configured train DataLoader, a short
real ``trainer.fit``, inference latency, FLOPs per image and the float32 matmul peak. Prints a table and, last,
one JSON line (also written to ``bench.out_json``).
"""

from __future__ import annotations

import gc
import json
import math
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from ctx_inpaint.cli import report_user_errors
from ctx_inpaint.config import CONFIG_DIR
from ctx_inpaint.config_check import check_config
from ctx_inpaint.errors import ConfigError
from ctx_inpaint.masks import MaskGenerator
from ctx_inpaint.perf.measure import (
    MEASUREMENTS,
    count_flops,
    data_rate,
    derive,
    device_of,
    end_to_end_rate,
    infer_ms,
    lightning_rate,
    machine_info,
    plain_parts,
    plain_rate,
    straightforward_config,
)
from ctx_inpaint.perf.timing import gemm_gflops

SWEEP_SIZES = [16, 32, 64, 128]


# ---- the run -----------------------------------------------------------------------------------------------
def run_bench(cfg: DictConfig) -> dict[str, Any]:
    """Every measurement of the issue, in one process; returns the JSON record."""
    b = cfg.bench
    if b.threads:
        torch.set_num_threads(int(b.threads))
    device = device_of(cfg)
    batch_size = int(b.batch_size)
    masks: MaskGenerator = instantiate(cfg.masks)
    base_cfg = straightforward_config(cfg)
    rows: list[tuple[str, float, str]] = []
    result: dict[str, Any] = {"name": str(cfg.name), "batch_size": batch_size, "device": str(device)}

    measure = set(b.measure)
    unknown = measure - MEASUREMENTS
    if unknown:
        raise ConfigError(
            f"bench.measure: unknown {sorted(unknown)}; expected some of {sorted(MEASUREMENTS)}"
        )
    result.update(machine_info())
    result["sgemm_gflops"] = gemm_gflops(int(b.gemm_size), torch.float32, device)
    data_ips, batch = data_rate(cfg, masks, batch_size)
    if "data" in measure:
        result["data_images_per_s"] = data_ips
    if "train" in measure:
        result["train_images_per_s"] = lightning_rate(cfg, masks, batch)
    if "plain" in measure:
        parts, prepare = plain_parts(cfg, masks, device)
        result["generator_params"] = sum(p.numel() for p in parts.generator.parameters())
        result["discriminator_params"] = sum(
            p.numel() for p in (parts.discriminator or nn.Identity()).parameters()
        )
        result["plain_images_per_s"] = plain_rate(cfg, parts, prepare, batch, toggle=True)
        del parts, prepare
        gc.collect()
    if "baseline" in measure or "train" in measure:
        base_parts, base_prepare = plain_parts(base_cfg, masks, device)
        result["flops_per_image"] = count_flops(base_parts, base_prepare, batch)
        if "baseline" in measure:
            result["baseline_fp32_images_per_s"] = plain_rate(
                base_cfg, base_parts, base_prepare, batch, toggle=False
            )
        del base_parts, base_prepare
        gc.collect()
    if "infer" in measure:
        infer = infer_ms(cfg, masks, batch, [int(n) for n in b.infer_batches], device)
        result["infer_ms_per_image"] = infer[
            min(infer)
        ]  # the smallest batch (1 by default): the latency target
        result.update({f"infer_ms_per_image_b{n}": v for n, v in infer.items()})
    if "fit" in measure:
        result["end_to_end_images_per_s"] = end_to_end_rate(cfg, masks, batch_size)
    derive(result)
    rows += table_rows(result)

    if b.sizes:
        result["sizes"] = sweep_sizes(cfg, masks, batch, [int(s) for s in b.sizes], rows)

    print_table(cfg, rows)
    line = json.dumps(result, sort_keys=False)
    if b.get("out_json"):
        Path(b.out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(b.out_json).write_text(line + "\n")
    print(line, flush=True)
    return result


ROWS = [
    ("train_images_per_s", "train (LightningModule step)", 1.0, "images/s"),
    ("plain_images_per_s", "plain PyTorch loop, same settings", 1.0, "images/s"),
    ("lightning_overhead", "Lightning overhead", 100.0, "%"),
    ("baseline_fp32_images_per_s", "straightforward fp32 loop", 1.0, "images/s"),
    ("speedup_vs_baseline", "speed-up vs straightforward", 1.0, "x"),
    ("data_images_per_s", "train DataLoader", 1.0, "images/s"),
    ("data_over_train", "DataLoader / train", 1.0, "x"),
    ("end_to_end_images_per_s", "end-to-end trainer.fit", 1.0, "images/s"),
    ("flops_per_image", "training FLOPs", 1e-9, "GFLOP/image"),
    ("achieved_gflops", "achieved", 1.0, "GFLOP/s"),
    ("sgemm_gflops", "float32 matmul peak", 1.0, "GFLOP/s"),
    ("fraction_of_peak", "fraction of peak", 1.0, ""),
    ("discriminator_params", "discriminator parameters", 1.0, ""),
]


def table_rows(r: dict[str, Any]) -> list[tuple[str, float, str]]:
    rows = [(label, r[key] * scale, unit) for key, label, scale, unit in ROWS if key in r]
    rows += [
        (f"inference, batch {k.rsplit('_b', 1)[1]}", v, "ms/image")
        for k, v in r.items()
        if "_per_image_b" in k
    ]
    return rows


def sweep_sizes(
    cfg: DictConfig, masks: MaskGenerator, batch: dict[str, torch.Tensor], sizes: list[int], rows: list
) -> dict[str, dict[str, float]]:
    """The Lightning step at each batch size: images/s, ms per step and step cost relative to the first size."""
    out: dict[str, dict[str, float]] = {}
    first_ms = None
    for n in sizes:
        reps = math.ceil(n / batch["image"].shape[0])
        big = {k: v.repeat(reps, *([1] * (v.dim() - 1)))[:n] for k, v in batch.items()}
        ips = lightning_rate(cfg, masks, big)
        ms = 1000.0 * n / ips
        first_ms = first_ms or ms
        out[str(n)] = {"train_images_per_s": ips, "ms_per_step": ms, "step_cost_vs_first": ms / first_ms}
        rows.append((f"sweep batch {n}", ips, f"images/s ({ms:.0f} ms/step, x{ms / first_ms:.2f})"))
    return out


def print_table(cfg: DictConfig, rows: list[tuple[str, float, str]]) -> None:
    m = cfg.model
    print(
        f"\nbench {cfg.name}: lambda_rec={m.lambda_rec} precision={cfg.trainer.precision} "
        f"channels_last={m.get('channels_last')} compile={m.get('compile')} "
        f"threads={torch.get_num_threads()} batch={cfg.bench.batch_size}"
    )
    width = max(len(r[0]) for r in rows)
    for label, value, unit in rows:
        print(f"  {label:<{width}}  {value:>10.3f}  {unit}")


def _expand_sizes_flag(argv: list[str]) -> list[str]:
    """``--sizes`` is shorthand for ``bench.sizes=[16,32,64,128]`` (Hydra owns the rest of the command line)."""
    if "--sizes" not in argv:
        return argv
    return [a for a in argv if a != "--sizes"] + [f"bench.sizes=[{','.join(map(str, SWEEP_SIZES))}]"]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="bench")
def main(cfg: DictConfig) -> None:
    with report_user_errors():
        check_config(cfg)
        run_bench(cfg)


if __name__ == "__main__":
    sys.argv = _expand_sizes_flag(sys.argv)
    main()
