"""The demo's example photos: the embedded held-out photos (mvtb-data, MIT), never used in training: the campus
hold-out and the photos of other places (``data/sources.py``). The excluded classic test images are never listed."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from ctx_inpaint.data.images import image_size
from ctx_inpaint.data.sources import FORBIDDEN_NAMES, embedded_set


@cache
def example_photos() -> dict[str, dict]:
    """name -> {path, title, width, height}, campus hold-out first (``holdout-P1070492``, ``places-church``...)."""
    out: dict[str, dict] = {}
    for set_name in ("holdout", "places"):
        for path in embedded_set(set_name):
            if path.name.lower() in FORBIDDEN_NAMES:
                continue
            width, height = image_size(path) or (0, 0)
            name = f"{set_name}-{Path(path).stem}"
            where = "campus hold-out" if set_name == "holdout" else "other places"
            out[name] = {
                "path": path,
                "title": f"{path.stem} ({where}, {width}x{height})",
                "width": width,
                "height": height,
            }
    return out
