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


@pytest.mark.parametrize(
    "kwargs,widths,conv1_out",
    [
        ({}, [96, 256, 384, 384, 256], 55),  # the paper's (original) AlexNet: 227 -> 55 after conv1
        (
            {"widths": (64, 192, 384, 256, 256), "conv1_padding": 2},
            [64, 192, 384, 256, 256],
            56,
        ),  # torchvision
    ],
)
def test_alexnet_widths_default_to_the_original_network(kwargs: dict, widths: list, conv1_out: int) -> None:
    enc = AlexNetEncoder(input_size=128, **kwargs)
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == widths
    assert enc.net[0](torch.zeros(1, 3, 227, 227)).shape[-1] == conv1_out
    assert enc.out_spatial == 6


def test_alexnet_config_default_and_named_variant() -> None:
    from pathlib import Path

    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[1] / "conf" / "model" / "encoder"
    assert list(OmegaConf.load(conf / "alexnet.yaml").widths) == [96, 256, 384, 384, 256]
    variant = OmegaConf.load(conf / "alexnet_torchvision.yaml")
    assert list(variant.widths) == [64, 192, 384, 256, 256] and variant.conv1_padding == 2


# The released networks (train.lua, train_random.lua; nef = ngf = ndf = 64, nBottleneck = 4000), layer by layer:
# (kind, in, out, kernel, stride) for every convolution, and the BatchNorm widths. Lua's convs carry biases that
# the code zeroes before every step, so they are not parameters here.
_ENCODER = [
    ("c", 3, 64, 4, 2),
    ("c", 64, 64, 4, 2),
    ("c", 64, 128, 4, 2),
    ("c", 128, 256, 4, 2),
    ("c", 256, 512, 4, 2),
]
_BOTTLENECK = [("c", 512, 4000, 4, 1)]
_DECODER_64 = [
    ("t", 4000, 512, 4, 1),
    ("t", 512, 256, 4, 2),
    ("t", 256, 128, 4, 2),
    ("t", 128, 64, 4, 2),
    ("t", 64, 3, 4, 2),
]
_DECODER_128 = _DECODER_64[:-1] + [("t", 64, 64, 4, 2), ("t", 64, 3, 4, 2)]
RELEASED_G = {
    64: (_ENCODER + _BOTTLENECK + _DECODER_64, [64, 128, 256, 512, 4000, 512, 256, 128, 64]),
    128: (_ENCODER + _BOTTLENECK + _DECODER_128, [64, 128, 256, 512, 4000, 512, 256, 128, 64, 64]),
}
_D_64 = [
    ("c", 3, 64, 4, 2),
    ("c", 64, 128, 4, 2),
    ("c", 128, 256, 4, 2),
    ("c", 256, 512, 4, 2),
    ("c", 512, 1, 4, 1),
]
_D_128 = (
    _D_64[:1] + [("c", 64, 64, 4, 2), ("c", 64, 128, 4, 2)] + _D_64[2:]
)  # one more 64-wide layer at 32x32
RELEASED_D = {64: (_D_64, [128, 256, 512]), 128: (_D_128, [64, 128, 256, 512])}


def _layers(net: torch.nn.Module) -> tuple[list, list]:
    convs = [
        (
            "t" if isinstance(m, torch.nn.ConvTranspose2d) else "c",
            m.in_channels,
            m.out_channels,
            m.kernel_size[0],
            m.stride[0],
        )
        for m in net.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
    ]
    assert all(
        m.bias is None for m in net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
    )
    return convs, [m.num_features for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def _released_params(convs: list, bns: list) -> int:
    return sum(i * o * k * k for _, i, o, k, _ in convs) + sum(2 * n for n in bns)


@pytest.mark.parametrize("output_size", [64, 128])  # centre model, whole-image model
def test_generator_and_discriminator_match_the_released_networks(output_size: int) -> None:
    gen = Generator(
        PaperEncoder(128, 64), partial(DenseBottleneck, units=4000), partial(Decoder, width=64), output_size
    )
    convs, bns = _layers(gen)
    assert (convs, bns) == RELEASED_G[output_size]
    assert sum(p.numel() for p in gen.parameters()) == _released_params(*RELEASED_G[output_size])
    assert gen(torch.zeros(2, 3, 128, 128)).shape == (2, 3, output_size, output_size)
    d = Discriminator(input_size=output_size, width=64)
    convs, bns = _layers(d)
    assert (convs, bns) == RELEASED_D[output_size]
    assert sum(p.numel() for p in d.parameters()) == _released_params(*RELEASED_D[output_size])
    assert d(torch.zeros(2, 3, output_size, output_size)).shape == (2,)


def test_released_parameter_counts_by_hand() -> None:
    """The tables above against the totals worked out once by hand from the Lua layer definitions."""
    assert _released_params(*RELEASED_G[64]) == 71_124_544
    assert _released_params(*RELEASED_G[128]) == 71_190_208
    assert _released_params(*RELEASED_D[64]) == 2_765_568
    assert _released_params(*RELEASED_D[128]) == 2_831_232


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
