"""Score a checkpoint and classical baselines on the same held-out images and masks.

    python -m ctx_inpaint.evaluate --checkpoint CKPT [--images DIR] [--out DIR]

Default images: the embedded held-out photos (campus/holdout) with the fixed crops and masks of training
validation (same short side, crops per photo and seed), so the model's row equals its ``val/*`` metrics.
A folder gets the same crop protocol; a ``paris_eval_gt/`` folder gets the Paris StreetView protocol (each
227x227 image resized to the model's input, centre hole). Metrics follow ``ctx_inpaint.metrics`` (hidden
pixels of the composited output, values in [0, 1], PSNR per image then averaged). Writes ``per_image.csv``,
``summary.json`` and ``table.md`` (and ``samples.png`` with ``--grid N``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torchvision.transforms.v2 import functional as TF
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

from ctx_inpaint.baselines import make_baselines
from ctx_inpaint.cli import ArgumentParser, report_user_errors
from ctx_inpaint.data.datasets import FixedValDataset, ImageStore
from ctx_inpaint.data.images import load_rgb, to_model_range
from ctx_inpaint.data.sources import embedded_files, list_images
from ctx_inpaint.errors import InputError, MissingDataError
from ctx_inpaint.inference import pick_device
from ctx_inpaint.loading import LoadedModel, load_model
from ctx_inpaint.masks import CenterMask, MaskGenerator, apply_mask, composite
from ctx_inpaint.metrics import HiddenPixelMetrics, to_unit_range

# conf/data/default.yaml's validation settings, for checkpoints that do not record theirs.
VAL_DEFAULTS = {"short_side": 350, "crops_per_image": 8, "seed": 1234}


@dataclass
class EvalSample:
    """One scored image: truth in [-1, 1], its hole mask and where it came from."""

    image: torch.Tensor  # (3, N, N) in [-1, 1]
    mask: torch.Tensor  # (1, N, N), 1 = hidden
    source: str
    crop: tuple[int, int] | None  # (y, x) of the crop in the resized photo; None = whole image


# ---- images and masks ------------------------------------------------------------------------------
def paris_folder(images: Path | None) -> Path | None:
    """The ``paris_eval_gt`` folder if ``images`` is it or holds it."""
    if images is None:
        return None
    if images.name == "paris_eval_gt":
        return images
    return images / "paris_eval_gt" if (images / "paris_eval_gt").is_dir() else None


def crop_samples(
    files: list[Path], masks: MaskGenerator, size: int, short_side: int, crops_per_image: int, seed: int
) -> list[EvalSample]:
    """Fixed seeded crops and masks, exactly as training validation (``FixedValDataset``) draws them."""
    dataset = FixedValDataset(
        ImageStore(files, short_side, size, cache=True), masks, size, crops_per_image, seed
    )
    samples = []
    for index, (i, y, x) in enumerate(dataset.items):
        item = dataset[index]
        samples.append(EvalSample(item["image"], item["mask"], files[i].name, (y, x)))
    return samples


def paris_samples(files: list[Path], masks: CenterMask, size: int) -> list[EvalSample]:
    """Paris StreetView protocol: every image resized to the model's input, centre hole."""
    samples = []
    for path in files:
        img = TF.resize(load_rgb(path), [size, size], antialias=True)
        samples.append(EvalSample(to_model_range(img), masks.sample(), path.name, None))
    return samples


