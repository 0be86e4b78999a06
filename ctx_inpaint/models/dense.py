"""Convolutions that are really dense layers, computed as one matrix product.

The released networks join encoder and decoder with a convolution whose kernel covers its whole input (a 4x4 map
to 4000 x 1 x 1) and an up-convolution from 1 x 1 to 4 x 4. oneDNN runs these as convolutions at a few GFLOP/s on
CPU; the same arithmetic as a GEMM runs near the machine's matmul peak. The parameters, their shapes and the
state_dict keys stay those of ``nn.Conv2d`` / ``nn.ConvTranspose2d``: checkpoints do not change, and
``matmul=False`` gives the plain convolution (the benchmark's baseline uses it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DenseConv2d(nn.Conv2d):
    """A bias-free ``Conv2d`` with no padding or stride whose kernel equals its input size: (B, C, k, k) -> (B, O, 1, 1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, matmul: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, bias=False)
        self.matmul = matmul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        if not self.matmul or tuple(x.shape[-2:]) != k:
            return super().forward(x)
        # reshape (not view): a channels_last input is gathered into the (C, kh, kw) order of the weight.
        y = F.linear(x.reshape(x.shape[0], -1), self.weight.reshape(self.out_channels, -1))
        return y.view(x.shape[0], self.out_channels, 1, 1)


class DenseConvTranspose2d(nn.ConvTranspose2d):
    """A bias-free stride-1 ``ConvTranspose2d`` from a 1 x 1 map: (B, C, 1, 1) -> (B, O, k, k)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, matmul: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, 1, 0, bias=False)
        self.matmul = matmul

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if not self.matmul or output_size is not None or tuple(x.shape[-2:]) != (1, 1):
            return super().forward(x, output_size)
        kh, kw = self.kernel_size
        y = x.reshape(x.shape[0], -1) @ self.weight.reshape(self.in_channels, -1)  # (B, O * kh * kw)
        return y.view(x.shape[0], self.out_channels, kh, kw)


def set_matmul(model: nn.Module, enabled: bool) -> int:
    """Switch every dense layer of ``model`` between GEMM and convolution; returns how many were switched."""
    layers = [m for m in model.modules() if isinstance(m, DenseConv2d | DenseConvTranspose2d)]
    for m in layers:
        m.matmul = enabled
    return len(layers)
