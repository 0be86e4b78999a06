"""Free-form masks, the classical fill, the residual / mask-channel generator, named mask sets and paired stats."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctx_inpaint.errors import ConfigError, InputError
from ctx_inpaint.evaluation.stats import paired_bootstrap
from ctx_inpaint.masks.fills import classical_fill
from ctx_inpaint.masks.generators import FREEFORM_PRESETS, FreeForm, RandomRegion
from ctx_inpaint.masks.sets import MASK_SETS, area_bin, draw_masks, fingerprint, parse_mask_sets
from ctx_inpaint.models.bottlenecks import ChannelwiseFC, DenseBottleneck, NoBottleneck
from ctx_inpaint.models.decoders import Decoder
from ctx_inpaint.models.encoders import PaperEncoder
from ctx_inpaint.models.generator import Generator


@pytest.mark.parametrize("preset", [None, *FREEFORM_PRESETS])
def test_freeform_coverage_stays_in_bounds_and_is_seeded(preset: str | None) -> None:
    gen = FreeForm(64, **(FREEFORM_PRESETS[preset] if preset else {}))
    fractions = []
    for seed in range(25):
        a = gen.sample(torch.Generator().manual_seed(seed))
        assert torch.equal(a, gen.sample(torch.Generator().manual_seed(seed)))
        assert a.shape == (1, 64, 64) and set(a.unique().tolist()) <= {0.0, 1.0}
        fractions.append(a.mean().item())
    assert 0.1 <= min(fractions) and max(fractions) <= 0.4
    assert max(fractions) - min(fractions) > 0.1  # the target coverage really varies
    assert len({round(f, 6) for f in fractions}) == 25


def test_freeform_presets_differ_in_stroke_width() -> None:
    """Thin strokes leave far more hole boundary per hidden pixel than thick ones."""

    def boundary_per_pixel(mask: torch.Tensor) -> float:
        m = mask[0].bool()
        edge = m & ~(torch.nn.functional.max_pool2d((~m).float()[None], 3, 1, 1)[0] == 0)
        return edge.sum().item() / m.sum().item()

    ratios = {}
    for name, preset in FREEFORM_PRESETS.items():
        gen = FreeForm(128, **preset)
        ratios[name] = np.mean(
            [boundary_per_pixel(gen.sample(torch.Generator().manual_seed(s))) for s in range(8)]
        )
    assert ratios["thin"] > 1.5 * ratios["medium"] > 1.5 * ratios["thick"]


def test_freeform_mixes_in_the_centre_hole_at_its_share() -> None:
    """``center_probability`` (issue 27: one free-form model for the centre hole too): that share of the samples
    is the paper's inner 56x56 of 128 (CenterMask's hidden square), the rest strokes; at 0 the draws are exactly
    those of a generator without the option (the evaluation's mask sets keep their fingerprints)."""
    from ctx_inpaint.masks.generators import CenterMask

    centre = CenterMask(128).sample()
    assert centre.sum() == 56 * 56
    always = FreeForm(128, center_probability=1.0)
    assert all(torch.equal(always.sample(torch.Generator().manual_seed(s)), centre) for s in range(5))
    plain, off = FreeForm(128), FreeForm(128, center_probability=0.0)
    for seed in range(5):
        a = plain.sample(torch.Generator().manual_seed(seed))
        assert torch.equal(a, off.sample(torch.Generator().manual_seed(seed))) and not torch.equal(a, centre)
    mixed = FreeForm(128, center_probability=0.3)
    rng = torch.Generator().manual_seed(0)
    share = np.mean([torch.equal(mixed.sample(rng), centre) for _ in range(200)])
    assert 0.2 < share < 0.4  # seeded draws; 60 expected of 200
    with pytest.raises(
        ConfigError, match=r"^masks.center_probability: got 1.5; expected a value in \[0, 1\]$"
    ):
        FreeForm(128, center_probability=1.5)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"min_coverage": 0.5, "max_coverage": 0.4}, "masks.min_coverage"),
        ({"max_coverage": 1.5}, "masks.max_coverage"),
        ({"min_width": 0.1, "max_width": 0.05}, "masks.max_width"),
        ({"fill": "blur"}, "masks.fill"),
    ],
)
def test_freeform_refuses_bad_settings_naming_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        FreeForm(64, **kwargs)


