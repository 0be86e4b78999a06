"""Score a checkpoint and classical baselines on the same held-out images and masks.

    python -m ctx_inpaint.evaluate --checkpoint CKPT [--images DIR] [--out DIR]

Default images: the embedded held-out photos (campus/holdout) with the fixed crops and masks of training
validation, so the model's row equals its ``val/*`` metrics; ``--images embedded:places``, a folder or a
``paris_eval_gt/`` folder score other photos, ``--mask-sets`` named seeded mask sets. Writes ``per_image.csv``,
``summary.json`` and ``table.md`` (and ``samples.png`` with ``--grid N``). The library call, and the protocols in
full: ``ctx_inpaint.evaluation.run.evaluate``.
"""

import ctx_inpaint.common.startup  # noqa: F401  first: the thread policy, set before torch loads

import argparse
import sys

from ctx_inpaint.common.cli import (
    ArgumentParser,
    argparse_type,
    int_at_least,
    positive_float,
    report_user_errors,
)
from ctx_inpaint.evaluation.outputs import table
from ctx_inpaint.evaluation.run import default_out_dir, evaluate
from ctx_inpaint.masks.sets import MASK_SETS, parse_mask_sets

FLAGS = {name: f"--{name}" for name in ("checkpoint", "images", "protocol", "mask", "baselines", "device")}


positive = int_at_least(1)
mask_set_names = argparse_type(parse_mask_sets)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m ctx_inpaint.evaluate", description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--checkpoint", "-c", help="a .ckpt written by ctx_inpaint.train (omit: baselines only)")
    add(
        "--images",
        "-i",
        help="held-out folder, a paris_eval_gt/ folder, or embedded:holdout (default) / embedded:places / embedded:cross (photos from other packages)",
    )
    add("--out", "-o", default=None, help="output folder (default logs/eval/<checkpoint or baselines>)")
    add("--protocol", default="auto", choices=["auto", "crops", "paris"])
    add("--mask", default="auto", choices=["auto", "center"], help="auto: the checkpoint's own masks")
    add(
        "--mask-sets",
        type=mask_set_names,
        help=f"score named seeded mask sets on the same crops: a comma list of {', '.join(MASK_SETS)}, or all",
    )
    add("--baselines", default="mean,telea,ns", help="comma list of mean,telea,ns ('' for none)")
    # 16: the smallest crop whose centre hole (inner 7/16 of the side) is not empty
    add("--input-size", type=int_at_least(16), default=128, help="image size without a checkpoint")
    add("--short-side", type=positive, help="photos' shorter side (default: the checkpoint's, else 350)")
    add("--crops-per-image", type=positive, help="fixed crops per photo (default: the checkpoint's, else 8)")
    add("--seed", type=int, help="crop and mask seed (default: the checkpoint's val seed, else 1234)")
    add("--radius", type=positive_float, default=3.0, help="OpenCV inpainting radius")
    add("--batch-size", type=positive, default=32)
    add("--grid", type=int_at_least(0), default=0, help="write samples.png with this many rows")
    add("--device", default="auto")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or str(default_out_dir(args.checkpoint))
    with report_user_errors():
        # Every other flag is the library parameter of the same name.
        options = {k: v for k, v in vars(args).items() if k not in ("out", "baselines")}
        baselines = tuple(b for b in args.baselines.split(",") if b)
        result = evaluate(out_dir=out, baselines=baselines, names=FLAGS, **options)
    print(table(result), end="")
    print(f"[ctx-inpaint] wrote {out}/per_image.csv, summary.json, table.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
