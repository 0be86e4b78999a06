"""Serve the web demo and REST API: ``python -m ctx_inpaint.demo [--port 8000] [--checkpoint PATH ...]``.

Open the printed address in a browser: upload a photo (or pick an embedded example), paint the hole, and compare
the model with OpenCV's Telea and Navier-Stokes fills. ``POST /api/inpaint`` is the API (docs at ``/docs``).
Binds to 127.0.0.1 (this machine only) unless ``--host`` says otherwise, and answers only requests for its own
names from its own page (``guard``): ``--allow-host`` and ``--allow-origin`` open it to more.
"""

from __future__ import annotations

import argparse
import math
import sys

from ctx_inpaint.common.cli import ArgumentParser, report_user_errors
from ctx_inpaint.errors import InputError

DEMO_EXTRA = 'pip install -e ".[demo]" (or make install)'


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m ctx_inpaint.demo", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument(
        "--checkpoint",
        "-c",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="add a model: a .ckpt from ctx_inpaint.train or a .safetensors export, named NAME or by its file's "
        "stem (repeatable; the first becomes the default model). The shipped freeform and center are always there",
    )
    p.add_argument(
        "--max-upload-mb", type=float, default=20.0, help="largest uploaded file, in MB (default 20)"
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="largest image, in pixels (default: CTX_INPAINT_MAX_PIXELS or 100,000,000)",
    )
    p.add_argument(
        "--max-jobs", type=int, default=2, help="requests decoding and filling at once (default 2)"
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this host name or address (repeatable; * = any). By default only "
        "localhost, 127.0.0.1, [::1], --host and the address a request came in on: a page elsewhere cannot "
        "reach the demo by DNS rebinding",
    )
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="URL",
        help="also serve requests that pages from this origin (scheme://host[:port]) send (repeatable; * = any). "
        "By default only the demo's own page: other sites cannot make the browser drive it",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1... (default: cuda if available)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with report_user_errors():
        try:
            import uvicorn  # noqa: F401 - the extra's packages, checked before anything else

            from ctx_inpaint.inference.demo.app import create_app
            from ctx_inpaint.inference.demo.registry import DEFAULT_MODELS, ModelRegistry, checkpoint_models
            from ctx_inpaint.inference.demo.server import LOOPBACK, WILDCARDS, bind, serve, url_of
        except ImportError as err:
            raise InputError(f"the demo needs {err.name or 'its packages'}: {DEMO_EXTRA}") from None
        from ctx_inpaint.data.images import max_pixels
        from ctx_inpaint.inference.demo.guard import check_allowed_hosts, check_allowed_origins
        from ctx_inpaint.inference.inpainter import pick_device

        if not (math.isfinite(args.max_upload_mb) and args.max_upload_mb > 0):
            raise InputError(f"--max-upload-mb: got {args.max_upload_mb:g}; expected a number of MB > 0")
        if args.max_pixels is not None and args.max_pixels < 1:
            raise InputError(f"--max-pixels: got {args.max_pixels}; expected a positive number of pixels")
        if args.max_jobs < 1:
            raise InputError(f"--max-jobs: got {args.max_jobs}; expected a whole number >= 1")
        origins = check_allowed_origins(args.allow_origin)
        # The name it is bound to is its own (a wildcard address names no host: --allow-host does).
        bound = () if args.host in WILDCARDS else (args.host,)
        hosts = check_allowed_hosts(bound, "--host") + check_allowed_hosts(args.allow_host)
        pixels = (
            max_pixels() if args.max_pixels is None else args.max_pixels
        )  # CTX_INPAINT_MAX_PIXELS checked now
        device = pick_device(args.device, "--device")
        extra = checkpoint_models(args.checkpoint, set(DEFAULT_MODELS))
        registry = ModelRegistry({**extra, **DEFAULT_MODELS}, device=device)
        # The default model and every checkpoint now: a bad file is a one-line error before serving, and the
        # first request does not wait for a load.
        for name in {registry.default, *extra}:
            registry.load(name)
        app = create_app(
            registry=registry,
            max_upload_mb=args.max_upload_mb,
            max_pixels=pixels,
            max_jobs=args.max_jobs,
            allow_hosts=hosts,
            allow_origins=origins,
        )
        sock = bind(args.host, args.port)
    url = url_of(sock)
    print(
        f"[ctx-inpaint] demo on {url}/ (models: {', '.join(registry.names())}; API docs {url}/docs); "
        "Ctrl-C stops it",
        flush=True,
    )
    if args.host not in LOOPBACK:
        print(
            f"[ctx-inpaint] warning: bound to {args.host}: other machines can reach this server (no login)",
            file=sys.stderr,
            flush=True,
        )
    serve(app, sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
