"""Refuse a bad config before anything is built, written or trained, with one line naming key, value and what
is allowed.

One rule, one place: constructors check what they can see (weights, choices, mask geometry, the adversarial
settings against ``lambda_rec``), with ``errors.check_range``'s one message, and this check runs them through a
dry build of masks and module on PyTorch's ``meta`` device (no memory, no compute) with one forward pass. What no
constructor sees is checked here: unfilled ``???`` values, ``_target_``s that do not import (with the group's
options), positive counts, the seed, optimizer settings, ``trainer.precision``, sizes across groups, ``ckpt_path``
and the data folders.

Training calls ``check_config`` once, up front (``training.run.train``), as do ``prepare`` and the benchmark.
This package imports only downward (errors, common, models, masks, data, and ``config``'s own modules); the module
it dry-builds is named by the config's ``_target_``, never imported here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Timer
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from ctx_inpaint.common.machine import AUTO_PRECISION, is_precision
from ctx_inpaint.config.build import build_module
from ctx_inpaint.config.compose import group_options
from ctx_inpaint.config.targets import importable, walk_targets
from ctx_inpaint.data.sources import resolve_files
from ctx_inpaint.errors import ConfigError, check_number, check_range, instantiation_message, keyed
from ctx_inpaint.masks.generators import FreeForm, RandomRegion

_ABSENT = object()
MAX_SEED = 2**32 - 1  # numpy's seeds (seed_everything refuses, older Lightning silently used 0)

# key: (low, high, low inclusive, high inclusive)
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "optim.generator.lr": (0.0, math.inf, False, True),
    "optim.discriminator.lr": (0.0, math.inf, False, True),
    "callbacks.model_checkpoint.last_every_s": (0.0, math.inf, False, True),
    "masks.scale": (0.0, math.inf, False, True),
}
# key: lowest allowed integer (Lightning's -1 = no limit for max_epochs / max_steps)
INTS_AT_LEAST: dict[str, int] = {
    "data.input_size": 1,
    "data.short_side": 1,
    "data.batch_size": 1,
    "data.val_batch_size": 1,  # null: data.batch_size
    "data.samples_per_epoch": 1,
    "data.val_crops_per_image": 1,
    "data.num_workers": 0,
    "masks.max_patches": 1,
    "masks.noise_size": 1,
    "bench.batch_size": 1,
    "bench.gemm_size": 1,
    "bench.threads": 0,
    "model.encoder.width": 1,
    "model.decoder.width": 1,
    "model.bottleneck.units": 1,
    "model.discriminator.width": 1,
    "callbacks.model_checkpoint.last_every_n_batches": 1,
    "callbacks.nonfinite_guard.check_every_n_batches": 1,
    "seed": 0,
    "trainer.max_epochs": -1,
    "trainer.max_steps": -1,
}
# What null means where null is allowed (the checks above skip null).
NULL_MEANS: dict[str, str] = {
    "data.val_batch_size": "null (= data.batch_size)",
    "bench.threads": "null (PyTorch's default)",
    "data.pin_memory": "null (pin when training on CUDA)",
}
# Lists of positive integers (batch sizes the benchmark runs).
POSITIVE_INT_LISTS = ("bench.sizes", "bench.infer_batches")
CHOICES: dict[str, tuple[str, ...]] = {
    "data.on_bad_image": ("skip", "error"),
}
BOOLS = (
    "overwrite",
    "data.hflip",
    "data.cache_images",
    "data.persistent_workers",
    "keep_freed_memory",
    "callbacks.model_checkpoint.best_weights_only",
    "model.mask_channel",
    "model.residual",
    "model.skips",
    "masks.whole_image",
)
NULLABLE_BOOLS = ("data.pin_memory",)


def check_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` (one line) for the first problem found; return quietly otherwise."""
    _check_missing(cfg)
    _check_targets(cfg)
    _check_choices(cfg)
    _check_ranges(cfg)
    _check_seed(cfg)
    _check_trainer(cfg)
    _check_sizes(cfg)
    _check_ckpt_path(cfg)
    _check_init_from(cfg)
    _check_data_paths(cfg)
    _dry_build(cfg)
    _check_mask_sampling(cfg)


def _get(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)


