"""The GAN objective and its step, written once: the module's ``training_step``, the benchmark's plain PyTorch loop
and the precision check all call these.

A step is one discriminator update (when there is a discriminator) on the real region and the detached
prediction, then one generator update on ``lambda_rec * L_rec + (1 - lambda_rec) * L_adv`` with a fresh
discriminator forward on the prediction. What differs between callers is only how a loss is backpropagated
(``LightningModule.manual_backward`` or ``Tensor.backward``) and how the other network is kept out of a step
(``toggled_optimizer`` or freezing its parameters).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ctx_inpaint.masks.generators import Box, crop_box
from ctx_inpaint.training.losses import adversarial

Logs = dict[str, torch.Tensor]
# (pred, target, batch, logs) -> L_rec; the module's ``reconstruction`` (L2/L1 and the optional SSIM term).
Reconstruction = Callable[[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], Logs], torch.Tensor]


def discriminator_loss(d: nn.Module, target: torch.Tensor, pred: torch.Tensor) -> tuple[torch.Tensor, Logs]:
    """BCE of D on the real region (label 1) and the detached prediction (label 0)."""
    d_real, d_fake = d(target), d(pred.detach())
    loss = adversarial(d_real, True) + adversarial(d_fake, False)
    return loss, {
        "loss_d": loss.detach(),
        "d_real": torch.sigmoid(d_real.detach().float()).mean(),
        "d_fake": torch.sigmoid(d_fake.detach().float()).mean(),
    }


def generator_loss(
    d: nn.Module | None,
    pred: torch.Tensor,
    target: torch.Tensor,
    batch: dict[str, torch.Tensor],
    lambda_rec: float,
    reconstruction: Reconstruction,
) -> tuple[torch.Tensor, Logs]:
    """``lambda_rec * L_rec + (1 - lambda_rec) * L_adv`` (no adversarial term without a discriminator)."""
    logs: Logs = {}
    loss_rec = reconstruction(pred, target, batch, logs)
    loss = lambda_rec * loss_rec
    if d is not None:
        loss_adv = adversarial(d(pred), True)
        loss = loss + (1.0 - lambda_rec) * loss_adv
        logs["loss_adv"] = loss_adv.detach()
    logs.update(loss_rec=loss_rec.detach(), loss_g=loss.detach())
    return loss, logs


@dataclass
class GanParts:
    """What one training step touches."""

    generator: nn.Module
    discriminator: nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    target_box: Box | None
    lambda_rec: float
    reconstruction: Reconstruction


def _plain_backward(loss: torch.Tensor) -> None:
    loss.backward()


def gan_step(
    parts: GanParts,
    batch: dict[str, torch.Tensor],
    backward: Callable[[torch.Tensor], None] = _plain_backward,
    only: Callable[[torch.optim.Optimizer], contextlib.AbstractContextManager] | None = None,
) -> Logs:
    """One D step then one G step; returns the detached losses. ``only(opt)`` keeps every parameter but
    ``opt``'s out of the block (default: nothing is frozen, as in the PyTorch DCGAN example)."""
    only = only or (lambda opt: contextlib.nullcontext())
    g, d = parts.generator, parts.discriminator
    target = crop_box(batch["image"], parts.target_box)
    pred = g(batch["masked"], batch["mask"])
    logs: Logs = {}
    if d is not None:
        with only(parts.opt_d):
            parts.opt_d.zero_grad(set_to_none=True)  # the previous G step may have left D gradients
            loss_d, logs = discriminator_loss(d, target, pred)
            backward(loss_d)
            parts.opt_d.step()
            parts.opt_d.zero_grad(set_to_none=True)
    with only(parts.opt_g):
        loss_g, g_logs = generator_loss(d, pred, target, batch, parts.lambda_rec, parts.reconstruction)
        backward(loss_g)
        parts.opt_g.step()
        parts.opt_g.zero_grad(set_to_none=True)
    return logs | g_logs


@contextlib.contextmanager
def frozen(module: nn.Module | None) -> Iterator[None]:
    """``requires_grad=False`` on ``module``'s parameters for the block (what ``toggled_optimizer`` does)."""
    if module is None:
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


def freeze_the_other(parts: GanParts) -> Callable[[torch.optim.Optimizer], contextlib.AbstractContextManager]:
    """``only`` for a plain loop: the D step freezes G and the G step freezes D, as Lightning's toggling does."""
    return lambda opt: frozen(parts.generator if opt is parts.opt_d else parts.discriminator)
