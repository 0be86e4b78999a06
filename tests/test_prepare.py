"""The prepared cache: no temporary file left behind by a failed build."""

from __future__ import annotations

from pathlib import Path

import pytest

import ctx_inpaint.data.prepared as prepared_mod
from ctx_inpaint.data.prepared import PreparedImages
from tests.conftest import write_images


def test_failed_build_leaves_no_temporary_file(tmp_path: Path, monkeypatch) -> None:
    files = write_images(tmp_path / "photos", 4)
    cache = tmp_path / "cache"
    real_load = prepared_mod.load_rgb
    calls = []

    def flaky(path):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk went away")
        return real_load(path)

    monkeypatch.setattr(prepared_mod, "load_rgb", flaky)
    with pytest.raises(OSError, match="disk went away"):
        PreparedImages(files, 40, 32, cache)
    leftovers = [p.name for p in cache.rglob("*") if ".tmp" in p.name]
    assert leftovers == []
    monkeypatch.setattr(prepared_mod, "load_rgb", real_load)
    store = PreparedImages(files, 40, 32, cache)  # the next attempt builds a complete cache
    assert store.built and len(store) == 4