@pytest.mark.parametrize("method", ["telea", "ns"])
def test_classical_fill_changes_hidden_pixels_only_and_beats_the_mean(method: str) -> None:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    image = torch.stack([xx, yy, (xx + yy) / 2]) * 0.8
    mask = torch.zeros(1, 32, 32)
    mask[:, 10:20, 12:22] = 1
    filled = classical_fill(image, mask, method)
    assert torch.equal(filled[:, mask[0] == 0], image[:, mask[0] == 0])
    err = (filled - image).abs()[:, mask[0] == 1].mean()
    visible_mean = image[:, mask[0] == 0].mean(dim=1, keepdim=True)
    mean_err = (image[:, mask[0] == 1] - visible_mean).abs().mean()
    assert err < 0.6 * mean_err  # a smooth ramp: diffusion follows it, a flat colour does not
    batch = classical_fill(image[None].repeat(2, 1, 1, 1), mask[None].repeat(2, 1, 1, 1), method)
    assert torch.equal(batch[0], filled)


def test_mask_generator_hide_uses_its_fill() -> None:
    image = torch.rand(3, 32, 32) * 2 - 1
    mask = FreeForm(32).sample(torch.Generator().manual_seed(0))
    mean = FreeForm(32).hide(image, mask)
    telea = FreeForm(32, fill="telea").hide(image, mask)
    hole = mask[0] == 1
    assert torch.equal(mean[:, ~hole], image[:, ~hole]) and torch.equal(telea[:, ~hole], image[:, ~hole])
    assert mean[:, hole].std(dim=1).max() < 1e-6  # one colour
    assert telea[:, hole].std(dim=1).min() > 1e-3  # a fill that varies


def _generator(mask_channel: bool, residual: bool, in_channels: int, skips: bool = False) -> Generator:
    return Generator(
        PaperEncoder(32, width=8, in_channels=in_channels),
        lambda **kw: ChannelwiseFC(**kw),
        lambda **kw: Decoder(**kw, width=8),
        output_size=32,
        mask_channel=mask_channel,
        residual=residual,
        skips=skips,
    )


def test_skip_generator_places_its_output_by_pixel() -> None:
    """With skips a change of one input pixel reaches the output near that pixel through the full-resolution
    path; the paper's generator has only its 4x4 code, so a change anywhere moves the whole output."""
    torch.manual_seed(0)
    g = _generator(mask_channel=True, residual=True, in_channels=4, skips=True).eval()
    plain = _generator(mask_channel=True, residual=True, in_channels=4).eval()
    assert sum(p.numel() for p in g.parameters()) > sum(p.numel() for p in plain.parameters())
    masked = torch.rand(1, 3, 32, 32) * 2 - 1
    mask = torch.ones(1, 1, 32, 32)  # all hidden: every output pixel is the network's
    out = g(masked, mask)
    assert out.shape == (1, 3, 32, 32)
    poked = masked.clone()
    poked[0, :, 16, 16] += 0.5
    diff = (g(poked, mask) - out).abs()[0].amax(0)
    assert diff[16, 16] > 0 and diff[16, 16] >= 5 * diff[:4, :4].max()  # local, not spread evenly
    # Every encoder map is joined once (side length -> layer), and the input (0) to the last 3x3 conv.
    assert sorted(g.decoder.joins.values()) == sorted([*g.encoder.skip_channels, 0])
    first = g.decoder.net[0]
    assert first.in_channels == 2 * g.encoder.out_channels  # the 4x4 code and the encoder's 4x4 map
    last = g.decoder.net[-2]
    assert isinstance(last, torch.nn.Conv2d) and last.in_channels == 8 + 4
    loss = g(masked, mask).square().mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.encoder.parameters())


@pytest.mark.parametrize("size", [8, 64])
@pytest.mark.parametrize("bottleneck", ["channelwise", "dense", "none"])
def test_skip_generator_fits_every_size_and_bottleneck(size: int, bottleneck: str) -> None:
    kinds = {
        "channelwise": ChannelwiseFC,
        "dense": lambda **kw: DenseBottleneck(**kw, units=16),
        "none": NoBottleneck,
    }
    g = Generator(
        PaperEncoder(size, width=4, in_channels=4),
        kinds[bottleneck],
        lambda **kw: Decoder(**kw, width=4),
        output_size=size,
        mask_channel=True,
        residual=True,
        skips=True,
    )
    masked, mask = torch.rand(2, 3, size, size) * 2 - 1, torch.ones(2, 1, size, size)
    g(masked, mask).sum().backward()
    assert sorted(g.decoder.joins.values()) == sorted([*g.encoder.skip_channels, 0])
    assert all(p.grad is not None for p in g.parameters())


def test_skips_with_extra_layer_are_refused() -> None:
    with pytest.raises(ValueError, match="model.decoder.extra_layer: already implied by model.skips"):
        Decoder(in_channels=8, in_spatial=4, out_size=16, width=4, extra_layer=True, image_channels=4)


