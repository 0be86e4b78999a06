"""The module's GAN step (``training.objective.gan_step``) in a bare PyTorch loop, no Lightning: what the benchmark times against.

``plain_step(..., toggle=True)`` mirrors the module exactly (Lightning's ``toggled_optimizer`` freezes the other
network's parameters, so the generator step computes no discriminator weight gradients). ``toggle=False`` is the
straightforward port (the PyTorch DCGAN example's pattern): both networks keep ``requires_grad``.
"""

from __future__ import annotations

import contextlib

import torch

from ctx_inpaint.errors import ConfigError
from ctx_inpaint.training.module import ContextEncoderModule
from ctx_inpaint.training.objective import GanParts, freeze_the_other, gan_step


def parts_from_module(module: ContextEncoderModule) -> GanParts:
    """The module's own networks and the optimizers its ``configure_optimizers`` builds."""
    opts = module.configure_optimizers()
    if isinstance(opts, tuple):  # (optimizers, schedulers)
        opts = opts[0]
    return module.gan_parts(opts[0], opts[1] if len(opts) > 1 else None)


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context Lightning's precision plugin wraps the training step in."""
    precision = str(precision)
    if precision in ("32", "32-true"):
        return contextlib.nullcontext()
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ConfigError(
        f"trainer.precision: the bench's plain loop supports 32-true and bf16-mixed, got {precision!r}"
    )


def plain_step(
    parts: GanParts, batch: dict[str, torch.Tensor], toggle: bool = True
) -> dict[str, torch.Tensor]:
    """One D step (when there is a discriminator) then one G step, as the module does; returns the losses."""
    return gan_step(parts, batch, only=freeze_the_other(parts) if toggle else None)
