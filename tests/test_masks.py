import pytest
import torch

from ctx_inpaint.masks.generators import MEAN_FILL, CenterMask, RandomPatches, RandomRegion, apply_mask


def test_center_mask_geometry_matches_released_code() -> None:
    m = CenterMask(image_size=128, target_size=64, overlap=4, overlap_weight=10)
    mask = m.sample()
    assert m.target_box == (32, 96, 32, 96)
    assert mask.shape == (1, 128, 128)
    assert mask.sum() == 56 * 56
    assert torch.all(mask[:, 36:92, 36:92] == 1)
    assert mask[:, 35, 50] == 0 and mask[:, 92, 50] == 0
    weight = m.loss_weight(mask)
    assert weight.shape == (1, 64, 64)
    assert (
        weight[0, 0, 0] == 10 and weight[0, 3, 30] == 10 and weight[0, 4, 30] == 1 and weight[0, 32, 32] == 1
    )


def test_center_mask_options_are_configurable() -> None:
    m = CenterMask(image_size=64, target_size=32, overlap=0)
    assert m.sample().sum() == 32 * 32
    assert m.output_size == 32


def test_fill_is_the_mean_colour_in_model_range() -> None:
    image = torch.rand(3, 8, 8) * 2 - 1
    mask = torch.zeros(1, 8, 8)
    mask[:, 2:5, 2:5] = 1
    out = apply_mask(image, mask)
    expected = torch.tensor(MEAN_FILL) * 2 - 1
    assert torch.allclose(out[:, 3, 3], expected)
    assert torch.equal(out[:, 0, 0], image[:, 0, 0])


def test_random_patches_cover_at_most_a_quarter_and_are_seeded() -> None:
    gen = RandomPatches(image_size=128, max_patches=5, min_size=16, max_size=48, max_coverage=0.25)
    fractions = []
    for seed in range(30):
        a = gen.sample(torch.Generator().manual_seed(seed))
        b = gen.sample(torch.Generator().manual_seed(seed))
        assert torch.equal(a, b)
        fractions.append(a.mean().item())
    assert max(fractions) <= 0.25
    assert min(fractions) >= 16 * 16 / 128**2
    assert len(set(fractions)) > 10  # really random across seeds
    assert gen.target_box is None and gen.output_size == 128


def test_random_region_coverage_within_bounds_and_seeded() -> None:
    gen = RandomRegion(image_size=64, noise_size=40, scale=10)
    masks = [gen.sample(torch.Generator().manual_seed(s)) for s in range(20)]
    for mask in masks:
        assert 0.2 < mask.mean().item() < 0.3
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
    again = gen.sample(torch.Generator().manual_seed(3))
    assert torch.equal(again, masks[3])
    assert not torch.equal(masks[0], masks[1])
    # Blobs, not salt and pepper: most hidden pixels have a hidden right neighbour.
    m = masks[0][0]
    assert (m[:, :-1] * m[:, 1:]).sum() / m[:, :-1].sum() > 0.8


@pytest.mark.parametrize("visible_weight", [1.0, 10.0, 0.0])
def test_whole_image_masks_weigh_every_pixel_as_train_random_lua(visible_weight: float) -> None:
    """train_random.lua: MSE over the whole 128 image (every pixel 1); useOverlapPred=1 puts 10x on the visible
    pixels; 0 keeps the hole only."""
    for gen in (
        RandomRegion(image_size=64, noise_size=40, scale=10, visible_weight=visible_weight),
        RandomPatches(image_size=64, min_size=8, max_size=16, visible_weight=visible_weight),
    ):
        mask = gen.sample(torch.Generator().manual_seed(0))
        weight = gen.loss_weight(mask)
        assert weight.shape == (1, 64, 64)
        assert torch.all(weight[mask.bool()] == 1.0)
        assert torch.all(weight[~mask.bool()] == visible_weight)
        assert 0 < mask.mean() < 1


def test_default_per_pixel_weights_for_centre_patch_and_region_masks() -> None:
    centre = CenterMask()
    w = centre.loss_weight(centre.sample())
    expected = torch.full((1, 64, 64), 10.0)
    expected[:, 4:60, 4:60] = 1.0
    assert torch.equal(w, expected)
    for gen in (RandomPatches(), RandomRegion()):
        w = gen.loss_weight(gen.sample(torch.Generator().manual_seed(1)))
        assert torch.equal(w, torch.ones(1, 128, 128))  # the released default: plain MSE over the image


def test_bad_mask_options_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        CenterMask(image_size=128, target_size=64, overlap=40)
    with pytest.raises(ValueError, match="max_coverage"):
        RandomPatches(max_coverage=1.5)
    with pytest.raises(ValueError, match="masks.visible_weight"):
        RandomRegion(visible_weight=-1)
    with pytest.raises(ValueError, match="masks.overlap_weight"):
        CenterMask(overlap_weight=float("nan"))


def test_center_mask_can_train_a_whole_image_model_on_a_classical_fill() -> None:
    """``whole_image``: the same centre hole, the whole image predicted (what a U-Net needs), the hole filled by
    the configured classical fill; the default keeps the paper's centre square and mean colour."""
    from ctx_inpaint.errors import ConfigError
    from ctx_inpaint.masks.fills import classical_fill

    paper, whole = CenterMask(128), CenterMask(128, fill="ns", whole_image=True)
    assert paper.target_box == (32, 96, 32, 96) and paper.output_size == 64 and paper.fill == "mean"
    assert whole.target_box is None and whole.output_size == 128 and whole.hidden_box == paper.hidden_box
    assert torch.equal(whole.sample(), paper.sample())
    image = torch.rand(3, 128, 128) * 2 - 1
    mask = whole.sample()
    assert torch.equal(whole.hide(image, mask), classical_fill(image, mask, "ns"))
    with pytest.raises(ConfigError, match="masks.fill"):
        CenterMask(128, fill="blur")
