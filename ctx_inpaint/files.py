"""Writing files so that a reader never sees half of one: a kill, a full disk or a concurrent writer leaves the old
file or the new one. Used for checkpoints and for inpainting results. Also the names of the run-dir files that
both the trainer and the (torch-free) report use."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

# Per-image val metrics, one row per (epoch, val crop), in the run dir: written by the module, read by the report.
VAL_IMAGES_FILE = "val_images.csv"


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """``write(f)`` into a hidden temporary file next to ``path`` (unique per process and thread), flushed to disk,
    then renamed over ``path``; the temporary file is removed if anything fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Hidden and without the target's suffix: never taken for a checkpoint or an image by a listing.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
