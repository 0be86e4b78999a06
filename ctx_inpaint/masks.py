"""Mask generators. A mask is a (1, H, W) float tensor with 1 on hidden pixels.

Each generator also says which region the generator network predicts (``target_box``; ``None`` = the whole
image) and how the reconstruction loss weighs that region (``loss_weight``). As in the released code, the loss
covers every predicted pixel: hidden pixels weigh 1, visible ones the generator's visible-pixel weight (the centre
model's 4-px ring: ``overlap_weight`` = 10, ``train.lua``; whole-image models: ``visible_weight`` = 1, plain MSE
over the whole image as ``train_random.lua`` by default, 10 with its ``useOverlapPred=1``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ctx_inpaint.errors import ConfigError, check_range

# The original fills hidden pixels with the mean training pixel, (117, 104, 123) / 255.
MEAN_FILL = (117.0 / 255.0, 104.0 / 255.0, 123.0 / 255.0)

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (end exclusive)


def fill_value(value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """The mean colour as a (3, 1, 1) tensor in the model's value range."""
    lo, hi = value_range
    return torch.tensor(MEAN_FILL).view(3, 1, 1) * (hi - lo) + lo


def apply_mask(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hide the masked pixels of a [-1, 1] image behind the mean colour (works on single images and batches)."""
    fill = fill_value().to(image)
    return image * (1 - mask) + fill * mask


def crop_box(x: torch.Tensor, box: Box | None) -> torch.Tensor:
    if box is None:
        return x
    y0, y1, x0, x1 = box
    return x[..., y0:y1, x0:x1]


def composite(pred: torch.Tensor, masked: torch.Tensor, mask: torch.Tensor, box: Box | None) -> torch.Tensor:
    """Paste a prediction of the region ``box`` into the hole only; visible pixels stay those of ``masked``.

    Differentiable in ``pred`` (the SSIM loss term backpropagates through it).
    """
    full = masked.clone()
    region = crop_box(full, box)
    region_mask = crop_box(mask, box)
    region.copy_(region * (1 - region_mask) + pred.to(region.dtype) * region_mask)
    return full


class MaskGenerator:
    """Base class: subclasses implement ``sample``."""

    image_size: int
    target_box: Box | None = None
    visible_weight: float = 1.0

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    @property
    def output_size(self) -> int:
        """Side of the region the generator network predicts."""
        if self.target_box is None:
            return self.image_size
        return self.target_box[1] - self.target_box[0]

    def loss_weight(self, mask: torch.Tensor) -> torch.Tensor:
        """Per-pixel reconstruction-loss weights over the predicted region: 1 on hidden pixels,
        ``visible_weight`` on visible ones (which keeps the raw output that the discriminator judges close to
        the input outside the hole)."""
        hole = crop_box(mask, self.target_box)
        return hole + self.visible_weight * (1 - hole)


class CenterMask(MaskGenerator):
    """The paper's centre hole: the network predicts the centre ``target_size`` square of the image; only the
    inner part is hidden, leaving an ``overlap``-pixel visible ring that the loss weighs ``overlap_weight`` times.
    """

    def __init__(
        self, image_size: int = 128, target_size: int = 64, overlap: int = 4, overlap_weight: float = 10.0
    ) -> None:
        if not 0 < target_size <= image_size:
            raise ConfigError(
                f"masks.target_size: expected 0 < target_size <= {image_size}, got {target_size}"
            )
        if not 0 <= 2 * overlap < target_size:
            raise ConfigError(f"masks.overlap: expected 0 <= 2*overlap < {target_size}, got {overlap}")
        self.image_size = image_size
        self.overlap = overlap
        self.overlap_weight = float(overlap_weight)
        self.visible_weight = check_range("masks.overlap_weight", overlap_weight, 0.0, math.inf)  # the ring
        s = (image_size - target_size) // 2
        self.target_box = (s, s + target_size, s, s + target_size)
        self.hidden_box = (s + overlap, s + target_size - overlap, s + overlap, s + target_size - overlap)
        self._mask = torch.zeros(1, image_size, image_size)
        y0, y1, x0, x1 = self.hidden_box
        self._mask[:, y0:y1, x0:x1] = 1.0

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return self._mask.clone()


class RandomPatches(MaskGenerator):
    """Several random rectangles (possibly overlapping) covering at most ``max_coverage`` of the image."""

    def __init__(
        self,
        image_size: int = 128,
        max_patches: int = 5,
        min_size: int = 16,
        max_size: int = 48,
        max_coverage: float = 0.25,
        visible_weight: float = 1.0,
    ) -> None:
        if not 0 < min_size <= max_size <= image_size:
            raise ConfigError(
                f"masks.min_size: expected 0 < min_size <= max_size <= {image_size}, got {min_size}, {max_size}"
            )
        check_range("masks.max_coverage", max_coverage, 0.0, 1.0, lo_inclusive=False)
        if min_size * min_size > max_coverage * image_size * image_size:
            raise ConfigError("masks.min_size: a single patch would exceed masks.max_coverage")
        self.image_size = image_size
        self.max_patches = max_patches
        self.min_size = min_size
        self.max_size = max_size
        self.max_coverage = max_coverage
        self.visible_weight = check_range("masks.visible_weight", visible_weight, 0.0, math.inf)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        n = self.image_size
        limit = self.max_coverage * n * n
        mask = torch.zeros(1, n, n)
        want = int(torch.randint(1, self.max_patches + 1, (1,), generator=generator))
        placed, tries = 0, 0
        while placed < want and tries < 50:
            tries += 1
            h, w = (
                int(v) for v in torch.randint(self.min_size, self.max_size + 1, (2,), generator=generator)
            )
            y = int(torch.randint(0, n - h + 1, (1,), generator=generator))
            x = int(torch.randint(0, n - w + 1, (1,), generator=generator))
            trial = mask.clone()
            trial[:, y : y + h, x : x + w] = 1.0
            if trial.sum() <= limit:
                mask, placed = trial, placed + 1
        return mask


class RandomRegion(MaskGenerator):
    """Smooth random blobs, as the released code makes them: uniform noise upscaled bicubically and
    thresholded at ``density``; each mask is a window of that pattern whose hidden fraction lies strictly
    between ``min_fraction`` and ``max_fraction``.
    """

    def __init__(
        self,
        image_size: int = 128,
        noise_size: int = 120,
        scale: float = 10000 / 600,
        density: float = 0.25,
        min_fraction: float = 0.2,
        max_fraction: float = 0.3,
        pattern_seed: int = 0,
        visible_weight: float = 1.0,
    ) -> None:
        check_range("masks.density", density, 0.0, 1.0)
        check_range("masks.min_fraction", min_fraction, 0.0, 1.0)
        check_range("masks.max_fraction", max_fraction, 0.0, 1.0)
        if not min_fraction < max_fraction:
            raise ConfigError(
                f"masks.min_fraction: got {min_fraction}; expected less than masks.max_fraction ({max_fraction})"
            )
        self.image_size = image_size
        self.noise_size = noise_size
        self.scale = scale
        self.density = density
        self.min_fraction = min_fraction
        self.max_fraction = max_fraction
        self.pattern_seed = pattern_seed
        self.visible_weight = check_range("masks.visible_weight", visible_weight, 0.0, math.inf)
        self._pattern: torch.Tensor | None = None

    @property
    def pattern(self) -> torch.Tensor:
        """The large boolean blob pattern, built once (deterministically from ``pattern_seed``)."""
        if self._pattern is None:
            g = torch.Generator().manual_seed(self.pattern_seed)
            noise = torch.rand(1, 1, self.noise_size, self.noise_size, generator=g)
            size = int(round(self.noise_size * self.scale))
            if size < self.image_size:
                raise ValueError(
                    f"mask: the pattern ({size}px) is smaller than the image ({self.image_size}px)"
                )
            big = F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False)
            self._pattern = big[0, 0] < self.density
        return self._pattern

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        pattern, n = self.pattern, self.image_size
        span = pattern.shape[0] - n + 1
        window = None
        for _ in range(1000):
            y, x = (int(v) for v in torch.randint(0, span, (2,), generator=generator))
            window = pattern[y : y + n, x : x + n]
            frac = window.float().mean().item()
            if self.min_fraction < frac < self.max_fraction:
                break
        else:
            raise RuntimeError("mask: no window of the random-region pattern has the requested coverage")
        return window.float().unsqueeze(0).clone()
