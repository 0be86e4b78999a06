"""Bad image input: what can be converted is, unreadable files are skipped with one warning (or stop the run),
and unusable folders stop before training with a message naming the path and what was expected."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

import ctx_inpaint.data.screening as screening
from ctx_inpaint.data.images import load_rgb
from ctx_inpaint.data.screening import screen_images
from ctx_inpaint.data.sources import resolve_files
from ctx_inpaint.errors import DataError, MissingDataError
from ctx_inpaint.training.run import train
from tests.conftest import write_images


def smooth_rgb(h: int = 40, w: int = 56) -> np.ndarray:
    """Gradients (JPEG keeps them nearly exact) with no symmetry, so a wrong rotation or flip shows."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return (
        np.stack([x / w * 255, y / h * 255, (x + 2 * y) / (w + 2 * h) * 255], axis=-1)
        .round()
        .astype(np.uint8)
    )


def as_hwc(t: torch.Tensor) -> np.ndarray:
    assert t.dtype == torch.uint8 and t.shape[0] == 3
    return t.permute(1, 2, 0).numpy().astype(np.int64)


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.int64) - b.astype(np.int64)).mean())


REF = smooth_rgb()
GRAY = np.asarray(Image.fromarray(REF).convert("L"))


def _write(kind: str, path: Path) -> np.ndarray:
    """Write ``kind`` to ``path``; return the RGB image a correct loader must produce."""
    img = Image.fromarray(REF)
    if kind == "gray":
        img.convert("L").save(path)
        return np.dstack([GRAY] * 3)
    if kind == "gray_alpha":
        img.convert("LA").save(path)
        return np.dstack([GRAY] * 3)
    if kind == "palette":
        img.convert("P").save(path)
        return np.asarray(Image.open(path).convert("RGB"))
    if kind == "rgba":
        Image.fromarray(np.dstack([REF, np.full(REF.shape[:2], 90, np.uint8)]), "RGBA").save(path)
        return REF  # the colour channels; alpha is dropped, not composited
    if kind == "cmyk_tiff":
        img.convert("CMYK").save(path)
        return REF
    if kind == "cmyk_jpeg":
        img.convert("CMYK").save(path, quality=95)
        return REF
    if kind == "gray16":
        g16 = (GRAY.astype(np.uint16) * 257).astype(np.uint16)
        Image.fromarray(g16).save(path)
        return np.dstack([GRAY] * 3)
    if kind == "rgb16":
        cv2.imwrite(str(path), (REF.astype(np.uint16) * 257)[:, :, ::-1])
        return REF
    if kind == "float":
        Image.fromarray(GRAY.astype(np.float32) / 255.0, "F").save(path)
        return np.dstack([GRAY] * 3)
    if kind == "exif_rotated":
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90 CW to display"
        img.save(path, quality=95, exif=exif.tobytes())
        return np.rot90(REF, -1)
    raise ValueError(kind)


CONVERTIBLE = {
    "gray": ("png", 0.0),
    "gray_alpha": ("png", 0.0),
    "palette": ("png", 0.0),
    "rgba": ("png", 0.0),
    "cmyk_tiff": ("tif", 0.0),
    "cmyk_jpeg": ("jpg", 3.0),
    "gray16": ("png", 0.0),
    "rgb16": ("png", 0.0),
    "float": ("tif", 0.5),
    "exif_rotated": ("jpg", 3.0),
}


@pytest.mark.parametrize("kind", list(CONVERTIBLE))
def test_convertible_files_load_as_rgb(kind: str, tmp_path: Path) -> None:
    ext, tolerance = CONVERTIBLE[kind]
    path = tmp_path / f"{kind}.{ext}"
    expected = _write(kind, path)
    got = as_hwc(load_rgb(path))
    assert mean_abs(got, expected) <= tolerance
    if kind == "exif_rotated":  # the other way round would be far off
        assert mean_abs(got, np.rot90(REF, 1)) > 30


