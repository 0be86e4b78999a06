"""Inpainting bounded by the photo, not the hole (issue 24: items 3.1 and 3.12, the 16-bit part of 3.10).

Structural bounds, never memory or time thresholds (a verdict must not depend on the machine): every window the
model sees is at most ``window_cap`` a side (the spy on ``_crop_padded`` sees every window tensor), the model
calls of an image are at most ``max_windows(height, width)`` however many holes its mask has, a fill stops when
``should_stop`` says so, a GIF is decoded frame 0 only and refused by the pixels of all its frames. Ordinary
holes are filled bit for bit as the per-hole code before these bounds (kept below as ``LegacyInpainter``).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.v2 import functional as TF

import ctx_inpaint.inference.inpainter as inference
from ctx_inpaint.data import images
from ctx_inpaint.data.images import decode_rgb
from ctx_inpaint.errors import DataError
from ctx_inpaint.inference.inpainter import (
    MAX_WINDOW,
    Cancelled,
    Inpainter,
    _as_dtype,
    _box_mask,
    max_windows,
)
from ctx_inpaint.masks.generators import apply_mask, crop_box
from ctx_inpaint.masks.sets import draw_masks


class LegacyInpainter(Inpainter):
    """The per-hole windows as they were before the bounds (commit 44717be), verbatim: the reference that
    ordinary holes must still match bit for bit."""

    @torch.inference_mode()
    def _fill(self, result: torch.Tensor, hole: torch.Tensor, should_stop=None) -> None:
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
        top = legacy_clamp_start(round(y + h / 2 - side / 2), side, height)
        left = legacy_clamp_start(round(x + w / 2 - side / 2), side, width)
        return top, left, side, (0, side, 0, side)

    def _run_window(
        self, image: torch.Tensor, remaining: torch.Tensor, top: int, left: int, side: int
    ) -> torch.Tensor:
        """The model's composited output for one window, at window resolution (3, side, side)."""
        win_hole = legacy_crop_padded(remaining[None].float(), top, left, side)
        # Hide the hole before any resampling: a resize filter reaches past the pixels it lands on, so the hole's
        # own content must be gone from the window, not only masked after the resize (it leaked into the ring).
        win = apply_mask(legacy_crop_padded(image, top, left, side), win_hole)
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


def legacy_clamp_start(start: int, side: int, length: int) -> int:
    """Shift a window inside [0, length) when it fits; centre it on the image otherwise."""
    if side >= length:
        return (length - side) // 2
    return min(max(start, 0), length - side)


def legacy_crop_padded(x: torch.Tensor, top: int, left: int, side: int) -> torch.Tensor:
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


def photo(w: int, h: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: a colour gradient plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w * 200, yy / h * 200, (xx + yy) / (w + h) * 255], axis=-1)
    return (base + rng.integers(0, 40, (h, w, 3))).clip(0, 255).astype(np.uint8)


def as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.copy()).permute(2, 0, 1)


@pytest.fixture(scope="module")
def freeform() -> Inpainter:
    return Inpainter.load("freeform", device="cpu")


@pytest.fixture(scope="module")
def center() -> Inpainter:
    return Inpainter.load("center", device="cpu")


def test_ordinary_holes_are_filled_bit_for_bit_as_before(freeform: Inpainter, center: Inpainter) -> None:
    """The centre hole on a 128-px crop, free-form strokes and rectangles on a 256-px photo (windows up to 512,
    leaving the photo), the many holes of a random region, PIL and float-tensor inputs: identical results."""
    old_freeform = LegacyInpainter(freeform.model, device="cpu")
    old_center = LegacyInpainter(center.model, device="cpu")
    crop = Image.fromarray(photo(128, 128, seed=1))
    assert np.array_equal(np.asarray(center(crop, "center")), np.asarray(old_center(crop, "center")))
    wide = Image.fromarray(photo(300, 200, seed=2))
    assert np.array_equal(np.asarray(center(wide, "center")), np.asarray(old_center(wide, "center")))
    image = photo(256, 256, seed=3)
    cases = [
        (freeform, old_freeform, "freeform_thin", 1),
        (freeform, old_freeform, "freeform_medium", 1),
        (freeform, old_freeform, "freeform_thick", 1),
        (freeform, old_freeform, "random_patches", 2),
        (center, old_center, "freeform_medium", 1),
        (center, old_center, "random_region", 1),  # 35 holes, each its own window
    ]
    for new, old, name, count in cases:
        for i, mask in enumerate(draw_masks(name, 256, count, seed=11)):
            hole = mask[0] > 0.5
            pil_mask = Image.fromarray(hole.numpy().astype(np.uint8) * 255)
            a = np.asarray(new(Image.fromarray(image), pil_mask))
            b = np.asarray(old(Image.fromarray(image), pil_mask))
            assert np.array_equal(a, b), f"{new.kind} model, {name} mask {i}: the fill changed"
    as_float = as_tensor(image).float() / 255
    hole = draw_masks("freeform_medium", 256, 1, seed=5)[0][0] > 0.5
    assert torch.equal(freeform(as_float, hole), old_freeform(as_float, hole))


