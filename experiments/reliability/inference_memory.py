"""Peak memory of inpainting the hostile inputs of issue 24 (items 3.1, 3.12) with the shipped models.

Each case runs in a child process of its own (``--case NAME``): the shipped model is loaded and the inputs built,
the process's peak RSS is reset (``/proc/self/clear_refs``), the case runs, and the growth of the peak over the
RSS before it is printed with the seconds, the model's forward calls and the outcome. The child's address space
is limited to what it held before the case plus ``--limit-gb`` (default 8), so a case asking for more fails with
an allocation error instead of taking the machine's memory from everything else running on it.

    python experiments/reliability/inference_memory.py                      # the code this checkout imports
    PYTHONPATH=/tmp/base python experiments/reliability/inference_memory.py  # an older worktree's code

Not a test: the figures depend on the machine; the tests assert structural bounds instead
(``tests/test_bounded_inference.py``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
import traceback

CASES = {
    "line_4000x3000": "4000x3000 photo, a 10-px line across its whole width (freeform)",
    "row_2800x2800": "2800x2800 photo, a 1-px row as the hole (freeform)",
    "row_9000x9000": "9000x9000 photo (81 MP, within the limit), a 1-px row as the hole (freeform)",
    "full_20000x3": "20000x3 photo, every pixel a hole (freeform)",
    "full_50000x1": "50000x1 photo, every pixel a hole (freeform)",
    "alternate_4000x1": "4000x1 photo, every second pixel a hole (freeform; 2000 holes)",
    "random_50000x1": "50000x1 photo, a random half of its pixels holes (freeform; ~12,500 holes)",
    "gif_bomb": "5 KB GIF: a 2000x2000 canvas, 200 frames of 1x1 (decode_rgb)",
    "gif_bomb_allowed": "the same GIF under a limit of 10^9 pixels (decode_rgb: what decoding it takes)",
    "mask_9000_for_320x240": "demo: a 320x240 photo with a 9000x9000 PNG mask (POST /api/inpaint)",
}


def _status(key: str) -> int:
    """A ``/proc/self/status`` figure in kB."""
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+)", f.read(), re.M).group(1))


def photo(width: int, height: int):
    """A uint8 (3, H, W) photo with some structure (a gradient and a few stripes), built without float copies."""
    import numpy as np
    import torch

    x = (np.arange(width, dtype=np.uint32) * 255 // max(width - 1, 1)).astype(np.uint8)
    y = (np.arange(height, dtype=np.uint32) * 255 // max(height - 1, 1)).astype(np.uint8)
    out = np.empty((3, height, width), np.uint8)
    out[0] = x[None, :]
    out[1] = y[:, None]
    out[2] = (x[None, :] // 2 + y[:, None] // 2) ^ ((np.arange(width) // 16 % 2) * 60).astype(np.uint8)
    return torch.from_numpy(out)


def gif_bomb(width: int = 2000, height: int = 2000, frames: int = 200) -> bytes:
    """A GIF whose logical screen is ``width`` x ``height`` and whose ``frames`` frames are 1x1 each."""
    head = b"GIF89a" + width.to_bytes(2, "little") + height.to_bytes(2, "little") + b"\x80\x00\x00"
    head += b"\x00\x00\x00\xff\xff\xff"  # a two-colour global table
    body = b""
    for i in range(frames):
        body += b"\x21\xf9\x04\x00\x01\x00\x00\x00"  # graphic control: 1/100 s (the canvas is painted)
        body += b"\x2c" + (i % width).to_bytes(2, "little") + (i % height).to_bytes(2, "little")
        body += b"\x01\x00\x01\x00\x00"  # a 1x1 frame, no local table
        body += b"\x02\x02\x44\x01\x00"  # LZW (minimum code size 2): clear, 0, end
    return head + body + b"\x3b"


def run_case(name: str, limit_gb: float) -> dict:
    """Build the case's inputs, then measure the case alone; returns what the parent prints."""
    import torch

    import ctx_inpaint
    from ctx_inpaint.inference.inpainter import Inpainter

    torch.set_num_threads(2)
    inpainter = Inpainter.load("freeform", device="cpu")
    calls = [0]
    inpainter.generator.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    work = None
    results: list = []

    def verify() -> None:
        return None

    sizes = {
        "line_4000x3000": (4000, 3000),
        "row_2800x2800": (2800, 2800),
        "row_9000x9000": (9000, 9000),
        "full_20000x3": (20000, 3),
        "full_50000x1": (50000, 1),
        "alternate_4000x1": (4000, 1),
        "random_50000x1": (50000, 1),
    }
    if name in sizes:
        w, h = sizes[name]
        image = photo(w, h)
        hole = torch.zeros(h, w, dtype=torch.bool)
        if name == "line_4000x3000":
            hole[1500:1510] = True
        elif name.startswith("row_"):
            hole[h // 2] = True
        elif name == "alternate_4000x1":
            hole[0, ::2] = True
        elif name == "random_50000x1":
            hole = torch.rand(h, w, generator=torch.Generator().manual_seed(0)) < 0.5
        else:
            hole[:] = True

        def work() -> str:
            results.append(inpainter(image, hole))
            return "ok"

        def verify() -> None:  # after the peak was read: its copies are not the case's
            out = results.pop()
            assert out.shape == image.shape and torch.equal(out[:, ~hole], image[:, ~hole])

    elif name in ("gif_bomb", "gif_bomb_allowed"):
        from ctx_inpaint.data.images import decode_rgb

        data = gif_bomb()
        pixel_limit = 10**9 if name == "gif_bomb_allowed" else None

        def work() -> str:
            try:
                img = decode_rgb(data, "image", pixel_limit)
            except Exception as err:  # noqa: BLE001 - a refusal is an outcome to print
                return f"refused: {' '.join(str(err).split())[:120]}"
            return f"ok: decoded {tuple(img.shape)}"

    elif name == "mask_9000_for_320x240":
        from fastapi.testclient import TestClient
        from PIL import Image

        from ctx_inpaint.inference.demo.app import create_app

        def png(img: Image.Image) -> bytes:
            buffer = io.BytesIO()
            img.save(buffer, format="PNG")
            return buffer.getvalue()

        client = TestClient(create_app({"freeform": "freeform"}, max_pixels=100_000_000))
        image_png = png(Image.fromarray(photo(320, 240).permute(1, 2, 0).numpy()))
        mask_png = png(Image.new("1", (9000, 9000), 1))
        client.get("/api/health")

        def work() -> str:
            resp = client.post(
                "/api/inpaint",
                files={"image": ("p.png", image_png, "image/png"), "mask": ("m.png", mask_png, "image/png")},
            )
            return f"{resp.status_code}: {resp.json()['detail'][:100]}"

    else:
        raise SystemExit(f"unknown case {name!r}; expected one of {', '.join(CASES)}")

    limit = int(_status("VmSize") * 1024 + limit_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak RSS (VmHWM) starts again from the current RSS
    start = time.perf_counter()
    try:
        outcome = work()
    except Exception as err:  # noqa: BLE001 - an allocation refused under the limit is the outcome
        outcome = f"failed: {type(err).__name__}: {' '.join(str(err).split())[:140]}"
        if os.environ.get("TRACE"):
            traceback.print_exc()
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    if outcome == "ok":
        verify()
    return {
        "case": name,
        "peak_growth_mb": round((peak - before) / 1024, 1),
        "seconds": round(seconds, 2),
        "model_calls": calls[0],
        "outcome": outcome,
        "ctx_inpaint": os.path.dirname(ctx_inpaint.__file__),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--case", choices=list(CASES), help="run one case in this process (the parent's child)"
    )
    parser.add_argument("--only", nargs="*", choices=list(CASES), help="the cases to run (default: all)")
    parser.add_argument("--limit-gb", type=float, default=8.0, help="address space a case may add (GB)")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.limit_gb)))
        return
    env = dict(os.environ)
    rows = []
    for name in args.only or list(CASES):
        proc = subprocess.run(
            [sys.executable, __file__, "--case", name, "--limit-gb", str(args.limit_gb)],
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode != 0:
            rows.append({"case": name, "outcome": f"child exit {proc.returncode}: {proc.stderr[-300:]}"})
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    code = rows[0].get("ctx_inpaint", "?") if rows else "?"
    print(f"command: {' '.join(sys.argv)}  (PYTHONPATH={os.environ.get('PYTHONPATH', '')})")
    print(f"date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}")
    print(
        f"machine: {os.cpu_count()} CPU cores ({platform.machine()}), "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
        f"Python {platform.python_version()}; torch threads 2; shipped freeform model on the CPU"
    )
    print(f"code: {code}; limit: +{args.limit_gb:g} GB of address space per case")
    print()
    print("| case | peak RSS growth (MB) | seconds | model calls | outcome |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {CASES[row['case']]} | {row.get('peak_growth_mb', '-')} | {row.get('seconds', '-')} | "
            f"{row.get('model_calls', '-')} | {row['outcome']} |"
        )


if __name__ == "__main__":
    main()
