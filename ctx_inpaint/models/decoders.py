"""Up-convolutional decoder: BN + ReLU after every layer but the last, tanh output."""

import math
from collections.abc import Mapping

import torch
from torch import nn

from ctx_inpaint.models.dense import DenseConvTranspose2d


class Decoder(nn.Module):
    """Decodes a (C, s, s) block to a (3, out_size, out_size) image.

    If ``s`` is not ``out_size / 2^k`` (k maximal with the start >= 4), a stride-1 up-conv first grows it to the nearest such size (for the
    dense bottleneck this is the original 4x4 up-conv from 1x1 to 4x4; for AlexNet 6x6 -> 8x8). Then stride-2
    4x4 up-convs double it. Channels start at ``width * max_mult`` on the first (smallest) map and halve with
    every doubling down to ``width``, then stay there, as in the released networks (width 64: 512@4, 256@8,
    128@16, 64@32, 3@64 for the centre; 512@4, 256@8, 128@16, 64@32, 64@64, 3@128 for the whole image).

    Beyond the paper (``Generator(skips=True)``): ``skip_channels`` maps a side length to the channels of an encoder
    feature map that is concatenated to the input of the stride-2 up-conv working at that size, and
    ``image_channels`` adds a full-resolution 3x3 conv whose input is the last up-conv's ``width`` maps and the
    generator's input (a U-Net: a bottleneck of 4x4 cannot place a correction to the pixel; skips can).
    """

    def __init__(
        self,
        in_channels: int,
        in_spatial: int,
        out_size: int = 64,
        width: int = 64,
        max_mult: int = 8,
        extra_layer: bool = False,
        out_channels: int = 3,
        matmul: bool = True,
        skip_channels: Mapping[int, int] | None = None,
        image_channels: int = 0,
    ) -> None:
        super().__init__()
        floor = max(in_spatial, 4)  # doubling starts at 4x4 at the least, as in the original
        n_up = int(math.floor(math.log2(out_size / floor))) if out_size >= floor else -1
        start = out_size // 2**n_up if n_up >= 0 else 0
        if n_up < 0 or start * 2**n_up != out_size or start < in_spatial:
            raise ValueError(
                f"decoder: cannot grow {in_spatial}x{in_spatial} features to {out_size}x{out_size} "
                "(the output size must be a power-of-two multiple of a size >= the feature size)"
            )

        def ch(level: int) -> int:  # channels of the map `level` doublings after the first one
            return width * max(max_mult // 2**level, 1)

        skip_channels = dict(skip_channels or {})
        if image_channels and extra_layer:
            # Both would be the same last 3x3 conv: an ablation toggling it would compare identical networks.
            raise ValueError(
                "model.decoder.extra_layer: already implied by model.skips (its last 3x3 conv); set false"
            )
        full_res = extra_layer or image_channels > 0
        layers: list[nn.Module] = []
        # Layer index -> side length of the encoder map joined to its input (0: the generator's input); static,
        # since under ONNX tracing a shape is a tensor.
        joins: dict[int, int] = {}
        c = in_channels
        if start != in_spatial:
            k = start - in_spatial + 1
            # From 1x1 this up-conv is a dense layer: ``matmul`` runs it as one GEMM (models/dense.py).
            layers += [DenseConvTranspose2d(c, ch(0), k, matmul=matmul)]
            layers += [nn.BatchNorm2d(ch(0)), nn.ReLU(inplace=True)]
            c = ch(0)
        for i in range(n_up):
            last = i == n_up - 1
            nxt = out_channels if last and not full_res else ch(i + 1)
            side = start * 2**i
            if side in skip_channels:
                joins[len(layers)] = side
            layers.append(nn.ConvTranspose2d(c + skip_channels.get(side, 0), nxt, 4, 2, 1, bias=False))
            if not (last and not full_res):
                layers += [nn.BatchNorm2d(nxt), nn.ReLU(inplace=True)]
            c = nxt
        if full_res:
            # The seed report's "additional layer": one more 3x3 conv block at full resolution.
            if image_channels:
                joins[len(layers)] = 0
            layers.append(nn.Conv2d(c + image_channels, out_channels, 3, 1, 1, bias=False))
        layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)
        self.out_size = out_size
        self.joins = joins

    def forward(
        self,
        x: torch.Tensor,
        skips: Mapping[int, torch.Tensor] | None = None,
        image: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``skips`` (side length -> encoder features) and ``image`` are required when built with
        ``skip_channels`` / ``image_channels``."""
        if not self.joins:
            return self.net(x)
        for i, layer in enumerate(self.net):
            if i in self.joins:
                size = self.joins[i]
                x = torch.cat([x, skips[size] if size else image], dim=1)
            x = layer(x)
        return x
