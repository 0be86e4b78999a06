"""The bench's printed table: which JSON keys are shown, under what label and unit, in what order.

Ratios (with their spread over the interleaved rounds) come first because they are what compares across machines;
this machine's absolute figures follow, then the constants of the model (FLOPs, parameters).
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

Row = tuple[str, float, str]  # label, value, unit and remark

RATIO_ROWS = [
    ("lightning_overhead", "Lightning overhead", 100.0, "%"),
    ("speedup_vs_baseline", "speed-up vs straightforward fp32", 1.0, "x"),
    ("speedup_bf16_vs_baseline", "bf16 speed-up vs straightforward fp32", 1.0, "x"),
    ("data_over_train", "batch making / train step", 1.0, "x"),
    ("fraction_of_peak", "fraction of peak (Lightning step)", 1.0, ""),
    ("fraction_of_peak_fp32", "fraction of fp32 matmul peak (bare loop)", 1.0, ""),
    ("fraction_of_peak_bf16", "fraction of bf16 matmul peak (bare loop)", 1.0, ""),
]
ROWS = [
    ("train_images_per_s", "train (LightningModule step)", 1.0, "images/s"),
    ("plain_images_per_s", "plain PyTorch loop, same settings", 1.0, "images/s"),
    ("baseline_fp32_images_per_s", "straightforward fp32 loop", 1.0, "images/s"),
    ("plain_bf16_images_per_s", "plain PyTorch loop, bf16-mixed", 1.0, "images/s"),
    ("data_batch_images_per_s", "batch making, one process", 1.0, "images/s"),
    ("data_loader_images_per_s", "train DataLoader (its workers)", 1.0, "images/s"),
    ("end_to_end_images_per_s", "end-to-end trainer.fit", 1.0, "images/s"),
    ("achieved_gflops", "achieved", 1.0, "GFLOP/s"),
    ("sgemm_gflops", "float32 matmul peak", 1.0, "GFLOP/s"),
    ("bf16_gemm_gflops", "bf16 matmul peak", 1.0, "GFLOP/s"),
]
CONSTANT_ROWS = [
    ("flops_per_image", "training FLOPs", 1e-9, "GFLOP/image"),
    ("discriminator_params", "discriminator parameters", 1.0, ""),
]


def table_rows(r: dict[str, Any]) -> list[Row]:
    """Ratios with their spread, then this machine's absolute figures, then the constants."""
    n = r.get("rounds")
    rows = [
        (
            label,
            r[key] * scale,
            f"{unit} (rounds {r[key + '_spread'][0] * scale:.3f}..{r[key + '_spread'][1] * scale:.3f}, n={n})",
        )
        for key, label, scale, unit in RATIO_ROWS
        if key in r
    ]
    now = r.get("machine_now", {})
    rows += [
        (label, now[key] * scale, f"{unit} (this machine now)")
        for key, label, scale, unit in ROWS
        if key in now
    ]
    rows += [
        (f"inference, batch {k.rsplit('_b', 1)[1]}", v, "ms/image (this machine now)")
        for k, v in now.items()
        if "_per_image_b" in k
    ]
    rows += [(label, r[key] * scale, unit) for key, label, scale, unit in CONSTANT_ROWS if key in r]
    return rows


def print_table(cfg: DictConfig, rows: list[Row]) -> None:
    """The settings that change the figures, then one aligned line per row."""
    m = cfg.model
    print(
        f"\nbench {cfg.name}: lambda_rec={m.lambda_rec} precision={cfg.trainer.precision} "
        f"channels_last={m.get('channels_last')} compile={m.get('compile')} "
        f"threads={torch.get_num_threads()} batch={cfg.bench.batch_size}"
    )
    width = max(len(r[0]) for r in rows)
    for label, value, unit in rows:
        print(f"  {label:<{width}}  {value:>10.3f}  {unit}")
