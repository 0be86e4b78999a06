"""Paris-size stand-in photos for the data benchmark: ``python -m tools.jpegs OUT [--count N]``.

Smooth random colour fields with fine grain, saved as quality-90 JPEGs of 936 x 537 (the Paris StreetView size):
they cost about what real photos cost to decode. Nothing here is committed; ``make bench-data`` writes them to /tmp.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ctx_inpaint.common.cli import ArgumentParser


def write_jpegs(out: Path, count: int, width: int = 936, height: int = 537, seed: int = 0) -> list[Path]:
    """Writes ``count`` JPEGs (skipping those already there) and returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = out / f"photo_{i:05d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        rng = np.random.default_rng([seed, i])  # photo i is the same whichever photos already exist
        coarse = rng.integers(0, 256, (height // 24 + 1, width // 24 + 1, 3), dtype=np.uint8)
        grain = rng.normal(0.0, 12.0, (height, width, 3))
        smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float64)
        pixels = np.clip(smooth + grain, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path, quality=90)
    return paths


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--width", type=int, default=936)
    parser.add_argument("--height", type=int, default=537)
    args = parser.parse_args()
    for name in ("count", "width", "height"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: expected a positive integer, got {getattr(args, name)}")
    paths = write_jpegs(args.out, args.count, args.width, args.height)
    size = sum(p.stat().st_size for p in paths) / len(paths) / 1024
    print(f"{len(paths)} JPEGs of {args.width}x{args.height} in {args.out} (mean {size:.0f} KiB)")


if __name__ == "__main__":
    main()
