from functools import partial

import pytest
import torch

from ctx_inpaint.models import (
    AlexNetEncoder,
    ChannelwiseFC,
    Decoder,
    DenseBottleneck,
    Discriminator,
    Generator,
    NoBottleneck,
    PaperEncoder,
)

ENCODERS = {
    "paper": lambda: PaperEncoder(input_size=32, width=8),
    "alexnet": lambda: AlexNetEncoder(input_size=32, resize_to=99, widths=(8, 8, 8, 8, 8)),
}
BOTTLENECKS = {
    "dense": partial(DenseBottleneck, units=16),
    "channelwise": partial(ChannelwiseFC),
    "none": partial(NoBottleneck),
}


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("bottleneck", BOTTLENECKS)
@pytest.mark.parametrize("output_size", [16, 32])  # centre target vs whole image (random masks)
@pytest.mark.parametrize("extra_layer", [False, True])
def test_generator_shapes(encoder: str, bottleneck: str, output_size: int, extra_layer: bool) -> None:
    gen = Generator(
        ENCODERS[encoder](),
        BOTTLENECKS[bottleneck],
        partial(Decoder, width=8, extra_layer=extra_layer),
        output_size,
    )
    out = gen(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 3, output_size, output_size)
    assert out.abs().max() <= 1.0  # tanh output


def test_paper_encoder_matches_original_layout() -> None:
    enc = PaperEncoder(input_size=128, width=64)
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (3, 64),
        (64, 64),
        (64, 128),
        (128, 256),
        (256, 512),
    ]
    assert all(c.bias is None and c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in enc.modules()) == 4  # all but the first conv
    assert enc(torch.zeros(1, 3, 128, 128)).shape == (1, 512, 4, 4)


def test_alexnet_encoder_gives_256x6x6_for_227() -> None:
    enc = AlexNetEncoder(input_size=128)
    assert enc.out_spatial == 6 and enc.out_channels == 256
    assert enc(torch.zeros(1, 3, 128, 128)).shape == (1, 256, 6, 6)


def test_dense_bottleneck_is_released_code_size() -> None:
    gen = Generator(
        PaperEncoder(128, 64), partial(DenseBottleneck, units=4000), partial(Decoder, width=64), 64
    )
    conv = gen.bottleneck.net[0]
    assert conv.weight.numel() == 512 * 4 * 4 * 4000  # 32.8M: a dense layer from 8192 inputs
    first_up = gen.decoder.net[0]
    assert isinstance(first_up, torch.nn.ConvTranspose2d) and first_up.kernel_size == (4, 4)
    assert first_up.stride == (1, 1) and first_up.out_channels == 512


@pytest.mark.parametrize("m,n", [(256, 6), (5, 4)])
def test_channelwise_fc_parameter_count(m: int, n: int) -> None:
    layer = ChannelwiseFC(in_channels=m, in_spatial=n)
    assert layer.channelwise.weight.numel() == m * n**4
    assert layer.mix.weight.numel() == m * m  # the 1x1 conv across channels
    assert sum(p.numel() for p in layer.parameters()) == m * n**4 + m * m


def test_channelwise_fc_keeps_channels_apart_before_mixing() -> None:
    layer = ChannelwiseFC(in_channels=4, in_spatial=3)
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = layer.per_channel(x)
    out[:, 2].sum().backward()
    grad_per_channel = x.grad.abs().sum(dim=(0, 2, 3))
    assert grad_per_channel[2] > 0
    assert torch.all(grad_per_channel[[0, 1, 3]] == 0)
    # Every output position of a channel sees every input position of that channel (fully connected).
    x2 = torch.randn(1, 4, 3, 3, requires_grad=True)
    layer.per_channel(x2)[0, 1, 0, 0].backward()
    assert torch.all(x2.grad[0, 1] != 0)


def test_discriminator_outputs_one_logit_per_image() -> None:
    for size in (16, 64, 128):
        d = Discriminator(input_size=size, width=8)
        assert d(torch.randn(3, 3, size, size)).shape == (3,)
    convs = [m for m in Discriminator(64, 64).modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]


def test_dcgan_init_statistics() -> None:
    gen = Generator(PaperEncoder(128, 64), partial(NoBottleneck), partial(Decoder, width=64), 64)
    conv = [m for m in gen.encoder.modules() if isinstance(m, torch.nn.Conv2d)][2]
    bn = [m for m in gen.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)][1]
    assert abs(conv.weight.std().item() - 0.02) < 0.002 and abs(conv.weight.mean().item()) < 0.002
    assert abs(bn.weight.mean().item() - 1.0) < 0.01 and torch.all(bn.bias == 0)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="input_size"):
        PaperEncoder(input_size=100)
    with pytest.raises(ValueError, match="decoder"):
        Decoder(in_channels=8, in_spatial=6, out_size=5)
