"""Classical inpainting baselines scored beside the model: mean-colour fill, OpenCV Telea and Navier-Stokes.

Each takes a (3, H, W) image in [0, 1] and a (1, H, W) mask (1 = hidden) and returns the composited
(3, H, W) result in [0, 1]: visible pixels untouched, hidden ones filled.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ctx_inpaint.errors import InputError
from ctx_inpaint.masks.fills import opencv_fill

Baseline = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _composite(image: torch.Tensor, fill: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return image * (1 - mask) + fill * mask


def mean_fill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Every hidden pixel takes the mean colour of the image's visible pixels."""
    visible = mask[0] < 0.5
    if not bool(visible.any()):
        return image.clone()
    mean = image.flatten(1)[:, visible.flatten()].mean(dim=1)
    return _composite(image, mean.view(3, 1, 1).expand_as(image), mask)


def _opencv(method: str, radius: float) -> Baseline:
    def run(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return opencv_fill(image, mask, method, radius)

    return run


def telea(radius: float = 3.0) -> Baseline:
    """Telea (2004) fast marching inpainting."""
    return _opencv("telea", radius)


def navier_stokes(radius: float = 3.0) -> Baseline:
    """Bertalmio et al. (2001) Navier-Stokes inpainting."""
    return _opencv("ns", radius)


def make_baselines(methods: list[str], radius: float = 3.0, name: str = "baselines") -> dict[str, Baseline]:
    """Baselines by name: ``mean``, ``telea``, ``ns``; an unknown one is refused in one line naming ``name`` (what
    the caller calls the list: a command passes its flag)."""
    known: dict[str, Callable[[], Baseline]] = {
        "mean": lambda: mean_fill,
        "telea": lambda: telea(radius),
        "ns": lambda: navier_stokes(radius),
    }
    out = {}
    for method in methods:
        if method not in known:
            raise InputError(f"{name}: unknown baseline {method!r}; expected some of {', '.join(known)}")
        out[method] = known[method]()
    return out
