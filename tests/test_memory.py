"""Inpainting a large photo keeps memory to a few bytes per pixel (issue 15, item 1: 46 bytes per pixel before)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

# Peak resident memory added by one call on a 12-megapixel photo, per pixel. The photo itself, the result and
# their PIL/NumPy copies are ~3 bytes per pixel each; a float copy of the photo alone would be 12.
MAX_BYTES_PER_PIXEL = 30

SCRIPT = """
import resource, sys
import numpy as np
from PIL import Image
from ctx_inpaint.inference import Inpainter
inpainter = Inpainter.from_pretrained("center", device="cpu")
small = Image.new("RGB", (300, 200), (90, 120, 150))
inpainter(small, "center")  # warm up: every lazy allocation of a call happens here
w, h = 4000, 3000
photo = Image.fromarray(np.tile(np.arange(w, dtype=np.uint8)[None, :, None], (h, 1, 3)))
mask = np.zeros((h, w), dtype=bool)
mask[1400:1600, 1900:2100] = True
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
out = inpainter(photo, mask)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
assert out.size == (w, h)
print((after - before) / (w * h))
"""


def test_a_large_photo_costs_a_few_bytes_per_pixel() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    per_pixel = float(done.stdout.strip().splitlines()[-1])
    print(f"peak memory added by a 12-megapixel inpaint: {per_pixel:.1f} bytes per pixel")
    assert per_pixel < MAX_BYTES_PER_PIXEL
