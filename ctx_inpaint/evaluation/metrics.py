"""Quality metrics on the hidden pixels of the composited output, values in [0, 1].

Convention (stated in the README): the prediction is pasted into the hole only, then L1 (mean |x - y|),
L2 (mean (x - y)^2) and PSNR (10 log10(1 / L2), per image, then averaged) are computed over the hidden pixels,
and SSIM is the mean of the SSIM map (Gaussian 11x11, data_range 1) over the hidden pixels.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanMetric, MeanSquaredError
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.image import PeakSignalNoiseRatio


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped."""
    return ((x + 1) / 2).clamp(0, 1)


def hole_ssim(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM: the SSIM map (Gaussian 11x11, data_range 1) averaged over the hidden pixels.

    ``output`` and ``target`` are (B, 3, H, W) in [0, 1], ``mask`` (B, 1, H, W), 1 = hidden. Differentiable
    (``losses.hole_ssim_loss`` trains on it).
    """
    ssim_map = structural_similarity_index_measure(
        output, target, data_range=1.0, reduction="none", return_full_image=True
    )[1]
    m = mask.to(ssim_map.dtype).expand_as(ssim_map)
    return (ssim_map * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp_min(1)


class HiddenPixelMetrics(nn.Module):
    """Accumulates L1, L2, PSNR and SSIM over batches; DDP-safe (torchmetrics syncs the states)."""

    def __init__(self) -> None:
        super().__init__()
        self.l1 = MeanAbsoluteError()
        self.l2 = MeanSquaredError()
        # Per-image PSNR: each image is fed as one row of its hidden pixels and reduced along dim 1.
        self.psnr = PeakSignalNoiseRatio(data_range=1.0, dim=1, reduction="elementwise_mean")
        self.ssim = MeanMetric()

    @torch.no_grad()
    def update(
        self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``output`` and ``target`` are (B, 3, H, W) in [0, 1]; ``mask`` is (B, 1, H, W), 1 = hidden.

        Returns this batch's per-image values (B,) of each metric, so one object gives an evaluation's
        per-image rows and its pooled summary."""
        output, target = output.float(), target.float()
        hidden = mask.expand_as(output).bool()
        per_image: dict[str, list[torch.Tensor]] = {"l1": [], "l2": [], "psnr": []}
        for i in range(output.shape[0]):
            o, t = output[i][hidden[i]], target[i][hidden[i]]
            self.l1.update(o, t)
            self.l2.update(o, t)
            self.psnr.update(o.unsqueeze(0), t.unsqueeze(0))
            l2 = (o - t).square().mean()
            per_image["l1"].append((o - t).abs().mean())
            per_image["l2"].append(l2)
            per_image["psnr"].append(-10 * torch.log10(l2))
        ssim = hole_ssim(output, target, mask)
        self.ssim.update(ssim)
        return {k: torch.stack(v) for k, v in per_image.items()} | {"ssim": ssim}

    def compute(self) -> dict[str, torch.Tensor]:
        return {
            "l1": self.l1.compute(),
            "l2": self.l2.compute(),
            "psnr": self.psnr.compute(),
            "ssim": self.ssim.compute(),
        }

    def items(self) -> dict[str, nn.Module]:
        """The torchmetrics objects by name, for ``LightningModule.log``."""
        return {"l1": self.l1, "l2": self.l2, "psnr": self.psnr, "ssim": self.ssim}

    def reset(self) -> None:
        for metric in self.items().values():
            metric.reset()
