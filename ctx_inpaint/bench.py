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
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ctx_inpaint.config_check import check_config
from ctx_inpaint.errors import ConfigError
from ctx_inpaint.masks import MaskGenerator
from ctx_inpaint.module import ContextEncoderModule
from ctx_inpaint.perf.lightning_runs import BatchClock, repeated_loader
from ctx_inpaint.perf.loops import GanParts, autocast_for, parts_from_module, plain_step
from ctx_inpaint.perf.timing import gemm_gflops, median_seconds
from ctx_inpaint.resume import report_user_errors
from ctx_inpaint.train import CONFIG_DIR, build_module

SWEEP_SIZES = [16, 32, 64, 128]
MEASUREMENTS = {"data", "train", "plain", "baseline", "infer", "fit"}


# ---- configuration ------------------------------------------------------------------------------------
def with_overrides(cfg: DictConfig, items: list[str], skip_missing: bool = False) -> DictConfig:
    """A copy of ``cfg`` with ``key=value`` items (YAML values) applied, by Hydra's rule: ``+key=value`` adds a
    key, a plain ``key=value`` must name an existing one (a typo would otherwise time an unchanged config).
    ``skip_missing`` skips absent plain keys instead (the baseline list also names options some configs lack)."""
    out = cfg.copy()
    with open_dict(out):
        for item in items:
            add = str(item).startswith("+")
            key, sep, value = str(item).lstrip("+").partition("=")
            if not sep:
                raise ConfigError(f"bench: expected a key=value override, got {item!r}")
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(out, parent) if parent else out
            if node is None:
                raise ConfigError(f"bench: {key} is not in the composed config (no {parent!r})")
            if leaf in node or add:
                node[leaf] = yaml.safe_load(value)
            elif not skip_missing:
                raise ConfigError(f"bench: {key} is not in the composed config; write +{key}=... to add it")
    return out


def straightforward_config(cfg: DictConfig) -> DictConfig:
    """``cfg`` with every speed option off (``bench.baseline_overrides``; keys absent from ``cfg`` skipped)."""
    return with_overrides(cfg, list(cfg.bench.baseline_overrides), skip_missing=True)


