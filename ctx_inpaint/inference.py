"""Apply a trained context encoder to images of any size: ``Inpainter.from_checkpoint(path)(image, mask)``.

The networks only ever see ``input_size`` (128) squares. Each hole (a connected component of the mask) is
filled from a square window around it, resized to the model's input and back:

- centre models (trained with ``CenterMask``) predict the centre square of their input, so the window is
  centred on the hole and sized so the hole fits the square the model was trained to fill (the inner 56 of
  128); at least the model's input size in image pixels, so small holes are filled at the training scale;
- whole-image models (random patches / regions) predict every pixel, so the window is at least the model's
  input size and twice the hole's extent, kept inside the image when it fits.

Windows that leave the image are padded by reflection. The hole is filled with the mean colour at window
resolution before anything is resized, so the result depends on visible pixels only: two inputs that differ only
inside the hole give bit-identical results. Only hole pixels are written: every visible pixel of the result is
bit-identical to the input.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from ctx_inpaint.errors import InputError
from ctx_inpaint.loading import LoadedModel
from ctx_inpaint.masks import CenterMask, apply_mask, crop_box
from ctx_inpaint.weights import load_any, load_weights, pretrained_path

MASK_MODES = ("center",)


def pick_device(device: str | torch.device | None, name: str = "device") -> torch.device:
    """``auto`` (or ``None``): cuda if available, else cpu; otherwise the torch device named, checked now so
    a bad ``name`` (a flag or argument) is reported in one line instead of failing deep inside torch."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"{name}: expected auto, cpu, cuda or cuda:N, got {str(device)!r}") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(
                f"{name}: got {str(device)!r} but CUDA is not available here (expected auto or cpu)"
            )
        if dev.index is not None and dev.index >= count:
            raise InputError(
                f"{name}: got {str(device)!r} but there are {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
            )
    return dev


def check_margin(margin: float, name: str = "margin") -> float:
    """Whole-image models' window side over the hole's extent: a finite number >= 1 (below 1 the window
    cannot hold the hole)."""
    try:
        value = float(margin)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise InputError(
            f"{name}: expected a number >= 1 for whole-image models (window side / hole extent; the window "
            f"must hold the hole), got {margin!r}"
        )
    return value


def center_mask(height: int, width: int, fraction: float = 56 / 128) -> torch.Tensor:
    """A centred square hole of side ``fraction * min(height, width)``: the training geometry at any size."""
    side = max(1, round(min(height, width) * fraction))
    y0, x0 = (height - side) // 2, (width - side) // 2
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[y0 : y0 + side, x0 : x0 + side] = True
    return mask


def mask_to_bool(mask: Image.Image | torch.Tensor | np.ndarray, name: str = "mask") -> torch.Tensor:
    """(H, W) bool hole mask. PIL / uint8 images: white (> 127) = hole (0/1 uint8 masks: 1 = hole); float
    tensors: > 0.5; bool: True. (3, H, W) masks are thresholded per channel, then a pixel is a hole if any
    channel is, so a grey pixel counts the same in a (3, H, W) and a (H, W) mask."""
    if isinstance(mask, Image.Image):
        return torch.from_numpy(np.asarray(mask.convert("L")) > 127)
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(
            f"{name}: expected a PIL image, a tensor, an array or {MASK_MODES}, got {type(mask).__name__}"
        )
    if mask.dim() == 2:
        mask = mask[None]
    if mask.dim() != 3 or mask.shape[0] not in (1, 3):
        raise InputError(
            f"{name}: expected a (H, W), (1, H, W) or (3, H, W) mask, got shape {tuple(mask.shape)}"
        )
    if mask.dtype == torch.bool:
        hole = mask
    elif mask.dtype == torch.uint8:
        hole = mask > 127 if mask.numel() and int(mask.max()) > 1 else mask > 0
    else:
        hole = mask.float() > 0.5
    return hole.any(0).cpu()