def centre_masks_for(model: LoadedModel | None, size: int) -> CenterMask:
    """The model's own centre geometry if it is a centre model, else the paper's (hole = inner 7/16)."""
    if model is not None and isinstance(model.masks, CenterMask):
        return model.masks
    return CenterMask(size, target_size=size // 2, overlap=max(size // 32, 0))


# ---- scoring ---------------------------------------------------------------------------------------
@torch.inference_mode()
def model_outputs(model: LoadedModel, samples: list[EvalSample], device: torch.device, batch_size: int):
    """Composited model outputs in [0, 1], one (3, N, N) per sample."""
    outs = []
    for start in tqdm(range(0, len(samples), batch_size), desc="model", leave=False, disable=None):
        chunk = samples[start : start + batch_size]
        image = torch.stack([s.image for s in chunk])
        mask = torch.stack([s.mask for s in chunk])
        masked = apply_mask(image, mask)
        pred = model.generator(masked.to(device)).float().cpu()
        out = composite(pred, masked, mask, model.masks.target_box)
        outs.extend(to_unit_range(out))
    return outs


def score_method(
    name: str, outputs: list[torch.Tensor], samples: list[EvalSample]
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Per-image rows and the pooled summary of one method, from one ``HiddenPixelMetrics`` (the code of training
    validation): L1/L2 pooled over hidden pixels, PSNR and SSIM averaged per image."""
    metric = HiddenPixelMetrics()
    rows = []
    for i, (s, out) in enumerate(zip(samples, outputs)):
        y, x = s.crop if s.crop is not None else ("", "")
        values = metric.update(out[None], to_unit_range(s.image)[None], s.mask[None])
        row = {"method": name, "index": i, "image": s.source, "crop_y": y, "crop_x": x}
        row["hidden_pixels"] = int(s.mask.sum())
        row.update({k: float(v[0]) for k, v in values.items()})
        rows.append(row)
    totals = {k: float(v) for k, v in metric.compute().items()}
    summary = {
        "l1_pct": 100 * totals["l1"],
        "l2_pct": 100 * totals["l2"],
        "psnr": totals["psnr"],
        "ssim": totals["ssim"],
        "images": len(outputs),
    }
    return rows, summary


def build_samples(
    model: LoadedModel | None,
    images: Path | None,
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
        files = list_images(images, "--images") if images is not None else embedded_files()[1]
        masks = centre_masks_for(model, size) if mask == "center" or model is None else model.masks
        samples = crop_samples(files, masks, size, short_side, crops_per_image, seed)
        return (
            protocol,
            samples,
            masks,
            files,
            str(images) if images is not None else "embedded campus/holdout",
        )
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
    model = load_model(checkpoint, dev) if checkpoint is not None else None
    size = model.input_size if model is not None else input_size
    val = {**VAL_DEFAULTS, **(model.config.get("val", {}) if model is not None else {})}
    short_side = int(val["short_side"] if short_side is None else short_side)
    crops_per_image = int(val["crops_per_image"] if crops_per_image is None else crops_per_image)
    seed = int(val["seed"] if seed is None else seed)
    if mask not in ("auto", "center"):
        raise InputError(f"--mask: expected auto or center, got {mask!r}")
    images = Path(images).expanduser() if images is not None else None
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
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_outputs(out_dir, rows, result)
    if grid > 0:
        write_grid(out_dir / "samples.png", samples[:grid], {k: v[:grid] for k, v in methods.items()})
    return result


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
    if result.get("trained"):
        t = result["trained"]
        lines.append("")
        lines.append(
            f"Checkpoint {result['checkpoint']}: saved after epoch {t.get('epoch', '?')} (0-based), "
            f"{t.get('global_step', '?')} optimizer steps, {t.get('train_seconds', '?')} s of training"
        )
    lines += [
        "",
        "| method | L1 % | L2 % | PSNR (dB) | SSIM |",
        "|---|---|---|---|---|",
    ]
    for name, m in result["methods"].items():
        label = LABELS.get(name, name)
        if name == "model" and result.get("model_name"):
            label = f"{label} ({result['model_name']})"
        lines.append(
            f"| {label} | {m['l1_pct']:.2f} | {m['l2_pct']:.2f} | {m['psnr']:.2f} | {m['ssim']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: Path, rows: list[dict[str, Any]], result: dict[str, Any]) -> None:
    with open(out_dir / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "table.md").write_text(markdown_table(result))


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
        "--images", "-i", help="held-out folder, or a paris_eval_gt/ folder (default: embedded holdout)"
    )
    p.add_argument(
        "--out", "-o", default=None, help="output folder (default logs/eval/<checkpoint or baselines>)"
    )
    p.add_argument("--protocol", default="auto", choices=["auto", "crops", "paris"])
    p.add_argument(
        "--mask", default="auto", choices=["auto", "center"], help="auto: the checkpoint's own masks"
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
        )
    print(markdown_table(result), end="")
    print(f"[ctx-inpaint] wrote {out}/per_image.csv, summary.json, table.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
