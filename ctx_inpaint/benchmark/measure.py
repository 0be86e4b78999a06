"""The benchmark's measurements: the steps timed in interleaved rounds (the Lightning step, the bare PyTorch loop,
the straightforward fp32 port, the bf16 step, batch making, the peak GEMM), the ratios derived from those rounds
(a fraction of the peak above 1 refused, not printed), and the absolute figures measured on their own (DataLoader
throughput, inference latency, a short real ``trainer.fit``). ``ctx_inpaint.benchmark.run`` (the bench), ``ab``
and ``precision_check`` compose them.
"""

from __future__ import annotations

import gc
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.flop_counter import FlopCounterMode

from ctx_inpaint.benchmark.lightning_runs import BatchClock, InterleavingClock, repeated_loader
from ctx_inpaint.benchmark.loops import GanParts, autocast_for, parts_from_module, plain_step
from ctx_inpaint.benchmark.peak import Gemm
from ctx_inpaint.benchmark.timing import median_seconds, put_ratio, ratio
from ctx_inpaint.common import machine
from ctx_inpaint.config.build import build_module
from ctx_inpaint.errors import ConfigError
from ctx_inpaint.masks.generators import MaskGenerator
from ctx_inpaint.training.module import ContextEncoderModule

MEASUREMENTS = {"data", "train", "plain", "baseline", "infer", "fit", "contention"}


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


def precision_choice(precision: Any, device: torch.device) -> tuple[str, str]:
    """``trainer.precision`` as the step runs it, and why: ``auto`` resolved
    (:func:`ctx_inpaint.common.machine.resolve_precision`: ``bf16-mixed`` where ``device`` has native bf16,
    ``32-true`` elsewhere); ``null`` and ``32`` are Lightning's float32, ``32-true``; any other value as it is."""
    if precision is None or str(precision) == "32":
        return "32-true", "Lightning's default (float32)" if precision is None else "set explicitly"
    value, why = machine.resolve_precision(str(precision), device.type)
    return str(value), str(why)


def resolved_precision(precision: Any, device: torch.device) -> str:
    """:func:`precision_choice`'s precision."""
    return precision_choice(precision, device)[0]


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


def plain_parts(cfg: DictConfig, masks: MaskGenerator, device: torch.device) -> tuple[GanParts, Callable]:
    """The networks and optimizers of a fresh module, on ``device`` with the module's speed settings."""
    module = fresh_module(cfg, masks)
    module.apply_speed_settings(device)
    module.to(device)
    return parts_from_module(module), lambda batch: module.format_batch(batch)


def gan_step_fn(
    cfg: DictConfig, parts: GanParts, prepare: Callable, batch: dict[str, torch.Tensor], toggle: bool
) -> Callable[[], None]:
    """One bare-loop GAN step of ``parts`` on ``batch`` under ``cfg``'s precision, as a function to time."""
    device = next(parts.generator.parameters()).device
    data = prepare(to_device(batch, device))
    autocast = autocast_for(resolved_precision(cfg.trainer.precision, device), device)

    def step() -> None:
        with autocast:
            plain_step(parts, data, toggle=toggle)

    return step


def data_step(cfg: DictConfig, masks: MaskGenerator, batch_size: int) -> Callable[[], object]:
    """One training batch made in this process (``num_workers=0``, one thread): the configured dataset's
    ``__getitem__`` for a batch of crops and masks, and the collate function, i.e. what one loader worker does
    per batch.

    The configured loader's workers cannot be timed in rounds: between two pulls they prefetch while the other
    steps run, so a pull measures a queue pop. Making the batch in the measuring process times the work itself;
    ``data_over_train`` is then how many times faster one worker makes batches than training consumes them
    (the loader's own throughput, its workers included, is ``machine_now.data_loader_images_per_s``)."""
    # Enough crops that the rounds never start a new epoch (a fresh iterator) inside a timed call.
    calls = (int(cfg.bench.rounds) + int(cfg.bench.warmup) + 1) * int(cfg.bench.data_calls)
    datamodule = instantiate(
        cfg.data, masks=masks, batch_size=batch_size, samples_per_epoch=calls * batch_size, num_workers=0
    )
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    state = {"it": iter(loader)}

    def step() -> object:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in a loader worker (PyTorch gives each worker one thread)
        try:
            return next(state["it"])
        except StopIteration:  # a new epoch of the same loader: no workers to start
            state["it"] = iter(loader)
            return next(state["it"])
        finally:
            torch.set_num_threads(threads)

    return step


