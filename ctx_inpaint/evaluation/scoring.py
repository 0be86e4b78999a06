"""Scoring inpainting methods on fixed samples: the crops and masks, the model's outputs, per-image metrics.

:func:`ctx_inpaint.evaluation.run.evaluate` (``python -m ctx_inpaint.evaluate``) scores with these; experiment
scripts use them too.
Metrics follow ``ctx_inpaint.evaluation.metrics`` (hidden pixels of the composited output, values in [0, 1]) plus, for
free-form holes that have no box, PSNR and SSIM of the whole composited image.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torchmetrics.functional.image import structural_similarity_index_measure
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from ctx_inpaint.data.datasets import FixedValDataset, ImageStore
from ctx_inpaint.data.images import load_rgb, to_model_range
from ctx_inpaint.evaluation.metrics import HiddenPixelMetrics, to_unit_range
from ctx_inpaint.evaluation.stats import paired_bootstrap
from ctx_inpaint.inference.inpainter import Inpainter
from ctx_inpaint.inference.loading import LoadedModel
from ctx_inpaint.masks.generators import CenterMask, MaskGenerator, composite
from ctx_inpaint.masks.sets import area_bin


@dataclass
class EvalSample:
    """One scored image: truth in [-1, 1], its hole mask and where it came from."""

    image: torch.Tensor  # (3, N, N) in [-1, 1]
    mask: torch.Tensor  # (1, N, N), 1 = hidden
    source: str
    crop: tuple[int, int] | None  # (y, x) of the crop in the resized photo; None = whole image


# ---- images and masks ------------------------------------------------------------------------------
def paris_folder(images: str | Path | None) -> Path | None:
    """The ``paris_eval_gt`` folder if ``images`` is it or holds it (never an ``embedded:`` set)."""
    if images is None or str(images).startswith("embedded:"):
        return None
    images = Path(images).expanduser()
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
        masked = model.masks.hide(image, mask)
        pred = model.generator(masked.to(device), mask.to(device)).float().cpu()
        out = composite(pred, masked, mask, model.masks.target_box)
        outs.extend(to_unit_range(out))
    return outs


def fits_model_directly(model: LoadedModel, mask: torch.Tensor) -> bool:
    """Whole-image models take any mask on their input; centre models only the hole they were trained on."""
    if model.kind == "whole":
        return True
    own = model.masks.sample()
    return own.shape == mask.shape and bool(torch.equal(own, mask))


@torch.inference_mode()
def windowed_outputs(
    model: LoadedModel, samples: list[EvalSample], device: torch.device
) -> list[torch.Tensor]:
    """Outputs through ``Inpainter`` (windows around each hole, as ``inpaint`` fills users' photos): how a centre
    model is scored on holes it was not trained on."""
    inpainter = Inpainter(model, device=device, precision="32")  # scores stay float32 on any hardware
    outs = []
    for s in tqdm(samples, desc="model (windows)", leave=False, disable=None):
        # predict writes hole pixels only: its result is already the composite.
        outs.append(to_unit_range(inpainter.predict(s.image, s.mask[0] > 0.5)))
    return outs


def scored_outputs(
    model: LoadedModel, samples: list[EvalSample], device: torch.device, batch_size: int
) -> tuple[list[torch.Tensor], str | None]:
    """The model's outputs on ``samples`` and, when they are not its training masks, a note saying how it was
    scored (a centre model on other holes is filled through ``Inpainter`` windows, never silently)."""
    if all(fits_model_directly(model, s.mask) for s in samples):
        return model_outputs(model, samples, device, batch_size), None
    note = (
        f"{model.name} was trained on {type(model.masks).__name__} holes only: scored here through Inpainter "
        "windows around each hole, outside its training masks"
    )
    return windowed_outputs(model, samples, device), note


def by_area(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per hole-area bin (0-10%, 10-20%, ...): images, mean hole PSNR, mean whole-image SSIM."""
    bins: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        bins[area_bin(r["hole_fraction"])].append(r)
    return {
        name: {
            "images": len(rs),
            "psnr": _mean(r["psnr"] for r in rs),
            "ssim_whole": _mean(r["ssim_whole"] for r in rs),
        }
        for name, rs in sorted(bins.items(), key=lambda kv: int(kv[0].split("-")[0]))
    }


PAIRED_METRICS = ("psnr", "ssim", "ssim_whole")


def paired_against(rows: dict[str, list[dict[str, Any]]], reference: str = "model") -> dict[str, dict]:
    """``reference`` minus each other method, image by image, per metric: mean, bootstrap 95% interval, wins."""
    if reference not in rows:
        return {}
    out = {}
    for name, other in rows.items():
        if name == reference:
            continue
        out[name] = {
            metric: paired_bootstrap([r[metric] for r in rows[reference]], [r[metric] for r in other])
            for metric in PAIRED_METRICS
        }
    return out


def whole_image_scores(output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """PSNR and SSIM (Gaussian 11x11, data_range 1) of one whole composited image (3, N, N) in [0, 1]."""
    mse = (output.float() - target.float()).square().mean().clamp_min(1e-12)
    ssim = structural_similarity_index_measure(output[None].float(), target[None].float(), data_range=1.0)
    return {"psnr_whole": float(-10 * torch.log10(mse)), "ssim_whole": float(ssim)}


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
        row["hole_fraction"] = float(s.mask.float().mean())
        row.update({k: float(v[0]) for k, v in values.items()})
        row.update(whole_image_scores(out, to_unit_range(s.image)))
        rows.append(row)
    totals = {k: float(v) for k, v in metric.compute().items()}
    summary = {
        "l1_pct": 100 * totals["l1"],
        "l2_pct": 100 * totals["l2"],
        "psnr": totals["psnr"],
        "ssim": totals["ssim"],
        "psnr_whole": _mean(r["psnr_whole"] for r in rows),
        "ssim_whole": _mean(r["ssim_whole"] for r in rows),
        "images": len(outputs),
    }
    return rows, summary


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")
