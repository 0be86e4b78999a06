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


def image_size(source: Path | bytes) -> tuple[int, int] | None:
    """(width, height) from an image's header (a file or its bytes), nothing decoded; ``None`` when PIL does not
    know the format (the decoders then say what is wrong)."""
    with _PIL_LIMIT_LOCK:  # the server decodes in threads: one toggle of PIL's global limit at a time
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our limit, our message
                try:
                    with Image.open(_opened(source)) as pil:  # reads the header only
                        return pil.size
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
        except Exception:  # noqa: BLE001 - not an image PIL knows: the decoders below say so
            return None


def check_pixels(source: Path | bytes, name: str | None = None, limit: int | None = None) -> None:
    """Refuse an image whose header claims more pixels than ``limit`` (default ``max_pixels()``), before anything
    is decoded; the one-line ``DataError`` starts with ``name`` (default: the path)."""
    limit = max_pixels() if limit is None else limit
    size = image_size(source)
    if size is None:
        return
    width, height = size
    if width * height > limit:
        raise DataError(
            f"{name or source}: {width}x{height} is {width * height:,} pixels, over the limit of {limit:,} "
            f"(set {MAX_PIXELS_ENV} to allow larger images)"
        )


def load_rgb(path: str | Path) -> torch.Tensor:
    """Decode any common image file to a (3, H, W) uint8 RGB tensor, EXIF orientation applied.

    Every reader of user images (training sources, inpaint, evaluate, the demo's uploads through
    ``decode_rgb``) comes here: images over the pixel limit are refused before decoding, and animated files (GIF,
    APNG, multi-page TIFF) give their first frame. torchvision's decoder handles the usual files; PIL takes what
    it refuses (CMYK JPEGs, 16-bit PNGs...).
    """
    path = Path(path)
    check_pixels(path)
    return _decode(path, str(path))


def decode_rgb(data: bytes, name: str, limit: int | None = None) -> torch.Tensor:
    """``load_rgb`` for an image's bytes (an upload): the same checks and conversions; errors start with
    ``name`` (the form field) instead of a path. ``limit``: pixels (default ``max_pixels()``)."""
    check_pixels(bytes(data), name, limit)
    return _decode(bytes(data), name)


def _opened(source: Path | bytes):
    return io.BytesIO(source) if isinstance(source, bytes) else source


def _decode(source: Path | bytes, name: str) -> torch.Tensor:
    try:
        encoded = (
            str(source)
            if isinstance(source, Path)
            else torch.frombuffer(bytearray(source), dtype=torch.uint8)
        )
        img = decode_image(encoded, mode=ImageReadMode.RGB, apply_exif_orientation=True)
        if img.dim() == 4:  # an animated GIF: (frames, 3, H, W)
            img = img[0]
        if img.dtype == torch.uint8:
            return img.contiguous()
    except (RuntimeError, ValueError):
        pass
    try:
        with Image.open(_opened(source)) as pil:
            pil.seek(0)  # the first frame of a multi-frame file
            pil = ImageOps.exif_transpose(pil)
            if pil.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                pil = Image.fromarray(_high_depth_to_uint8(np.asarray(pil), pil.mode))
            arr = np.asarray(pil.convert("RGB"), dtype=np.uint8)
    except Exception as err:  # PIL raises many types for bad files
        reason = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", " ".join(str(err).split()))
        raise DataError(f"{name}: not a readable image ({reason or type(err).__name__})") from err
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


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