def _check_missing(cfg: DictConfig) -> None:
    for key in sorted(OmegaConf.missing_keys(cfg)):
        if not key.startswith("hydra"):
            raise ConfigError(f"{key}: required but not set (it is ???); pass {key}=VALUE")


# ---- _target_s ------------------------------------------------------------------------------------------------
def _check_targets(cfg: DictConfig) -> None:
    for key, target in walk_targets(cfg):
        if key.startswith("hydra") or importable(target):
            continue
        options = group_options(key)
        allowed = (
            f"choose {key.replace('.', '/')}=" + "|".join(options)
            if options
            else "expected an importable class or function"
        )
        raise ConfigError(f"{key}._target_: unknown {target!r}; {allowed}")


# ---- values --------------------------------------------------------------------------------------------------
def _check_choices(cfg: DictConfig) -> None:
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        if value is not _ABSENT and value not in allowed:
            raise ConfigError(f"{key}: got {value!r}; expected one of {', '.join(allowed)}")
    for key in BOOLS + NULLABLE_BOOLS:
        value = _get(cfg, key)
        if value is _ABSENT or isinstance(value, bool) or (value is None and key in NULLABLE_BOOLS):
            continue
        expected = "true, false" if key in NULLABLE_BOOLS else "true or false"
        raise ConfigError(f"{key}: got {value!r}; expected {_or_null(key, expected)}")


def _or_null(key: str, expected: str) -> str:
    """``expected``, with what null means for the keys that allow it."""
    return f"{expected} or {NULL_MEANS[key]}" if key in NULL_MEANS else expected


def _check_ranges(cfg: DictConfig) -> None:
    for key, (lo, hi, lo_in, hi_in) in RANGES.items():
        value = _get(cfg, key)
        if value is not _ABSENT and value is not None:
            check_range(key, value, lo, hi, lo_in, hi_in)
    for key, low in INTS_AT_LEAST.items():
        value = _get(cfg, key)
        if value is _ABSENT or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            expected = "a positive integer" if low == 1 else f"an integer >= {low}"
            raise ConfigError(f"{key}: got {value!r}; expected {_or_null(key, expected)}")
    for key in POSITIVE_INT_LISTS:
        values = _get(cfg, key)
        if values is _ABSENT or values is None:
            continue
        if not (OmegaConf.is_list(values) or isinstance(values, list | tuple)):
            raise ConfigError(f"{key}: got {values!r}; expected a list of positive integers")
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
        if bad:
            raise ConfigError(f"{key}: got {bad[0]!r} in {list(values)}; expected positive integers")
    for name in ("generator", "discriminator"):
        betas = _get(cfg, f"optim.{name}.betas")
        if betas is _ABSENT or betas is None:
            continue
        if len(betas) != 2 or not all(0.0 <= check_number(f"optim.{name}.betas", b) < 1.0 for b in betas):
            raise ConfigError(f"optim.{name}.betas: got {list(betas)}; expected two values in [0, 1)")


def _check_seed(cfg: DictConfig) -> None:
    """``seed`` must be one numpy can take: Lightning's ``seed_everything`` fails with a traceback above 2^32-1
    (older versions used 0 instead, so seeds 2^32 and 0 gave the same run)."""
    seed = cfg.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed: got {seed}; expected an integer from 0 to {MAX_SEED} (2^32-1)")


# What the module logs (module.py: _log_train, on_validation_epoch_end): what a checkpoint callback can monitor.
MONITORABLE = ("val/psnr", "val/ssim", "val/l1", "val/l2", "train/loss_rec_epoch")