def test_skips_refuse_a_centre_model() -> None:
    with pytest.raises(ConfigError, match="model.skips: needs the paper encoder and a whole-image model"):
        Generator(
            PaperEncoder(32, width=8),
            lambda **kw: ChannelwiseFC(**kw),
            lambda **kw: Decoder(**kw, width=8),
            output_size=16,
            skips=True,
        )


def test_residual_generator_corrects_the_hole_only_and_sees_the_mask() -> None:
    torch.manual_seed(0)
    g = _generator(mask_channel=True, residual=True, in_channels=4).eval()
    masked = torch.rand(2, 3, 32, 32) * 2 - 1
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:20, 8:20] = 1
    out = g(masked, mask)
    visible = mask.expand_as(out) == 0
    assert torch.equal(out[visible], masked[visible])  # visible pixels pass through
    assert 0 < (out - masked).abs().max() < 0.2  # small initial correction: about the fill
    other = mask.clone()
    other[:, :, 20:24, 20:24] = 1
    # The mask is an input: the same pixels with another mask give another prediction inside the common hole.
    assert (g(masked, other) - out)[:, :, 8:20, 8:20].abs().max() > 0
    with pytest.raises(ValueError, match="pass mask"):
        g(masked)
    loss = g(masked, mask).square().mean()
    loss.backward()
    first = g.encoder.net[0].weight.grad
    assert first is not None and first.abs().sum() > 0  # every layer learns from the first step


def test_generator_refuses_an_encoder_without_the_mask_channel() -> None:
    with pytest.raises(ConfigError, match="model.encoder.in_channels.*expected 4"):
        _generator(mask_channel=True, residual=False, in_channels=3)


def test_mask_sets_are_seeded_and_fingerprinted() -> None:
    a = draw_masks("freeform_thin", 32, 5, seed=7)
    b = draw_masks("freeform_thin", 32, 5, seed=7)
    c = draw_masks("freeform_thin", 32, 5, seed=8)
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)
    assert len(fingerprint(a)) == 16
    a[2][0, 0, 0] = 1 - a[2][0, 0, 0]  # one pixel differs: another fingerprint
    assert fingerprint(a) != fingerprint(b)
    for name in MASK_SETS:
        if name == "random_region":  # its pattern is sized for 128 crops
            masks = draw_masks(name, 128, 2, 0)
        else:
            masks = draw_masks(name, 32, 2, 0)
        assert all(0 < m.mean() < 1 for m in masks), name
    assert parse_mask_sets("all") == list(MASK_SETS)
    assert parse_mask_sets("center, freeform_thick") == ["center", "freeform_thick"]
    with pytest.raises(InputError, match="unknown set.*nope"):
        parse_mask_sets("center,nope")


def test_area_bins() -> None:
    assert area_bin(0.0) == "0-10%" and area_bin(0.099) == "0-10%" and area_bin(0.1) == "10-20%"
    assert area_bin(0.35) == "30-40%" and area_bin(1.0) == "90-100%"
    assert area_bin(0.3) == "30-40%" and area_bin(0.6) == "60-70%" and area_bin(0.7) == "70-80%"


def test_paired_bootstrap_recovers_a_known_difference() -> None:
    rng = np.random.default_rng(0)
    b = rng.normal(0, 1, 400)
    a = b + 0.5 + rng.normal(0, 0.2, 400)  # a - b ~ N(0.5, 0.2): the 95% interval of the mean is 0.5 +- 0.02
    r = paired_bootstrap(a, b)
    assert abs(r["mean"] - 0.5) < 0.03
    assert r["lo"] < r["mean"] < r["hi"] and 0.46 < r["lo"] and r["hi"] < 0.54
    assert 0.03 < r["hi"] - r["lo"] < 0.05  # width about 2 * 1.96 * 0.2 / sqrt(400) = 0.039
    assert r["wins"] > 390 and r["n"] == 400
    same = paired_bootstrap(b, b)
    assert same["mean"] == same["lo"] == same["hi"] == 0.0 and same["wins"] == 0


def test_random_region_takes_a_fill() -> None:
    gen = RandomRegion(128, fill="ns")
    image = torch.rand(3, 128, 128) * 2 - 1
    mask = gen.sample(torch.Generator().manual_seed(0))
    assert not torch.equal(gen.hide(image, mask), RandomRegion(128).hide(image, mask))


