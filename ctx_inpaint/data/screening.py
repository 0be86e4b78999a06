"""Finding unreadable image files before training: ``data.on_bad_image=skip`` leaves them out with one warning
(how many, the first few named), ``error`` stops at the first one.

Every file is decoded once with the loader training uses (``load_rgb``), so a file that passes is a file
training can read: truncated, corrupt and non-image files are caught here, while greyscale, CMYK, RGBA,
palette, 16-bit and EXIF-rotated files are converted. With ``memo_dir`` (the prepared-data folder) the
verdicts are kept by path, size and mtime, so a large dataset is screened once, not on every run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pytorch_lightning.utilities.rank_zero import rank_zero_warn

from ctx_inpaint.common.files import atomic_write
from ctx_inpaint.data.images import load_rgb
from ctx_inpaint.errors import DataError, MissingDataError

POLICIES = ("skip", "error")
MEMO_NAME = "screened.json"
SHOW = 3  # files named in the warning


def _fingerprint(path: Path) -> list:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


class _Memo:
    """Verdicts by absolute path: ``[size, mtime_ns, error or None]``; a changed file is screened again."""

    def __init__(self, folder: str | Path | None) -> None:
        self.path = Path(folder).expanduser() / MEMO_NAME if folder else None
        self.entries: dict[str, list] = {}
        self.dirty = False
        if self.path is not None and self.path.is_file():
            try:
                self.entries = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self.entries = {}

    def get(self, path: Path) -> tuple[bool, str | None]:
        entry = self.entries.get(str(path))
        if entry is not None and entry[:2] == _fingerprint(path):
            return True, entry[2]
        return False, None

    def put(self, path: Path, error: str | None) -> None:
        self.entries[str(path)] = [*_fingerprint(path), error]
        self.dirty = True

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        text = json.dumps(self.entries).encode()
        # Parallel jobs may race: the last writer wins, nothing is half-written.
        atomic_write(self.path, lambda f: f.write(text))


def screen_images(
    files: Sequence[Path], policy: str = "skip", memo_dir: str | Path | None = None
) -> tuple[list[Path], list[str]]:
    """``(readable files, one reason per unreadable file)``; ``policy="error"`` raises at the first bad file."""
    if policy not in POLICIES:
        raise DataError(f"data.on_bad_image: got {policy!r}; expected one of {', '.join(POLICIES)}")
    memo = _Memo(memo_dir)
    good: list[Path] = []
    bad: list[str] = []
    try:
        for f in files:
            f = Path(f).resolve()
            known, error = memo.get(f)
            if not known:
                try:
                    load_rgb(f)
                    error = None
                except Exception as err:  # any decoder failure makes the file unusable
                    error = " ".join(str(err).split()) or type(err).__name__
                    if not error.startswith(str(f)):
                        error = f"{f}: {error}"
                memo.put(f, error)
            if error is None:
                good.append(f)
            elif policy == "error":
                raise DataError(f"{error}; pass data.on_bad_image=skip to train without unreadable files")
            else:
                bad.append(error)
    finally:
        memo.save()
    return good, bad


class Screener:
    """The ``screen`` hook of ``sources.resolve_files``: keeps the readable files of each folder it is given,
    then ``warn()`` says once, for all of them, how many files were left out and names the first few."""

    def __init__(self, policy: str = "skip", memo_dir: str | Path | None = None) -> None:
        self.policy, self.memo_dir = policy, memo_dir
        self.total = 0
        self.bad: list[str] = []

    def __call__(self, files: list[Path], key: str, folder: Path) -> list[Path]:
        good, reasons = screen_images(files, self.policy, self.memo_dir)
        self.total += len(files)
        self.bad += reasons
        if not good:
            raise MissingDataError(
                f"{key}: none of the {len(files)} image files in {folder} could be read (first: {reasons[0]})"
            )
        return good

    def warn(self) -> None:
        if not self.bad:
            return
        shown = "; ".join(self.bad[:SHOW]) + ("; ..." if len(self.bad) > SHOW else "")
        rank_zero_warn(
            f"data: skipped {len(self.bad)} unreadable of {self.total} image files ({shown}); "
            "data.on_bad_image=error stops at the first one instead"
        )