def _check_trainer(cfg: DictConfig) -> None:
    """Values Lightning would only refuse with a traceback, some after a whole epoch (its integer counts are
    checked with the others in ``_check_ranges``)."""
    for key in ("trainer.limit_train_batches", "trainer.limit_val_batches"):
        value = _get(cfg, key)
        if value is _ABSENT or value is None:
            continue
        ok = not isinstance(value, bool) and (
            (isinstance(value, int) and value >= 0) or (isinstance(value, float) and 0.0 <= value <= 1.0)
        )
        if not ok:
            raise ConfigError(f"{key}: got {value!r}; expected a batch count >= 0 or a fraction in [0, 1]")
    precision = _get(cfg, "trainer.precision")
    if precision is not _ABSENT and not is_precision(precision):
        raise ConfigError(
            f"trainer.precision: got {precision!r}; expected {AUTO_PRECISION} (bf16-mixed where the device has "
            "native bf16, else 32-true), 32-true, bf16-mixed, 16-mixed or another Lightning precision"
        )
    max_time = _get(cfg, "trainer.max_time")
    if max_time not in (_ABSENT, None):
        try:  # Lightning's own parser, run here: its refusal came after the run folder was written
            Timer(duration=OmegaConf.to_container(max_time) if OmegaConf.is_config(max_time) else max_time)
        except (MisconfigurationException, ValueError, TypeError):
            raise ConfigError(
                f"trainer.max_time: got {max_time!r}; expected DD:HH:MM:SS (00:01:30:00 is 1 h 30), a mapping "
                "such as {hours: 1, minutes: 30}, or null"
            ) from None
    monitor = _get(cfg, "callbacks.model_checkpoint.monitor")
    if monitor not in (_ABSENT, None) and monitor not in MONITORABLE:
        raise ConfigError(
            f"callbacks.model_checkpoint.monitor: got {monitor!r}; expected null or one of {', '.join(MONITORABLE)}"
        )


def _check_sizes(cfg: DictConfig) -> None:
    size = _get(cfg, "data.input_size")
    if size is _ABSENT:
        return
    other = _get(cfg, "masks.image_size")  # the encoder's size against the masks': the module's own check
    if other not in (_ABSENT, None) and other != size:
        raise ConfigError(f"masks.image_size: got {other}; expected data.input_size ({size})")
    short = _get(cfg, "data.short_side")
    if short is not _ABSENT and short < size:
        raise ConfigError(f"data.short_side: got {short}; expected >= data.input_size ({size})")
    n, batch = _get(cfg, "data.samples_per_epoch"), _get(cfg, "data.batch_size")
    if _ABSENT not in (n, batch) and n < batch:
        raise ConfigError(f"data.samples_per_epoch: got {n}; expected >= data.batch_size ({batch})")


def _check_ckpt_path(cfg: DictConfig) -> None:
    path = cfg.get("ckpt_path")
    if path is None or path == "last" or "://" in str(path):
        return
    if path in ("best", "hpc"):
        raise ConfigError(
            f"ckpt_path: got {path!r}; a new trainer has no {path} checkpoint to resume from; expected a "
            "checkpoint file, or 'last' to resume the run in hydra.run.dir"
        )
    if not Path(str(path)).expanduser().is_file():
        raise ConfigError(
            f"ckpt_path: {path} is not a file; expected a checkpoint file, or 'last' to resume the run in "
            "hydra.run.dir"
        )


def _check_init_from(cfg: DictConfig) -> None:
    path = cfg.get("init_from")
    # a bare name may be a shipped model's (freeform, center), looked up when the weights are read
    if (
        path is not None
        and not Path(str(path)).expanduser().is_file()
        and ("/" in str(path) or "." in str(path))
    ):
        raise ConfigError(
            f"init_from: {path} is not a file; expected a checkpoint written by ctx_inpaint.train, a .safetensors "
            "export or a shipped model's name, whose weights the new run starts from"
        )


def _check_data_paths(cfg: DictConfig) -> None:
    """Folder and Paris sources: the folders exist and hold images (a listing, nothing is decoded)."""
    data = cfg.get("data")
    if data is None or _get(cfg, "data.source") in (_ABSENT, "embedded", "embedded_wide"):
        return
    resolve_files(
        data.source,
        data.get("root"),
        data.get("val_root"),
        data.get("val_fraction", 0.1),
        data.get("split_seed", 0),
    )


# ---- dry build -------------------------------------------------------------------------------------------------
def _one_per_channel(batch: int, layer: str) -> str:
    return (
        f"data.batch_size: got {batch}; the BatchNorm layer {layer} would see one value per channel in training; "
        "expected a batch size >= 2"
    )


