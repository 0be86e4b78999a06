import math

import pytest
import torch

from ctx_inpaint.evaluation.metrics import HiddenPixelMetrics


def test_metrics_use_hidden_pixels_and_per_image_psnr() -> None:
    target = torch.full((2, 3, 16, 16), 0.5)
    output = target.clone()
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:12, 4:12] = 1
    output[0, :, 4:12, 4:12] += 0.1  # image 0: error 0.1 on its hidden pixels
    output[1, :, 4:12, 4:12] -= 0.2  # image 1: error 0.2
    output[:, :, 0, 0] = 1.0  # a visible-pixel difference must not count
    m = HiddenPixelMetrics()
    m.update(output, target, mask)
    values = m.compute()
    assert values["l1"].item() == pytest.approx(0.15, abs=1e-6)
    assert values["l2"].item() == pytest.approx((0.01 + 0.04) / 2, abs=1e-6)
    per_image = [10 * math.log10(1 / 0.01), 10 * math.log10(1 / 0.04)]
    assert values["psnr"].item() == pytest.approx(sum(per_image) / 2, abs=1e-3)
    assert 0 < values["ssim"].item() < 1


def test_metrics_accumulate_over_batches_and_reset() -> None:
    m = HiddenPixelMetrics()
    target = torch.rand(1, 3, 16, 16)
    mask = torch.ones(1, 1, 16, 16)
    m.update(target, target, mask)
    assert m.compute()["ssim"].item() == pytest.approx(1.0, abs=1e-4)
    m.update((target + 0.1).clamp(0, 1), target, mask)
    assert m.compute()["ssim"].item() < 1.0
    m.reset()
    m.update(target, target, mask)
    assert m.compute()["l1"].item() == 0.0
