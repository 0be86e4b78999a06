"""Score a checkpoint and classical baselines on the same held-out images and masks.

    python -m ctx_inpaint.evaluate --checkpoint CKPT [--images DIR] [--out DIR]

Default images: the embedded held-out photos (campus/holdout) with the fixed crops and masks of training
validation (same short side, crops per photo and seed), so the model's row equals its ``val/*`` metrics.
``--images embedded:places`` scores photos of other places from the same package (never used in training).
``--mask-sets center,freeform_thin,...`` (or ``all``) scores named, seeded mask sets instead (``mask_sets``) on the
same crops: per set the hole and whole-image metrics, results by hole-area bin, the model against each baseline
image by image, and a fingerprint of the masks and images, so two tables are comparable only when they agree.
A folder gets the same crop protocol; a ``paris_eval_gt/`` folder gets the Paris StreetView protocol (each
227x227 image resized to the model's input, centre hole). Metrics follow ``ctx_inpaint.evaluation.metrics`` (hidden
pixels of the composited output, values in [0, 1], PSNR per image then averaged). Writes ``per_image.csv``,
``summary.json`` and ``table.md`` (and ``samples.png`` with ``--grid N``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

from ctx_inpaint.common.cli import ArgumentParser, report_user_errors
from ctx_inpaint.data.sources import embedded_set, list_images
from ctx_inpaint.errors import InputError, MissingDataError
from ctx_inpaint.evaluation.baselines import Baseline, make_baselines
from ctx_inpaint.evaluation.metrics import to_unit_range
from ctx_inpaint.evaluation.scoring import (
    EvalSample,
    by_area,
    centre_masks_for,
    crop_samples,
    model_outputs,
    paired_against,
    paris_folder,
    paris_samples,
    score_method,
    scored_outputs,
)
from ctx_inpaint.inference.inpainter import pick_device
from ctx_inpaint.inference.loading import LoadedModel
from ctx_inpaint.inference.weights import load_any
from ctx_inpaint.masks.generators import MaskGenerator, apply_mask
from ctx_inpaint.masks.sets import MASK_SETS, draw_masks, fingerprint, parse_mask_sets

# conf/data/default.yaml's validation settings, for checkpoints that do not record theirs.
VAL_DEFAULTS = {"short_side": 350, "crops_per_image": 8, "seed": 1234}


def resolve_images(images: str | Path | None) -> tuple[list[Path], str]:
    """``--images``: a folder, ``embedded:holdout`` (the default) or ``embedded:places``."""
    text = str(images) if images is not None else "embedded:holdout"
    if text.startswith("embedded:"):
        return embedded_set(text.split(":", 1)[1], "--images"), text
    return list_images(Path(text).expanduser(), "--images"), text


def build_samples(
    model: LoadedModel | None,
    images: str | Path | None,
    protocol: str,
    mask: str,
    size: int,
    short_side: int,
    crops_per_image: int,
    seed: int,
) -> tuple[str, list[EvalSample], MaskGenerator, list[Path], str]:
    """The protocol's images and masks: (protocol, samples, mask generator, files, description of the source)."""
    paris = paris_folder(images)
    if protocol == "auto":
        protocol = "paris" if paris is not None else "crops"
    if protocol == "paris":
        if paris is None:
            raise MissingDataError(f"--images: {images} is not and does not hold a paris_eval_gt/ folder")
        files = list_images(paris, "--images")
        masks: MaskGenerator = centre_masks_for(model, size)
        return protocol, paris_samples(files, masks, size), masks, files, str(paris)
    if protocol == "crops":
        files, source = resolve_images(images)
        masks = centre_masks_for(model, size) if mask == "center" or model is None else model.masks
        samples = crop_samples(files, masks, size, short_side, crops_per_image, seed)
        return protocol, samples, masks, files, source
    raise InputError(f"--protocol: expected auto, crops or paris, got {protocol!r}")


