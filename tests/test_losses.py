import pytest
import torch

from ctx_inpaint.masks.generators import CenterMask
from ctx_inpaint.training.objective import adversarial, hole_ssim_loss, masked_reconstruction


def test_reconstruction_gradient_is_zero_outside_hole_and_ring() -> None:
    masks = CenterMask(image_size=32, target_size=16, overlap=2, overlap_weight=10)
    image = torch.randn(2, 3, 32, 32)
    full_pred = torch.randn(2, 3, 32, 32, requires_grad=True)
    # The loss sees only the predicted (target) region; everything outside it gets no gradient.
    y0, y1, x0, x1 = masks.target_box
    pred = full_pred[..., y0:y1, x0:x1]
    weight = masks.loss_weight(masks.sample()).expand(2, 1, 16, 16)
    masked_reconstruction(pred, image[..., y0:y1, x0:x1], weight).backward()
    g = full_pred.grad.abs().sum(dim=(0, 1))
    assert torch.all(g[:y0] == 0) and torch.all(g[y1:] == 0) and torch.all(g[:, :x0] == 0)
    assert torch.all(g[y0:y1, x0:x1] > 0)
    # The ring is weighted 10x the hole.
    ring = full_pred.grad[0, 0, y0, x0] / (pred - image[..., y0:y1, x0:x1])[0, 0, 0, 0]
    inner = full_pred.grad[0, 0, y0 + 8, x0 + 8] / (pred - image[..., y0:y1, x0:x1])[0, 0, 8, 8]
    assert torch.isclose(ring / inner, torch.tensor(10.0))


def test_reconstruction_is_the_released_weighted_mean_over_all_elements() -> None:
    """train.lua: MSECriterion (mean over B x 3 x 64 x 64) with its gradient scaled by wtl2Matrix (10 on the
    ring, 1 in the hole), i.e. mean(w * err); not divided by the sum of the weights."""
    torch.manual_seed(0)
    masks = CenterMask(image_size=128, target_size=64, overlap=4, overlap_weight=10)
    weight = masks.loss_weight(masks.sample()).expand(2, 1, 64, 64)
    pred, target = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    # By hand, as the Lua code loops: per element w * (x - y)^2, summed, over 2 * 3 * 64 * 64 elements.
    total = 0.0
    for b in range(2):
        for c in range(3):
            w = torch.full((64, 64), 10.0)
            w[4:60, 4:60] = 1.0
            total += float((w.double() * (pred[b, c].double() - target[b, c].double()) ** 2).sum())
    expected = total / (2 * 3 * 64 * 64)
    assert masked_reconstruction(pred, target, weight, "l2").item() == pytest.approx(expected, rel=1e-5)
    # Its gradient is the MSE's gradient times the weight matrix (what train.lua computes with addcmul).
    p = pred.clone().requires_grad_(True)
    masked_reconstruction(p, target, weight, "l2").backward()
    mse_grad = 2 * (pred - target) / pred.numel()
    assert torch.allclose(p.grad, mse_grad * weight, rtol=1e-5, atol=1e-10)
    # The weight sum (12,736 per channel) is not the normaliser: 4096 / 12736 of the old value.
    assert weight[0].sum().item() == 56 * 56 + 960 * 10
    l1 = masked_reconstruction(
        torch.zeros(1, 3, 4, 4), 2 * torch.ones(1, 3, 4, 4), torch.ones(1, 1, 4, 4), "l1"
    )
    assert l1.item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="rec_loss"):
        masked_reconstruction(pred, target, weight, "huber")


def test_hole_only_weights_ignore_visible_errors() -> None:
    pred, target = torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    weight = torch.zeros(1, 1, 4, 4)
    weight[..., 0, 0] = 1
    target[..., 1:, :] = 5.0  # large errors on pixels of weight 0 only
    assert masked_reconstruction(pred, target, weight).item() == 0.0


def test_adversarial_targets() -> None:
    logits = torch.tensor([10.0, 10.0])
    assert adversarial(logits, True).item() < 1e-3
    assert adversarial(logits, False).item() > 9


def test_hole_ssim_loss_on_a_margin_crop_equals_the_metric_on_the_whole_image() -> None:
    from ctx_inpaint.evaluation.metrics import HiddenPixelMetrics

    torch.manual_seed(0)
    masks = CenterMask(image_size=64, target_size=32, overlap=2)
    mask = masks.sample().expand(2, 1, 64, 64)
    truth = torch.rand(2, 3, 64, 64)
    output = torch.where(mask.bool(), torch.rand(2, 3, 64, 64), truth)
    metric = HiddenPixelMetrics()
    metric.update(output, truth, mask)
    y0, y1, x0, x1 = masks.target_box  # hole = target box minus the 2-px ring; 5 more px of context
    crop = (slice(None), slice(None), slice(y0 - 3, y1 + 3), slice(x0 - 3, x1 + 3))
    loss = hole_ssim_loss(output[crop], truth[crop], mask[crop])
    assert loss.item() == pytest.approx(1 - metric.compute()["ssim"].item(), abs=1e-5)
    assert hole_ssim_loss(truth, truth, mask).item() == pytest.approx(0.0, abs=1e-6)