def _dry_build(cfg: DictConfig) -> None:
    """Build masks and module on the meta device and run one training batch through them."""
    if cfg.get("model") is None or cfg.get("masks") is None or _get(cfg, "data.input_size") is _ABSENT:
        return
    size = int(cfg.data.input_size)
    batch = _get(cfg, "data.batch_size")
    batch = int(batch) if isinstance(batch, int) else 2
    try:
        with torch.device("meta"):
            masks = instantiate(cfg.masks)
            module = build_module(cfg, masks)
    except InstantiationException as err:
        cause = err.__cause__ or err
        if isinstance(cause, NotImplementedError):
            return  # something that cannot run on the meta device: training will tell
        raise ConfigError(instantiation_message(err, "model")) from None
    except (ValueError, TypeError, RuntimeError) as err:
        raise ConfigError(keyed(str(err), "model")) from None
    except NotImplementedError:
        return
    single_values: list[str] = []

    def watch(name: str) -> Callable[[torch.nn.Module, tuple], None]:
        def hook(mod: torch.nn.Module, inputs: tuple) -> None:
            x = inputs[0]
            if x.shape[0] * x[0, 0].numel() == 1:
                single_values.append(name)

        return hook

    handles = [
        m.register_forward_pre_hook(watch(name))
        for name, m in module.named_modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    try:
        with torch.no_grad():
            x = torch.zeros(batch, 3, size, size, device="meta")
            pred = module.generator(x, torch.zeros(batch, 1, size, size, device="meta"))
            if module.discriminator is not None:
                module.discriminator(pred)
    except NotImplementedError:
        return
    except (RuntimeError, ValueError) as err:
        if single_values:
            raise ConfigError(_one_per_channel(batch, single_values[0])) from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"data.input_size: {size} is not an input size this model can take "
            f"(encoder {cfg.model.encoder._target_.rsplit('.', 1)[-1]}): {first}"
        ) from None
    finally:
        for h in handles:
            h.remove()
    if single_values:
        raise ConfigError(_one_per_channel(batch, single_values[0]))
    out = masks.output_size
    if tuple(pred.shape[1:]) != (3, out, out):
        raise ConfigError(
            f"model.decoder: predicts {tuple(pred.shape[1:])} but the mask needs (3, {out}, {out}) "
            f"for data.input_size={size}"
        )


# ---- masks drawn for real --------------------------------------------------------------------------------------
MASK_SAMPLES = 8  # seeded: milliseconds for a workable generator, seconds for one that fails


def _check_mask_sampling(cfg: DictConfig) -> None:
    """Draw a few masks on the CPU. A generator that can never satisfy its settings (a free-form coverage range
    its strokes and blobs cannot land in, a random-region fraction no window has) raises only when training asks
    for a mask, in a data-loader worker, after the run's records were written; no constructor can tell."""
    if cfg.get("masks") is None or _get(cfg, "data.input_size") is _ABSENT:
        return
    try:
        masks = instantiate(cfg.masks)
    except InstantiationException as err:
        raise ConfigError(instantiation_message(err, "masks")) from None
    if isinstance(masks, RandomRegion):
        size = round(masks.noise_size * masks.scale)
        if size < masks.image_size:
            raise ConfigError(
                f"masks.noise_size: {masks.noise_size} x masks.scale {masks.scale:g} makes a {size}px pattern, "
                f"smaller than the image; expected noise_size * scale >= data.input_size ({masks.image_size})"
            )
    generator = torch.Generator().manual_seed(0)
    try:
        for _ in range(MASK_SAMPLES):
            masks.sample(generator)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(_mask_failure(masks, err)) from None


def _mask_failure(masks: object, err: Exception) -> str:
    """One line naming the settings a mask generator could not satisfy."""
    if isinstance(masks, FreeForm):
        return (
            f"masks.min_coverage: got {masks.min_coverage:g} with masks.max_coverage {masks.max_coverage:g}; "
            f"the free-form strokes and blobs cannot land a coverage in that range at {masks.image_size} px "
            "(no mask drawn); expected a wider or higher range, or smaller shapes (masks.min_width, "
            "masks.min_blob, masks.max_segment)"
        )
    if isinstance(masks, RandomRegion):
        return (
            f"masks.min_fraction: got {masks.min_fraction:g} with masks.max_fraction {masks.max_fraction:g}; no "
            f"{masks.image_size}x{masks.image_size} window of the random-region pattern (masks.density "
            f"{masks.density:g}) hides a fraction strictly between them; expected a range nearer masks.density"
        )
    return keyed(str(err), "masks")
