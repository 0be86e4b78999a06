"""Two checks behind the free-form README: is the average of Telea and Navier-Stokes a better starting fill than
either (hole PSNR / SSIM on the 40 campus hold-out crops, free-form mask sets, seed 1234), and how long each
OpenCV fill takes on a 128 crop.

    .venv/bin/python experiments/quality/freeform/fill_average.py
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from ctx_inpaint.data.sources import embedded_set
from ctx_inpaint.evaluation.baselines import navier_stokes, telea
from ctx_inpaint.evaluation.metrics import to_unit_range
from ctx_inpaint.evaluation.scoring import EvalSample, crop_samples, score_method
from ctx_inpaint.masks.sets import MASK_SETS, draw_masks


def main() -> None:
    base = crop_samples(embedded_set("holdout"), MASK_SETS["center"](128), 128, 350, 8, 1234)
    fills = {"telea": telea(3.0), "ns": navier_stokes(3.0)}
    for name in ("freeform_thin", "freeform_medium", "freeform_thick"):
        masks = draw_masks(name, 128, len(base), 1234)
        samples = [EvalSample(s.image, m, s.source, s.crop) for s, m in zip(base, masks)]
        outs = {k: [fn(to_unit_range(s.image), s.mask) for s in samples] for k, fn in fills.items()}
        outs["average"] = [(a + b) / 2 for a, b in zip(outs["telea"], outs["ns"])]
        scores = {k: score_method(k, v, samples)[1] for k, v in outs.items()}
        print(name, {k: (round(v["psnr"], 3), round(v["ssim"], 4)) for k, v in scores.items()})
    image = (to_unit_range(base[0].image).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    hole = (draw_masks("freeform_medium", 128, 1, 0)[0][0].numpy() > 0.5).astype(np.uint8)
    for label, flag in (("telea", cv2.INPAINT_TELEA), ("ns", cv2.INPAINT_NS)):
        t0 = time.perf_counter()
        for _ in range(50):
            cv2.inpaint(image, hole, 3.0, flag)
        print(
            f"{label}: {1000 * (time.perf_counter() - t0) / 50:.1f} ms per 128 crop ({100 * hole.mean():.0f}% hole)"
        )


if __name__ == "__main__":
    main()
