"""Building models from config: one builder of the generator and of the training module, used by training and by
loading alike.

The generator is assembled from its parts (encoder, bottleneck and decoder factories), the masks and the model's
flags by :func:`assemble_generator` only: the training module and a checkpoint's rebuild (``config.checkpoint``)
both call it. The training module is built by :func:`build_module` from a composed config and by
:func:`module_from_stored` from the plain config a checkpoint carries; both instantiate the config's
``_target_`` (``ctx_inpaint.training.module.ContextEncoderModule`` in ``conf/model/paper.yaml``), so this package
never imports ``ctx_inpaint.training``. The Trainer's ``precision: auto`` is resolved for the hardware by
:func:`with_resolved_precision`, for training and the bench alike (Lightning knows no ``auto``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from torch import nn

from ctx_inpaint.common.machine import resolve_precision
from ctx_inpaint.errors import ConfigError
from ctx_inpaint.masks.generators import MaskGenerator
from ctx_inpaint.models.generator import Generator

# Module arguments older checkpoints may carry that the module no longer takes.
LEGACY_KEYS = ("reuse_d_forward",)


def model_config(cfg: DictConfig) -> dict[str, Any]:
    """What rebuilds the networks without Hydra: stored in every checkpoint."""
    return {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "masks": OmegaConf.to_container(cfg.masks, resolve=True),
        "input_size": int(cfg.data.input_size),
        "name": str(cfg.name),
        # How validation drew its fixed crops: `evaluate` repeats them by default.
        "val": {
            "source": str(cfg.data.source),
            "short_side": int(cfg.data.short_side),
            "crops_per_image": int(cfg.data.val_crops_per_image),
            "seed": int(cfg.data.val_seed),
        },
    }


def assemble_generator(
    encoder: nn.Module,
    bottleneck: Callable[..., nn.Module],
    decoder: Callable[..., nn.Module],
    masks: MaskGenerator,
    mask_channel: bool = False,
    residual: bool = False,
    skips: bool = False,
) -> Generator:
    """The generator for ``masks``: it takes their image size and predicts their output region."""
    if encoder.input_size != masks.image_size:
        raise ConfigError(
            f"model.encoder.input_size: {encoder.input_size} differs from the data/mask size {masks.image_size}"
        )
    return Generator(
        encoder,
        bottleneck,
        decoder,
        output_size=masks.output_size,
        mask_channel=mask_channel,
        residual=residual,
        skips=skips,
    )


def build_module(cfg: DictConfig, masks: MaskGenerator) -> pl.LightningModule:
    """The LightningModule from ``cfg.model`` and ``cfg.optim``, as training, the benchmark and the config
    check's dry build all build it."""
    return _module(
        cfg.model,
        masks,
        model_config(cfg),
        optimizer_g=instantiate(cfg.optim.generator),
        optimizer_d=instantiate(cfg.optim.discriminator) if cfg.model.discriminator is not None else None,
        scheduler=instantiate(cfg.optim.scheduler) if cfg.optim.scheduler is not None else None,
        g_lr_mult=cfg.optim.g_lr_mult,
    )


def module_from_stored(
    config: Mapping[str, Any],
    target: str,
    optimizer_g: Callable[..., torch.optim.Optimizer] | None = None,
    optimizer_d: Callable[..., torch.optim.Optimizer] | None = None,
    **kwargs: Any,
) -> pl.LightningModule:
    """The module ``target`` from a checkpoint's stored config, whose ``_target_``s the caller has checked
    (``config.checkpoint.check_targets``): instantiating a config calls them. Checkpoints carry no optimizer
    config, so ``optimizer_g`` / ``optimizer_d`` default to the paper's Adam (lr 2e-4, beta1 0.5); ``kwargs``
    override module arguments."""
    masks = instantiate(dict(config["masks"]))
    model = {k: v for k, v in dict(config["model"]).items() if k not in LEGACY_KEYS}
    adam = partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999))
    return _module(
        {**model, "_target_": target},
        masks,
        dict(config),
        optimizer_g=optimizer_g or adam,
        optimizer_d=(optimizer_d or adam) if model.get("discriminator") is not None else None,
        **kwargs,
    )


def _module(
    node: DictConfig | Mapping[str, Any], masks: MaskGenerator, stored: dict[str, Any], **arguments: Any
) -> pl.LightningModule:
    module = instantiate(node, masks=masks, **arguments)
    # Set after construction: passed through instantiate, its `_target_`s would be built.
    module.model_config = stored
    return module


def with_resolved_precision(cfg: DictConfig, accelerator: str | None = None) -> tuple[DictConfig, str]:
    """``cfg`` with ``trainer.precision: auto`` replaced by what the device computes well
    (``common.machine.resolve_precision`` for ``accelerator``, by default ``trainer.accelerator``), and the line that
    says so, e.g. ``precision: auto -> 32-true (no native bf16 on cpu)``. An explicit precision, or a config without
    one, comes back as it is (the same object) with an empty line. ``cfg`` itself is never changed."""
    requested = OmegaConf.select(cfg, "trainer.precision", default=None)
    if accelerator is None:
        accelerator = OmegaConf.select(cfg, "trainer.accelerator", default="auto")
    precision, reason = resolve_precision(requested, accelerator)
    if precision == requested:
        return cfg, ""
    resolved = copy.deepcopy(cfg)
    with read_write(resolved), open_dict(resolved):
        resolved.trainer.precision = precision
    return resolved, f"precision: {requested} -> {precision} ({reason})"
