"""``python -m ctx_inpaint.prepare``: the cache training will use (same screening, same key), checked config,
and no temporary file left behind by a failed build."""

from __future__ import annotations

from pathlib import Path

import pytest

import ctx_inpaint.data.prepared as prepared_mod
from ctx_inpaint.data.prepared import PreparedImages
from ctx_inpaint.errors import ConfigError, DataError
from ctx_inpaint.training.run import prepare, train
from tests.conftest import write_images


@pytest.fixture
def corrupt_folder(tmp_path: Path, monkeypatch) -> Path:
    """Six good photos and one unreadable file; prepared caches go under tmp_path/cache."""
    monkeypatch.setenv("CTX_INPAINT_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "photos"
    write_images(root, 6)
    (root / "img_002b.png").write_bytes(b"these are notes, not pixels\n")
    return root


def test_prepare_skips_bad_images_and_training_reuses_its_cache(
    tiny_cfg, tmp_path: Path, corrupt_folder: Path, monkeypatch, capsys
) -> None:
    cfg = tiny_cfg("data=folder", f"data.root={corrupt_folder}", "data.on_bad_image=skip")
    with pytest.warns(UserWarning, match="skipped 1 unreadable of 7 image files"):
        stores = prepare(cfg)
    assert [s.built for s in stores] == [True, True]
    assert sum(len(s) for s in stores) == 6  # the unreadable file is left out, as training leaves it out
    out = capsys.readouterr().out
    assert f"train: {len(stores[0])} photos built" in out and f"val: {len(stores[1])} photos built" in out
    cache_dirs = sorted(d for d in (tmp_path / "cache").iterdir() if d.is_dir())
    assert cache_dirs == sorted(s.dir for s in stores)

    builds = []
    real_build = PreparedImages._build
    monkeypatch.setattr(
        PreparedImages, "_build", lambda self, m: (builds.append(self.dir), real_build(self, m))[1]
    )
    used = []
    real_init = PreparedImages.__init__

    def record(self, *args, **kw):
        real_init(self, *args, **kw)
        used.append(self.dir)

    monkeypatch.setattr(PreparedImages, "__init__", record)
    train(cfg)
    assert builds == []  # training found prepare's caches: same keys, nothing rebuilt
    assert set(used) == {s.dir for s in stores}
    assert sorted(d for d in (tmp_path / "cache").iterdir() if d.is_dir()) == cache_dirs


def test_prepare_checks_the_config_first(tiny_cfg, corrupt_folder: Path) -> None:
    cfg = tiny_cfg("data=folder", f"data.root={corrupt_folder}", "data.on_bad_image=ignore")
    with pytest.raises(ConfigError, match="data.on_bad_image"):
        prepare(cfg)
    cfg = tiny_cfg("data=folder", f"data.root={corrupt_folder}", "data.prepared_dir=null")
    with pytest.raises(ConfigError, match="data.prepared_dir"):
        prepare(cfg)


def test_prepare_error_policy_stops_with_data_error(tiny_cfg, corrupt_folder: Path) -> None:
    cfg = tiny_cfg("data=folder", f"data.root={corrupt_folder}", "data.on_bad_image=error")
    with pytest.raises(DataError, match="img_002b.png"):
        prepare(cfg)


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
