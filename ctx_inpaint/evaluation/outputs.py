"""What an evaluation writes: ``per_image.csv``, ``summary.json``, ``table.md`` (the Markdown tables the command
also prints) and the sample grids, each written atomically so an interrupted run never leaves half a table."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import make_grid, save_image

from ctx_inpaint.common.files import atomic_path, atomic_write
from ctx_inpaint.evaluation.metrics import to_unit_range
from ctx_inpaint.evaluation.scoring import EvalSample
from ctx_inpaint.masks.generators import apply_mask

LABELS = {
    "model": "context encoder",
    "mean": "mean-colour fill",
    "telea": "OpenCV Telea",
    "ns": "OpenCV Navier-Stokes",
}


def table(result: dict[str, Any]) -> str:
    """The Markdown of an evaluation's summary, whichever protocol made it."""
    return mask_sets_table(result) if result.get("protocol") == "mask_sets" else markdown_table(result)


def markdown_table(result: dict[str, Any]) -> str:
    """One row per method: L1, L2, PSNR and SSIM on the hidden pixels."""
    lines = [
        f"Protocol: {result['protocol']} on {result['images']} ({result['samples']} images of "
        f"{result['input_size']}px from {result['image_files']} files, {result['masks']} holes)",
    ]
    lines += _trained(result) + [
        "",
        "| method | L1 % | L2 % | PSNR (dB) | SSIM |",
        "|---|---|---|---|---|",
    ]
    for name, m in result["methods"].items():
        lines.append(
            f"| {_label(name, result)} | {m['l1_pct']:.2f} | {m['l2_pct']:.2f} | {m['psnr']:.2f} | {m['ssim']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def _trained(result: dict[str, Any]) -> list[str]:
    """The line saying how far the scored checkpoint was trained (none without a model)."""
    t = result.get("trained")
    if not t:
        return []
    return [
        "",
        f"Checkpoint {result['checkpoint']}: saved after epoch {t.get('epoch', '?')} (0-based), "
        f"{t.get('global_step', '?')} optimizer steps, {t.get('train_seconds', '?')} s of training",
    ]


def mask_sets_table(result: dict[str, Any]) -> str:
    """One section per mask set: the metrics table, the model against each baseline, and the area bins."""
    lines = [
        f"Mask sets on {result['images']} ({result['samples']} crops of {result['input_size']}px from "
        f"{result['image_files']} files, short side {result['short_side']}, seed {result['seed']})",
        *_trained(result),
    ]
    for name, s in result["mask_sets"].items():
        lines += [
            "",
            f"### {name}",
            "",
            f"masks {s['mask_fingerprint']}, images {s['images_fingerprint']}, mean hole "
            f"{100 * s['hole_fraction']:.1f}% of the crop",
        ]
        if s["note"]:
            lines += ["", f"**Note:** {s['note']}."]
        lines += [
            "",
            "| method | L1 % | L2 % | PSNR hole (dB) | PSNR whole (dB) | SSIM hole | SSIM whole |",
            "|---|---|---|---|---|---|---|",
        ]
        for method, m in s["methods"].items():
            lines.append(
                f"| {_label(method, result)} | {m['l1_pct']:.2f} | {m['l2_pct']:.2f} | {m['psnr']:.2f} | "
                f"{m['psnr_whole']:.2f} | {m['ssim']:.4f} | {m['ssim_whole']:.4f} |"
            )
        for other, paired in s["paired"].items():
            parts = []
            for metric, label, fmt in (
                ("psnr", "PSNR hole", "+.2f"),
                ("ssim", "SSIM hole", "+.4f"),
                ("ssim_whole", "SSIM whole", "+.4f"),
            ):
                p = paired[metric]
                parts.append(
                    f"{label} {p['mean']:{fmt}} [{p['lo']:{fmt}}, {p['hi']:{fmt}}] ({p['wins']}/{p['n']} ahead)"
                )
            lines.append(f"\nModel minus {LABELS.get(other, other)}: " + "; ".join(parts))
        methods = list(s["by_area"])
        bins = list(next(iter(s["by_area"].values()))) if methods else []
        lines += [
            "",
            "| hole area | images | " + " | ".join(f"{LABELS.get(m, m)} PSNR" for m in methods) + " |",
            "|---|---|" + "---|" * len(methods),
        ]
        for b in bins:
            cells = [f"{s['by_area'][m][b]['psnr']:.2f}" for m in methods]
            lines.append(f"| {b} | {s['by_area'][methods[0]][b]['images']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _label(name: str, result: dict[str, Any]) -> str:
    label = LABELS.get(name, name)
    return f"{label} ({result['model_name']})" if name == "model" and result.get("model_name") else label


def write_outputs(out_dir: Path, rows: list[dict[str, Any]], result: dict[str, Any], markdown: str) -> None:
    """``per_image.csv`` (one row per method and image), ``summary.json`` and ``table.md`` in ``out_dir``."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0].keys()))
    writer.writeheader()
    writer.writerows(rows)
    for name, text in (
        ("per_image.csv", buffer.getvalue()),
        ("summary.json", json.dumps(result, indent=2) + "\n"),
        ("table.md", markdown),
    ):
        atomic_write(out_dir / name, lambda f, text=text: f.write(text.encode()))


def write_grid(path: Path, samples: list[EvalSample], methods: dict[str, list[torch.Tensor]]) -> None:
    """One row per sample: masked input | each method | truth."""
    tiles = []
    for i, s in enumerate(samples):
        tiles.append(to_unit_range(apply_mask(s.image, s.mask)))
        tiles.extend(outputs[i] for outputs in methods.values())
        tiles.append(to_unit_range(s.image))
    with atomic_path(path) as tmp:
        save_image(make_grid(torch.stack(tiles), nrow=len(methods) + 2, padding=2), tmp, format="png")
