"""Inpaint your own images: ``python -m ctx_inpaint.inpaint --input PATH [--mask center|PATH] [--checkpoint CKPT]``.

``--checkpoint`` is a shipped model name (``freeform``, the default, or ``center``), a ``.safetensors`` export or a
``.ckpt`` from training.

``--input`` is one image or a folder (searched recursively). ``--mask`` is ``center`` (a centred square hole),
one mask image used for every input, or a folder holding, for each input, a mask with the same relative
path and stem (any image extension, optionally suffixed ``_mask``). White mask pixels are holes. Each result is a
PNG of the input's size under ``--output`` in which only hole pixels differ from the input; ``--preview`` adds
``<name>_preview.png`` (masked input | result) beside it. The library call: ``ctx_inpaint.inference.batch``.
"""

import ctx_inpaint.common.startup  # noqa: F401  first: the thread policy, set before torch loads

import argparse
import sys

from ctx_inpaint.common.cli import ArgumentParser, report_user_errors
from ctx_inpaint.inference.batch import inpaint_files

FLAGS = {
    "source": "--checkpoint",
    "inputs": "--input",
    "mask": "--mask",
    "output": "--output",
    "device": "--device",
    "margin": "--margin",
}


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
        written = inpaint_files(
            args.checkpoint,
            args.input,
            args.mask,
            args.output,
            with_preview=args.preview,
            device=args.device,
            margin=args.margin,
            names=FLAGS,
        )
    print(f"[ctx-inpaint] wrote {len(written)} image(s) to {args.output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
