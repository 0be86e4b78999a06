"""DCGAN discriminator on the predicted region (centre patch or whole image)."""

import math

import torch
from torch import nn


class Discriminator(nn.Module):
    """4x4 stride-2 convs down to 4x4 (BN on all but the first, LeakyReLU 0.2), then a 4x4 conv to one logit.

    Channels end at ``width * max_mult`` on the 4x4 map and halve towards the input down to ``width``, as in the
    released networks (width 64: 64@32, 128@16, 256@8, 512@4 on the 64 centre; 64@64, 64@32, 128@16, 256@8,
    512@4 on the 128 whole image).

    Returns logits; the module trains it with ``BCEWithLogits`` (the stable form of sigmoid + BCE).
    """

    def __init__(
        self, input_size: int = 64, width: int = 64, max_mult: int = 8, in_channels: int = 3
    ) -> None:
        super().__init__()
        if input_size < 8 or input_size & (input_size - 1):
            raise ValueError(f"discriminator input size must be a power of two >= 8, got {input_size}")
        n_layers = int(math.log2(input_size // 4))
        layers: list[nn.Module] = []
        c = in_channels
        for i in range(n_layers):
            nxt = width * max(max_mult // 2 ** (n_layers - 1 - i), 1)
            layers.append(nn.Conv2d(c, nxt, 4, 2, 1, bias=False))
            if i > 0:
                layers.append(nn.BatchNorm2d(nxt))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c = nxt
        layers.append(nn.Conv2d(c, 1, 4, 1, 0, bias=False))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1).squeeze(1)  # (B,) logits