def lightning_interleaved(
    cfg: DictConfig,
    masks: MaskGenerator,
    batch: dict[str, torch.Tensor],
    others: dict[str, Callable[[], object]],
    device: torch.device,
    inner: int | dict[str, int] = 1,
) -> dict[str, Any]:
    """``ContextEncoderModule.training_step`` inside ``trainer.fit`` on an in-memory batch, interleaved round by
    round with ``others`` (:class:`~ctx_inpaint.benchmark.lightning_runs.InterleavingClock`); the timer's record,
    the Lightning step named ``lightning``."""
    b = cfg.bench
    module = fresh_module(cfg, masks)
    clock = InterleavingClock(others, int(b.rounds), int(b.warmup), device, host="lightning", inner=inner)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = instantiate(
            cfg.trainer,
            default_root_dir=tmp,
            logger=False,
            callbacks=[clock],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            **one_short_epoch(clock.batches),
        )
        trainer.fit(module, train_dataloaders=repeated_loader(batch, clock.batches))
    del module, trainer
    gc.collect()
    return clock.result()


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
    autocast = autocast_for(resolved_precision(cfg.trainer.precision, device), device)
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


def want_bf16(setting: Any, device: torch.device) -> bool:
    """``bench.bf16``: ``auto`` measures the bf16 figures where the hardware has native bf16
    (:func:`ctx_inpaint.common.machine.bf16_native`), ``true`` always (emulated bf16 is slow: the figures then only
    show the code path works), ``false`` never."""
    text = str(setting).lower()
    if text == "auto":
        return machine.bf16_native(device)
    if text in ("true", "false"):
        return text == "true"
    raise ConfigError(f"bench.bf16: expected auto, true or false, got {setting!r}")


def dtype_name(precision: Any) -> str:
    """``fp32`` or ``bf16``: the GEMM dtype a (resolved) training precision is compared with."""
    return "bf16" if str(precision) == "bf16-mixed" else "fp32"


# What each timed step is called in the rounds and in ``machine_now`` (images/s at the bench batch).
STEP_RATES = {
    "lightning": "train_images_per_s",
    "plain": "plain_images_per_s",
    "baseline": "baseline_fp32_images_per_s",
    "plain_bf16": "plain_bf16_images_per_s",
    "data": "data_batch_images_per_s",
}


def refuse_above_one(out: dict[str, Any], key: str, value: float, why: str) -> bool:
    """A fraction of a peak above 1 says the peak was under-measured, not that the step beat the machine: the
    figure is not printed. ``out[key]`` is then ``None`` and ``out[key + "_refused"]`` says why (the rest of the
    record stands). Returns whether it refused."""
    if not value > 1.0:
        return False
    out[key] = None
    out[f"{key}_refused"] = f"{value:.2f} > 1: {why}"
    return True


def put_fraction(out: dict[str, Any], key: str, r: Mapping[str, Any], peak: Gemm, dtype: str) -> None:
    """:func:`~ctx_inpaint.benchmark.timing.put_ratio` of a fraction of the peak, or its refusal (no value,
    spread or rounds: ``key + "_refused"`` holds them) where its median is above 1."""
    lo, hi = r["spread"]
    why = (
        f"peak under-measured: the step ran more FLOP/s than the {dtype} peak GEMM ({peak.name}) in the same "
        f"rounds (per-round {lo:.2f}..{hi:.2f}, n={r['rounds']}); widen bench.gemm_shapes or check the FLOP count"
    )
    if not refuse_above_one(out, key, r["value"], why):
        put_ratio(out, key, r)


