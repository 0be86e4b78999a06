"""Serve the web demo and REST API: ``python -m ctx_inpaint.demo [--port 8000] [--checkpoint PATH ...]``.

Open the printed address in a browser: upload a photo (or pick an embedded example), paint the hole, and compare
the model with OpenCV's Telea and Navier-Stokes fills. ``POST /api/inpaint`` is the API (docs at ``/docs``).
Binds to 127.0.0.1 (this machine only) unless ``--host`` says otherwise, and answers only requests for its own
names from its own page (``guard``): ``--allow-host`` and ``--allow-origin`` open it to more. Library: ``start_demo``.
"""

import ctx_inpaint.common.startup  # noqa: F401  first: the thread policy, set before torch loads

import argparse
import sys

from ctx_inpaint.common.cli import ArgumentParser, report_user_errors
from ctx_inpaint.inference.demo.launch import start_demo

# start_demo's parameters -> this command's flags (its one-line errors name the flag)
FLAGS = {n: "--" + n.rstrip("s").replace("_", "-") for n in ("checkpoints", "allow_hosts", "allow_origins")}
FLAGS |= {
    n: "--" + n.replace("_", "-")
    for n in ("host", "port", "max_upload_mb", "max_pixels", "max_jobs", "device")
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m ctx_inpaint.demo", description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    add("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    add(
        "--checkpoint",
        "-c",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="add a model: a .ckpt from ctx_inpaint.train, a .safetensors export or a training run folder, named "
        "NAME or by its file's stem (repeatable; the first becomes the default model). The shipped freeform and "
        "center are always there",
    )
    add("--max-upload-mb", type=float, default=20.0, help="largest uploaded file, in MB (default 20)")
    add(
        "--max-pixels",
        type=int,
        default=None,
        help="largest image, in pixels (default: CTX_INPAINT_MAX_PIXELS or 100,000,000)",
    )
    add("--max-jobs", type=int, default=2, help="requests decoding and filling at once (default 2)")
    add(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this host name or address (repeatable; * = any). By default only "
        "localhost, 127.0.0.1, [::1], --host and the address a request came in on: a page elsewhere cannot "
        "reach the demo by DNS rebinding",
    )
    add(
        "--allow-origin",
        action="append",
        default=[],
        metavar="URL",
        help="also serve requests that pages from this origin (scheme://host[:port]) send (repeatable; * = any). "
        "By default only the demo's own page: other sites cannot make the browser drive it",
    )
    add("--device", default="auto", help="cpu, cuda, cuda:1... (default: cuda if available)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with report_user_errors():
        settings = {name: getattr(args, flag[2:].replace("-", "_")) for name, flag in FLAGS.items()}
        demo = start_demo(**settings, names=FLAGS)
    demo.announce()
    demo.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
