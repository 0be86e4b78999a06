"""Plain ``nn.Module`` building blocks: no Lightning or Hydra in here."""

from ctx_inpaint.models.bottlenecks import ChannelwiseFC, DenseBottleneck, NoBottleneck
from ctx_inpaint.models.decoders import Decoder
from ctx_inpaint.models.discriminator import Discriminator
from ctx_inpaint.models.encoders import AlexNetEncoder, PaperEncoder
from ctx_inpaint.models.generator import Generator

__all__ = [
    "AlexNetEncoder",
    "ChannelwiseFC",
    "Decoder",
    "DenseBottleneck",
    "Discriminator",
    "Generator",
    "NoBottleneck",
    "PaperEncoder",
]
