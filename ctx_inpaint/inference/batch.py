"""Inpainting files: an image or a folder of images, each paired with its mask, each result written as a PNG.

:func:`inpaint_files` is what ``python -m ctx_inpaint.inpaint`` runs. ``mask`` is ``center`` (a centred square
hole), one mask image used for every input, or a folder holding, for each input, a mask with the same relative path
and stem (any image extension, optionally suffixed ``_mask``). White mask pixels are holes. Each result is a PNG of
the input's size under ``output`` in which only hole pixels differ from the input; ``with_preview`` adds
``<name>_preview.png`` (masked input | result) beside it.

Every input, mask and result name is checked before the model loads and before the first file is written (the
plan, :func:`plan_jobs`): a missing or undecodable mask late in a folder stops the run with nothing written, and a
result never replaces an input, a mask, a folder or another input's result.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ctx_inpaint.common.files import atomic_write, blocking_file
from ctx_inpaint.data.images import load_rgb
from ctx_inpaint.data.sources import FORBIDDEN_NAMES, IMAGE_EXTENSIONS, list_images
from ctx_inpaint.errors import InputError, MissingDataError
from ctx_inpaint.inference.inpainter import MASK_MODES, Inpainter, check_margin, mask_to_bool
from ctx_inpaint.inference.loading import ModelSource, pick_device
from ctx_inpaint.masks.generators import MEAN_FILL

Job = tuple[Path, Path | None, Path]  # input, its mask file (None = the centre hole), its result
Names = Mapping[
    str, str
]  # parameter -> what errors call it (a command's flags); missing: the parameter's name


def inpaint_files(
    source: ModelSource,
    inputs: str | Path,
    mask: str = "center",
    output: str | Path = "inpainted",
    with_preview: bool = False,
    device: str | None = "auto",
    margin: float = 2.0,
    names: Names | None = None,
) -> list[Path]:
    """Inpaint every image of ``inputs`` (a file or a folder) with the model ``source`` names; the written results.

    ``margin``: whole-image models' window side over the hole's extent. ``names`` maps these parameters to what
    errors call them (the command passes its flags, ``{"inputs": "--input", ...}``)."""
    names = names or {}
    dev = pick_device(device, names.get("device", "device"))
    # Before the model load (seconds): every input, mask and result name is checked first.
    jobs = plan_jobs(Path(inputs).expanduser(), mask, Path(output), with_preview, names)
    inpainter = Inpainter.load(source, device=dev)
    if inpainter.hidden_box is None:  # whole-image models: the margin sizes their windows
        inpainter.margin = check_margin(margin, names.get("margin", "margin"))
    return run_jobs(inpainter, jobs, with_preview)


def open_image(path: Path) -> Image.Image:
    """Decode a file fully (so truncated files fail here) as RGB, the way training does (``load_rgb``: EXIF
    orientation applied, 16-bit and float files scaled to 8 bits); one-line error naming the file."""
    return Image.fromarray(load_rgb(path).permute(1, 2, 0).numpy())


def list_inputs(path: Path, name: str = "inputs") -> tuple[Path, list[Path]]:
    """(root, files): a single file gives its folder as root; a folder, its images as training lists them."""
    if path.is_file():
        if path.name.lower() in FORBIDDEN_NAMES:
            raise MissingDataError(
                f"{name}: {path} is one of the excluded images ({', '.join(sorted(FORBIDDEN_NAMES))}); "
                "expected another image"
            )
        return path.parent, [path]
    return path, list_images(path, name, "an image file or a folder of images")


def find_mask(
    mask_dir: Path,
    rel: Path,
    listings: dict[Path, dict[str, list[Path]]] | None = None,
    name: str = "mask",
) -> Path:
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
        f"{name}: no mask for {rel} in {folder} (expected {rel.stem}.png or {rel.stem}_mask.png)"
    )


def load_mask(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """The hole (True = hidden) of a mask file, refused in one line unless it has its image's ``size`` (w, h)."""
    mask = mask_to_bool(open_image(path))
    check_mask_size(path, mask, size)
    return mask


def check_mask_size(path: Path, mask: torch.Tensor, size: tuple[int, int]) -> None:
    """A mask of another size than its image cannot say which pixels are holes: refused naming the file."""
    if (mask.shape[1], mask.shape[0]) != size:
        raise InputError(
            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is {size[0]}x{size[1]} (expected the same size)"
        )


