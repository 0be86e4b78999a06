"""Inpaint your own images: ``python -m ctx_inpaint.inpaint --input PATH [--mask center|PATH] [--checkpoint CKPT]``.

``--checkpoint`` is a shipped model name (``freeform``, the default, or ``center``), a ``.safetensors`` export or a
``.ckpt`` from training.

``--input`` is one image or a folder (searched recursively). ``--mask`` is ``center`` (a centred square hole),
one mask image used for every input, or a folder holding, for each input, a mask with the same relative
path and stem (any image extension, optionally suffixed ``_mask``). White mask pixels are holes. Each result is a
PNG of the input's size under ``--output`` in which only hole pixels differ from the input; ``--preview`` adds
``<name>_preview.png`` (masked input | result) beside it.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ctx_inpaint.cli import ArgumentParser, report_user_errors
from ctx_inpaint.data.images import load_rgb
from ctx_inpaint.data.sources import FORBIDDEN_NAMES, IMAGE_EXTENSIONS, list_images
from ctx_inpaint.errors import InputError, MissingDataError
from ctx_inpaint.files import atomic_write
from ctx_inpaint.inference import MASK_MODES, Inpainter, check_margin, mask_to_bool, pick_device
from ctx_inpaint.masks import MEAN_FILL


def open_image(path: Path) -> Image.Image:
    """Decode a file fully (so truncated files fail here) as RGB, the way training does (``load_rgb``: EXIF
    orientation applied, 16-bit and float files scaled to 8 bits); one-line error naming the file."""
    return Image.fromarray(load_rgb(path).permute(1, 2, 0).numpy())


def list_inputs(path: Path) -> tuple[Path, list[Path]]:
    """(root, files): a single file gives its folder as root; a folder, its images as training lists them."""
    if path.is_file():
        if path.name.lower() in FORBIDDEN_NAMES:
            raise MissingDataError(
                f"--input: {path} is one of the excluded images ({', '.join(sorted(FORBIDDEN_NAMES))}); "
                "expected another image"
            )
        return path.parent, [path]
    return path, list_images(path, "--input", "an image file or a folder of images")


def find_mask(mask_dir: Path, rel: Path) -> Path:
    """The mask for input ``rel`` (relative path) inside ``mask_dir``: same stem, or stem + ``_mask``."""
    folder = mask_dir / rel.parent
    for stem in (rel.stem, rel.stem + "_mask"):
        for candidate in sorted(folder.glob(stem + ".*")):
            if candidate.suffix.lower() in IMAGE_EXTENSIONS:
                return candidate
    raise MissingDataError(
        f"--mask: no mask for {rel} in {folder} (expected {rel.stem}.png or {rel.stem}_mask.png)"
    )


def load_mask(path: Path, size: tuple[int, int]):
    mask = mask_to_bool(open_image(path))
    if (mask.shape[1], mask.shape[0]) != size:
        raise InputError(
            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is {size[0]}x{size[1]} (expected the same size)"
        )
    return mask


def preview(image: Image.Image, hole, result: Image.Image) -> Image.Image:
    """Side by side: the input with its hole in the model's fill colour | the result."""
    arr = np.asarray(image).copy()
    arr[hole.numpy()] = (np.array(MEAN_FILL) * 255).round().astype(np.uint8)
    w, h = image.size
    canvas = Image.new("RGB", (2 * w + 4, h), (255, 255, 255))
    canvas.paste(Image.fromarray(arr), (0, 0))
    canvas.paste(result, (w + 4, 0))
    return canvas


Job = tuple[Path, Path | None, Path]  # input, its mask file (None = the centre hole), its result


def run(
    inpainter: Inpainter, inputs: Path, mask: str, output: Path, with_preview: bool = False
) -> list[Path]:
    """Inpaint every input; returns the written result paths."""
    return run_jobs(inpainter, plan_jobs(inputs, mask, output), with_preview)


def plan_jobs(inputs: Path, mask: str, output: Path) -> list[Job]:
    """Every input with its mask and result path, checked before any model is loaded or file written: a missing
    mask or a result that would replace an input is refused up front, not after partial output."""
    root, files = list_inputs(inputs)
    out_dir = output.resolve()
    if out_dir != root.resolve():  # an output folder inside the inputs: its earlier results are not inputs
        files = [f for f in files if not f.resolve().is_relative_to(out_dir)]
    if not files:
        raise MissingDataError(f"--input: {inputs} holds no images outside the output folder {output}")
    mask_path = None if mask in MASK_MODES else Path(mask).expanduser()
    if mask_path is not None and not mask_path.exists():
        raise MissingDataError(
            f"--mask: {mask} is neither a mode ({', '.join(MASK_MODES)}) nor an existing file/folder"
        )
    plan = plan_outputs(root, files, output)
    jobs = []
    for path in files:
        source = (
            find_mask(mask_path, path.relative_to(root))
            if mask_path is not None and mask_path.is_dir()
            else mask_path
        )
        jobs.append((path, source, plan[path]))
    return jobs


def run_jobs(inpainter: Inpainter, jobs: list[Job], with_preview: bool = False) -> list[Path]:
    written = []
    for path, source, target in tqdm(jobs, desc="inpaint", unit="img", disable=len(jobs) < 2 or None):
        image = open_image(path)
        hole = (
            inpainter.center_mask(image.height, image.width)
            if source is None
            else load_mask(source, image.size)
        )
        if bool(hole.all()):
            warnings.warn(
                f"{source}: the mask hides every pixel of {path}; the result is the model's guess from no context",
                stacklevel=2,
            )
        result = inpainter(image, hole)
        save_png(result, target)
        written.append(target)
        if with_preview:
            save_png(preview(image, hole, result), preview_path(target))
    return written


def preview_path(target: Path) -> Path:
    return target.with_name(target.stem + "_preview.png")


def save_png(image: Image.Image, target: Path) -> None:
    """Write a PNG atomically: concurrent runs and kills never leave a truncated file."""
    atomic_write(target, lambda f: image.save(f, format="PNG"))


def plan_outputs(root: Path, files: list[Path], output: Path) -> dict[Path, Path]:
    """Each input's result path under ``output``: ``rel.png``, or ``rel_EXT.png`` where two inputs (``a.jpg``,
    ``a.png``) would share one. Refused in one line, before anything is written, when a result (or its preview)
    would replace an input."""
    targets: dict[Path, Path] = {}
    by_name: dict[Path, list[Path]] = {}
    for path in files:
        by_name.setdefault(path.relative_to(root).with_suffix(".png"), []).append(path)
    for rel, paths in by_name.items():
        for path in paths:
            name = (
                rel if len(paths) == 1 else rel.with_name(f"{rel.stem}_{path.suffix.lstrip('.').lower()}.png")
            )
            targets[path] = output / name
    inputs = {p.resolve() for p in files}
    for path, target in targets.items():
        for out in (target, preview_path(target)):
            if out.resolve() in inputs:
                raise InputError(
                    f"--output: the result of {path} would overwrite the input {out}; expected an output folder "
                    "that holds none of the results' names"
                )
    return targets


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m ctx_inpaint.inpaint", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--checkpoint",
        "-c",
        default="freeform",
        help="a shipped model (freeform: brushed holes, the default; center: the paper's centre hole), "
        "a .safetensors export or a .ckpt written by ctx_inpaint.train",
    )
    p.add_argument("--input", "-i", required=True, help="an image file or a folder of images")
    p.add_argument("--mask", "-m", default="center", help="'center', a mask image, or a folder of masks")
    p.add_argument("--output", "-o", default="inpainted", help="output folder (default: inpainted/)")
    p.add_argument("--preview", action="store_true", help="also write <name>_preview.png (masked | result)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1... (default: cuda if available)")
    p.add_argument("--margin", type=float, default=2.0, help="whole-image models: window side / hole extent")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with report_user_errors():
        device = pick_device(args.device, "--device")
        output = Path(args.output)
        jobs = plan_jobs(Path(args.input).expanduser(), args.mask, output)  # before the model load (seconds)
        inpainter = Inpainter.from_checkpoint(args.checkpoint, device=device)
        if inpainter.hidden_box is None:  # whole-image models: the margin sizes their windows
            inpainter.margin = check_margin(args.margin, "--margin")
        written = run_jobs(inpainter, jobs, args.preview)
    print(f"[ctx-inpaint] wrote {len(written)} image(s) to {args.output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