class Inpainter:
    """Fills holes with a trained generator; see the module docstring for how windows are chosen."""

    def __init__(
        self, model: LoadedModel, device: str | torch.device | None = None, margin: float = 2.0
    ) -> None:
        self.model = model
        self.device = pick_device(device)
        self.generator = model.generator.to(self.device).eval()
        self.size = model.input_size
        masks = model.masks
        if isinstance(masks, CenterMask):
            self.hidden_box = masks.hidden_box
        elif masks.target_box is not None:  # a centre-type generator without an overlap ring
            self.hidden_box = masks.target_box
        else:
            self.hidden_box = None
        # Only whole-image models use the margin (centre models' windows follow their hidden square).
        self.margin = check_margin(margin) if self.hidden_box is None else margin

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device | None = None, margin: float = 2.0
    ) -> Inpainter:
        """Load a checkpoint written by ``ctx_inpaint.train`` (weights-only, no Hydra needed), a ``.safetensors``
        export, or a pretrained name."""
        return cls(load_any(path), device=device, margin=margin)

    @classmethod
    def from_pretrained(
        cls, name: str = "freeform", device: str | torch.device | None = None, margin: float = 2.0
    ) -> Inpainter:
        """A shipped model (``freeform``: brushed holes; ``center``: the paper's centre hole), no training needed."""
        return cls(load_weights(pretrained_path(name)), device=device, margin=margin)

    @property
    def kind(self) -> str:
        return self.model.kind

    @property
    def hole_fraction(self) -> float:
        """Side of the hole the ``center`` mask mode cuts, as a fraction of the shorter image side."""
        if self.hidden_box is not None:
            return (self.hidden_box[1] - self.hidden_box[0]) / self.size
        return 56 / 128

    def center_mask(self, height: int, width: int) -> torch.Tensor:
        return center_mask(height, width, self.hole_fraction)

    # ---- public entry point -----------------------------------------------------------------------
    def __call__(self, image, mask=None):
        """Inpaint ``image`` (PIL image, or a (3, H, W) / (B, 3, H, W) tensor: uint8, or float in [0, 1]).

        ``mask``: ``None`` or ``"center"`` for the centre hole, else a PIL image / tensor / array of the image's
        size (white or True = hole). Returns the same type, size and dtype as ``image``.
        """
        if isinstance(image, Image.Image):
            arr = np.asarray(image.convert("RGB"), dtype=np.uint8)
            hole = self._resolve_mask(mask, arr.shape[0], arr.shape[1])
            out = self._inpaint_uint8(torch.from_numpy(arr.copy()).permute(2, 0, 1), hole)
            return Image.fromarray(out.permute(1, 2, 0).numpy())
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"image: expected a PIL image or a tensor, got {type(image).__name__}")
        if image.dim() == 4:
            masks = mask if isinstance(mask, torch.Tensor) and mask.dim() == 4 else [mask] * image.shape[0]
            return torch.stack([self(img, m) for img, m in zip(image, masks)])
        if image.dim() != 3 or image.shape[0] != 3:
            raise InputError(f"image: expected a (3, H, W) RGB tensor, got shape {tuple(image.shape)}")
        hole = self._resolve_mask(mask, image.shape[1], image.shape[2])
        if image.dtype == torch.uint8:
            return self._inpaint_uint8(image.cpu(), hole)
        if not image.is_floating_point():
            raise InputError(f"image: expected uint8 or float values, got {image.dtype}")
        pred = self.predict(image.detach().float().cpu() * 2 - 1, hole)
        out = image.detach().clone()
        filled = ((pred + 1) / 2).clamp(0, 1).to(out.dtype).to(out.device)
        out[:, hole.to(out.device)] = filled[:, hole]
        return out

    def _resolve_mask(self, mask, height: int, width: int) -> torch.Tensor:
        if mask is None or (isinstance(mask, str) and mask == "center"):
            return self.center_mask(height, width)
        if isinstance(mask, str):
            raise InputError(f"mask: unknown mode {mask!r}; expected one of {MASK_MODES} or a mask image")
        hole = mask_to_bool(mask)
        if tuple(hole.shape) != (height, width):
            raise InputError(
                f"mask: size {hole.shape[1]}x{hole.shape[0]} differs from the image's {width}x{height}"
            )
        return hole

    def _inpaint_uint8(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """A uint8 copy filled window by window: only windows are ever float, so a large photo costs a few bytes
        per pixel (a float copy of a 100-megapixel photo alone would be 1.2 GB)."""
        out = image.clone()
        self._fill(out, hole)
        return out

    # ---- windows ----------------------------------------------------------------------------------
    def predict(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """``image`` (3, H, W) in [-1, 1], ``hole`` (H, W) bool -> the image with every hole pixel predicted."""
        result = image.clone()
        self._fill(result, hole)
        return result

    @torch.inference_mode()
    def _fill(self, result: torch.Tensor, hole: torch.Tensor) -> None:
        """Predict every hole pixel of ``result`` in place (float in [-1, 1], or uint8), one window per hole."""
        remaining = hole.clone()
        if not bool(hole.any()):
            return
        height, width = result.shape[1:]
        n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(
            hole.numpy().astype(np.uint8), connectivity=8
        )
        done = np.zeros(n_labels, dtype=bool)
        done[0] = True  # background
        # Largest holes first: the small ones around them then see filled context.
        order = sorted(range(1, n_labels), key=lambda i: -int(stats[i, cv2.CC_STAT_AREA]))
        for label in order:
            if done[label]:
                continue
            x, y, w, h = (int(v) for v in stats[label, :4])
            top, left, side, paste = self._window(y, x, h, w, height, width)
            canvas = self._run_window(result, remaining, top, left, side)
            # Paste every not-yet-filled component lying wholly inside the pasteable part of the window.
            py0, py1, px0, px1 = paste
            inside = (
                (stats[:, cv2.CC_STAT_TOP] >= top + py0)
                & (stats[:, cv2.CC_STAT_TOP] + stats[:, cv2.CC_STAT_HEIGHT] <= top + py1)
                & (stats[:, cv2.CC_STAT_LEFT] >= left + px0)
                & (stats[:, cv2.CC_STAT_LEFT] + stats[:, cv2.CC_STAT_WIDTH] <= left + px1)
                & ~done
            )
            inside[label] = True
            # Within the window only: no image-sized temporaries per hole.
            y0, y1, x0, x1 = max(top, 0), min(top + side, height), max(left, 0), min(left + side, width)
            chosen = torch.from_numpy(inside[labels[y0:y1, x0:x1]]) & remaining[y0:y1, x0:x1]
            ys, xs = chosen.nonzero(as_tuple=True)
            values = canvas[:, ys + (y0 - top), xs + (x0 - left)]
            result[:, ys + y0, xs + x0] = _as_dtype(values, result.dtype)
            remaining[y0:y1, x0:x1] &= ~chosen
            done |= inside

    def _window(self, y: int, x: int, h: int, w: int, height: int, width: int):
        """Square window (top, left, side) around a hole bbox and the box (in window pixels) that may be pasted."""
        extent = max(h, w)
        floor = min(self.size, height, width)
        if self.hidden_box is not None:
            hy0, hy1, hx0, hx1 = self.hidden_box
            side = max(floor, math.ceil(extent * self.size / min(hy1 - hy0, hx1 - hx0)))
            while True:  # grow by a pixel until rounding leaves the whole hole inside the hidden square
                s = side / self.size
                # Centre the model's hidden square (not necessarily the window) on the hole.
                top = round(y + h / 2 - (hy0 + hy1) / 2 * s)
                left = round(x + w / 2 - (hx0 + hx1) / 2 * s)
                paste = (math.floor(hy0 * s), math.ceil(hy1 * s), math.floor(hx0 * s), math.ceil(hx1 * s))
                if (
                    top + paste[0] <= y
                    and y + h <= top + paste[1]
                    and left + paste[2] <= x
                    and x + w <= left + paste[3]
                ):
                    return top, left, side, paste
                side += 1
        side = max(floor, math.ceil(extent * self.margin))
        top = _clamp_start(round(y + h / 2 - side / 2), side, height)
        left = _clamp_start(round(x + w / 2 - side / 2), side, width)
        return top, left, side, (0, side, 0, side)

    def _run_window(
        self, image: torch.Tensor, remaining: torch.Tensor, top: int, left: int, side: int
    ) -> torch.Tensor:
        """The model's composited output for one window, at window resolution (3, side, side)."""
        win_hole = _crop_padded(remaining[None].float(), top, left, side)
        # Hide the hole before any resampling: a resize filter reaches past the pixels it lands on, so the hole's
        # own content must be gone from the window, not only masked after the resize (it leaked into the ring).
        win = apply_mask(_crop_padded(image, top, left, side), win_hole)
        n = self.size
        if side != n:
            model_in = TF.resize(win, [n, n], antialias=True)
            # Every model pixel the resize filter took any hole pixel into is hidden (the same filter on the mask),
            # so the model, and a classical fill, see visible pixels free of the mean colour around the hole.
            hole_n = TF.resize(win_hole, [n, n], antialias=True) > 1e-6
        else:
            model_in, hole_n = win, win_hole > 0
        hole_n = hole_n.float()
        # Centre models always get their training hole (the hidden square) plus any other hole in the window.
        model_mask = hole_n if self.hidden_box is None else _box_mask(self.hidden_box, n).maximum(hole_n)
        masked = self.model.masks.hide(model_in, model_mask)
        pred = self.generator(masked[None].to(self.device), model_mask[None].to(self.device)).float().cpu()[0]
        if side != n and self.generator.residual and self.hidden_box is None:
            # A model that corrects a classical fill: the fill is made at the window's own resolution (a thin
            # stroke in a large window would be a blur at 128) and only the model's correction is resized.
            correction = TF.resize(pred - masked, [side, side], antialias=side < n)
            return self.model.masks.hide(win, win_hole) + correction * win_hole
        canvas = masked.clone()
        crop_box(canvas, self.model.masks.target_box).copy_(pred)
        if side != n:
            canvas = TF.resize(canvas, [side, side], antialias=side < n)
        return canvas


def _clamp_start(start: int, side: int, length: int) -> int:
    """Shift a window inside [0, length) when it fits; centre it on the image otherwise."""
    if side >= length:
        return (length - side) // 2
    return min(max(start, 0), length - side)


def _as_dtype(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Model-range values ([-1, 1]) as ``dtype``: uint8 rounds to 0..255."""
    if dtype == torch.uint8:
        return ((values + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return values.to(dtype)


def _crop_padded(x: torch.Tensor, top: int, left: int, side: int) -> torch.Tensor:
    """``x[..., top:top+side, left:left+side]`` with reflection padding where the window leaves ``x``; a uint8
    image's window comes back in the model's [-1, 1] range."""
    h, w = x.shape[-2:]
    pt, pl = max(0, -top), max(0, -left)
    pb, pr = max(0, top + side - h), max(0, left + side - w)
    crop = x[..., max(top, 0) : min(top + side, h), max(left, 0) : min(left + side, w)]
    if crop.dtype == torch.uint8:
        crop = crop.float() / 127.5 - 1
    if pt or pl or pb or pr:
        ch, cw = crop.shape[-2:]
        mode = "reflect" if max(pt, pb) < ch and max(pl, pr) < cw else "replicate"  # reflect needs pad < size
        crop = F.pad(crop[None], (pl, pr, pt, pb), mode=mode)[0]
    return crop


def _box_mask(box: tuple[int, int, int, int], n: int) -> torch.Tensor:
    mask = torch.zeros(1, n, n)
    y0, y1, x0, x1 = box
    mask[:, y0:y1, x0:x1] = 1.0
    return mask
