"""The configs and what the code builds from them: where ``conf/`` is, its groups' options, the module.

Every CLI and test finds the configs here. In a checkout or an editable install they are ``conf/`` at the
repository root; a wheel carries the same files as ``ctx_inpaint/conf`` (pyproject maps them in at build time).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from ctx_inpaint.masks import MaskGenerator
from ctx_inpaint.module import ContextEncoderModule

_PACKAGE = Path(__file__).resolve().parent
CONFIG_DIR = str(_PACKAGE / "conf" if (_PACKAGE / "conf").is_dir() else _PACKAGE.parent / "conf")

if not OmegaConf.has_resolver("pid"):
    # Cached: resolved once in the launching process, so parallel sweep jobs (joblib workers) share its sweep dir.
    OmegaConf.register_new_resolver("pid", lambda: os.getpid(), use_cache=True)


def group_options(key: str) -> list[str]:
    """The config files a key's group offers (``model.encoder`` -> conf/model/encoder/*.yaml)."""
    folder = Path(CONFIG_DIR).joinpath(*key.split("."))
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


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


def build_module(cfg: DictConfig, masks: MaskGenerator) -> ContextEncoderModule:
    """The LightningModule from ``cfg.model`` and ``cfg.optim``."""
    module = instantiate(
        cfg.model,
        masks=masks,
        optimizer_g=instantiate(cfg.optim.generator),
        optimizer_d=instantiate(cfg.optim.discriminator) if cfg.model.discriminator is not None else None,
        scheduler=instantiate(cfg.optim.scheduler) if cfg.optim.scheduler is not None else None,
        g_lr_mult=cfg.optim.g_lr_mult,
    )
    # Set after construction: passed through instantiate, its `_target_`s would be built.
    module.model_config = model_config(cfg)
    return module


def compose_config(overrides: list[str] = (), output_dir: str | Path | None = None) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides`` as the CLI would (without starting a run); with
    ``output_dir``, ``paths.output_dir`` points there (the CLI sets it from ``hydra.run.dir``)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="train", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg
