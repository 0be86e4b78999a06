"""Where in the hole does each method earn its SSIM? The SSIM map of the composited output (the metric's own
map, `ctx_inpaint.evaluation.metrics`) averaged over rings of hidden pixels by distance to the hole's edge, for the
checkpoints given and OpenCV Telea / Navier-Stokes, on the held-out crops. Writes ssim_by_ring.md.

    .venv/bin/python experiments/quality/ssim_by_ring.py NAME=CKPT [NAME=CKPT ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from ctx_inpaint.data.sources import embedded_files
from ctx_inpaint.evaluation.baselines import make_baselines
from ctx_inpaint.evaluation.metrics import to_unit_range
from ctx_inpaint.evaluation.run import VAL_DEFAULTS
from ctx_inpaint.evaluation.scoring import crop_samples, model_outputs
from ctx_inpaint.inference.loading import load_model
from ctx_inpaint.masks.generators import CenterMask

HERE = Path(__file__).resolve().parent
RINGS = ((0, 2), (2, 5), (5, 10), (10, 20), (20, 64))  # px from the hole's edge (0 = the edge pixels)


def edge_distance(mask: torch.Tensor) -> torch.Tensor:
    """Chessboard distance of each pixel of the (square) hole to its edge; -1 outside."""
    ys, xs = mask.nonzero(as_tuple=True)
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    yy, xx = torch.meshgrid(torch.arange(mask.shape[0]), torch.arange(mask.shape[1]), indexing="ij")
    d = torch.minimum(torch.minimum(yy - y0, y1 - yy), torch.minimum(xx - x0, x1 - xx))
    return torch.where(mask.bool(), d, torch.full_like(d, -1))


def main(specs: list[str]) -> None:
    samples = crop_samples(
        embedded_files()[1], CenterMask(), 128, VAL_DEFAULTS["short_side"], VAL_DEFAULTS["crops_per_image"],
        VAL_DEFAULTS["seed"],
    )  # fmt: skip
    truth = to_unit_range(torch.stack([s.image for s in samples]))
    mask = samples[0].mask[0]
    assert all(torch.equal(s.mask[0], mask) for s in samples), "centre masks: one hole for every crop"
    methods: dict[str, torch.Tensor] = {}
    for spec in specs:
        name, path = spec.split("=", 1)
        model = load_model(path)
        methods[f"context encoder ({name})"] = torch.stack(
            model_outputs(model, samples, torch.device("cpu"), 32)
        )
    for name, fn in make_baselines(["telea", "ns"]).items():
        label = {"telea": "OpenCV Telea", "ns": "OpenCV Navier-Stokes"}[name]
        methods[label] = torch.stack([fn(to_unit_range(s.image), s.mask) for s in samples])
    dist = edge_distance(mask)
    rings = [(dist >= lo) & (dist < hi) for lo, hi in RINGS]
    lines = [
        "SSIM map of the composited output averaged over rings of hidden pixels, by distance (px) to the hole's "
        f"edge, on the {len(samples)} held-out crops (share of the hole's pixels in brackets):",
        "",
        "| method | all | " + " | ".join(f"{lo}-{hi} px ({float(r.sum() / mask.sum()):.0%})" for (lo, hi), r in zip(RINGS, rings)) + " |",
        "|---|---|" + "---|" * len(RINGS),
    ]  # fmt: skip
    for label, output in methods.items():
        ssim_map = structural_similarity_index_measure(
            output, truth, data_range=1.0, reduction="none", return_full_image=True
        )[1].mean(dim=1)
        cells = [f"{float(ssim_map[:, r].mean()):.3f}" for r in [mask.bool(), *rings]]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    (HERE / "ssim_by_ring.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
