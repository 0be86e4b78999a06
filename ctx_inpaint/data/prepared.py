"""A one-time prepared cache: every photo decoded and resized once, stored as uint8 in one memory-mapped file.

Decoding a Paris-size JPEG and resizing it costs far more than cutting a crop, and the random-crop dataset draws
each photo many times. The cache is built on first use (or by ``python -m ctx_inpaint.prepare``) under
``data.prepared_dir``, in a folder named by a hash of the file list and the sizes; its manifest records each
source file's size and mtime, so changing a photo, the list or ``short_side`` rebuilds it. Workers and DDP ranks
share the file through the page cache instead of each holding a decoded copy.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ctx_inpaint.common.files import atomic_path, atomic_write
from ctx_inpaint.data.images import load_rgb, resize_short_side

FORMAT_VERSION = 1
DATA_NAME = "images.u8"
MANIFEST_NAME = "manifest.json"


def _fingerprint(path: Path) -> list:
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]


def cache_key(files: Sequence[Path], short_side: int, min_side: int) -> str:
    """Names the cache folder: the same files and sizes always map to the same folder."""
    blob = json.dumps([FORMAT_VERSION, short_side, min_side, [str(Path(f).resolve()) for f in files]])
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _data_size(manifest: dict) -> int | None:
    """The length ``images.u8`` has when it holds every image the manifest lists (None: a manifest without them)."""
    try:
        return sum(int(np.prod(shape)) for shape in manifest["shapes"])
    except (KeyError, TypeError, ValueError):
        return None


class PreparedImages:
    """Drop-in for ``ImageStore``: ``store[i]`` is a (3, h, w) uint8 tensor viewing the memory-mapped cache."""

    def __init__(self, files: Sequence[Path], short_side: int, min_side: int, cache_dir: str | Path) -> None:
        self.files = [Path(f).resolve() for f in files]
        self.short_side, self.min_side = short_side, min_side
        self.dir = Path(cache_dir).expanduser() / cache_key(self.files, short_side, min_side)
        self.built = False  # True when this instance (re)built the cache rather than reusing it
        self._ensure()
        manifest = json.loads((self.dir / MANIFEST_NAME).read_text())
        self._shapes = [tuple(s) for s in manifest["shapes"]]
        self._offsets = manifest["offsets"]
        total = self._offsets[-1] + int(np.prod(self._shapes[-1])) if self._shapes else 0
        self._total = max(total, 1)
        self._data = self._map()

    def _map(self) -> np.memmap:
        # Copy-on-write mapping: tensors are writable views, and nothing is ever written back to the file.
        return np.memmap(self.dir / DATA_NAME, dtype=np.uint8, mode="c", shape=(self._total,))

    def __getstate__(self) -> dict:
        # Spawned workers re-open the mapping instead of receiving a pickled copy of every photo.
        return {k: v for k, v in self.__dict__.items() if k != "_data"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._data = self._map()

    # ---- building ------------------------------------------------------------------------------------
    def _expected(self) -> dict:
        return {
            "version": FORMAT_VERSION,
            "short_side": self.short_side,
            "min_side": self.min_side,
            "files": [_fingerprint(f) for f in self.files],
        }

    def _is_current(self, expected: dict) -> bool:
        path = self.dir / MANIFEST_NAME
        if not path.is_file() or not (self.dir / DATA_NAME).is_file():
            return False
        try:
            manifest = json.loads(path.read_text())
            size = (self.dir / DATA_NAME).stat().st_size
        except (OSError, json.JSONDecodeError):
            return False
        # A data file of another length (truncated by a full disk or a copy) would fail to map: rebuilt instead.
        return all(manifest.get(k) == v for k, v in expected.items()) and size == _data_size(manifest)

    def _ensure(self) -> None:
        expected = self._expected()
        if self._is_current(expected):
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir.with_name(self.dir.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per cache (DDP ranks, parallel sweep jobs)
            if not self._is_current(expected):
                self._build(expected)
                self.built = True

    def _build(self, manifest: dict) -> None:
        """Decode + resize every file into ``images.u8``; the manifest is written last, so a killed build is redone."""
        (self.dir / MANIFEST_NAME).unlink(missing_ok=True)
        shapes, offsets, offset = [], [], 0
        # A failed build (bad file, full disk, Ctrl-C) leaves no partial copy: atomic_path removes it.
        with atomic_path(self.dir / DATA_NAME) as tmp, open(tmp, "wb") as out:
            for f in self.files:
                img = resize_short_side(load_rgb(f), self.short_side, self.min_side).contiguous()
                out.write(img.numpy().tobytes())
                shapes.append(list(img.shape))
                offsets.append(offset)
                offset += img.numel()
        text = json.dumps({**manifest, "shapes": shapes, "offsets": offsets}).encode()
        atomic_write(self.dir / MANIFEST_NAME, lambda f: f.write(text))

    # ---- access ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        shape, start = self._shapes[i], self._offsets[i]
        flat = self._data[start : start + int(np.prod(shape))]
        return torch.from_numpy(flat).view(*shape)
