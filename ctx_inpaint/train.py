"""Training entry point: ``python -m ctx_inpaint.train +experiment=l2_0999 [key=value ...]``.

Hydra finds the configs in ``conf/`` at the repository root, next to this package (``config_path`` is relative
to this file), so the project is used from a checkout or an editable install.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from ctx_inpaint.config_check import check_config, group_options
from ctx_inpaint.loggers import fill_wandb_resume
from ctx_inpaint.masks import MaskGenerator
from ctx_inpaint.module import ContextEncoderModule
from ctx_inpaint.resume import fit_resumable, report_user_errors
from ctx_inpaint.wandb_mode import ensure_wandb_mode

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")

if not OmegaConf.has_resolver("pid"):
    # Cached: resolved once in the launching process, so parallel sweep jobs (joblib workers) share its sweep dir.
    OmegaConf.register_new_resolver("pid", lambda: os.getpid(), use_cache=True)


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


def _fill_wandb_group(cfg: DictConfig) -> None:
    wandb_cfg = cfg.get("logger", {}).get("wandb") if cfg.get("logger") else None
    if wandb_cfg is None or wandb_cfg.get("group") is not None:
        return
    group = "single"
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        group = Path(HydraConfig.get().sweep.dir).name
    with open_dict(cfg):
        cfg.logger.wandb.group = group


def train(cfg: DictConfig) -> dict[str, float]:
    """Train and validate; returns the final callback metrics (used by tests and sweepers)."""
    check_config(cfg)  # refuse bad keys/values before anything is built or written
    pl.seed_everything(cfg.seed, workers=True)
    _fill_wandb_group(cfg)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    fill_wandb_resume(cfg, output_dir)
    (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    masks: MaskGenerator = instantiate(cfg.masks)
    datamodule = instantiate(cfg.data, masks=masks)
    module = build_module(cfg, masks)

    logger_cfgs = cfg.get("logger") or {}
    if "wandb" in logger_cfgs:
        ensure_wandb_mode()
    loggers = [instantiate(c) for c in logger_cfgs.values() if c is not None]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers, callbacks=callbacks)
    try:
        fit_resumable(trainer, module, datamodule, cfg.get("ckpt_path"))
    finally:
        if "wandb" in logger_cfgs:
            import wandb

            wandb.finish()  # never let multirun jobs merge into one W&B run
    return {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    with report_user_errors():
        metrics = train(cfg)
    return metrics.get("val/psnr")


def check_experiment_args(argv: list[str]) -> str | None:
    """The one-line error for an ``experiment=`` argument naming no file in conf/experiment/, else None.

    Checked before Hydra starts: Hydra's own answer is a 25-line listing of its search path."""
    other_configs = ("hydra.searchpath", "--config-path", "--config-dir", "-cp", "-cd")
    if any(arg.lstrip("+~").startswith(other_configs) for arg in argv):
        return None  # experiments may come from elsewhere: Hydra decides
    options = group_options("experiment")
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if key != "experiment" or not sep or "(" in value:  # sweep functions such as choice(...) are Hydra's
            continue
        unknown = [name for name in value.split(",") if name not in options]
        if unknown:
            return f"experiment: got {', '.join(unknown)}; expected one of {', '.join(options)}"
    return None


if __name__ == "__main__":
    if (problem := check_experiment_args(sys.argv[1:])) is not None:
        print(f"ctx-inpaint: error: {problem}", file=sys.stderr)
        sys.exit(1)
    main()
