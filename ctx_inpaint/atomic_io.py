"""Checkpoints written atomically: a kill during a save never leaves a truncated ``last.ckpt``.

Lightning's ``TorchCheckpointIO`` writes the bytes straight into the target file (or, through fsspec, moves a
temporary file from /tmp, which across file systems is a copy). Here the checkpoint goes to a hidden temporary
file next to the target, is flushed to disk, then ``os.replace``s it: readers see the old file or the new one,
never half of one. Remote paths (s3://, gs://...) keep Lightning's own writer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.cloud_io import get_filesystem
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.plugins.io import TorchCheckpointIO


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` through a temporary file in the same folder, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Hidden and without the .ckpt suffix: never taken for a checkpoint by ckpt_path=last or top-k cleanup.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
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


def _is_local(path: _PATH) -> bool:
    protocol = get_filesystem(path).protocol
    return "file" in (protocol if isinstance(protocol, tuple) else (protocol,))


class AtomicCheckpointIO(TorchCheckpointIO):
    """The Trainer's checkpoint writer (``trainer.plugins``): atomic on local disks."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_torch_save(checkpoint, path)
