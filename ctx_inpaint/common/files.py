"""Writing files so that a reader never sees half of one: a kill, a full disk or a concurrent writer leaves the old
file or the new one. Used for checkpoints, run records, prepared data, inpainting results and exports."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def blocking_file(path: str | Path) -> Path | None:
    """The nearest existing ancestor of ``path`` when that is a file, not a folder (None otherwise): writing
    ``path`` would fail there half-way (``mkdir`` raises), so writers check it before they start."""
    for folder in Path(os.path.abspath(path)).parents:
        if folder.exists():
            return None if folder.is_dir() else folder
    return None


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """``write(f)`` into a hidden temporary file next to ``path`` (unique per process and thread), flushed to disk,
    then renamed over ``path``; the temporary file is removed if anything fails."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A hidden temporary path next to ``path`` to write (and check) by name; on leaving the block without an
    exception it is flushed to disk and renamed over ``path``, on any exception removed. For writers that need a
    file name, or a file checked before it replaces the target (an ONNX graph run by onnxruntime first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Hidden and without the target's suffix: never taken for a checkpoint or an image by a listing.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # the data, not only the rename, must survive a power cut
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system can open a folder)."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
