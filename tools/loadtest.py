"""Time the demo's API under concurrent load: ``python -m tools.loadtest [--requests 50] [--threads 4]``.

Without ``--url`` it serves the demo app (the shipped models) on 127.0.0.1 in this process, as ``make demo``
does. Every request sends the same embedded photo and a brush-like mask (free-form strokes, seeded); every
response is checked: a PNG of the photo's size whose visible pixels are the photo's, bit for bit, and whose
hole differs from it. One warm-up request (the model's load) is not timed. Prints the figures (latency median,
p95 and max, throughput, errors) and writes them with the machine and the command to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import io
import json
import shlex
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ctx_inpaint.common import machine
from ctx_inpaint.common.cli import ArgumentParser, report_user_errors
from ctx_inpaint.errors import InputError
from ctx_inpaint.masks.generators import FREEFORM_PRESETS, FreeForm


def brush_mask(width: int, height: int, seed: int = 0) -> np.ndarray:
    """(H, W) bool: free-form strokes of medium width (the evaluation's ``freeform_medium``), 5-12% of the photo."""
    side = max(width, height)
    strokes = FreeForm(image_size=side, min_coverage=0.05, max_coverage=0.12, **FREEFORM_PRESETS["medium"])
    return strokes.sample(torch.Generator().manual_seed(seed))[0, :height, :width].numpy() > 0.5


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def check_response(status: int, content: bytes, photo: np.ndarray, hole: np.ndarray) -> str | None:
    """``None`` when the response is right, else what is wrong (one line)."""
    if status != 200:
        return f"status {status}: {content[:200]!r}"
    try:
        out = np.asarray(Image.open(io.BytesIO(content)).convert("RGB"))
    except Exception as err:  # noqa: BLE001 - anything PIL cannot read is a wrong response
        return f"not a PNG ({err})"
    if out.shape != photo.shape:
        return f"size {out.shape[1]}x{out.shape[0]}, expected {photo.shape[1]}x{photo.shape[0]}"
    if not np.array_equal(out[~hole], photo[~hole]):
        return f"{int((out[~hole] != photo[~hole]).any(-1).sum())} visible pixels changed"
    if not (out[hole] != photo[hole]).any():
        return "the hole was left as it was"
    return None


def load_test(
    url: str,
    photo: np.ndarray,
    hole: np.ndarray,
    requests: int = 50,
    threads: int = 4,
    model: str = "freeform",
    method: str = "model",
    timeout: float = 300.0,
) -> dict:
    """``requests`` POST /api/inpaint from ``threads`` threads against ``url``; every response checked."""
    import httpx  # the [demo] extra

    files = {"image": png_bytes(photo), "mask": png_bytes(hole.astype(np.uint8) * 255)}
    data = {"model": model, "method": method}

    def post(client: httpx.Client) -> tuple[float, str | None]:
        start = time.perf_counter()
        try:
            resp = client.post(
                "/api/inpaint",
                files={k: (f"{k}.png", v, "image/png") for k, v in files.items()},
                data=data,
            )
        except httpx.HTTPError as err:
            return time.perf_counter() - start, f"{type(err).__name__}: {err}"
        return time.perf_counter() - start, check_response(resp.status_code, resp.content, photo, hole)

    with httpx.Client(base_url=url, timeout=timeout) as client:
        _, problem = post(client)  # warm-up: the model's load, not timed
        if problem:
            raise InputError(f"--url: the warm-up request failed ({problem})")
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    remaining = [requests]

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=timeout) as client:
            while True:
                with lock:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
                seconds, problem = post(client)
                with lock:
                    latencies.append(seconds)
                    if problem:
                        errors.append(problem)

    start = time.perf_counter()
    pool = [threading.Thread(target=worker, name=f"load-{i}") for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array(latencies)
    return {
        "requests": requests,
        "threads": threads,
        "correct": requests - len(errors),
        "errors": len(errors),
        "error_examples": errors[:5],
        "latency_s": {
            "median": round(float(np.median(lat)), 3),
            "p95": round(float(np.percentile(lat, 95)), 3),
            "max": round(float(lat.max()), 3),
            "min": round(float(lat.min()), 3),
        },
        "wall_s": round(wall, 2),
        "throughput_rps": round(requests / wall, 2),
        "model": model,
        "method": method,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m tools.loadtest", description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=50, help="requests in all (default 50)")
    p.add_argument("--threads", type=int, default=4, help="client threads (default 4)")
    p.add_argument("--url", default=None, help="a running demo server (default: serve one on 127.0.0.1 here)")
    p.add_argument("--model", default="freeform", help="model name (default freeform)")
    p.add_argument(
        "--photo", default="holdout-P1070492", help="an example name (GET /api/examples) or a file"
    )
    p.add_argument("--seed", type=int, default=0, help="the brush mask's seed")
    p.add_argument("--out", default=None, help="write the figures here as JSON")
    p.add_argument("--note", default="", help="a note kept in the JSON (e.g. what else ran on the machine)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with report_user_errors():
        if args.requests < 1 or args.threads < 1:
            raise InputError("--requests, --threads: expected whole numbers >= 1")
        from ctx_inpaint.data.images import load_rgb
        from ctx_inpaint.inference.demo.examples import example_photos

        examples = example_photos()
        path = examples[args.photo]["path"] if args.photo in examples else Path(args.photo).expanduser()
        if not Path(path).is_file():
            raise InputError(
                f"--photo: {args.photo} is neither an example ({', '.join(examples)}) nor a file"
            )
        photo = load_rgb(path).permute(1, 2, 0).numpy().copy()
        hole = brush_mask(photo.shape[1], photo.shape[0], args.seed)
        if args.url:
            result = load_test(args.url, photo, hole, args.requests, args.threads, args.model)
            server = args.url
        else:
            from ctx_inpaint.inference.demo.app import create_app
            from ctx_inpaint.inference.demo.server import BackgroundServer

            app = create_app(device="cpu")
            with BackgroundServer(app) as url:
                result = load_test(url, photo, hole, args.requests, args.threads, args.model)
            server = f"uvicorn in this process on 127.0.0.1, max_jobs={app.state.settings['max_jobs']}, cpu"
    result.update(
        photo=f"{Path(path).name} ({photo.shape[1]}x{photo.shape[0]})",
        hole_fraction=round(float(hole.mean()), 4),
        server=server,
        machine=machine.describe(),
        command="python -m tools.loadtest " + shlex.join(argv if argv is not None else sys.argv[1:]),
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        note=args.note,
    )
    lat = result["latency_s"]
    print(
        f"[ctx-inpaint] {result['requests']} requests from {result['threads']} threads ({result['model']}, "
        f"{result['photo']}, {100 * result['hole_fraction']:.1f}% hole): {result['correct']} correct, "
        f"{result['errors']} wrong; latency median {lat['median']:.3f} s, p95 {lat['p95']:.3f} s, "
        f"max {lat['max']:.3f} s; {result['throughput_rps']:.2f} requests/s on {result['machine']['cpu_count']} CPUs",
        flush=True,
    )
    for problem in result["error_examples"]:
        print(f"[ctx-inpaint]   wrong: {problem}", file=sys.stderr)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"[ctx-inpaint] wrote {out}", flush=True)
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
