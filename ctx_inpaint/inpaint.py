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
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ctx_inpaint.common.cli import ArgumentParser, report_user_errors
from ctx_inpaint.common.files import atomic_write, blocking_file
from ctx_inpaint.data.images import load_rgb
from ctx_inpaint.data.sources import FORBIDDEN_NAMES, IMAGE_EXTENSIONS, list_images
from ctx_inpaint.errors import InputError, MissingDataError
from ctx_inpaint.inference.inpainter import MASK_MODES, Inpainter, check_margin, mask_to_bool, pick_device
from ctx_inpaint.masks.generators import MEAN_FILL


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


def find_mask(mask_dir: Path, rel: Path, listings: dict[Path, dict[str, list[Path]]] | None = None) -> Path:
    """The mask for input ``rel`` (relative path) inside ``mask_dir``: same stem, or stem + ``_mask``, compared
    exactly with the folder's file names (a glob would read ``a[1]`` as a pattern and pair ``a1``'s mask).
    ``listings`` caches each folder's images by stem across calls."""
    folder = mask_dir / rel.parent
    listings = {} if listings is None else listings
    if folder not in listings:
        by_stem: dict[str, list[Path]] = {}
        if folder.is_dir():
            for candidate in sorted(folder.iterdir()):
                if candidate.suffix.lower() in IMAGE_EXTENSIONS and candidate.is_file():
                    by_stem.setdefault(candidate.stem, []).append(candidate)
        listings[folder] = by_stem
    for stem in (rel.stem, rel.stem + "_mask"):
        if stem in listings[folder]:
            return listings[folder][stem][0]
    raise MissingDataError(
        f"--mask: no mask for {rel} in {folder} (expected {rel.stem}.png or {rel.stem}_mask.png)"
    )


def load_mask(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """The hole (True = hidden) of a mask file, refused in one line unless it has its image's ``size`` (w, h)."""
    mask = mask_to_bool(open_image(path))
    check_mask_size(path, mask, size)
    return mask


def check_mask_size(path: Path, mask: torch.Tensor, size: tuple[int, int]) -> None:
    if (mask.shape[1], mask.shape[0]) != size:
        raise InputError(
            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is {size[0]}x{size[1]} (expected the same size)"
        )


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
    return run_jobs(inpainter, plan_jobs(inputs, mask, output, with_preview), with_preview)


def plan_jobs(inputs: Path, mask: str, output: Path, with_preview: bool = False) -> list[Job]:
    """Every input with its mask and result path, checked before any model is loaded or file written: an output
    that is a file, a missing mask, two inputs whose results share a name, a result that would replace an input
    or a mask, and any input or mask that does not decode (or has another size) are refused up front, not after
    partial output."""
    root, files = list_inputs(inputs)
    check_output_folder(output)
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
    listings: dict[Path, dict[str, list[Path]]] = {}
    sources = {
        path: (
            find_mask(mask_path, path.relative_to(root), listings)
            if mask_path is not None and mask_path.is_dir()
            else mask_path
        )
        for path in files
    }
    masks = [m for m in sources.values() if m is not None]
    plan = plan_outputs(root, files, output, protected=masks, with_preview=with_preview)
    jobs = [(path, sources[path], plan[path]) for path in files]
    check_jobs(jobs)
    return jobs


def check_output_folder(output: Path) -> None:
    """``--output`` must be a folder or creatable as one: a file there would fail at the first write."""
    if output.exists() and not output.is_dir():
        raise InputError(
            f"--output: {output} is a file; expected a folder for the results (created if missing)"
        )
    blocker = blocking_file(output)
    if blocker is not None:
        raise InputError(
            f"--output: {output} cannot be created: {blocker} is a file; expected a folder there"
        )


def check_jobs(jobs: list[Job]) -> None:
    """Decode every input and mask once, fully, and check each mask's size, before the first result is written:
    a truncated file late in a folder stops the run before any output, as the README promises."""
    uses = Counter(source for _, source, _ in jobs)
    shared: dict[Path, torch.Tensor] = {}  # a mask file used for several inputs: decoded once
    for path, source, _ in tqdm(jobs, desc="check", unit="img", disable=len(jobs) < 2 or None):
        size = open_image(path).size
        if source is None:
            continue
        if uses[source] == 1:
            load_mask(source, size)
            continue
        if source not in shared:
            shared[source] = mask_to_bool(open_image(source))
        check_mask_size(source, shared[source], size)


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


def plan_outputs(
    root: Path,
    files: list[Path],
    output: Path,
    protected: Iterable[Path] = (),
    with_preview: bool = False,
) -> dict[Path, Path]:
    """Each input's result path under ``output``: ``rel.png``, or ``rel_EXT.png`` where two inputs (``a.jpg``,
    ``a.png``) would share one. Refused in one line, before anything is written, when a result (or its preview)
    would replace an input, a ``protected`` file (the masks) or a folder, or when two inputs' results would share
    a name (``a.jpg`` and ``a.JPG``; compared ignoring case, which many file systems do)."""
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
    kept = {p.resolve(): "mask" for p in protected} | {p.resolve(): "input" for p in files}
    claimed: dict[str, Path] = {}  # result name, case-folded -> the input it belongs to
    for path, target in targets.items():
        for out in (target, preview_path(target)) if with_preview else (target,):
            if out.resolve() in kept:
                raise InputError(
                    f"--output: the result of {path} would overwrite the {kept[out.resolve()]} {out}; expected an "
                    "output folder that holds none of the results' names"
                )
            if out.is_dir():
                raise InputError(
                    f"--output: the result of {path} would replace the folder {out}; expected a file name"
                )
            other = claimed.setdefault(str(out).casefold(), path)
            if other != path:
                raise InputError(
                    f"--output: {other} and {path} would both be written to {out}; expected inputs whose "
                    "results have distinct names (rename one of them)"
                )
        blocker = blocking_file(target)
        if blocker is not None:
            raise InputError(
                f"--output: the result of {path} cannot be written to {target}: {blocker} is a file"
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
        # Before the model load (seconds): every input, mask and result name is checked first.
        jobs = plan_jobs(Path(args.input).expanduser(), args.mask, output, args.preview)
        inpainter = Inpainter.from_checkpoint(args.checkpoint, device=device)
        if inpainter.hidden_box is None:  # whole-image models: the margin sizes their windows
            inpainter.margin = check_margin(args.margin, "--margin")
        written = run_jobs(inpainter, jobs, args.preview)
    print(f"[ctx-inpaint] wrote {len(written)} image(s) to {args.output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
