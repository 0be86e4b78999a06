"""Encoders map a masked image to a feature block; each exposes ``out_channels`` and ``out_spatial``."""

import math

import torch
import torch.nn.functional as F
from torch import nn


def _is_power_of_two(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


class PaperEncoder(nn.Module):
    """The released code's encoder: 4x4 stride-2 convs down to 4x4 (five of them for a 128 input).

    Channels follow the original (nef, nef, 2nef, 4nef, 8nef, ...); BatchNorm on all but the first conv,
    LeakyReLU 0.2 and no biases (the original zeroes them every step).
    """

    def __init__(self, input_size: int = 128, width: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        if input_size < 8 or not _is_power_of_two(input_size):
            raise ValueError(f"model.encoder.input_size: expected a power of two >= 8, got {input_size}")
        n_layers = int(math.log2(input_size // 4))
        channels = [in_channels, width] + [width * 2**i for i in range(n_layers - 1)]
        layers: list[nn.Module] = []
        for i in range(n_layers):
            layers.append(nn.Conv2d(channels[i], channels[i + 1], 4, 2, 1, bias=False))
            if i > 0:
                layers.append(nn.BatchNorm2d(channels[i + 1]))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.net = nn.Sequential(*layers)
        self.input_size = input_size
        self.in_channels = in_channels
        self.out_channels = channels[-1]
        self.out_spatial = 4
        # Channels of the feature map at each side length (input_size / 2, ..., 4): a U-Net decoder's skips.
        self.skip_channels = {input_size // 2 ** (i + 1): channels[i + 1] for i in range(n_layers)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, out_channels, 4, 4)

    def features(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Every layer's activation by side length; the smallest (4) is ``forward``'s output."""
        sizes = iter(self.skip_channels)  # static sizes: under ONNX tracing a shape is a tensor, not a key
        out: dict[int, torch.Tensor] = {}
        for layer in self.net:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                out[next(sizes)] = x
        return out


class AlexNetEncoder(nn.Module):
    """AlexNet conv1..pool5 trained from scratch: 227x227 -> 256x6x6 at the default widths.

    The defaults are the original AlexNet the paper used (96/256/384/384/256 channels, conv1 unpadded: 227 -> 55);
    ``widths=(64, 192, 384, 256, 256), conv1_padding=2`` is torchvision's later variant
    (``model/encoder=alexnet_torchvision``). Both drop the original's LRN and two-GPU channel groups. The data
    pipeline serves the same 128 crops to every encoder so that ablations stay comparable; this encoder
    resizes its input to ``resize_to`` (227, AlexNet's size) before conv1.
    """

    def __init__(
        self,
        input_size: int = 128,
        resize_to: int = 227,
        widths: tuple[int, int, int, int, int] = (96, 256, 384, 384, 256),
        in_channels: int = 3,
        conv1_padding: int = 0,
    ) -> None:
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"model.encoder.widths: expected 5 conv widths, got {list(widths)}")
        c1, c2, c3, c4, c5 = widths
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, c1, 11, 4, conv1_padding),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(c1, c2, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(c2, c3, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        )
        self.input_size = input_size
        self.in_channels = in_channels
        self.resize_to = resize_to
        self.out_channels = c5
        with torch.no_grad():
            self.out_spatial = self.net(torch.zeros(1, in_channels, resize_to, resize_to)).shape[-1]
        if self.out_spatial < 1:
            raise ValueError(f"model.encoder.resize_to: {resize_to} is too small for AlexNet")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.resize_to:
            x = F.interpolate(x, size=(self.resize_to, self.resize_to), mode="bilinear", align_corners=False)
        return self.net(x)  # (B, 256, 6, 6) for 227