def device_of(cfg: DictConfig) -> torch.device:
    accel = str(cfg.trainer.accelerator)
    if accel in ("gpu", "cuda") or (accel == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", 0)
    if accel not in ("cpu", "auto"):
        raise ConfigError(f"trainer.accelerator: the bench runs on cpu or gpu, got {accel!r}")
    return torch.device("cpu")


def fresh_module(cfg: DictConfig, masks: MaskGenerator) -> ContextEncoderModule:
    """A module built exactly as ``train`` builds it, from the same seed (so every variant starts alike)."""
    pl.seed_everything(int(cfg.seed), verbose=False)
    return build_module(cfg, masks)


def one_short_epoch(batches: int) -> dict[str, Any]:
    """Trainer arguments for exactly ``batches`` training batches and no validation."""
    return dict(
        max_epochs=1,
        max_steps=-1,
        max_time=None,
        limit_train_batches=batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# ---- measurements ---------------------------------------------------------------------------------------
def data_rate(
    cfg: DictConfig, masks: MaskGenerator, batch_size: int
) -> tuple[float, dict[str, torch.Tensor]]:
    """Images/s delivered by the configured train DataLoader (its workers included); also returns one batch."""
    b = cfg.bench
    n = int(b.data_batches)
    datamodule = instantiate(
        cfg.data, masks=masks, batch_size=batch_size, samples_per_epoch=(n + 3) * batch_size
    )
    datamodule.setup("fit")
    it = iter(datamodule.train_dataloader())
    first = next(it)
    for _ in range(2):  # workers started and warm
        next(it)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        next(it)
        times.append(time.perf_counter() - t0)
    del it
    # Batches are timed one by one; the median of groups of 5 smooths prefetch bursts.
    groups = [sum(times[i : i + 5]) / len(times[i : i + 5]) for i in range(0, len(times), 5)]
    return batch_size / statistics.median(groups), first


def lightning_rate(cfg: DictConfig, masks: MaskGenerator, batch: dict[str, torch.Tensor]) -> float:
    """Images/s of ``ContextEncoderModule.training_step`` driven by ``trainer.fit`` on an in-memory batch."""
    b = cfg.bench
    module = fresh_module(cfg, masks)
    clock = BatchClock()
    n = int(b.warmup) + int(b.repeats) + 1
    with tempfile.TemporaryDirectory() as tmp:
        trainer = instantiate(
            cfg.trainer,
            default_root_dir=tmp,
            logger=False,
            callbacks=[clock],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            **one_short_epoch(n),
        )
        trainer.fit(module, train_dataloaders=repeated_loader(batch, n))
    rate = batch["image"].shape[0] / clock.median_interval(int(b.warmup))
    del module, trainer
    gc.collect()
    return rate


def plain_parts(cfg: DictConfig, masks: MaskGenerator, device: torch.device) -> tuple[GanParts, Callable]:
    """The networks and optimizers of a fresh module, on ``device`` with the module's speed settings."""
    module = fresh_module(cfg, masks)
    module.apply_speed_settings(device)
    module.to(device)
    return parts_from_module(module), lambda batch: module.format_batch(batch)


def plain_rate(
    cfg: DictConfig, parts: GanParts, prepare: Callable, batch: dict[str, torch.Tensor], toggle: bool
) -> float:
    device = next(parts.generator.parameters()).device
    batch = prepare(to_device(batch, device))
    autocast = autocast_for(cfg.trainer.precision, device)

    def step() -> None:
        with autocast:
            plain_step(parts, batch, toggle=toggle)

    b = cfg.bench
    return batch["image"].shape[0] / median_seconds(step, int(b.warmup), int(b.repeats), device)


def count_flops(parts: GanParts, prepare: Callable, batch: dict[str, torch.Tensor]) -> float:
    """FLOPs of one training step as the module runs it (matmuls and convolutions, forward and backward)."""
    device = next(parts.generator.parameters()).device
    batch = prepare(to_device(batch, device))
    with FlopCounterMode(display=False) as counter:
        plain_step(parts, batch, toggle=True)
    return counter.get_total_flops() / batch["image"].shape[0]


def infer_ms(
    cfg: DictConfig,
    masks: MaskGenerator,
    batch: dict[str, torch.Tensor],
    sizes: list[int],
    device: torch.device,
) -> dict[int, float]:
    """Milliseconds per image of the generator in eval mode, at each batch size."""
    module = fresh_module(cfg, masks)
    module.apply_speed_settings(device)
    module.to(device).eval()
    autocast = autocast_for(cfg.trainer.precision, device)
    out = {}
    for n in sizes:
        reps = math.ceil(n / batch["masked"].shape[0])
        x = batch["masked"].repeat(reps, 1, 1, 1)[:n].to(device)

        def run(x: torch.Tensor = x) -> None:
            with torch.inference_mode(), autocast:
                module(x)

        out[n] = 1000.0 * median_seconds(run, int(cfg.bench.warmup), int(cfg.bench.infer_repeats), device) / n
    return out


def end_to_end_rate(cfg: DictConfig, masks: MaskGenerator, batch_size: int) -> float:
    """Images/s of a short real ``trainer.fit``: the configured data module, loggers and callbacks."""
    b = cfg.bench
    n = int(b.warmup) + int(b.fit_batches) + 1
    module = fresh_module(cfg, masks)
    datamodule = instantiate(cfg.data, masks=masks, batch_size=batch_size, samples_per_epoch=n * batch_size)
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    # Checkpoints are written at epoch end, outside the timed iterations: skipped (they are ~1 GB with Adam state).
    callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
    clock = BatchClock()
    trainer = instantiate(
        cfg.trainer,
        logger=loggers,
        callbacks=[*callbacks, clock],
        enable_checkpointing=False,
        **one_short_epoch(n),
    )
    trainer.fit(module, datamodule=datamodule)
    rate = batch_size / clock.median_interval(int(b.warmup))
    del module, trainer, datamodule
    gc.collect()
    return rate


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


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def derive(r: dict[str, Any]) -> None:
    """Ratios of the measured figures, for those that were measured."""
    if "train_images_per_s" in r and "plain_images_per_s" in r:
        r["lightning_overhead"] = 1.0 - r["train_images_per_s"] / r["plain_images_per_s"]
    if "train_images_per_s" in r and "baseline_fp32_images_per_s" in r:
        r["speedup_vs_baseline"] = r["train_images_per_s"] / r["baseline_fp32_images_per_s"]
    if "train_images_per_s" in r and "data_images_per_s" in r:
        r["data_over_train"] = r["data_images_per_s"] / r["train_images_per_s"]
    if "train_images_per_s" in r and "flops_per_image" in r:
        r["achieved_gflops"] = r["flops_per_image"] * r["train_images_per_s"] / 1e9
        r["fraction_of_peak"] = r["achieved_gflops"] / r["sgemm_gflops"]


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
