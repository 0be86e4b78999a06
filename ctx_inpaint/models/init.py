"""DCGAN initialisation used by the original Lua code."""

from torch import nn


def dcgan_init(module: nn.Module) -> None:
    """Conv weights N(0, 0.02), BatchNorm weight N(1, 0.02) and bias 0; apply with ``model.apply``."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
