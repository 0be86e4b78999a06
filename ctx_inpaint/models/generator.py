"""Encoder -> bottleneck -> decoder."""

from collections.abc import Callable

import torch
from torch import nn

from ctx_inpaint.errors import ConfigError
from ctx_inpaint.models.init import dcgan_init

# The residual generator's last layer starts at this fraction of DCGAN's init (N(0, 0.02)).
RESIDUAL_INIT_SCALE = 0.05


class Generator(nn.Module):
    """The context encoder. Bottleneck and decoder are factories so their shapes follow the encoder's.

    Two options go beyond the paper, for free-form holes: ``mask_channel`` feeds the hole mask as a 4th input
    channel (with a classical fill in the hole the network cannot tell it from the photo otherwise), and
    ``residual`` makes the network predict a correction of its input (the filled image) inside the hole instead
    of the image: visible pixels pass through, and the last layer starts 20x smaller than DCGAN's init, so an
    untrained model returns about the fill it was given (not exactly: with zero weights no layer before the last
    gets a gradient, and a first run stalled at the fill's PSNR). ``skips`` (whole-image models with the paper
    encoder) joins every encoder feature map to the decoder's layer of the same size and the input to a last 3x3
    conv, a U-Net: a correction decoded from a 4x4 code alone cannot follow a thin stroke to the pixel.
    """

    def __init__(
        self,
        encoder: nn.Module,
        bottleneck: Callable[..., nn.Module],
        decoder: Callable[..., nn.Module],
        output_size: int,
        mask_channel: bool = False,
        residual: bool = False,
        skips: bool = False,
    ) -> None:
        super().__init__()
        expected = 4 if mask_channel else 3
        got = getattr(encoder, "in_channels", 3)
        if got != expected:
            raise ConfigError(
                f"model.encoder.in_channels: got {got}; expected {expected} with model.mask_channel={bool(mask_channel)}"
            )
        if skips and (not hasattr(encoder, "skip_channels") or encoder.input_size != output_size):
            raise ConfigError(
                "model.skips: needs the paper encoder and a whole-image model (masks with output_size == "
                f"input_size); got {type(encoder).__name__}, {encoder.input_size} -> {output_size}"
            )
        self.encoder = encoder
        self.bottleneck = bottleneck(in_channels=encoder.out_channels, in_spatial=encoder.out_spatial)
        skip_args = {"skip_channels": encoder.skip_channels, "image_channels": expected} if skips else {}
        self.decoder = decoder(
            in_channels=self.bottleneck.out_channels,
            in_spatial=self.bottleneck.out_spatial,
            out_size=output_size,
            **skip_args,
        )
        self.input_size = encoder.input_size
        self.output_size = output_size
        self.mask_channel, self.residual, self.skips = bool(mask_channel), bool(residual), bool(skips)
        self.apply(dcgan_init)
        if self.residual:
            last = [m for m in self.decoder.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)][-1]
            with torch.no_grad():
                last.weight.mul_(RESIDUAL_INIT_SCALE)

    def forward(self, masked: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``masked``: the filled input (B, 3, N, N) in [-1, 1]; ``mask`` (B, 1, N, N), 1 = hidden, is needed
        when the model takes it as an input channel (and ignored otherwise)."""
        if (self.mask_channel or self.residual) and mask is None:
            raise ValueError("generator: this model takes the hole mask as an input; pass mask")
        x = torch.cat([masked, mask.to(masked.dtype)], dim=1) if self.mask_channel else masked
        if self.skips:
            features = self.encoder.features(x)
            out = self.decoder(self.bottleneck(features[self.encoder.out_spatial]), features, x)
        else:
            out = self.decoder(self.bottleneck(self.encoder(x)))
        if self.residual:
            offset = (self.input_size - self.output_size) // 2
            region = (..., slice(offset, offset + self.output_size), slice(offset, offset + self.output_size))
            out = (masked[region] + out * mask[region].to(out.dtype)).clamp(-1, 1)
        return out
