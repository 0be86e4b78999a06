"""The training objective, written once: the masked reconstruction loss (L2 or L1, with the overlap ring's weights),
the optional SSIM term over the hole, the adversarial terms, and the one GAN step that combines them.

The module's ``training_step``, the benchmark's plain PyTorch loop and the precision check all call these, so a
change to the loss reaches every one of them. A step is one discriminator update (when there is a discriminator)
on the real region and the detached prediction, then one generator update on
``lambda_rec * L_rec + (1 - lambda_rec) * L_adv`` with a fresh discriminator forward on the prediction. What differs
between callers is only how a loss is backpropagated (``LightningModule.manual_backward`` or ``Tensor.backward``)
and how the other network is kept out of a step (``toggled_optimizer`` or freezing its parameters).

Under ``bf16-mixed`` the networks run in bf16, the losses do not: every loss term is a sum over a batch of pixels or
logits, where bf16's 8-bit mantissa would round away the small terms, so each is computed in float32 with autocast
off (``float32_region``) on float32 copies of its inputs. In float32 training those casts are no-ops.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ctx_inpaint.errors import ConfigError
from ctx_inpaint.evaluation.metrics import hole_ssim
from ctx_inpaint.masks.generators import Box, composite, crop_box

REC_LOSSES = ("l1", "l2")
# Half the 11x11 SSIM window: context pixels within it count towards the SSIM of the hole's edge pixels.
SSIM_MARGIN = 5

Logs = dict[str, torch.Tensor]
# (pred, target, batch, logs) -> L_rec; the module's ``reconstruction`` (L2/L1 and the optional SSIM term).
Reconstruction = Callable[[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], Logs], torch.Tensor]


def float32_region(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Autocast off on ``x``'s device for the block, so what it computes stays float32 (autocast would run its
    convolutions in bf16, the SSIM window among them); a no-op where there is no autocast (the ``meta`` device)."""
    if torch.amp.is_autocast_available(x.device.type):
        return torch.autocast(x.device.type, enabled=False)
    return contextlib.nullcontext()


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float32 when it is bf16 or fp16 (float32 and float64 tensors come back as they are)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


# ---- reconstruction ------------------------------------------------------------------------------------------
def check_rec_loss(kind: str) -> str:
    """``kind`` if it names a reconstruction loss; a one-line ``ConfigError`` otherwise."""
    if kind not in REC_LOSSES:
        raise ConfigError(f"model.rec_loss: got {kind!r}; expected one of {', '.join(REC_LOSSES)}")
    return kind


def masked_reconstruction(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, kind: str = "l2"
) -> torch.Tensor:
    """Weighted L2 (or L1) over the predicted region, as the released code computes it: ``mean(w * err)``
    over every element (B x 3 x h x w), not divided by the weights' sum.

    ``train.lua`` takes ``nn.MSECriterion`` (a mean over all elements) and multiplies its gradient by the weight
    matrix, so ``lambda_rec`` balances L2 and adversarial terms exactly as ``wtl2`` does there. ``weight`` is
    (B, 1, h, w), from the mask generator's ``loss_weight``: 1 on the hole, the visible-pixel weight elsewhere.
    """
    check_rec_loss(kind)
    # float32: a mean over B x 3 x h x w weighted errors (module docstring); autocast off, inputs cast.
    with float32_region(pred):
        diff = at_least_float32(pred) - at_least_float32(target)
        err = diff.square() if kind == "l2" else diff.abs()
        return (err * weight.to(err.dtype)).mean()


def hole_ssim_loss(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 - SSIM`` over the hidden pixels of a composited output, as ``metrics.HiddenPixelMetrics`` scores it.

    L2 alone trains a fill with the right mean and no contrast, and a seam at the hole's edge; SSIM's
    windows straddle the edge, so this term pays for structure that continues the context. ``output`` and
    ``target`` are (B, 3, h, w) in [0, 1] (the hole plus a margin of at least 5 px of context), ``mask`` is
    (B, 1, h, w), 1 = hidden.
    """
    # float32 with autocast off: SSIM's Gaussian window is a convolution, which autocast would run in bf16, and
    # the map is averaged over every hidden pixel.
    with float32_region(output):
        return 1.0 - hole_ssim(output.float(), target.float(), mask.float()).mean()


def grow_box(box: Box | None, margin: int, size: torch.Size) -> Box | None:
    """``box`` grown by ``margin`` on each side, clipped to the image (``None`` stays the whole image)."""
    if box is None:
        return None
    y0, y1, x0, x1 = box
    return (max(y0 - margin, 0), min(y1 + margin, size[0]), max(x0 - margin, 0), min(x1 + margin, size[1]))


def reconstruction_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    batch: dict[str, torch.Tensor],
    logs: Logs,
    target_box: Box | None,
    rec_loss: str = "l2",
    ssim_weight: float = 0.0,
) -> torch.Tensor:
    """``L_rec``: the masked L2/L1, mixed with ``1 - SSIM`` of the composite when ``ssim_weight > 0``.

    ``pred`` is the generator's output over ``target_box`` in [-1, 1]; the SSIM term pastes it into the masked
    input and scores the hole plus the context its windows reach, not the whole image."""
    pred = pred.float()  # a bf16 generator output (bf16-mixed): every term below is float32
    loss = masked_reconstruction(pred, target, batch["weight"], rec_loss)
    if ssim_weight == 0.0:
        return loss
    box = grow_box(target_box, SSIM_MARGIN, batch["image"].shape[-2:])
    output = crop_box(composite(pred, batch["masked"].float(), batch["mask"], target_box), box)
    truth, mask = crop_box(batch["image"], box), crop_box(batch["mask"], box)
    loss_ssim = hole_ssim_loss((output + 1) / 2, (truth + 1) / 2, mask)
    logs.update(loss_l2_l1=loss.detach(), loss_ssim=loss_ssim.detach())
    return (1.0 - ssim_weight) * loss + ssim_weight * loss_ssim


# ---- adversarial -------------------------------------------------------------------------------------------
def adversarial(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Binary cross-entropy on discriminator logits against an all-real or all-fake target, in float32."""
    # float32 from the logits on, autocast off: log(1 + e^-x) of a bf16 logit near 0 loses the small losses a
    # confident discriminator makes, and the mean is over the batch's logits.
    with float32_region(logits):
        logits = logits.float()
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        return F.binary_cross_entropy_with_logits(logits, target)


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


# ---- the GAN step ------------------------------------------------------------------------------------------
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
