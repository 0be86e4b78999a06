"""How sharp must a fill be to reach a given SSIM? Scores the held-out truth itself, Gaussian-blurred, pasted
into the hole (same crops, masks and metric code as `ctx_inpaint.evaluate`). Writes blur_reference.md.

    .venv/bin/python experiments/quality/blur_reference.py
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.transforms.v2 import functional as TF

from ctx_inpaint.data.sources import embedded_files
from ctx_inpaint.evaluation.metrics import HiddenPixelMetrics, to_unit_range
from ctx_inpaint.evaluation.run import VAL_DEFAULTS
from ctx_inpaint.evaluation.scoring import crop_samples
from ctx_inpaint.masks.generators import CenterMask

HERE = Path(__file__).resolve().parent


def main() -> None:
    samples = crop_samples(
        embedded_files()[1], CenterMask(), 128, VAL_DEFAULTS["short_side"], VAL_DEFAULTS["crops_per_image"],
        VAL_DEFAULTS["seed"],
    )  # fmt: skip
    truth = to_unit_range(torch.stack([s.image for s in samples]))
    mask = torch.stack([s.mask for s in samples])
    lines = [
        "Truth blurred with a Gaussian of sigma (px) and pasted into the hole, on the 40 held-out crops:",
        "",
        "| sigma | L1 % | L2 % | PSNR (dB) | SSIM |",
        "|---|---|---|---|---|",
    ]
    for sigma in (2, 4, 8, 16):
        k = 6 * sigma + 1
        blurred = TF.gaussian_blur(truth, [k, k], [float(sigma), float(sigma)])
        metrics = HiddenPixelMetrics()
        metrics.update(truth * (1 - mask) + blurred * mask, truth, mask)
        m = {key: float(v) for key, v in metrics.compute().items()}
        lines.append(
            f"| {sigma} | {100 * m['l1']:.2f} | {100 * m['l2']:.2f} | {m['psnr']:.2f} | {m['ssim']:.4f} |"
        )
    (HERE / "blur_reference.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
