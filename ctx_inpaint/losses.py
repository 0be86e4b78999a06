"""Reconstruction and adversarial losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_reconstruction(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, kind: str = "l2"
) -> torch.Tensor:
    """Weighted L2 (or L1) over the predicted region, normalised by the weighted pixel count.

    ``weight`` is (B, 1, h, w): 0 where a pixel does not count, 1 on the hole, ``overlap_weight`` on the ring.
    """
    diff = pred - target
    if kind == "l2":
        err = diff.square()
    elif kind == "l1":
        err = diff.abs()
    else:
        raise ValueError(f"model.rec_loss: unknown reconstruction loss {kind!r}; expected l1 or l2")
    w = weight.to(err.dtype)
    return (err * w).sum() / (w.sum() * err.shape[1]).clamp_min(1e-8)


def adversarial(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Binary cross-entropy on discriminator logits against an all-real or all-fake target."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())