def preview(image: Image.Image, hole: torch.Tensor, result: Image.Image) -> Image.Image:
    """Side by side: the input with its hole in the model's fill colour | the result."""
    arr = np.asarray(image).copy()
    arr[hole.numpy()] = (np.array(MEAN_FILL) * 255).round().astype(np.uint8)
    w, h = image.size
    canvas = Image.new("RGB", (2 * w + 4, h), (255, 255, 255))
    canvas.paste(Image.fromarray(arr), (0, 0))
    canvas.paste(result, (w + 4, 0))
    return canvas


def plan_jobs(
    inputs: Path, mask: str, output: Path, with_preview: bool = False, names: Names | None = None
) -> list[Job]:
    """Every input with its mask and result path, checked before any model is loaded or file written: an output
    that is a file, a missing mask, two inputs whose results share a name, a result that would replace an input
    or a mask, and any input or mask that does not decode (or has another size) are refused up front, not after
    partial output."""
    names = names or {}
    inputs_name, mask_name = names.get("inputs", "inputs"), names.get("mask", "mask")
    root, files = list_inputs(inputs, inputs_name)
    check_output_folder(output, names.get("output", "output"))
    out_dir = output.resolve()
    if out_dir != root.resolve():  # an output folder inside the inputs: its earlier results are not inputs
        files = [f for f in files if not f.resolve().is_relative_to(out_dir)]
    if not files:
        raise MissingDataError(f"{inputs_name}: {inputs} holds no images outside the output folder {output}")
    mask_path = None if mask in MASK_MODES else Path(mask).expanduser()
    if mask_path is not None and not mask_path.exists():
        raise MissingDataError(
            f"{mask_name}: {mask} is neither a mode ({', '.join(MASK_MODES)}) nor an existing file/folder"
        )
    listings: dict[Path, dict[str, list[Path]]] = {}
    sources = {
        path: (
            find_mask(mask_path, path.relative_to(root), listings, mask_name)
            if mask_path is not None and mask_path.is_dir()
            else mask_path
        )
        for path in files
    }
    masks = [m for m in sources.values() if m is not None]
    plan = plan_outputs(root, files, output, masks, with_preview, names.get("output", "output"))
    jobs = [(path, sources[path], plan[path]) for path in files]
    check_jobs(jobs)
    return jobs


def check_output_folder(output: Path, name: str = "output") -> None:
    """The output must be a folder or creatable as one: a file there would fail at the first write."""
    if output.exists() and not output.is_dir():
        raise InputError(
            f"{name}: {output} is a file; expected a folder for the results (created if missing)"
        )
    blocker = blocking_file(output)
    if blocker is not None:
        raise InputError(f"{name}: {output} cannot be created: {blocker} is a file; expected a folder there")


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
    """Fill and write every planned job (see :func:`plan_jobs`); the written result paths."""
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
    """Where a result's preview goes: beside it, ``<name>_preview.png``."""
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
    name: str = "output",
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
            result = (
                rel if len(paths) == 1 else rel.with_name(f"{rel.stem}_{path.suffix.lstrip('.').lower()}.png")
            )
            targets[path] = output / result
    kept = {p.resolve(): "mask" for p in protected} | {p.resolve(): "input" for p in files}
    claimed: dict[str, Path] = {}  # result name, case-folded -> the input it belongs to
    for path, target in targets.items():
        for out in (target, preview_path(target)) if with_preview else (target,):
            if out.resolve() in kept:
                raise InputError(
                    f"{name}: the result of {path} would overwrite the {kept[out.resolve()]} {out}; expected an "
                    "output folder that holds none of the results' names"
                )
            if out.is_dir():
                raise InputError(
                    f"{name}: the result of {path} would replace the folder {out}; expected a file name"
                )
            other = claimed.setdefault(str(out).casefold(), path)
            if other != path:
                raise InputError(
                    f"{name}: {other} and {path} would both be written to {out}; expected inputs whose "
                    "results have distinct names (rename one of them)"
                )
        blocker = blocking_file(target)
        if blocker is not None:
            raise InputError(
                f"{name}: the result of {path} cannot be written to {target}: {blocker} is a file"
            )
    return targets
