"""Classical inpainting baselines scored beside the model: mean-colour fill, OpenCV Telea and Navier-Stokes.

Each takes a (3, H, W) image in [0, 1] and a (1, H, W) mask (1 = hidden) and returns the composited
(3, H, W) result in [0, 1]: visible pixels untouched, hidden ones filled.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch

from ctx_inpaint.errors import InputError

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


def _opencv(flag: int, radius: float) -> Baseline:
    def run(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # OpenCV works on 8-bit images; the images come from 8-bit files, so this is exact.
        u8 = (image.permute(1, 2, 0).cpu().numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
        hole = (mask[0].cpu().numpy() > 0.5).astype(np.uint8) * 255
        filled = cv2.inpaint(np.ascontiguousarray(u8), hole, radius, flag)
        out = torch.from_numpy(filled).permute(2, 0, 1).to(image.dtype) / 255.0
        return _composite(image, out.to(image.device), mask)

    return run


def telea(radius: float = 3.0) -> Baseline:
    """Telea (2004) fast marching inpainting."""
    return _opencv(cv2.INPAINT_TELEA, radius)


def navier_stokes(radius: float = 3.0) -> Baseline:
    """Bertalmio et al. (2001) Navier-Stokes inpainting."""
    return _opencv(cv2.INPAINT_NS, radius)


OPENCV_METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


def opencv_uint8(image: np.ndarray, hole: np.ndarray, method: str, radius: float = 3.0) -> np.ndarray:
    """A (H, W, 3) uint8 photo with its ``hole`` ((H, W) bool) filled by OpenCV (``telea`` or ``ns``), as the
    baselines above do, without a float copy of the photo (the demo's photos of any size); visible pixels are
    the input's, bit for bit."""
    if method not in OPENCV_METHODS:
        raise InputError(
            f"method: unknown OpenCV method {method!r}; expected one of {', '.join(OPENCV_METHODS)}"
        )
    if not hole.any():
        return image.copy()
    filled = cv2.inpaint(
        np.ascontiguousarray(image), hole.astype(np.uint8) * 255, radius, OPENCV_METHODS[method]
    )
    return np.where(hole[..., None], filled, image)


def make_baselines(names: list[str], radius: float = 3.0) -> dict[str, Baseline]:
    """Baselines by name: ``mean``, ``telea``, ``ns``."""
    known: dict[str, Callable[[], Baseline]] = {
        "mean": lambda: mean_fill,
        "telea": lambda: telea(radius),
        "ns": lambda: navier_stokes(radius),
    }
    out = {}
    for name in names:
        if name not in known:
            raise InputError(f"--baselines: unknown baseline {name!r}; expected some of {', '.join(known)}")
        out[name] = known[name]()
    return out
