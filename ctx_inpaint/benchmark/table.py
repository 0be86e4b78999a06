"""The bench's printed table: which JSON keys are shown, under what label and unit, in what order.

Ratios (with their spread over the interleaved rounds) come first because they are what compares across machines;
this machine's absolute figures follow (the peak GEMM with its shape, kernel and threads, and the CPU's theoretical
peak beside it), then the constants of the model (FLOPs, parameters). A fraction of a peak the bench refused
(above 1: the peak was under-measured) shows as ``refused`` with the reason, never as a number.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

Row = tuple[str, float | None, str]  # label, value (None: refused), unit and remark

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
    ("sgemm_gflops", "float32 mm, gemm_size cube", 1.0, "GFLOP/s"),
    ("bf16_gemm_gflops", "bf16 mm, gemm_size cube", 1.0, "GFLOP/s"),
]
PEAK_LABELS = {"fp32": "float32", "bf16": "bf16"}
CONSTANT_ROWS = [
    ("flops_per_image", "training FLOPs", 1e-9, "GFLOP/image"),
    ("discriminator_params", "discriminator parameters", 1.0, ""),
]


def refused(r: dict[str, Any], key: str, label: str) -> list[Row]:
    """The row of a refused figure (``key + "_refused"`` holds why), or none."""
    why = r.get(f"{key}_refused")
    return [] if why is None else [(label, None, why)]


def peak_rows(r: dict[str, Any], now: dict[str, Any]) -> list[Row]:
    """Per dtype: the peak GEMM (which one), the theoretical peak (on what basis), and their ratio."""
    rows: list[Row] = []
    for dt, name in PEAK_LABELS.items():
        if f"peak_{dt}_gflops" in now:
            tried = len((now.get("peak_search") or {}).get(dt, {}))
            rows.append(
                (
                    f"{name} peak GEMM",
                    now[f"peak_{dt}_gflops"],
                    f"GFLOP/s (this machine now; {now[f'peak_{dt}_kernel']} {now[f'peak_{dt}_shape']}, "
                    f"threads x GEMMs {now[f'peak_{dt}_threads']}: the best of {tried})",
                )
            )
        if f"theoretical_{dt}_gflops" in r:
            rows.append(
                (
                    f"{name} theoretical peak",
                    r[f"theoretical_{dt}_gflops"],
                    f"GFLOP/s ({r['theoretical_basis']})",
                )
            )
        key, label = f"peak_{dt}_of_theoretical", f"{name} peak GEMM / theoretical"
        rows += refused(now, key, label)
        if now.get(key) is not None:
            rows.append((label, now[key], ""))
    return rows


def table_rows(r: dict[str, Any]) -> list[Row]:
    """Ratios with their spread (or their refusal), then this machine's absolute figures and peaks, then the
    constants."""
    n = r.get("rounds")
    rows: list[Row] = []
    for key, label, scale, unit in RATIO_ROWS:
        rows += refused(r, key, label)
        if r.get(key) is not None:
            lo, hi = r[key + "_spread"]
            rows.append((label, r[key] * scale, f"{unit} (rounds {lo * scale:.3f}..{hi * scale:.3f}, n={n})"))
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
    rows += peak_rows(r, now)
    rows += refused(now, "achieved_of_theoretical", "achieved / theoretical")
    if now.get("achieved_of_theoretical") is not None:
        rows.append(
            ("achieved / theoretical", now["achieved_of_theoretical"], "(the step, its dtype's ceiling)")
        )
    rows += [(label, r[key] * scale, unit) for key, label, scale, unit in CONSTANT_ROWS if key in r]
    return rows


def print_table(cfg: DictConfig, rows: list[Row], precision_setting: str | None = None) -> None:
    """The settings that change the figures, then one aligned line per row (``refused`` for a refused one)."""
    m = cfg.model
    precision = str(cfg.trainer.precision)
    if precision_setting not in (None, precision):
        precision += f" ({precision_setting})"
    print(
        f"\nbench {cfg.name}: lambda_rec={m.lambda_rec} precision={precision} "
        f"channels_last={m.get('channels_last')} compile={m.get('compile')} "
        f"threads={torch.get_num_threads()} batch={cfg.bench.batch_size}"
    )
    width = max(len(r[0]) for r in rows)
    for label, value, unit in rows:
        shown = "refused" if value is None else f"{value:.3f}"
        print(f"  {label:<{width}}  {shown:>10}  {unit}")
