"""The classical fill: OpenCV's Telea and Navier-Stokes inpainting, in one place.

Used as the model's input fill (``masks.fill``, whole-image residual models), as the baselines the evaluation scores
beside the model, by the inpainter's classical fallback and by the demo's OpenCV buttons. OpenCV works on 8-bit
images; our images come from 8-bit files, so converting to uint8 and back is exact.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ctx_inpaint.errors import InputError

METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


def opencv_uint8(image: np.ndarray, hole: np.ndarray, method: str, radius: float = 3.0) -> np.ndarray:
    """A (H, W, 3) uint8 photo with its ``hole`` ((H, W) bool) filled by OpenCV (``telea`` or ``ns``), without a
    float copy of the photo (the demo's photos of any size); visible pixels are the input's, bit for bit."""
    if method not in METHODS:
        raise InputError(f"method: unknown OpenCV method {method!r}; expected one of {', '.join(METHODS)}")
    hole = np.asarray(hole, dtype=bool)
    if not hole.any():
        return image.copy()
    filled = cv2.inpaint(np.ascontiguousarray(image), hole.astype(np.uint8) * 255, radius, METHODS[method])
    return np.where(hole[..., None], filled, image)


def opencv_fill(
    image: torch.Tensor,
    mask: torch.Tensor,
    method: str = "telea",
    radius: float = 3.0,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """Hidden pixels (``mask`` > 0.5) of an image (3, H, W) or batch (N, 3, H, W) with values in ``value_range``
    filled by :func:`opencv_uint8`, composited with ``mask``: visible pixels are returned unchanged."""
    if image.dim() == 4:
        return torch.stack([opencv_fill(i, m, method, radius, value_range) for i, m in zip(image, mask)])
    low, high = value_range
    scale = 255.0 / (high - low)
    u8 = ((image.detach().float().cpu() - low) * scale).round().clamp(0, 255).to(torch.uint8)
    hole = (mask[0].detach().cpu() > 0.5).numpy()
    if not hole.any():
        return image.clone()
    filled = opencv_uint8(u8.permute(1, 2, 0).numpy(), hole, method, radius)
    fill = torch.from_numpy(filled).permute(2, 0, 1).to(image.device, image.dtype) / scale + low
    m = mask.to(image.dtype)
    return image * (1 - m) + fill * m


def classical_fill(image: torch.Tensor, mask: torch.Tensor, method: str = "telea", radius: float = 3.0):
    """The model-input fill: :func:`opencv_fill` on a [-1, 1] image or batch."""
    return opencv_fill(image, mask, method, radius, value_range=(-1.0, 1.0))
