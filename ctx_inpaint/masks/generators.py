"""Mask generators. A mask is a (1, H, W) float tensor with 1 on hidden pixels.

Each generator also says which region the generator network predicts (``target_box``; ``None`` = the whole
image) and how the reconstruction loss weighs that region (``loss_weight``). As in the released code, the loss
covers every predicted pixel: hidden pixels weigh 1, visible ones the generator's visible-pixel weight (the centre
model's 4-px ring: ``overlap_weight`` = 10, ``train.lua``; whole-image models: ``visible_weight`` = 1, plain MSE
over the whole image as ``train_random.lua`` by default, 10 with its ``useOverlapPred=1``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ctx_inpaint.errors import ConfigError, check_range
from ctx_inpaint.masks.fills import classical_fill

# The original fills hidden pixels with the mean training pixel, (117, 104, 123) / 255.
MEAN_FILL = (117.0 / 255.0, 104.0 / 255.0, 123.0 / 255.0)

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (end exclusive)
Uniform = Callable[..., float]  # uniform(lo=0, hi=1): a seeded draw in [lo, hi)


def fill_value(value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """The mean colour as a (3, 1, 1) tensor in the model's value range."""
    lo, hi = value_range
    return torch.tensor(MEAN_FILL).view(3, 1, 1) * (hi - lo) + lo


