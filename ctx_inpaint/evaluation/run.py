"""Evaluating a model: :func:`evaluate` scores a model and the classical baselines on the same held-out images and
masks and writes the tables; ``python -m ctx_inpaint.evaluate`` is this call.

Default images: the embedded held-out photos (campus/holdout) with the fixed crops and masks of training
validation (same short side, crops per photo and seed), so the model's row equals its ``val/*`` metrics.
``embedded:places`` scores photos of other places from the same package and ``embedded:cross`` photos from other
packages (neither ever used in training). ``mask_sets``
scores named, seeded mask sets instead (:mod:`ctx_inpaint.masks.sets`) on the same crops: per set the hole and
whole-image metrics, results by hole-area bin, the model against each baseline image by image, and a fingerprint of
the masks and images, so two tables are comparable only when they agree. A folder gets the same crop protocol; a
``paris_eval_gt/`` folder gets the Paris StreetView protocol (each 227x227 image resized to the model's input,
centre hole). Metrics: :mod:`ctx_inpaint.evaluation.scoring`; what is written: :mod:`ctx_inpaint.evaluation.outputs`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ctx_inpaint.data.sources import embedded_set, list_images
from ctx_inpaint.errors import InputError, MissingDataError
from ctx_inpaint.evaluation.baselines import Baseline, make_baselines
from ctx_inpaint.evaluation.metrics import to_unit_range
from ctx_inpaint.evaluation.outputs import markdown_table, mask_sets_table, write_grid, write_outputs
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
from ctx_inpaint.inference.loading import LoadedModel, ModelSource, load_model, pick_device
from ctx_inpaint.masks.generators import MaskGenerator
from ctx_inpaint.masks.sets import MASK_SETS, draw_masks, fingerprint

# conf/data/default.yaml's validation settings, for checkpoints that do not record theirs.
VAL_DEFAULTS = {"short_side": 350, "crops_per_image": 8, "seed": 1234}
PROTOCOLS = ("auto", "crops", "paris")
EVAL_ROOT = Path("logs/eval")
Names = Mapping[
    str, str
]  # parameter -> what errors call it (a command's flags); missing: the parameter's name


def default_out_dir(checkpoint: ModelSource | None) -> Path:
    """``logs/eval/<checkpoint's stem>``, or ``logs/eval/baselines`` without a model."""
    return EVAL_ROOT / (Path(checkpoint).stem if checkpoint is not None else "baselines")


def evaluate(
    checkpoint: ModelSource | None = None,
    images: str | Path | None = None,
    out_dir: str | Path | None = None,
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
    names: Names | None = None,
) -> dict[str, Any]:
    """Score the model (if ``checkpoint``, anything ``load_model`` takes, is given) and the baselines; write
    ``per_image.csv``, ``summary.json`` and ``table.md`` to ``out_dir`` (default :func:`default_out_dir`) and
    ``samples.png`` with ``grid`` rows; returns the summary.

    ``short_side``, ``crops_per_image`` and ``seed`` left ``None`` take the checkpoint's validation settings
    (else the data defaults 350, 8, 1234), so the default run repeats training validation. ``names`` maps these
    parameters to what errors call them (the command passes its flags: ``{"baselines": "--baselines", ...}``).
    """
    names = names or {}
    started = time.time()
    # Arguments first: a bad one should not cost a model pass over every image.
    if checkpoint is None and not baselines:
        raise InputError(
            f"nothing to score: give {names.get('checkpoint', 'checkpoint')} or at least one of "
            f"{names.get('baselines', 'baselines')} mean,telea,ns"
        )
    baseline_fns = make_baselines(list(baselines), radius, names.get("baselines", "baselines"))
    dev = pick_device(device, names.get("device", "device"))
    if mask not in ("auto", "center"):
        raise InputError(f"{names.get('mask', 'mask')}: expected auto or center, got {mask!r}")
    if protocol not in PROTOCOLS:
        raise InputError(
            f"{names.get('protocol', 'protocol')}: expected auto, crops or paris, got {protocol!r}"
        )
    model = load_model(checkpoint, dev) if checkpoint is not None else None
    size = model.input_size if model is not None else input_size
    val = {**VAL_DEFAULTS, **(model.config.get("val", {}) if model is not None else {})}
    short_side = int(val["short_side"] if short_side is None else short_side)
    crops_per_image = int(val["crops_per_image"] if crops_per_image is None else crops_per_image)
    seed = int(val["seed"] if seed is None else seed)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(checkpoint)
    images_name = names.get("images", "images")
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
            images_name,
        )
        result |= {
            "checkpoint": str(checkpoint) if checkpoint is not None else None,
            "inpaint_radius": radius,
        }
        result["seconds"] = round(time.time() - started, 1)
        write_outputs(out_dir, rows, result, mask_sets_table(result))
        return result
    protocol, samples, masks, files, source = build_samples(
        model, images, protocol, mask, size, short_side, crops_per_image, seed, images_name
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
    write_outputs(out_dir, rows, result, markdown_table(result))
    if grid > 0:
        write_grid(out_dir / "samples.png", samples[:grid], {k: v[:grid] for k, v in methods.items()})
    return result


def resolve_images(images: str | Path | None, name: str = "images") -> tuple[list[Path], str]:
    """The photos ``images`` names: a folder, ``embedded:holdout`` (the default), ``embedded:places`` or
    ``embedded:cross``."""
    text = str(images) if images is not None else "embedded:holdout"
    if text.startswith("embedded:"):
        return embedded_set(text.split(":", 1)[1], name), text
    return list_images(Path(text).expanduser(), name), text


def build_samples(
    model: LoadedModel | None,
    images: str | Path | None,
    protocol: str,
    mask: str,
    size: int,
    short_side: int,
    crops_per_image: int,
    seed: int,
    images_name: str = "images",
) -> tuple[str, list[EvalSample], MaskGenerator, list[Path], str]:
    """The protocol's images and masks: (protocol, samples, mask generator, files, description of the source)."""
    paris = paris_folder(images)
    if protocol == "auto":
        protocol = "paris" if paris is not None else "crops"
    if protocol == "paris":
        if paris is None:
            raise MissingDataError(
                f"{images_name}: {images} is not and does not hold a paris_eval_gt/ folder"
            )
        files = list_images(paris, images_name)
        masks: MaskGenerator = centre_masks_for(model, size)
        return protocol, paris_samples(files, masks, size), masks, files, str(paris)
    if protocol == "crops":
        files, source = resolve_images(images, images_name)
        masks = centre_masks_for(model, size) if mask == "center" or model is None else model.masks
        samples = crop_samples(files, masks, size, short_side, crops_per_image, seed)
        return protocol, samples, masks, files, source
    raise InputError(f"protocol: expected auto, crops or paris, got {protocol!r}")


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
    images_name: str = "images",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every named mask set on the same crops (their positions do not depend on the masks); each set's masks
    are drawn from ``seed`` alone, so a set is the same for every model and every image source of that size."""
    files, source = resolve_images(images, images_name)
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
