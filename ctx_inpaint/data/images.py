"""Decoding and resizing photos to uint8 tensors."""

from __future__ import annotations

import io
import os
import re
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF

from ctx_inpaint.errors import DataError

MAX_PIXELS_ENV = "CTX_INPAINT_MAX_PIXELS"
# 100 megapixels (a 12,000 x 8,000 photo): decoding takes about 46 bytes per pixel at its peak, so this bounds one
# image to a few GB; a 48 KB PNG can claim 20,000 x 20,000 pixels and take 24 GB.
DEFAULT_MAX_PIXELS = 100_000_000
_PIL_LIMIT_LOCK = threading.Lock()


def max_pixels() -> int:
    """The pixel limit of every reader of user images (``CTX_INPAINT_MAX_PIXELS`` overrides the default)."""
    raw = os.environ.get(MAX_PIXELS_ENV)
    if raw is None:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise DataError(f"{MAX_PIXELS_ENV}: got {raw!r}; expected a positive number of pixels")
    return value


# Formats whose frames are all canvas-sized once decoded: their files count every frame's pixels.
ANIMATED_FORMATS = ("GIF", "PNG", "WEBP")


def image_info(source: Path | bytes) -> tuple[int, int, int] | None:
    """(width, height, frames) from an image's header (a file or its bytes), no pixel decoded; ``frames`` is 1
    except for animations (GIF, APNG, WebP), whose frames are counted from their headers. ``None`` when PIL
    does not know the format (the decoders then say what is wrong)."""
    with _PIL_LIMIT_LOCK:  # the server decodes in threads: one toggle of PIL's global limit at a time
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our limit, our message
                try:
                    with Image.open(_opened(source)) as pil:  # reads the header only
                        frames = 1
                        if pil.format in ANIMATED_FORMATS:
                            frames = max(1, int(getattr(pil, "n_frames", 1)))  # walks frame headers
                        return pil.size[0], pil.size[1], frames
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
        except Exception:  # noqa: BLE001 - not an image PIL knows: the decoders below say so
            return None


def image_size(source: Path | bytes) -> tuple[int, int] | None:
    """(width, height) from an image's header (a file or its bytes), nothing decoded; ``None`` when PIL does not
    know the format (the decoders then say what is wrong)."""
    info = image_info(source)
    return None if info is None else info[:2]


def describe_pixels(width: int, height: int, frames: int) -> tuple[str, int]:
    """``("WxH", pixels)``, or ``("WxH x N frames", pixels of every frame)`` for an animation: what a limit
    message says and what it counts."""
    what = f"{width}x{height}" if frames == 1 else f"{width}x{height} x {frames} frames"
    return what, width * height * frames


def check_pixels(source: Path | bytes, name: str | None = None, limit: int | None = None) -> None:
    """Refuse an image whose header claims more pixels than ``limit`` (default ``max_pixels()``), before anything
    is decoded; an animation's pixels are those of all its frames (a 3 KB GIF can hold hundreds of frames on a
    large canvas). The one-line ``DataError`` starts with ``name`` (default: the path)."""
    limit = max_pixels() if limit is None else limit
    info = image_info(source)
    if info is None:
        return
    what, pixels = describe_pixels(*info)
    if pixels > limit:
        raise DataError(
            f"{name or source}: {what} is {pixels:,} pixels, over the limit of {limit:,} "
            f"(set {MAX_PIXELS_ENV} to allow larger images)"
        )


def load_rgb(path: str | Path) -> torch.Tensor:
    """Decode any common image file to a (3, H, W) uint8 RGB tensor, EXIF orientation applied.

    Every reader of user images (training sources, inpaint, evaluate, the demo's uploads through
    ``decode_rgb``) comes here: images over the pixel limit are refused before decoding, and animated files (GIF,
    APNG, multi-page TIFF) give their first frame. torchvision's decoder handles the usual files; PIL takes what
    it refuses (CMYK JPEGs, 16-bit PNGs...) and every GIF (torchvision's GIF decoder expands every frame to the
    canvas: 200 frames of 1x1 on a 2000x2000 canvas are 2.4 GB), so only the first frame is ever decoded.
    """
    path = Path(path)
    check_pixels(path)
    return _decode(path, str(path))


def decode_rgb(data: bytes, name: str, limit: int | None = None) -> torch.Tensor:
    """``load_rgb`` for an image's bytes (an upload): the same checks and conversions; errors start with
    ``name`` (the form field) instead of a path. ``limit``: pixels (default ``max_pixels()``)."""
    check_pixels(bytes(data), name, limit)
    return _decode(bytes(data), name)


def _opened(source: Path | bytes) -> Path | io.BytesIO:
    return io.BytesIO(source) if isinstance(source, bytes) else source


def _is_gif(source: Path | bytes) -> bool:
    if isinstance(source, bytes):
        return source[:4] == b"GIF8"
    try:
        with open(source, "rb") as f:
            return f.read(4) == b"GIF8"
    except OSError:
        return False


def _decode(source: Path | bytes, name: str) -> torch.Tensor:
    if not _is_gif(source):  # GIFs: PIL, first frame only (see load_rgb)
        try:
            encoded = (
                str(source)
                if isinstance(source, Path)
                else torch.frombuffer(bytearray(source), dtype=torch.uint8)
            )
            img = decode_image(encoded, mode=ImageReadMode.RGB, apply_exif_orientation=True)
            if img.dim() == 4:  # several frames: (frames, 3, H, W)
                img = img[0]
            if img.dtype == torch.uint8:
                return img.contiguous()
        except (RuntimeError, ValueError):
            pass
    try:
        with Image.open(_opened(source)) as pil:
            pil.seek(0)  # the first frame of a multi-frame file; no other frame is decoded
            pil = ImageOps.exif_transpose(pil)
            arr = np.asarray(pil_as_8bit(pil).convert("RGB"), dtype=np.uint8)
    except Exception as err:  # PIL raises many types for bad files
        reason = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", " ".join(str(err).split()))
        raise DataError(f"{name}: not a readable image ({reason or type(err).__name__})") from err
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def pil_as_8bit(pil: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float grey image as 8-bit ``L``, its range scaled to 0..255 (PIL's own
    ``convert`` clips them: a 16-bit photo would come out nearly white); other images as they are."""
    if pil.mode in HIGH_DEPTH_MODES:
        return Image.fromarray(_high_depth_to_uint8(np.asarray(pil), pil.mode))
    return pil


def _high_depth_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """16-bit, 32-bit integer and float grey levels to 0..255 (their full range maps to the full range)."""
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    top = float(arr.max()) if arr.size else 0.0
    if mode.startswith("I;16"):
        peak = 65535.0
    elif mode == "F":  # floats: [0, 1] as written by most tools, else 8- or 16-bit ranges
        peak = 1.0 if top <= 1.0 else 255.0 if top <= 255.0 else 65535.0
    else:  # "I": often a 16-bit PNG opened by an older Pillow
        peak = 255.0 if top <= 255.0 else 65535.0
    return np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)


def resize_short_side(img: torch.Tensor, short_side: int, min_side: int) -> torch.Tensor:
    """Resize so the shorter side is ``short_side``, but never below ``min_side`` (the crop) and never upscale
    an image that is already between the two: small photos keep their own scale.
    """
    h, w = img.shape[-2:]
    s = min(h, w)
    target = max(min_side, min(short_side, s))
    if target == s:
        return img
    return TF.resize(img, [target], antialias=True)


def to_model_range(img: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return img.float().div_(127.5).sub_(1.0)
