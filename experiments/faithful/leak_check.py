"""Does the fill depend on the hidden pixels? Two photos that differ only inside the hole, inpainted with the same
checkpoint: prints the largest difference between the two fills and how many values differ (0 and 0 = no leak).

    .venv/bin/python experiments/faithful/leak_check.py CKPT
"""

from __future__ import annotations

import sys

import numpy as np
import torch

try:
    from ctx_inpaint.inference.inpainter import Inpainter
except ImportError:  # the code before the restructure (to measure the earlier behaviour)
    from ctx_inpaint.inpainting import Inpainter

CASES = {  # (height, width) of the photo, (top, left, height, width) of the hole: the audit's two cases
    "512x640 photo, 224x224 hole": ((512, 640), (144, 208, 224, 224)),
    "1200x900 photo, 600x40 hole": ((900, 1200), (430, 300, 40, 600)),
}


def photo(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx / width * 200, yy / height * 200, (xx + yy) / (width + height) * 255], axis=-1)
    return (base + rng.integers(0, 40, (height, width, 3))).clip(0, 255).astype(np.uint8)


def main(ckpt: str) -> None:
    load = getattr(Inpainter, "load", None) or Inpainter.from_checkpoint  # from_checkpoint: the earlier code
    inpainter = load(ckpt, device="cpu")
    for name, ((h, w), (top, left, hh, ww)) in CASES.items():
        hole = np.zeros((h, w), dtype=bool)
        hole[top : top + hh, left : left + ww] = True
        a = photo(h, w, 0)
        b = a.copy()
        b[hole] = 255 - b[hole]  # other content inside the hole only
        outs = [inpainter(torch.from_numpy(x).permute(2, 0, 1).contiguous(), torch.from_numpy(hole)) for x in (a, b)]
        diff = (outs[0].int() - outs[1].int()).abs()
        print(f"{name}: max difference {int(diff.max())} grey levels, {int((diff > 0).sum())} values differ")


if __name__ == "__main__":
    main(sys.argv[1])
