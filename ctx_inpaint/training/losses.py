"""Reconstruction and adversarial losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ctx_inpaint.errors import ConfigError
from ctx_inpaint.evaluation.metrics import hole_ssim

REC_LOSSES = ("l1", "l2")


def check_rec_loss(kind: str) -> str:
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
    diff = pred - target
    err = diff.square() if check_rec_loss(kind) == "l2" else diff.abs()
    return (err * weight.to(err.dtype)).mean()


def adversarial(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Binary cross-entropy on discriminator logits against an all-real or all-fake target."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def hole_ssim_loss(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 - SSIM`` over the hidden pixels of a composited output, as ``metrics.HiddenPixelMetrics`` scores it.

    L2 alone trains a fill with the right mean and no contrast, and a seam at the hole's edge; SSIM's
    windows straddle the edge, so this term pays for structure that continues the context. ``output`` and
    ``target`` are (B, 3, h, w) in [0, 1] (the hole plus a margin of at least 5 px of context), ``mask`` is
    (B, 1, h, w), 1 = hidden.
    """
    return 1.0 - hole_ssim(output.float(), target.float(), mask).mean()