def evaluate(
    checkpoint: str | Path | None = None,
    images: str | Path | None = None,
    out_dir: str | Path = "logs/eval",
    protocol: str = "auto",
    mask: str = "auto",
    baselines: tuple[str, ...] = ("mean", "telea", "ns"),
    input_size: int = 128,
    short_side: int | None = None,
    crops_per_image: int | None = None,
    seed: int | None = None,
    radius: float = 3.0,
    batch_size: int = 32,
    grid: int = 0,
    device: str | None = None,
    mask_sets: list[str] | None = None,
) -> dict[str, Any]:
    """Score the model (if a checkpoint is given) and the baselines; write CSV, JSON and Markdown.

    ``short_side``, ``crops_per_image`` and ``seed`` left ``None`` take the checkpoint's validation settings
    (else the data defaults 350, 8, 1234), so the default run repeats training validation.
    """
    started = time.time()
    # Flags first: a bad one should not cost a model pass over every image.
    if checkpoint is None and not baselines:
        raise InputError("nothing to score: give --checkpoint or at least one of --baselines mean,telea,ns")
    baseline_fns = make_baselines(list(baselines), radius)
    dev = pick_device(device, "--device")
    model = load_any(checkpoint, dev) if checkpoint is not None else None
    size = model.input_size if model is not None else input_size
    val = {**VAL_DEFAULTS, **(model.config.get("val", {}) if model is not None else {})}
    short_side = int(val["short_side"] if short_side is None else short_side)
    crops_per_image = int(val["crops_per_image"] if crops_per_image is None else crops_per_image)
    seed = int(val["seed"] if seed is None else seed)
    if mask not in ("auto", "center"):
        raise InputError(f"--mask: expected auto or center, got {mask!r}")
    out_dir = Path(out_dir)
    if mask_sets:
        result, rows = score_mask_sets(
            model,
            images,
            mask_sets,
            baseline_fns,
            size,
            short_side,
            crops_per_image,
            seed,
            dev,
            batch_size,
            out_dir if grid > 0 else None,
            grid,
        )
        result |= {
            "checkpoint": str(checkpoint) if checkpoint is not None else None,
            "inpaint_radius": radius,
        }
        result["seconds"] = round(time.time() - started, 1)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_outputs(out_dir, rows, result, mask_sets_table(result))
        return result
    protocol, samples, masks, files, source = build_samples(
        model, images, protocol, mask, size, short_side, crops_per_image, seed
    )

    methods: dict[str, list[torch.Tensor]] = {}
    if model is not None:
        methods["model"] = model_outputs(model, samples, dev, batch_size)
    for name, fn in baseline_fns.items():
        methods[name] = [
            fn(to_unit_range(s.image), s.mask) for s in tqdm(samples, desc=name, leave=False, disable=None)
        ]

    rows, summary = [], {}
    for name, outputs in methods.items():
        scored, summary[name] = score_method(name, outputs, samples)
        rows.extend(scored)

    result = {
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "model_name": model.name if model is not None else None,
        "trained": model.meta if model is not None else None,
        "protocol": protocol,
        "images": source,
        "image_files": len(files),
        "samples": len(samples),
        "input_size": size,
        "masks": type(masks).__name__,
        "short_side": short_side if protocol == "crops" else None,
        "crops_per_image": crops_per_image if protocol == "crops" else None,
        "seed": seed if protocol == "crops" else None,
        "inpaint_radius": radius,
        "convention": "hidden pixels of the composited output, values in [0,1]; L1/L2 pooled over hidden "
        "pixels x100; PSNR per image then averaged; SSIM = mean of the SSIM map (11x11 Gaussian) over hidden pixels",
        "methods": summary,
        "seconds": round(time.time() - started, 1),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_outputs(out_dir, rows, result, markdown_table(result))
    if grid > 0:
        write_grid(out_dir / "samples.png", samples[:grid], {k: v[:grid] for k, v in methods.items()})
    return result


def score_mask_sets(
    model: LoadedModel | None,
    images: str | Path | None,
    names: list[str],
    baseline_fns: dict[str, Baseline],
    size: int,
    short_side: int,
    crops_per_image: int,
    seed: int,
    device: torch.device,
    batch_size: int,
    grid_dir: Path | None = None,
    grid: int = 0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every named mask set on the same crops (their positions do not depend on the masks); each set's masks
    are drawn from ``seed`` alone, so a set is the same for every model and every image source of that size."""
    files, source = resolve_images(images)
    base = crop_samples(files, MASK_SETS["center"](size), size, short_side, crops_per_image, seed)
    images_fp = fingerprint([to_unit_range(s.image) for s in base])
    sets: dict[str, Any] = {}
    all_rows: list[dict[str, Any]] = []
    for name in names:
        masks = draw_masks(name, size, len(base), seed)
        samples = [EvalSample(s.image, m, s.source, s.crop) for s, m in zip(base, masks)]
        methods: dict[str, list[torch.Tensor]] = {}
        note = None
        if model is not None:
            methods["model"], note = scored_outputs(model, samples, device, batch_size)
        for bname, fn in baseline_fns.items():
            methods[bname] = [fn(to_unit_range(s.image), s.mask) for s in samples]
        rows_by, summary = {}, {}
        for method, outputs in methods.items():
            rows_by[method], summary[method] = score_method(method, outputs, samples)
            for r in rows_by[method]:
                all_rows.append({"mask_set": name, **r})
        sets[name] = {
            "mask_fingerprint": fingerprint(masks),
            "images_fingerprint": images_fp,
            "hole_fraction": sum(float(m.mean()) for m in masks) / len(masks),
            "note": note,
            "methods": summary,
            "by_area": {method: by_area(rows) for method, rows in rows_by.items()},
            "paired": paired_against(rows_by),
        }
        if grid_dir is not None:
            grid_dir.mkdir(parents=True, exist_ok=True)
            write_grid(
                grid_dir / f"samples_{name}.png", samples[:grid], {k: v[:grid] for k, v in methods.items()}
            )
    result = {
        "model_name": model.name if model is not None else None,
        "trained": model.meta if model is not None else None,
        "protocol": "mask_sets",
        "images": source,
        "image_files": len(files),
        "samples": len(base),
        "input_size": size,
        "short_side": short_side,
        "crops_per_image": crops_per_image,
        "seed": seed,
        "convention": "L1/L2/PSNR/SSIM on the hidden pixels of the composited output (as training validation); "
        "psnr_whole/ssim_whole over the whole composited image; values in [0,1]; per image then averaged "
        "(L1/L2 pooled over hidden pixels); paired: model minus baseline per image, bootstrap 95% interval "
        "(5,000 resamples, seed 0)",
        "mask_sets": sets,
    }
    return result, all_rows


# ---- outputs ---------------------------------------------------------------------------------------
LABELS = {
    "model": "context encoder",
    "mean": "mean-colour fill",
    "telea": "OpenCV Telea",
    "ns": "OpenCV Navier-Stokes",
}


def markdown_table(result: dict[str, Any]) -> str:
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


def write_outputs(out_dir: Path, rows: list[dict[str, Any]], result: dict[str, Any], table: str) -> None:
    with open(out_dir / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "table.md").write_text(table)


def write_grid(path: Path, samples: list[EvalSample], methods: dict[str, list[torch.Tensor]]) -> None:
    """One row per sample: masked input | each method | truth."""
    tiles = []
    for i, s in enumerate(samples):
        tiles.append(to_unit_range(apply_mask(s.image, s.mask)))
        tiles.extend(outputs[i] for outputs in methods.values())
        tiles.append(to_unit_range(s.image))
    save_image(make_grid(torch.stack(tiles), nrow=len(methods) + 2, padding=2), path)


# ---- CLI -------------------------------------------------------------------------------------------
def int_at_least(low: int):
    """argparse type: an integer >= ``low`` (the parser names the flag: one line, exit 1)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m ctx_inpaint.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", "-c", help="a .ckpt written by ctx_inpaint.train (omit: baselines only)")
    p.add_argument(
        "--images",
        "-i",
        help="held-out folder, a paris_eval_gt/ folder, or embedded:holdout (default) / embedded:places",
    )
    p.add_argument(
        "--out", "-o", default=None, help="output folder (default logs/eval/<checkpoint or baselines>)"
    )
    p.add_argument("--protocol", default="auto", choices=["auto", "crops", "paris"])
    p.add_argument(
        "--mask", default="auto", choices=["auto", "center"], help="auto: the checkpoint's own masks"
    )
    p.add_argument(
        "--mask-sets",
        type=_mask_sets,
        help=f"score named seeded mask sets on the same crops: a comma list of {', '.join(MASK_SETS)}, or all",
    )
    p.add_argument("--baselines", default="mean,telea,ns", help="comma list of mean,telea,ns ('' for none)")
    # 16: the smallest crop whose centre hole (inner 7/16 of the side) is not empty
    p.add_argument("--input-size", type=int_at_least(16), default=128, help="image size without a checkpoint")
    p.add_argument(
        "--short-side", type=positive_int, help="photos' shorter side (default: the checkpoint's, else 350)"
    )
    p.add_argument(
        "--crops-per-image",
        type=positive_int,
        help="fixed crops per photo (default: the checkpoint's, else 8)",
    )
    p.add_argument(
        "--seed", type=int, help="crop and mask seed (default: the checkpoint's val seed, else 1234)"
    )
    p.add_argument("--radius", type=positive_float, default=3.0, help="OpenCV inpainting radius")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--grid", type=int_at_least(0), default=0, help="write samples.png with this many rows")
    p.add_argument("--device", default="auto")
    return p.parse_args(argv)


def _mask_sets(text: str) -> list[str]:
    try:
        return parse_mask_sets(text)
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err).split(": ", 1)[1]) from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or str(
        Path("logs/eval") / (Path(args.checkpoint).stem if args.checkpoint else "baselines")
    )
    with report_user_errors():
        result = evaluate(
            checkpoint=args.checkpoint,
            images=args.images,
            out_dir=out,
            protocol=args.protocol,
            mask=args.mask,
            baselines=tuple(b for b in args.baselines.split(",") if b),
            input_size=args.input_size,
            short_side=args.short_side,
            crops_per_image=args.crops_per_image,
            seed=args.seed,
            radius=args.radius,
            batch_size=args.batch_size,
            grid=args.grid,
            device=args.device,
            mask_sets=args.mask_sets,
        )
    print(mask_sets_table(result) if args.mask_sets else markdown_table(result), end="")
    print(f"[ctx-inpaint] wrote {out}/per_image.csv, summary.json, table.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