def _bad_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    good_jpg = folder / "_tmp.jpg"
    Image.fromarray(REF).save(good_jpg)
    jpg = good_jpg.read_bytes()
    good_jpg.unlink()
    png = folder / "_tmp.png"
    Image.fromarray(REF).save(png)
    png_bytes = png.read_bytes()
    png.unlink()
    files = {
        "truncated.jpg": jpg[: len(jpg) // 2],
        "truncated.png": png_bytes[: len(png_bytes) // 2],
        "notes.png": b"these are notes, not pixels\n",
        "empty.jpg": b"",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return sorted(folder / n for n in files)


@pytest.mark.parametrize("name", ["truncated.jpg", "truncated.png", "notes.png", "empty.jpg"])
def test_unreadable_file_is_named_in_one_line(name: str, tmp_path: Path) -> None:
    _bad_files(tmp_path)
    with pytest.raises(DataError) as err:
        load_rgb(tmp_path / name)
    assert str(tmp_path / name) in str(err.value) and "\n" not in str(err.value)


def messy_folder(root: Path) -> tuple[list[Path], list[Path]]:
    """Good photos (some needing conversion, one smaller than the crop) plus four unreadable files."""
    good = write_images(root, 4, size=(60, 48))
    for kind in ("gray", "cmyk_jpeg", "rgba"):
        path = root / f"{kind}.{CONVERTIBLE[kind][0]}"
        _write(kind, path)
        good.append(path)
    small = root / "small.png"
    Image.fromarray(REF[:10, :12]).save(small)
    good.append(small)
    return sorted(good), _bad_files(root)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch) -> Path:
    """Prepared-data caches (and screening verdicts) of folder sources go here, not under ./logs."""
    monkeypatch.setenv("CTX_INPAINT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_bad_files_are_skipped_with_one_warning(tiny_cfg, tmp_path: Path, cache_dir: Path) -> None:
    good, bad = messy_folder(tmp_path / "photos")
    cfg = tiny_cfg("data=folder", f"data.root={tmp_path / 'photos'}")
    dm = instantiate(cfg.data, masks=instantiate(cfg.masks))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm.setup("fit")
    notes = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    assert len(notes) == 1
    assert f"skipped 4 unreadable of {len(good) + len(bad)} image files" in notes[0]
    assert sum(str(p) in notes[0] for p in bad) == 3  # the first few are named
    used = set(dm.train_set.store.files) | set(dm.val_set.store.files)
    assert used == {p.resolve() for p in good}
    crop = dm.train_set[0]["image"]  # also from the photo smaller than the crop: it is scaled up
    assert crop.shape == (3, 32, 32)
    assert min(dm.train_set.store[i].shape[-1] for i in range(len(dm.train_set.store))) >= 32


def test_error_policy_stops_at_the_first_bad_file(tmp_path: Path) -> None:
    good, bad = messy_folder(tmp_path / "photos")
    with pytest.raises(DataError) as err:
        screen_images(sorted(good + bad), policy="error")
    message = str(err.value)
    assert str(bad[0]) in message and "data.on_bad_image=skip" in message and "\n" not in message


def test_a_folder_of_only_bad_files_stops(tmp_path: Path) -> None:
    _bad_files(tmp_path / "photos")
    with pytest.raises(MissingDataError) as err:
        resolve_files("folder", str(tmp_path / "photos"), screen=screening.Screener("skip"))
    assert f"data.root: none of the 4 image files in {tmp_path / 'photos'} could be read" in str(err.value)


def test_screening_verdicts_are_kept_until_a_file_changes(tmp_path: Path, monkeypatch) -> None:
    good, bad = messy_folder(tmp_path / "photos")
    files = sorted(good + bad)
    first = screen_images(files, memo_dir=tmp_path / "memo")
    calls = []
    monkeypatch.setattr(screening, "load_rgb", lambda p: calls.append(p))  # would make every file "good"
    assert screen_images(files, memo_dir=tmp_path / "memo") == first and calls == []
    bad[0].write_bytes(b"still not an image, but changed")
    good_now, _ = screen_images(files, memo_dir=tmp_path / "memo")
    assert calls == [bad[0].resolve()] and bad[0].resolve() in good_now


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("missing", "does not exist or is not a folder (expected a folder of images)"),
        ("empty", "no images"),
        ("text only", "no images"),
    ],
)
def test_unusable_folder_is_named(layout: str, expected: str, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    if layout != "missing":
        root.mkdir()
    if layout == "text only":
        (root / "readme.txt").write_text("no photos here")
    with pytest.raises(MissingDataError) as err:
        resolve_files("folder", str(root))
    assert str(root) in str(err.value) and expected in str(err.value)


def test_paris_root_without_its_subfolders_is_named(tmp_path: Path) -> None:
    root = tmp_path / "paris"
    write_images(root, 3)  # photos, but not in the distributed layout
    with pytest.raises(MissingDataError) as err:
        resolve_files("paris", str(root))
    assert str(root / "paris_train_original") in str(err.value) and "paris_train_original/" in str(err.value)
    write_images(root / "paris_train_original", 2)
    with pytest.raises(MissingDataError, match="paris_eval_gt"):
        resolve_files("paris", str(root))


@pytest.mark.slow
def test_training_runs_on_a_messy_folder(tiny_cfg, tmp_path: Path, cache_dir: Path) -> None:
    messy_folder(tmp_path / "photos")
    cfg = tiny_cfg("+experiment=l2_1", "data=folder", f"data.root={tmp_path / 'photos'}")
    metrics = train(cfg)
    assert np.isfinite(metrics["val/psnr"])


def test_one_image_listing_names_the_key_it_was_given(tmp_path: Path) -> None:
    """data.sources.list_images serves the config (data.root...) and the CLIs (--images, --input) alike."""
    from ctx_inpaint.data.sources import list_images

    root = tmp_path / "photos"
    write_images(root / "sub", 2)
    Image.fromarray(REF).save(root / "lena.png")  # never used, wherever it is listed from
    (root / "notes.txt").write_text("not an image")
    assert [p.name for p in list_images(root, "--images")] == sorted(p.name for p in (root / "sub").iterdir())
    with pytest.raises(MissingDataError) as err:
        list_images(tmp_path / "nowhere", "--images")
    assert str(err.value) == (
        f"--images: {tmp_path / 'nowhere'} does not exist or is not a folder (expected a folder of images)"
    )
    (root / "empty").mkdir()
    with pytest.raises(MissingDataError, match=r"^--input: no images \(.*\) found in .*empty$"):
        list_images(root / "empty", "--input")


def test_a_truncated_prepared_cache_is_rebuilt(tmp_path: Path) -> None:
    """Issue 15.12: a cut-short images.u8 (full disk, partial copy) failed with numpy's "mmap length is greater
    than file size"; it is rebuilt instead."""
    from ctx_inpaint.data.prepared import DATA_NAME, PreparedImages

    files = write_images(tmp_path / "photos", 3)
    first = PreparedImages(files, 40, 32, tmp_path / "cache")
    expected = [first[i].clone() for i in range(len(first))]
    data = first.dir / DATA_NAME
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    again = PreparedImages(files, 40, 32, tmp_path / "cache")
    assert again.built and all(torch.equal(again[i], want) for i, want in enumerate(expected))
