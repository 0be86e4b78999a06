"""Inference latency of two sets of shipped weights (issue 27): before = the files at a git revision, after = the
working tree's (or given files), each model on square photos of 256 and 1024 px, through
``Inpainter.load(path).predict(image, hole)``, before and after interleaved in one process (their order alternating
from repeat to repeat), the median of ``--repeats`` after ``--warmup``. Writes latency.json and latency.md.

    python experiments/quality/shipped/latency.py [--before-rev HEAD] [--after freeform=PATH ...] [--repeats 20]

The photo is a cross-source photo (``embedded:cross``) resized to the square; the hole is the first mask of a named
set (``masks.sets.draw_masks`` at 128 px, seed 1234), scaled up to the photo: each model gets the hole it was made
for (``--cases MODEL:SET,...``). Run it on a quiet machine (``make quality-latency`` takes the heavy lock).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ctx_inpaint.common.machine import describe
from ctx_inpaint.data.sources import embedded_set
from ctx_inpaint.inference.inpainter import Inpainter
from ctx_inpaint.inference.weights import PRETRAINED_DIR
from ctx_inpaint.masks.sets import draw_masks

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PHOTO = "sklearn_china.jpg"
MASK_SEED = 1234


def git(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True).stdout


def weights_at(rev: str, name: str, into: Path) -> Path:
    """The shipped ``name`` (.safetensors and its .json) as committed at ``rev``, extracted into ``into``."""
    rel = PRETRAINED_DIR.relative_to(ROOT)
    for suffix in (".safetensors", ".json"):
        (into / f"{name}{suffix}").write_bytes(git("show", f"{rev}:{rel.as_posix()}/{name}{suffix}"))
    return into / f"{name}.safetensors"


def shown(path: Path, which: str, rev: str) -> str:
    """How a weights file is named in the record: ``REV:repo path`` before, the repository path (else as given)."""
    if which == "before":
        return f"{rev}:{PRETRAINED_DIR.relative_to(ROOT).as_posix()}/{path.name}"
    resolved = path.resolve()
    return resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else str(path)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def photo(size: int) -> torch.Tensor:
    """(3, size, size) in [-1, 1]: the cross-source photo resized to the square."""
    path = next(p for p in embedded_set("cross") if p.name == PHOTO)
    img = Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 127.5 - 1


def hole(mask_set: str, size: int) -> torch.Tensor:
    """(size, size) bool: the set's first 128-px mask, scaled up (nearest)."""
    m = draw_masks(mask_set, 128, 1, MASK_SEED)[0]
    return F.interpolate(m[None], size=(size, size), mode="nearest")[0, 0] > 0.5


def timed(inp: Inpainter, image: torch.Tensor, mask: torch.Tensor) -> float:
    sync = torch.cuda.synchronize if inp.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    inp.predict(image, mask)
    sync()
    return 1000 * (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before-rev", default="HEAD", help="git revision of the 'before' weights (default HEAD)")
    p.add_argument(
        "--after", action="append", default=[], metavar="NAME=PATH", help="an 'after' .safetensors/.ckpt"
    )
    p.add_argument("--cases", default="center:center,freeform:freeform_medium", help="MODEL:MASK_SET,...")
    p.add_argument("--sizes", default="256,1024", help="photo sides in px")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--out-dir", type=Path, default=HERE)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = [tuple(c.split(":")) for c in args.cases.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    after = {name: PRETRAINED_DIR / f"{name}.safetensors" for name, _ in cases}
    after |= {k: Path(v) for k, v in (a.split("=", 1) for a in args.after)}

    with tempfile.TemporaryDirectory() as tmp:
        before = {name: weights_at(args.before_rev, name, Path(tmp)) for name, _ in cases}
        files = {
            w: {n: {"path": shown(p, w, args.before_rev), "sha256": sha256(p)} for n, p in d.items()}
            for w, d in (("before", before), ("after", after))
        }
        models = {
            (w, n): Inpainter.load(d[n], device=args.device)
            for w, d in (("before", before), ("after", after))
            for n, _ in cases
        }
    inputs = {(n, s, size): (photo(size), hole(s, size)) for n, s in cases for size in sizes}
    samples: dict[tuple, list[float]] = {(w, *k): [] for k in inputs for w in ("before", "after")}
    for r in range(args.warmup + args.repeats):
        for (name, mask_set, size), (image, mask) in inputs.items():
            for which in ("before", "after") if r % 2 == 0 else ("after", "before"):
                ms = timed(models[which, name], image, mask)
                if r >= args.warmup:
                    samples[which, name, mask_set, size].append(ms)

    rows = []
    for (name, mask_set, size), (_, mask) in inputs.items():
        b, a = (samples[w, name, mask_set, size] for w in ("before", "after"))
        rows.append(
            {
                "model": name,
                "mask_set": mask_set,
                "size": size,
                "hole_fraction": round(float(mask.float().mean()), 4),
                "before_ms": statistics.median(b),
                "after_ms": statistics.median(a),
                "after_over_before": statistics.median(a) / statistics.median(b),
                "before_samples_ms": [round(x, 2) for x in b],
                "after_samples_ms": [round(x, 2) for x in a],
            }
        )
    device = next(iter(models.values())).device
    record = {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "machine": describe(accelerator=device.type),
        "device": str(device),
        "before_rev": args.before_rev,
        "before_commit": git("rev-parse", args.before_rev).decode().strip(),
        "files": files,
        "photo": f"embedded:cross/{PHOTO}, resized to the square",
        "masks": f"masks.sets.draw_masks(SET, 128, 1, seed={MASK_SEED})[0], scaled up (nearest)",
        "repeats": args.repeats,
        "warmup": args.warmup,
        "rows": rows,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "latency.json").write_text(json.dumps(record, indent=2) + "\n")
    m = record["machine"]
    lines = [
        "# Inference latency of the shipped weights, before and after (generated by `make quality-latency`; "
        "do not edit)",
        "",
        f"`{record['command']}` on {m['cpu']} ({m['cpu_count']} CPUs, {m['torch_threads']} torch threads"
        f"{', ' + m['gpu'] if 'gpu' in m else ''}), device {record['device']}, torch {m['torch']}. Before: the "
        f"weights at `{args.before_rev}` ({record['before_commit'][:10]}); after: "
        + ", ".join(f"`{n}` = `{v['path']}`" for n, v in files["after"].items())
        + f". `Inpainter.predict` on {record['photo']}; median of {args.repeats} after {args.warmup} warm-up, "
        "before and after interleaved.",
        "",
        "| model | hole | photo | hole % | before (ms) | after (ms) | after / before |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['mask_set']} | {r['size']} px | {100 * r['hole_fraction']:.0f} | "
        f"{r['before_ms']:.1f} | {r['after_ms']:.1f} | {r['after_over_before']:.2f} |"
        for r in rows
    ]
    lines += ["", "Weights (sha256, first 16 hex):", ""]
    lines += [f"- {w} `{n}`: `{v['sha256']}`" for w, d in files.items() for n, v in d.items()]
    (args.out_dir / "latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out_dir / 'latency.json'} and latency.md")


if __name__ == "__main__":
    main()
