"""Named, seeded evaluation mask sets and their fingerprints.

Two tables are comparable only when they scored the same masks on the same images: every set is drawn from a
fixed seed and recorded with a hash of its masks (and of its images), so a table says what it measured.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import torch

from ctx_inpaint.errors import InputError
from ctx_inpaint.masks.generators import (
    FREEFORM_PRESETS,
    CenterMask,
    FreeForm,
    MaskGenerator,
    RandomPatches,
    RandomRegion,
)


def _freeform(preset: str) -> Callable[[int], MaskGenerator]:
    return lambda n: FreeForm(n, **FREEFORM_PRESETS[preset])


MASK_SETS: dict[str, Callable[[int], MaskGenerator]] = {
    # The paper's centre hole (inner 7/16 of the side hidden), random rectangles, the released code's blobs.
    "center": lambda n: CenterMask(n, target_size=n // 2, overlap=max(n // 32, 0)),
    "random_patches": lambda n: RandomPatches(n, min_size=max(n // 8, 1), max_size=max(3 * n // 8, 1)),
    "random_region": lambda n: RandomRegion(n),
    **{f"freeform_{name}": _freeform(name) for name in FREEFORM_PRESETS},
}


def parse_mask_sets(text: str) -> list[str]:
    """``--mask-sets``: a comma list of set names, or ``all``."""
    names = list(MASK_SETS) if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in MASK_SETS]
    if unknown or not names:
        raise InputError(
            f"--mask-sets: unknown set(s) {', '.join(unknown) or '(none given)'}; expected a comma list of "
            f"{', '.join(MASK_SETS)} or all"
        )
    return names


def draw_masks(name: str, size: int, count: int, seed: int) -> list[torch.Tensor]:
    """``count`` masks (1, size, size) of set ``name``, the same for the same (size, count, seed)."""
    generator = torch.Generator().manual_seed(seed)
    masks = MASK_SETS[name](size)
    return [masks.sample(generator) for _ in range(count)]


def fingerprint(tensors: list[torch.Tensor]) -> str:
    """Hash of the tensors' values (as uint8 for masks / images in [0, 1] after rounding), 16 hex digits."""
    h = hashlib.sha256()
    for t in tensors:
        h.update((t.detach().float().cpu() * 255).round().to(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def area_bin(fraction: float, width: float = 0.1) -> str:
    """The hole-area bin of a hidden fraction: ``0-10%``, ``10-20%``, ..."""
    k = min(math.floor(fraction / width + 1e-9), round(1 / width) - 1)
    return f"{round(100 * k * width)}-{round(100 * (k + 1) * width)}%"