def derive(
    result: dict[str, Any],
    now: dict[str, Any],
    timer: dict[str, Any],
    batch_size: int,
    peaks: Mapping[str, Gemm],
) -> None:
    """Every ratio of the JSON from the interleaved rounds (median of per-round ratios, spread, rounds) into
    ``result``; the medians of the absolute times as this machine's figures into ``now``. ``peaks`` is the GEMM
    timed as ``matmul_<dtype>`` in the rounds (``ctx_inpaint.benchmark.peak``: the best of the search).

    - ``lightning_overhead = 1 - t(plain) / t(lightning)``: the rate the Lightning loop loses;
    - ``speedup_vs_baseline = t(baseline) / t(plain)`` (the Lightning step if the bare loop was not measured);
    - ``speedup_bf16_vs_baseline = t(baseline) / t(bf16 bare-loop step)``;
    - ``data_over_train = t(training step) / t(making one batch)``;
    - ``fraction_of_peak = (FLOPs/image x batch / t(step)) / (FLOPs(peak GEMM) / t(peak GEMM))``: the Lightning
      step against the peak GEMM of the configured precision's dtype; ``fraction_of_peak_fp32`` / ``_bf16``: the
      bare-loop step of that dtype against the peak GEMM of that dtype. One above 1 is refused
      (:func:`refuse_above_one`).
    """
    sec = timer["median_s"]
    has = set(sec)
    for name, key in STEP_RATES.items():
        if name in has:
            now[key] = batch_size / sec[name]
    for dt, peak in peaks.items():
        if f"matmul_{dt}" in has:
            now[f"peak_{dt}_gflops"] = peak.flops / sec[f"matmul_{dt}"] / 1e9
            now[f"peak_{dt}_shape"] = peak.shape
            now[f"peak_{dt}_kernel"] = peak.kernel
            now[f"peak_{dt}_threads"] = peak.layout
    configured = dtype_name(result.get("precision"))
    step = "lightning" if "lightning" in has else ("plain" if "plain" in has else None)
    if {"lightning", "plain"} <= has:
        put_ratio(
            result, "lightning_overhead", ratio(timer, "plain", "lightning", transform=lambda x: 1.0 - x)
        )
    fast = "plain" if "plain" in has else step
    if fast and "baseline" in has:
        put_ratio(result, "speedup_vs_baseline", ratio(timer, "baseline", fast))
        result["speedup_vs_baseline_step"] = fast
    bf16_step = "plain_bf16" if "plain_bf16" in has else (fast if configured == "bf16" else None)
    if bf16_step and "baseline" in has:
        put_ratio(result, "speedup_bf16_vs_baseline", ratio(timer, "baseline", bf16_step))
    if step and "data" in has:
        put_ratio(result, "data_over_train", ratio(timer, step, "data"))
    flops = result.get("flops_per_image")
    if not flops:
        return
    if step and f"matmul_{configured}" in has:
        peak = peaks[configured]
        r = ratio(timer, f"matmul_{configured}", step, scale=flops * batch_size / peak.flops)
        put_fraction(result, "fraction_of_peak", r, peak, configured)
        now["achieved_gflops"] = flops * batch_size / sec[step] / 1e9
    per_dtype = {configured: fast, "bf16": bf16_step} if configured == "fp32" else {"bf16": fast}
    for dt, name in per_dtype.items():
        if name and f"matmul_{dt}" in has:
            peak = peaks[dt]
            r = ratio(timer, f"matmul_{dt}", name, scale=flops * batch_size / peak.flops)
            put_fraction(result, f"fraction_of_peak_{dt}", r, peak, dt)