def hostile_masks() -> dict[str, tuple[int, int, np.ndarray]]:
    """(width, height, hole) of the issue's cases, and a photo of ordinary shape with thousands of holes."""
    out: dict[str, tuple[int, int, np.ndarray]] = {}
    line = np.zeros((3000, 4000), bool)
    line[1500:1510] = True  # a 10-px line across the whole width: a window of 8000 before
    out["line across 4000x3000"] = (4000, 3000, line)
    row = np.zeros((2800, 2800), bool)
    row[1400] = True
    out["1-px row across 2800x2800"] = (2800, 2800, row)
    for w, h in ((20000, 3), (20000, 2), (50000, 1)):
        out[f"full mask {w}x{h}"] = (w, h, np.ones((h, w), bool))
    alternate = np.zeros((1, 4000), bool)
    alternate[0, ::2] = True  # 2000 holes: 2000 model calls before
    out["every second pixel of 4000x1"] = (4000, 1, alternate)
    rng = np.random.default_rng(0)
    out["random 50000x1"] = (50000, 1, rng.random((1, 50000)) < 0.5)
    out["3000 specks on 600x400"] = (600, 400, rng.random((400, 600)) < 0.0125)
    return out


HOSTILE = hostile_masks()


@pytest.mark.parametrize("case", list(HOSTILE))
def test_windows_are_capped_and_model_calls_bounded_by_the_photo(
    case: str, freeform: Inpainter, center: Inpainter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the hole: every window within the cap, at most max_windows(H, W) model calls, every hole pixel
    written exactly once (a stand-in model: the plan is what is checked, the real model runs below)."""
    width, height, hole_np = HOSTILE[case]
    hole = torch.from_numpy(hole_np)
    written = []
    real_as_dtype = inference._as_dtype

    def counting_as_dtype(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        written.append(values.shape[1])
        return real_as_dtype(values, dtype)

    monkeypatch.setattr(inference, "_as_dtype", counting_as_dtype)
    for inpainter in (freeform, center):
        cap = inpainter.window_cap(height, width)
        assert cap <= MAX_WINDOW
        windows, _ = inpainter.plan(hole)
        model = [w for w in windows if w.model]
        assert 0 < len(model) <= max_windows(height, width), f"{len(model)} model calls"
        assert max(w.side for w in model) <= cap
        sides = []

        def stand_in(image, remaining, top, left, side, sides=sides):
            sides.append(side)
            return torch.zeros(3, side, side)

        monkeypatch.setattr(inpainter, "_run_window", stand_in)
        written.clear()
        image = torch.zeros(3, height, width, dtype=torch.uint8)
        inpainter(image, hole)
        assert len(sides) == len(model) and max(sides) <= cap
        assert sum(written) == int(hole.sum()), "every hole pixel is written once"
    assert max_windows(height, width) <= 64 + math.ceil(height * width / 128**2)


def test_model_calls_do_not_grow_with_the_number_of_holes(freeform: Inpainter, monkeypatch) -> None:
    """2000 one-pixel holes in a 4000x1 strip took 2000 model calls (27 s); 20000 take no more than 20."""
    calls = []
    monkeypatch.setattr(
        freeform, "_run_window", lambda *a: calls.append(a[-1]) or torch.zeros(3, a[-1], a[-1])
    )
    for holes in (20, 2000, 20000):
        hole = torch.zeros(1, 2 * holes, dtype=torch.bool)
        hole[0, ::2] = True
        calls.clear()
        freeform(torch.zeros(3, 1, 2 * holes, dtype=torch.uint8), hole)
        assert len(calls) <= max_windows(1, 2 * holes) <= 4, (holes, len(calls))


def spy_crops(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Record the shape of every window tensor the model's path builds."""
    shapes: list[tuple[int, ...]] = []
    real = inference._crop_padded

    def spy(x, top, left, side):
        out = real(x, top, left, side)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(inference, "_crop_padded", spy)
    return shapes


@pytest.mark.parametrize("kind", ["freeform", "center"])
def test_a_stroke_across_the_photo_is_filled_tile_by_tile_within_the_cap(
    kind: str, freeform: Inpainter, center: Inpainter, monkeypatch
) -> None:
    """A 1-px line across a 1500x40 photo asked for a 3000x3000 window (at 2800x2800: +2.5 GB); now every
    window tensor is within the cap (8 x the short side: 320 here), with the real model, and the whole line is
    filled, visible pixels untouched."""
    inpainter = freeform if kind == "freeform" else center
    image = as_tensor(photo(1500, 40, seed=4))
    hole = torch.zeros(40, 1500, dtype=torch.bool)
    hole[20] = True
    hole[5:12, 700:720] = True  # a blob the line's tiles may take along
    shapes = spy_crops(monkeypatch)
    out = inpainter(image, hole)
    cap = inpainter.window_cap(40, 1500)
    assert cap == 320 and shapes and max(max(s[-2:]) for s in shapes) <= cap, max(shapes)
    assert len(shapes) // 2 <= max_windows(40, 1500)  # two crops per window: the mask's and the photo's
    assert torch.equal(out[:, ~hole], image[:, ~hole])
    assert (out[:, hole] != image[:, hole]).any(0).float().mean() > 0.5


def test_a_full_mask_on_a_long_strip_is_answered_with_bounded_windows(
    freeform: Inpainter, monkeypatch
) -> None:
    """50000x1 with every pixel a hole tried to allocate 40 GB in _crop_padded; the real model now sees a few
    128-px windows and the rest gets its Navier-Stokes fill."""
    shapes = spy_crops(monkeypatch)
    image = as_tensor(photo(50000, 1, seed=6))
    hole = torch.ones(1, 50000, dtype=torch.bool)
    out = freeform(image, hole)
    assert out.shape == image.shape and out.dtype == torch.uint8
    assert max(max(s[-2:]) for s in shapes) <= 128 and len(shapes) // 2 <= max_windows(1, 50000)


def test_should_stop_abandons_the_fill_between_windows(freeform: Inpainter, monkeypatch) -> None:
    """A fill stops at the first check that says stop: no further window runs."""
    calls = []
    monkeypatch.setattr(
        freeform, "_run_window", lambda *a: calls.append(a[-1]) or torch.zeros(3, a[-1], a[-1])
    )
    hole = torch.zeros(600, 900, dtype=torch.bool)
    for y in range(0, 600, 150):
        for x in range(0, 900, 150):
            hole[y + 60 : y + 70, x + 60 : x + 70] = True  # 24 holes, a window each
    image = torch.zeros(3, 600, 900, dtype=torch.uint8)
    freeform(image, hole)
    assert len(calls) == 24
    calls.clear()
    with pytest.raises(Cancelled):
        freeform(image, hole, should_stop=lambda: len(calls) >= 3)
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(Cancelled):
        freeform(image, hole, should_stop=lambda: True)
    assert calls == []


def test_16_bit_and_32_bit_pil_images_and_masks_are_scaled_not_clipped(center: Inpainter) -> None:
    """An I;16 (or I) photo given to the Python API came out nearly white (clipped to 255); a 16-bit mask's
    dark grey became a hole."""
    grey = np.asarray(Image.fromarray(photo(96, 64, seed=8)).convert("L"))
    hole = center.center_mask(64, 96).numpy()
    expected = np.dstack([grey] * 3)
    for deep in (grey.astype(np.uint16) * 257, grey.astype(np.int32) * 257):
        image = Image.fromarray(deep)
        assert image.mode in ("I;16", "I")
        out = np.asarray(center(image, "center"))
        assert np.array_equal(out[~hole], expected[~hole]), image.mode
    mask16 = np.full((64, 96), 1000, np.uint16)  # about 4 / 255: visible
    mask16[hole] = 65535
    out = np.asarray(center(Image.fromarray(expected), Image.fromarray(mask16)))
    assert np.array_equal(out[~hole], expected[~hole])
    assert (out[hole] != expected[hole]).any(-1).mean() > 0.5


def gif_bomb(width: int = 2000, height: int = 2000, frames: int = 200) -> bytes:
    """A GIF whose canvas is ``width`` x ``height`` and whose ``frames`` frames are 1x1 each (5 KB)."""
    head = b"GIF89a" + width.to_bytes(2, "little") + height.to_bytes(2, "little") + b"\x80\x00\x00"
    head += b"\x00\x00\x00\xff\xff\xff"  # a two-colour global table
    body = b""
    for i in range(frames):
        body += b"\x21\xf9\x04\x00\x01\x00\x00\x00"  # graphic control: 1/100 s (the canvas is painted)
        body += b"\x2c" + (i % width).to_bytes(2, "little") + (i % height).to_bytes(2, "little")
        body += b"\x01\x00\x01\x00\x00"  # a 1x1 frame, no local table
        body += b"\x02\x02\x44\x01\x00"  # LZW, minimum code size 2: clear, 0, end
    return head + body + b"\x3b"


def test_a_gif_frame_bomb_is_refused_by_all_its_frames_and_only_frame_0_is_decoded(monkeypatch) -> None:
    """200 1x1 frames on a 2000x2000 canvas (5 KB) were 2.4 GB decoded: every frame expanded to the canvas."""
    from PIL import GifImagePlugin

    data = gif_bomb()
    assert len(data) < 5000
    with pytest.raises(
        DataError, match=r"image: 2000x2000 x 200 frames is 800,000,000 pixels, over the limit"
    ):
        decode_rgb(data, "image")  # the default limit, 100 megapixels

    def whole_animation(*args, **kwargs):
        raise AssertionError("torchvision's decoder expands every frame of a GIF")

    loaded = []
    real_load = GifImagePlugin.GifImageFile.load

    def load(self):
        loaded.append(self.tell())
        return real_load(self)

    monkeypatch.setattr(images, "decode_image", whole_animation)
    monkeypatch.setattr(GifImagePlugin.GifImageFile, "load", load)
    img = decode_rgb(data, "image", limit=10**9)
    assert img.shape == (3, 2000, 2000) and img.dtype == torch.uint8
    assert loaded and set(loaded) == {0}, f"frames decoded: {sorted(set(loaded))}"
