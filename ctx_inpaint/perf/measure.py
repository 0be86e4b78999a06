"""The benchmark's measurements, each on its own: DataLoader, Lightning step, plain PyTorch loop, the straightforward
fp32 port, FLOPs, inference latency and a short real ``trainer.fit``. ``ctx_inpaint.bench`` (the CLI) and
``ctx_inpaint.perf.ab`` / ``precision_check`` compose them.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.flop_counter import FlopCounterMode

from ctx_inpaint.config import build_module
from ctx_inpaint.errors import ConfigError
from ctx_inpaint.masks import MaskGenerator
from ctx_inpaint.module import ContextEncoderModule
from ctx_inpaint.perf.lightning_runs import BatchClock, repeated_loader
from ctx_inpaint.perf.loops import GanParts, autocast_for, parts_from_module, plain_step
from ctx_inpaint.perf.timing import median_seconds

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
        m = batch["mask"].repeat(reps, 1, 1, 1)[:n].to(device)

        def run(x: torch.Tensor = x, m: torch.Tensor = m) -> None:
            with torch.inference_mode(), autocast:
                module(x, m)

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
