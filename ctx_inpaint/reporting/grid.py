"""Side-by-side val images: one row per experiment, the masked inputs and the truth first.

The images come from each run's own ``samples/epoch_XXXX.png`` (written by the module at every validation:
rows of masked | output | truth, ``make_grid(nrow=3, padding=2)``). That needs no checkpoint and no model
rebuild, so it also works for runs whose checkpoints were deleted or for crashed runs that validated once.
Runs validate on the same pixels when their data and mask settings match; runs with other masks (random
patches / regions) get their own masked-input and truth rows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from ctx_inpaint.common.run_folder import RunFolder  # noqa: E402
from ctx_inpaint.reporting.runs import Run  # noqa: E402

PADDING = 2  # make_grid's default, as the module saves it
COLUMNS = ("masked", "output", "image")


@dataclass
class Samples:
    epoch: int
    masked: np.ndarray  # (n, S, S, 3) uint8
    output: np.ndarray
    image: np.ndarray


def split_sample_grid(array: np.ndarray, size: int) -> dict[str, np.ndarray] | None:
    """Cut a (masked | output | truth) grid image back into its tiles; None if the layout does not match."""
    step = size + PADDING
    height, width = array.shape[:2]
    if width != 3 * step + PADDING or height < step + PADDING or (height - PADDING) % step:
        return None
    n = (height - PADDING) // step
    tiles = {}
    for j, key in enumerate(COLUMNS):
        x = PADDING + j * step
        tiles[key] = np.stack(
            [array[PADDING + i * step : PADDING + i * step + size, x : x + size] for i in range(n)]
        )
    return tiles


def _sample_file_pattern() -> re.Pattern[str]:
    """The name :meth:`RunFolder.sample` gives an epoch's grid, as a pattern that captures the epoch (derived from
    it, so the report follows a rename)."""
    marker = 987654321  # any epoch number; its digits mark where the epoch goes in the name
    name = RunFolder(".").sample(marker).name
    head, _, tail = name.partition(str(marker))
    return re.compile(rf"^{re.escape(head)}(\d+){re.escape(tail)}$")


SAMPLE_FILE = _sample_file_pattern()


def last_samples(run: Run) -> Samples | None:
    """The run's last readable validation grid (its final epoch, or the last one before it stopped): a grid cut
    short by a kill mid-save, or a stray file, is passed over for the one before it."""
    if run.path is None:
        return None
    size = (run.config.get("data") or {}).get("input_size")
    found = [(SAMPLE_FILE.match(p.name), p) for p in RunFolder(run.path).samples.glob("*")]
    files = sorted((int(m.group(1)), p) for m, p in found if m)
    if size is None:
        return None
    for epoch, path in reversed(files):
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"))
        except (OSError, SyntaxError, ValueError):  # what PIL raises for truncated or foreign files
            continue
        tiles = split_sample_grid(array, int(size))
        if tiles is not None:
            return Samples(epoch=epoch + 1, **tiles)
    return None


def _key(samples: Samples, n: int) -> str:
    return hashlib.sha1(samples.masked[:n].tobytes() + samples.image[:n].tobytes()).hexdigest()


def _mask_name(run: Run) -> str:
    target = str((run.config.get("masks") or {}).get("_target_", "?"))
    return target.rsplit(".", 1)[-1]


def grid_rows(runs: Sequence[Run], n_images: int = 6) -> list[tuple[str, np.ndarray | None]]:
    """(label, tiles) per row: per group of runs sharing val pixels, masked input and truth, then each run's
    outputs; runs without samples last with ``None`` tiles."""
    loaded = [(run, last_samples(run)) for run in runs]
    with_samples = [(r, s) for r, s in loaded if s is not None]
    if not with_samples:
        return [(f"{run.name}\n[{run.status}]", None) for run in runs]
    n = min(n_images, *(len(s.masked) for _, s in with_samples))
    groups: dict[str, list[tuple[Run, Samples]]] = {}
    for run, samples in with_samples:
        groups.setdefault(_key(samples, n), []).append((run, samples))

    rows: list[tuple[str, np.ndarray | None]] = []
    for members in groups.values():
        first_run, first = members[0]
        rows.append((f"masked input\n({_mask_name(first_run)})", first.masked[:n]))
        rows.append(("truth", first.image[:n]))
        for run, samples in members:
            state = "" if run.ok else f"\n[{run.status}]"
            rows.append((f"{run.name}\n(epoch {samples.epoch}){state}", samples.output[:n]))
    rows += [(f"{run.name}\n[{run.status}]", None) for run, samples in loaded if samples is None]
    return rows


def image_grid(runs: Sequence[Run], path: Path, n_images: int = 6) -> Path | None:
    """Write the grid PNG; returns None when no run has samples."""
    rows = grid_rows(runs, n_images)
    n = next((len(tiles) for _, tiles in rows if tiles is not None), 0)
    if n == 0:
        return None
    fig, axes = plt.subplots(len(rows), n, figsize=(1.25 * n + 1.4, 1.3 * len(rows)), squeeze=False)
    for r, (label, tiles) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if tiles is not None:
                ax.imshow(tiles[c])
            else:
                for side in ax.spines.values():
                    side.set_visible(False)
                if c == 0:
                    ax.text(0.0, 0.5, "no validation images", fontsize=7, va="center", transform=ax.transAxes)
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.subplots_adjust(left=0.2, right=0.99, top=0.99, bottom=0.01, wspace=0.03, hspace=0.06)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