def apply_mask(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hide the masked pixels of a [-1, 1] image behind the mean colour (works on single images and batches)."""
    fill = fill_value().to(image)
    return image * (1 - mask) + fill * mask


# How hidden pixels are filled in the model's input: the released code's mean colour, or a classical inpainting
# (OpenCV) whose result the network then corrects (whole-image models with ``model.residual``).
FILLS = ("mean", "telea", "ns")


def check_fill(fill: str) -> str:
    if fill not in FILLS:
        raise ConfigError(f"masks.fill: got {fill!r}; expected one of {', '.join(FILLS)}")
    return fill


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
    fill: str = "mean"

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def hide(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The model's input: ``image`` ([-1, 1], one image or a batch) with its hidden pixels filled by
        ``fill``. Training, evaluation and inference all go through here, so a model always sees the fill it
        was trained with."""
        if self.fill == "mean":
            return apply_mask(image, mask)
        return classical_fill(image, mask, self.fill)

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

    ``whole_image=True`` (beyond the paper) makes the network predict the whole image instead, as the free-form
    models do, so the same hole can be learnt by a U-Net (``model.skips``) correcting a classical ``fill``; the loss
    then weighs every visible pixel ``overlap_weight``.
    """

    def __init__(
        self,
        image_size: int = 128,
        target_size: int = 64,
        overlap: int = 4,
        overlap_weight: float = 10.0,
        fill: str = "mean",
        whole_image: bool = False,
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
        self.fill = check_fill(fill)
        self.whole_image = bool(whole_image)
        if self.whole_image:
            self.target_box = None

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
        fill: str = "mean",
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
        self.fill = check_fill(fill)

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
        fill: str = "mean",
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
        self.fill = check_fill(fill)
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


class FreeForm(MaskGenerator):
    """Free-form holes as people brush them: strokes of random width, length and curvature, plus elliptic blobs,
    until a drawn target coverage in [``min_coverage``, ``max_coverage``] is reached (a shape that would pass
    ``max_coverage`` is redrawn). Sizes are fractions of the image side, so a setting means the same at any
    resolution; stroke widths are log-uniform in [``min_width``, ``max_width``], so thin strokes are as common
    as thick ones. The whole image is predicted, as for the released code's random masks.

    ``center_probability`` mixes in the paper's centre hole (the inner 56x56 of 128, :class:`CenterMask`'s
    hidden square at any size): a share of the samples, so one model serves both kinds of hole (0: strokes and
    blobs only, and the draws are those of a generator without the option).

    ``FREEFORM_PRESETS`` holds the thin / medium / thick settings of the evaluation's mask sets (after LaMa's).
    """

    def __init__(
        self,
        image_size: int = 128,
        min_coverage: float = 0.1,
        max_coverage: float = 0.4,
        min_width: float = 0.015,
        max_width: float = 0.22,
        max_vertices: int = 10,
        max_segment: float = 0.35,
        max_turn: float = 1.2,
        blob_probability: float = 0.25,
        min_blob: float = 0.06,
        max_blob: float = 0.25,
        visible_weight: float = 1.0,
        fill: str = "mean",
        center_probability: float = 0.0,
    ) -> None:
        check_range("masks.min_coverage", min_coverage, 0.0, 1.0, lo_inclusive=False)
        check_range("masks.max_coverage", max_coverage, 0.0, 1.0, lo_inclusive=False)
        if not min_coverage < max_coverage:
            raise ConfigError(
                f"masks.min_coverage: got {min_coverage}; expected less than masks.max_coverage ({max_coverage})"
            )
        check_range("masks.min_width", min_width, 0.0, 1.0, lo_inclusive=False)
        check_range("masks.max_width", max_width, min_width, 1.0)
        check_range("masks.max_vertices", max_vertices, 1, 1000)
        check_range("masks.max_segment", max_segment, 0.0, 2.0, lo_inclusive=False)
        check_range("masks.max_turn", max_turn, 0.0, math.pi)
        check_range("masks.blob_probability", blob_probability, 0.0, 1.0)
        check_range("masks.min_blob", min_blob, 0.0, 1.0, lo_inclusive=False)
        check_range("masks.max_blob", max_blob, min_blob, 1.0)
        self.image_size = image_size
        self.min_coverage, self.max_coverage = float(min_coverage), float(max_coverage)
        self.min_width, self.max_width = float(min_width), float(max_width)
        self.max_vertices, self.max_segment, self.max_turn = (
            int(max_vertices),
            float(max_segment),
            float(max_turn),
        )
        self.blob_probability = float(blob_probability)
        self.min_blob, self.max_blob = float(min_blob), float(max_blob)
        self.visible_weight = check_range("masks.visible_weight", visible_weight, 0.0, math.inf)
        self.fill = check_fill(fill)
        self.center_probability = check_range("masks.center_probability", center_probability, 0.0, 1.0)
        # the paper's hole at this size: predict the centre half, hide all but a ring of 1/32 of the side
        self._center = (
            CenterMask(image_size, image_size // 2, max(1, image_size // 32)) if center_probability else None
        )

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        def uniform(lo: float = 0.0, hi: float = 1.0) -> float:
            return lo + (hi - lo) * float(torch.rand((), generator=generator))

        if self._center is not None and uniform() < self.center_probability:
            return self._center.sample()
        n = self.image_size
        for _ in range(20):
            target = uniform(self.min_coverage, self.max_coverage)
            canvas = np.zeros((n, n), np.uint8)
            covered = 0.0
            for _ in range(400):
                trial = canvas.copy()
                if uniform() < self.blob_probability:
                    self._blob(trial, uniform)
                else:
                    self._stroke(trial, uniform)
                frac = float(trial.mean())
                if frac > self.max_coverage:
                    continue
                canvas, covered = trial, frac
                if covered >= target:
                    return torch.from_numpy(canvas).float().unsqueeze(0)
            if covered >= self.min_coverage:
                return torch.from_numpy(canvas).float().unsqueeze(0)
        raise RuntimeError(
            f"mask: free-form strokes did not reach masks.min_coverage={self.min_coverage} at size {n}"
        )

    def _stroke(self, canvas: np.ndarray, uniform: Uniform) -> None:
        n = self.image_size
        width = max(1, round(n * math.exp(uniform(math.log(self.min_width), math.log(self.max_width)))))
        x, y = uniform(0, n - 1), uniform(0, n - 1)
        angle = uniform(0, 2 * math.pi)
        for _ in range(1 + int(uniform() * self.max_vertices)):
            angle += uniform(-self.max_turn, self.max_turn)
            length = uniform(0.2, 1.0) * self.max_segment * n
            nx, ny = x + length * math.cos(angle), y + length * math.sin(angle)
            if not (0 <= nx < n and 0 <= ny < n):  # turn back from the edge rather than run along it
                angle += math.pi
                nx, ny = x + length * math.cos(angle), y + length * math.sin(angle)
            nx, ny = min(max(nx, 0.0), n - 1.0), min(max(ny, 0.0), n - 1.0)
            cv2.line(canvas, (round(x), round(y)), (round(nx), round(ny)), 1, width)
            cv2.circle(canvas, (round(nx), round(ny)), width // 2, 1, -1)  # round joints
            x, y = nx, ny

    def _blob(self, canvas: np.ndarray, uniform: Uniform) -> None:
        n = self.image_size
        axes = tuple(max(1, round(n * uniform(self.min_blob, self.max_blob) / 2)) for _ in range(2))
        centre = (round(uniform(0, n - 1)), round(uniform(0, n - 1)))
        cv2.ellipse(canvas, centre, axes, uniform(0, 180), 0, 360, 1, -1)


# The evaluation's free-form mask sets (fractions of the image side; 2-5 / 6-14 / 14-30 px at 128).
FREEFORM_PRESETS: dict[str, dict[str, float]] = {
    "thin": {"min_width": 0.015, "max_width": 0.04, "blob_probability": 0.0},
    "medium": {"min_width": 0.045, "max_width": 0.11, "blob_probability": 0.15},
    "thick": {"min_width": 0.11, "max_width": 0.23, "blob_probability": 0.35, "min_blob": 0.1},
}
