"""Encoder -> bottleneck -> decoder."""

from collections.abc import Callable

import torch
from torch import nn

from ctx_inpaint.models.init import dcgan_init


class Generator(nn.Module):
    """The context encoder. Bottleneck and decoder are factories so their shapes follow the encoder's."""

    def __init__(
        self,
        encoder: nn.Module,
        bottleneck: Callable[..., nn.Module],
        decoder: Callable[..., nn.Module],
        output_size: int,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.bottleneck = bottleneck(in_channels=encoder.out_channels, in_spatial=encoder.out_spatial)
        self.decoder = decoder(
            in_channels=self.bottleneck.out_channels,
            in_spatial=self.bottleneck.out_spatial,
            out_size=output_size,
        )
        self.input_size = encoder.input_size
        self.output_size = output_size
        self.apply(dcgan_init)

    def forward(self, masked: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.bottleneck(self.encoder(masked)))
