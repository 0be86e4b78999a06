"""Loading a trained generator for inference: a checkpoint's generator in eval mode with the masks it was trained
with. The file itself is read by :mod:`ctx_inpaint.config.checkpoint`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ctx_inpaint.config.checkpoint import (
    CONFIG_KEY,
    CheckpointError,
    build_generator,
    check_finite,
    generator_state,
    load_checkpoint,
    training_meta,
)
from ctx_inpaint.errors import one_line
from ctx_inpaint.masks.generators import MaskGenerator
from ctx_inpaint.models.generator import Generator


@dataclass
class LoadedModel:
    """A generator in eval mode plus what is needed to feed it."""

    generator: Generator
    masks: MaskGenerator
    input_size: int
    name: str
    config: dict[str, Any]
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # epoch, global_step, train_seconds (when recorded)

    @property
    def kind(self) -> str:
        """``center``: predicts a centre square (CenterMask); ``whole``: predicts the whole input (random masks)."""
        return "center" if self.masks.target_box is not None else "whole"


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Read a checkpoint safely and return its generator (eval mode, on ``device``) with its masks."""
    path = Path(path).expanduser()
    ckpt = load_checkpoint(path)
    config = dict(ckpt[CONFIG_KEY])
    generator, masks = build_generator(config, source=str(path))
    weights = generator_state(ckpt["state_dict"])
    check_finite(weights, path)
    try:
        generator.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        detail = one_line(err)[:300]
        raise CheckpointError(
            f"{path}: weights do not match the model config it carries ({detail})"
        ) from None
    generator.to(device).eval()
    return LoadedModel(
        generator=generator,
        masks=masks,
        input_size=int(config["input_size"]),
        name=str(config.get("name", "model")),
        config=config,
        path=path,
        meta=training_meta(ckpt),
    )
