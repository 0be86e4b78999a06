"""Layers between encoder and decoder. Built with the encoder's output shape (``in_channels``, ``in_spatial``)."""

import torch
from torch import nn

from ctx_inpaint.errors import check_range
from ctx_inpaint.models.dense import DenseConv2d


class DenseBottleneck(nn.Module):
    """The released code's bottleneck: a conv over the whole feature map (a dense layer) to ``units`` x 1 x 1.

    ``matmul`` computes that conv as one GEMM (same parameters, several times faster on CPU; see models/dense.py).
    """

    def __init__(self, in_channels: int, in_spatial: int, units: int = 4000, matmul: bool = True) -> None:
        super().__init__()
        self.net = nn.Sequential(
            DenseConv2d(in_channels, units, in_spatial, matmul=matmul),
            nn.BatchNorm2d(units),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.out_channels = units
        self.out_spatial = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ChannelwiseFC(nn.Module):
    """The paper's channel-wise fully connected layer (Fig. 9).

    Each of the m channels gets its own dense n^2 x n^2 map (a grouped conv with kernel n and m groups: m*n^4
    weights, no mixing between channels); a 1x1 conv then mixes channels.
    """

    def __init__(self, in_channels: int, in_spatial: int, dropout: float = 0.0) -> None:
        super().__init__()
        m, n = in_channels, in_spatial
        self.channelwise = nn.Conv2d(m, m * n * n, n, groups=m, bias=False)
        self.mix = nn.Conv2d(m, m, 1, bias=False)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        check_range("model.bottleneck.dropout", dropout, 0.0, 1.0, hi_inclusive=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_channels = m
        self.out_spatial = n

    def per_channel(self, x: torch.Tensor) -> torch.Tensor:
        """The channel-wise dense step alone: (B, m, n, n) -> (B, m, n, n), channels kept apart."""
        b, m, n, _ = x.shape
        return self.channelwise(x).view(b, m, n, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.mix(self.dropout(self.per_channel(x))))


class NoBottleneck(nn.Module):
    """The encoder's features go straight to the decoder."""

    def __init__(self, in_channels: int, in_spatial: int) -> None:
        super().__init__()
        self.out_channels = in_channels
        self.out_spatial = in_spatial

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
