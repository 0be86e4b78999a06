"""The same GAN step as ``ContextEncoderModule.training_step``, written as a bare PyTorch loop (no Lightning).

``plain_step(..., toggle=True)`` mirrors the module exactly (Lightning's ``toggled_optimizer`` freezes the other
network's parameters, so the generator step computes no discriminator weight gradients). ``toggle=False`` is the
straightforward port (the PyTorch DCGAN example's pattern): both networks keep ``requires_grad`` and the
discriminator's gradients are cleared before its own step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ctx_inpaint.errors import ConfigError
from ctx_inpaint.losses import adversarial
from ctx_inpaint.masks import Box, crop_box
from ctx_inpaint.module import ContextEncoderModule


@dataclass
class GanParts:
    """What one training step touches, taken from a built module."""

    generator: nn.Module
    discriminator: nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    target_box: Box | None
    lambda_rec: float
    # ``ContextEncoderModule.reconstruction`` (plain PyTorch): L2/L1 and the SSIM term, as training computes it.
    reconstruction: Callable[..., torch.Tensor]
    reuse_d_forward: bool = False


def parts_from_module(module: ContextEncoderModule) -> GanParts:
    """The module's own networks and the optimizers its ``configure_optimizers`` builds."""
    opts = module.configure_optimizers()
    if isinstance(opts, tuple):  # (optimizers, schedulers)
        opts = opts[0]
    opt_d = opts[1] if len(opts) > 1 else None
    return GanParts(
        module.generator,
        module.discriminator,
        opts[0],
        opt_d,
        module.masks.target_box,
        module.lambda_rec,
        module.reconstruction,
        module.reuse_d_forward,
    )


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


@contextlib.contextmanager
def _frozen(module: nn.Module | None, enabled: bool) -> Iterator[None]:
    """``requires_grad=False`` on ``module``'s parameters for the block (what ``toggled_optimizer`` does)."""
    if module is None or not enabled:
        yield
        return
    saved = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


def plain_step(
    parts: GanParts, batch: dict[str, torch.Tensor], toggle: bool = True
) -> dict[str, torch.Tensor]:
    """One D step (when there is a discriminator) then one G step, as the module does; returns the losses."""
    g, d = parts.generator, parts.discriminator
    target = crop_box(batch["image"], parts.target_box)
    pred = g(batch["masked"])
    if d is not None and parts.reuse_d_forward:
        return _shared_d_forward_step(parts, batch, target, pred)
    losses: dict[str, torch.Tensor] = {}
    if d is not None:
        with _frozen(g, toggle):
            if not toggle:
                parts.opt_d.zero_grad(set_to_none=True)
            loss_d = adversarial(d(target), True) + adversarial(d(pred.detach()), False)
            loss_d.backward()
            parts.opt_d.step()
            parts.opt_d.zero_grad(set_to_none=True)
            losses["loss_d"] = loss_d.detach()
    with _frozen(d, toggle):
        loss_rec = parts.reconstruction(pred, target, batch, {})
        loss = parts.lambda_rec * loss_rec
        if d is not None:
            loss = loss + (1.0 - parts.lambda_rec) * adversarial(d(pred), True)
        loss.backward()
        parts.opt_g.step()
        parts.opt_g.zero_grad(set_to_none=True)
    losses.update(loss_rec=loss_rec.detach(), loss_g=loss.detach())
    return losses


def _shared_d_forward_step(
    parts: GanParts, batch: dict[str, torch.Tensor], target: torch.Tensor, pred: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``model.reuse_d_forward``: one D forward on the prediction for both losses, G's gradient taken first."""
    g, d = parts.generator, parts.discriminator
    d_fake = d(pred)
    loss_d = adversarial(d(target), True) + adversarial(d_fake, False)
    loss_rec = parts.reconstruction(pred, target, batch, {})
    loss = parts.lambda_rec * loss_rec + (1.0 - parts.lambda_rec) * adversarial(d_fake, True)
    torch.autograd.backward(loss, inputs=list(g.parameters()), retain_graph=True)
    torch.autograd.backward(loss_d, inputs=list(d.parameters()))
    for opt in (parts.opt_d, parts.opt_g):
        opt.step()
        opt.zero_grad(set_to_none=True)
    return {"loss_d": loss_d.detach(), "loss_rec": loss_rec.detach(), "loss_g": loss.detach()}
