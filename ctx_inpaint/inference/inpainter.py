"""Apply a trained context encoder to images of any size: ``Inpainter.load("freeform")(image, mask)``.

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

Memory and work are bounded by the photo, never by the hole (``Inpainter.plan``): a window's side is at most
``max_window`` (1024) and at most 8 times the photo's shorter side (a window over a thin strip is mostly
padding); a hole whose window would be larger is filled tile by tile, each tile from a window of its own, later
tiles seeing earlier ones as context. An image gets at most ``max_windows(height, width)`` model calls (64 plus
one per 128x128 of its area, fewer for a photo under 128 px thin); a mask of more separate holes than that is
filled from windows around the cells of a grid instead (the smallest cells that keep within the budget), and
cells past the budget (only photos a few pixels thin have them) get the classical fill alone (OpenCV,
the fill the model corrects). Ordinary holes (windows within the cap, within the budget) are filled exactly as
before these bounds. ``should_stop``, a callable checked before each window, abandons the fill (``Cancelled``):
the demo stops a request whose client has gone.

``precision`` (``PRECISIONS``): the generator runs under bf16 autocast where the device computes bf16 natively
(``auto``, the default: ``common.machine.bf16_native``), never (``32``) or always (``bf16``). Only the generator
call: windows, resizing and the paste stay float32, so visible pixels stay bit-identical to the input whatever the
precision.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from ctx_inpaint.common.machine import bf16_native
from ctx_inpaint.data.images import pil_as_8bit
from ctx_inpaint.errors import InputError
from ctx_inpaint.inference.loading import LoadedModel, ModelSource, load_model, pick_device
from ctx_inpaint.masks.fills import classical_fill
from ctx_inpaint.masks.generators import FILLS, CenterMask, apply_mask, crop_box

MASK_MODES = ("center",)
# The generator's precision: bf16 autocast where native (auto), never (32), always (bf16).
PRECISIONS = ("auto", "32", "bf16")
# A window's side at most (image pixels): one window's tensors are then tens of MB whatever the hole.
MAX_WINDOW = 1024
# ... and at most this many times the photo's shorter side: beyond, a window over a thin strip is mostly padding.
THIN_FACTOR = 8
# Model calls per image: this many for a photo whose shorter side is at least the model's usual input (fewer for
# a thinner one: its windows are mostly padding), plus one per WINDOW_AREA pixels of the photo.
BASE_WINDOWS = 64
WINDOW_AREA = 128 * 128
# A mask of more separate holes than this many times the budget goes straight to the grid (the greedy plan would
# only find out after looking at each of them).
COMPONENTS_PER_WINDOW = 8
# Visible pixels around a cell given the classical fill alone (OpenCV's radius is 3).
CLASSICAL_CONTEXT = 8

ShouldStop = Callable[[], bool]


def max_windows(height: int, width: int) -> int:
    """Model calls an image of this size may take: a function of its size, never of its number of holes (64
    plus one per 128x128 pixels; a photo thinner than 128 px gets a share of the 64 in proportion)."""
    base = math.ceil(BASE_WINDOWS * min(1.0, min(height, width) / math.isqrt(WINDOW_AREA)))
    return base + math.ceil(height * width / WINDOW_AREA)


class Cancelled(Exception):
    """``should_stop`` said stop (the demo's client disconnected): the fill was abandoned, nothing returned."""


@dataclass(frozen=True, eq=False)  # eq=False: ``labels`` is an array
class Window:
    """One step of a fill: the model on the square window (``top``, ``left``, ``side``; image pixels, may leave the
    image) fills the hole pixels of the image box ``box`` (y0, y1, x0, x1) that are still unfilled, of the
    components ``labels`` only (label numbers; ``None``: every hole pixel in ``box``). ``model`` False: the
    classical fill alone (cells past the budget)."""

    top: int
    left: int
    side: int
    box: tuple[int, int, int, int]
    labels: np.ndarray | None = None
    model: bool = True


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
    if isinstance(mask, Image.Image):  # 16-bit and float masks scaled to 8 bits first, not clipped
        return torch.from_numpy(np.asarray(pil_as_8bit(mask).convert("L")) > 127)
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
        self,
        model: LoadedModel,
        device: str | torch.device | None = None,
        margin: float = 2.0,
        max_window: int = MAX_WINDOW,
        precision: str = "auto",
    ) -> None:
        self.model = model
        self.device = pick_device(device)
        self.precision = precision
        self.bf16 = use_bf16(precision, self.device)
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
        if not (isinstance(max_window, int) and max_window >= self.size):
            raise InputError(
                f"max_window: expected a whole number of pixels >= the model's input size {self.size}, "
                f"got {max_window!r}"
            )
        self.max_window = max_window
        # The classical fill of cells past the budget: the model's own fill when it corrects one.
        fill = getattr(masks, "fill", "mean")
        self.classical = fill if fill in FILLS and fill != "mean" else "telea"

    @classmethod
    def load(
        cls,
        source: ModelSource,
        device: str | torch.device | None = None,
        margin: float = 2.0,
        max_window: int = MAX_WINDOW,
        precision: str = "auto",
    ) -> Inpainter:
        """An inpainter for the model ``source`` names (``load_model``: a shipped name such as ``freeform`` or
        ``center``, a ``.safetensors`` export or a ``.ckpt`` from training; weights only, no Hydra) on ``device``
        (``None``/``auto``: cuda if available), its generator in ``precision`` (``PRECISIONS``)."""
        dev = pick_device(device)  # a bad device is named before the model is read
        use_bf16(precision, dev)  # and a bad precision
        return cls(
            load_model(source, dev), device=dev, margin=margin, max_window=max_window, precision=precision
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

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
    def __call__(self, image, mask=None, *, should_stop: ShouldStop | None = None):
        """Inpaint ``image`` (PIL image, or a (3, H, W) / (B, 3, H, W) tensor: uint8, or float in [0, 1]).

        ``mask``: ``None`` or ``"center"`` for the centre hole, else a PIL image / tensor / array of the image's
        size (white or True = hole). Returns the same type, size and dtype as ``image`` (PIL: RGB; 16-bit and
        float images are scaled to 8 bits, not clipped). ``should_stop``: checked before each window; when it
        returns True the fill is abandoned with ``Cancelled``.
        """
        if isinstance(image, Image.Image):
            arr = np.asarray(pil_as_8bit(image).convert("RGB"), dtype=np.uint8)
            hole = self._resolve_mask(mask, arr.shape[0], arr.shape[1])
            out = self._inpaint_uint8(torch.from_numpy(arr.copy()).permute(2, 0, 1), hole, should_stop)
            return Image.fromarray(out.permute(1, 2, 0).numpy())
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"image: expected a PIL image or a tensor, got {type(image).__name__}")
        if image.dim() == 4:
            masks = mask if isinstance(mask, torch.Tensor) and mask.dim() == 4 else [mask] * image.shape[0]
            return torch.stack([self(img, m, should_stop=should_stop) for img, m in zip(image, masks)])
        if image.dim() != 3 or image.shape[0] != 3:
            raise InputError(f"image: expected a (3, H, W) RGB tensor, got shape {tuple(image.shape)}")
        hole = self._resolve_mask(mask, image.shape[1], image.shape[2])
        if image.dtype == torch.uint8:
            return self._inpaint_uint8(image.cpu(), hole, should_stop)
        if not image.is_floating_point():
            raise InputError(f"image: expected uint8 or float values, got {image.dtype}")
        pred = self.predict(image.detach().float().cpu() * 2 - 1, hole, should_stop)
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

    def _inpaint_uint8(
        self, image: torch.Tensor, hole: torch.Tensor, should_stop: ShouldStop | None = None
    ) -> torch.Tensor:
        """A uint8 copy filled window by window: only windows are ever float, so a large photo costs a few bytes
        per pixel (a float copy of a 100-megapixel photo alone would be 1.2 GB)."""
        out = image.clone()
        self._fill(out, hole, should_stop)
        return out

    # ---- windows ----------------------------------------------------------------------------------
    def predict(
        self, image: torch.Tensor, hole: torch.Tensor, should_stop: ShouldStop | None = None
    ) -> torch.Tensor:
        """``image`` (3, H, W) in [-1, 1], ``hole`` (H, W) bool -> the image with every hole pixel predicted."""
        result = image.clone()
        self._fill(result, hole, should_stop)
        return result

    def max_windows(self, height: int, width: int) -> int:
        """Model calls one image may take (``max_windows``); a method so a caller can tighten it."""
        return max_windows(height, width)

    def window_cap(self, height: int, width: int) -> int:
        """The largest window side for this photo: ``max_window``, and 8 times its shorter side (never below
        the model's input)."""
        return min(self.max_window, max(self.size, THIN_FACTOR * min(height, width)))

    def max_extent(self, height: int, width: int) -> int:
        """The largest hole extent (bbox side) whose window fits ``window_cap``: larger holes are tiled."""
        return self._extent_for(self.window_cap(height, width))

    def _extent_for(self, side: int) -> int:
        if self.hidden_box is None:
            return max(1, math.floor(side / self.margin))
        hy0, hy1, hx0, hx1 = self.hidden_box
        # The window grows from ceil(extent * n / hidden) until rounding leaves the hole inside the hidden square,
        # which holds by n * (extent + 1) / hidden (see _window): keep that within ``side``.
        return max(1, side * min(hy1 - hy0, hx1 - hx0) // self.size - 1)

    @torch.inference_mode()
    def _fill(self, result: torch.Tensor, hole: torch.Tensor, should_stop: ShouldStop | None = None) -> None:
        """Predict every hole pixel of ``result`` in place (float in [-1, 1], or uint8), window by window."""
        if not bool(hole.any()):
            return
        windows, labels = self.plan(hole)
        n_labels = int(labels.max()) + 1 if labels is not None else 0
        remaining = hole.clone()
        for win in windows:
            if should_stop is not None and should_stop():
                raise Cancelled("the fill was stopped before it finished (should_stop)")
            y0, y1, x0, x1 = win.box
            chosen = remaining[y0:y1, x0:x1].clone()
            if win.labels is not None:  # only the components this window was planned for
                wanted = np.zeros(n_labels, dtype=bool)
                wanted[win.labels] = True
                chosen &= torch.from_numpy(wanted[labels[y0:y1, x0:x1]])
            if not bool(chosen.any()):
                continue
            ys, xs = chosen.nonzero(as_tuple=True)
            if win.model:
                canvas = self._run_window(result, remaining, win.top, win.left, win.side)
                values = canvas[:, ys + (y0 - win.top), xs + (x0 - win.left)]
            else:
                values = self._classical_box(result, remaining, win.box)[:, ys, xs]
            result[:, ys + y0, xs + x0] = _as_dtype(values, result.dtype)
            remaining[y0:y1, x0:x1] &= ~chosen

    def plan(self, hole: torch.Tensor) -> tuple[list[Window], np.ndarray | None]:
        """The windows that fill ``hole`` ((H, W) bool) and the component labels they refer to (``None`` when
        no window names components). Depends on the mask only, so its bounds hold before any model call:

        - one window per hole, largest first, each also filling every smaller hole lying wholly inside it (the
          holes' own windows as before), a hole too large for ``window_cap`` tiled into pieces of
          ``max_extent``;
        - when that takes more than ``max_windows`` windows: a grid over the photo, the smallest cells (from
          the model's own scale up to ``max_extent``) whose holed cells are within the budget, one window
          around each holed cell's hole, largest first; cells past the budget get the classical fill.
        """
        height, width = hole.shape
        budget = self.max_windows(height, width)
        hole_np = np.ascontiguousarray(hole.numpy())
        # Counted first: the statistics of millions of specks (36 bytes each) would outweigh the photo.
        n_labels, labels = cv2.connectedComponents(hole_np.view(np.uint8), connectivity=8)
        if n_labels - 1 <= COMPONENTS_PER_WINDOW * budget:
            del labels  # one label image at a time
            n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(
                hole_np.view(np.uint8), connectivity=8
            )
            windows = self._component_plan(labels, stats, n_labels, height, width, budget)
            if windows is not None:
                return windows, labels
        del labels
        return self._grid_plan(hole_np, height, width, budget), None

    def _component_plan(
        self, labels: np.ndarray, stats: np.ndarray, n_labels: int, height: int, width: int, budget: int
    ) -> list[Window] | None:
        """One window per hole as the original per-hole loop chose them (big holes tiled); ``None`` past
        ``budget`` windows."""
        limit = self.max_extent(height, width)
        top_, left_ = stats[:, cv2.CC_STAT_TOP], stats[:, cv2.CC_STAT_LEFT]
        bottom_ = top_ + stats[:, cv2.CC_STAT_HEIGHT]
        right_ = left_ + stats[:, cv2.CC_STAT_WIDTH]
        done = np.zeros(n_labels, dtype=bool)
        done[0] = True  # background
        windows: list[Window] = []

        def wholly_inside(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            return (top_ >= y0) & (bottom_ <= y1) & (left_ >= x0) & (right_ <= x1) & ~done

        # Largest holes first: the small ones around them then see filled context.
        order = np.argsort(-stats[1:, cv2.CC_STAT_AREA], kind="stable") + 1
        for label in order.tolist():
            if done[label]:
                continue
            x, y, w, h = (int(v) for v in stats[label, :4])
            if max(h, w) <= limit:
                top, left, side, paste = self._window(y, x, h, w, height, width)
                # Paste every not-yet-filled hole lying wholly inside the pasteable part of the window.
                py0, py1, px0, px1 = paste
                inside = wholly_inside(top + py0, top + py1, left + px0, left + px1)
                inside[label] = True
                box = (max(top, 0), min(top + side, height), max(left, 0), min(left + side, width))
                windows.append(Window(top, left, side, box, np.flatnonzero(inside)))
                done |= inside
                if len(windows) > budget:
                    return None
                continue
            for ty in range(y, y + h, limit):  # a hole too large for one window: tiles of ``limit``
                for tx in range(x, x + w, limit):
                    tile = (ty, min(ty + limit, y + h), tx, min(tx + limit, x + w))
                    own = labels[tile[0] : tile[1], tile[2] : tile[3]] == label
                    if not own.any():
                        continue
                    rows, cols = np.flatnonzero(own.any(1)), np.flatnonzero(own.any(0))
                    py, px = ty + int(rows[0]), tx + int(cols[0])
                    ph, pw = int(rows[-1] - rows[0]) + 1, int(cols[-1] - cols[0]) + 1
                    top, left, side, paste = self._window(py, px, ph, pw, height, width)
                    # The tile's share of the hole, and the small holes wholly inside both tile and window.
                    box = (
                        max(tile[0], top + paste[0]),
                        min(tile[1], top + paste[1]),
                        max(tile[2], left + paste[2]),
                        min(tile[3], left + paste[3]),
                    )
                    inside = wholly_inside(*box)
                    inside[label] = True
                    windows.append(Window(top, left, side, box, np.flatnonzero(inside)))
                    inside[label] = False
                    done |= inside
                    if len(windows) > budget:
                        return None
            done[label] = True
        return windows

    def _grid_plan(self, hole: np.ndarray, height: int, width: int, budget: int) -> list[Window]:
        """Windows around the holes of grid cells: the smallest cells whose holed ones fit ``budget`` (at most
        ``max_extent``, so every window fits the cap); past the budget, cells get the classical fill."""
        limit = self.max_extent(height, width)
        cell = min(self._extent_for(self.size), limit)
        while True:
            counts = _cell_counts(hole, cell)
            if int(np.count_nonzero(counts)) <= budget or cell >= limit:
                break
            cell = min(2 * cell, limit)
        flat = counts.ravel()
        order = np.argsort(-flat, kind="stable")[: int(np.count_nonzero(flat))]
        windows = []
        for rank, index in enumerate(order.tolist()):
            cy, cx = divmod(index, counts.shape[1])
            box = (cy * cell, min((cy + 1) * cell, height), cx * cell, min((cx + 1) * cell, width))
            if rank >= budget:
                windows.append(Window(0, 0, 0, box, None, model=False))
                continue
            sub = hole[box[0] : box[1], box[2] : box[3]]
            rows, cols = np.flatnonzero(sub.any(1)), np.flatnonzero(sub.any(0))
            py, px = box[0] + int(rows[0]), box[2] + int(cols[0])
            ph, pw = int(rows[-1] - rows[0]) + 1, int(cols[-1] - cols[0]) + 1
            top, left, side, _ = self._window(py, px, ph, pw, height, width)
            windows.append(Window(top, left, side, box))
        return windows

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
        # Within the cap (a margin larger than the cap would ask more; the hole, within max_extent, still fits).
        side = min(max(floor, math.ceil(extent * self.margin)), max(self.window_cap(height, width), extent))
        top = _clamp_start(round(y + h / 2 - side / 2), side, height)
        left = _clamp_start(round(x + w / 2 - side / 2), side, width)
        return top, left, side, (0, side, 0, side)

    def _classical_box(
        self, image: torch.Tensor, remaining: torch.Tensor, box: tuple[int, int, int, int]
    ) -> torch.Tensor:
        """The classical fill (``self.classical``) of ``box``, from the box and a few pixels around it: (3, box
        height, box width) in [-1, 1]."""
        y0, y1, x0, x1 = box
        height, width = image.shape[1:]
        m = CLASSICAL_CONTEXT
        cy0, cy1, cx0, cx1 = max(0, y0 - m), min(height, y1 + m), max(0, x0 - m), min(width, x1 + m)
        crop = image[:, cy0:cy1, cx0:cx1]
        crop = crop.float() / 127.5 - 1 if crop.dtype == torch.uint8 else crop.float()
        filled = classical_fill(crop, remaining[None, cy0:cy1, cx0:cx1].float(), self.classical)
        return filled[:, y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]

    def _run_window(
        self, image: torch.Tensor, remaining: torch.Tensor, top: int, left: int, side: int
    ) -> torch.Tensor:
        """The model's composited output for one window, at window resolution (3, side, side)."""
        win_hole = _crop_padded(remaining[None], top, left, side)
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
        with self._autocast():  # the generator call only: everything around it is float32
            pred = self.generator(masked[None].to(self.device), model_mask[None].to(self.device))
        pred = pred.float().cpu()[0]
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


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether ``precision`` (``PRECISIONS``) runs the generator under bf16 autocast on ``device``; a one-line
    ``InputError`` for anything else."""
    if precision not in PRECISIONS:
        raise InputError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "32":
        return False
    if precision == "bf16":
        if not torch.amp.is_autocast_available(device.type):
            raise InputError(
                f"precision: bf16 autocast is not available on {device.type}; expected auto or 32"
            )
        return True
    return bf16_native(device)


def _cell_counts(hole: np.ndarray, cell: int) -> np.ndarray:
    """Hole pixels per ``cell`` x ``cell`` cell of a grid from the top-left corner (the last row and column of
    cells may be smaller): (ceil(H / cell), ceil(W / cell)) int64, the photo read once per axis."""
    height, width = hole.shape
    rows = np.add.reduceat(hole, np.arange(0, height, cell), axis=0, dtype=np.int64)
    return np.add.reduceat(rows, np.arange(0, width, cell), axis=1)


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
    image's window comes back in the model's [-1, 1] range, a bool mask's as 0/1 floats."""
    h, w = x.shape[-2:]
    pt, pl = max(0, -top), max(0, -left)
    pb, pr = max(0, top + side - h), max(0, left + side - w)
    crop = x[..., max(top, 0) : min(top + side, h), max(left, 0) : min(left + side, w)]
    if crop.dtype == torch.uint8:
        crop = crop.float() / 127.5 - 1
    elif crop.dtype == torch.bool:  # a mask: 0/1, converted after cropping (never the whole image's mask)
        crop = crop.float()
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