def test_inpainter_gives_a_whole_image_model_the_input_it_was_trained_on(tmp_path_factory) -> None:
    """On a crop of the model's size the windowed path equals the direct one (same fill, same mask), and in a
    large flat photo the fill around a hole keeps the photo's colour (no mean colour blended into the ring)."""
    from ctx_inpaint.evaluation.scoring import EvalSample, model_outputs
    from ctx_inpaint.inference.inpainter import Inpainter
    from ctx_inpaint.inference.loading import load_model
    from tests.tiny_checkpoints import tiny_checkpoint

    model = load_model(tiny_checkpoint("freeform", tmp_path_factory))
    n = model.input_size
    image = torch.rand(3, n, n) * 2 - 1
    mask = torch.zeros(1, n, n)
    mask[:, n // 4 : n // 2, n // 3 : n // 2] = 1
    direct = model_outputs(model, [EvalSample(image, mask, "x", None)], torch.device("cpu"), 1)[0]
    inpainter = Inpainter(model, device="cpu", margin=1.0)
    windowed = inpainter.predict(image, mask[0] > 0.5)
    assert torch.allclose(((windowed + 1) / 2).clamp(0, 1), direct, atol=1e-5)
    grey = torch.full((3, 300, 300), 0.2)
    hole = torch.zeros(300, 300, dtype=torch.bool)
    hole[140:160, 100:200] = True
    filled = inpainter.model.masks.hide
    seen = []
    inpainter.model.masks.hide = lambda x, m: seen.append(filled(x, m)) or seen[-1]
    inpainter.predict(grey, hole)
    assert (seen[0] - 0.2).abs().max() < 2 / 255  # the model's input: flat grey, hole included


def test_a_thin_stroke_in_a_large_photo_keeps_the_full_resolution_fill(tmp_path_factory) -> None:
    """A residual model's window around a long thin stroke is far larger than 128: the classical fill is made at
    the window's resolution and only the model's correction is resized (filling at 128 and upscaling gave a
    blurred band)."""
    from ctx_inpaint.inference.inpainter import Inpainter
    from ctx_inpaint.inference.loading import load_model
    from ctx_inpaint.masks.fills import classical_fill
    from tests.tiny_checkpoints import tiny_checkpoint

    model = load_model(tiny_checkpoint("freeform", tmp_path_factory))
    yy, xx = torch.meshgrid(torch.arange(240.0), torch.arange(320.0), indexing="ij")
    image = torch.stack([(xx // 8 % 2), (yy // 8 % 2), ((xx + yy) // 12 % 2)]) * 1.6 - 0.8  # fine stripes
    hole = torch.zeros(240, 320, dtype=torch.bool)
    hole[118:122, 20:300] = True  # 4 px wide, 280 px long
    out = Inpainter(model, device="cpu").predict(image, hole)
    full_res = classical_fill(image, hole[None].float(), model.masks.fill)
    err = (out - full_res)[:, hole].abs().mean()
    truth_err = (full_res - image)[:, hole].abs().mean()
    assert err < 0.25 * truth_err  # about the full-resolution fill, not a blur of it


def test_a_whole_image_centre_model_is_used_as_a_centre_model(tmp_path_factory) -> None:
    """ship_center's recipe (CenterMask(whole_image=True): a U-Net predicting the whole image, trained on the centre
    hole only) is a centre model for inference and evaluation: its windows put a hole in its hidden square, a
    free-form mask goes through windows, and on its own hole the windowed path equals the direct one."""
    from ctx_inpaint.evaluation.scoring import EvalSample, fits_model_directly, model_outputs
    from ctx_inpaint.inference.inpainter import Inpainter
    from ctx_inpaint.inference.loading import load_model
    from ctx_inpaint.masks.generators import CenterMask
    from tests.tiny_checkpoints import tiny_checkpoint

    model = load_model(tiny_checkpoint("center_unet", tmp_path_factory))
    assert isinstance(model.masks, CenterMask) and model.masks.whole_image and model.masks.target_box is None
    assert model.kind == "center" and model.generator.skips and model.masks.fill == "ns"
    n = model.input_size
    own = model.masks.sample()
    other = torch.zeros(1, n, n)
    other[:, 2:6, :] = 1
    assert fits_model_directly(model, own) and not fits_model_directly(model, other)
    inpainter = Inpainter(model, device="cpu")
    assert inpainter.hidden_box == model.masks.hidden_box
    image = torch.rand(3, n, n) * 2 - 1
    direct = model_outputs(model, [EvalSample(image, own, "x", None)], torch.device("cpu"), 1)[0]
    windowed = inpainter.predict(image, own[0] > 0.5)
    assert torch.allclose(((windowed + 1) / 2).clamp(0, 1), direct, atol=1e-5)
    photo = torch.rand(3, 90, 120) * 2 - 1
    hole = torch.zeros(90, 120, dtype=torch.bool)
    hole[30:50, 40:70] = True
    out = inpainter.predict(photo, hole)
    assert torch.equal(out[:, ~hole], photo[:, ~hole]) and not torch.equal(out[:, hole], photo[:, hole])
