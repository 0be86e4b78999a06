"""Tiny checkpoints trained once per test session by the real training code (shared by the inpaint,
evaluate and checkpoint tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import open_dict

from ctx_inpaint.training.run import train
from tests.conftest import TINY, compose_config

# A StepLR scheduler too, so the checkpoint holds every kind of state our training writes.
STEP_LR = "optim.scheduler={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:1,gamma:0.5}"
KINDS = {
    "center": ["+experiment=l2_0999", STEP_LR],
    "region": ["+experiment=l2_1", "masks=random_region"],
    # The shipped free-form recipe (Navier-Stokes fill, mask channel, residual, channel-wise FC, GAN) at tiny widths.
    "freeform": [
        "+experiment=campus_freeform",
        "model.encoder.width=8",
        "model.decoder.width=8",
        "model.discriminator.width=8",
    ],
    # The shipped centre recipe (ship_center: the free-form method on the centre hole, whole image predicted),
    # from scratch: its init_from names a checkpoint only `make weights-train` writes.
    "center_unet": [
        "+experiment=ship_center",
        "init_from=null",
        "data.source=embedded",
        "model.encoder.width=8",
        "model.decoder.width=8",
        "model.discriminator.width=8",
    ],
}
_CACHE: dict[str, Path] = {}


def tiny_checkpoint(kind: str, factory: pytest.TempPathFactory) -> Path:
    """last.ckpt of a one-epoch tiny run (centre masks + GAN + scheduler, random regions + L2, or free-form)."""
    if kind not in _CACHE:
        out = factory.mktemp(f"tiny_{kind}")
        tiny = list(TINY)  # centre-mask sizes
        cfg = compose_config(KINDS[kind] + tiny, out / "run")
        if cfg.model.get("discriminator") is not None:
            with open_dict(cfg):
                cfg.model.discriminator.width = 8
        train(cfg)
        _CACHE[kind] = out / "run" / "checkpoints" / "last.ckpt"
    return _CACHE[kind]
