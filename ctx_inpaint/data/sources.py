"""Where images come from: the embedded campus photos (alone or with the package's other scenes), any folder, or
the Paris StreetView layout."""

from __future__ import annotations

import importlib.resources
import random
from collections.abc import Callable
from pathlib import Path

from ctx_inpaint.errors import DataError, MissingDataError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
# Photos in mvtb-data that must never be used (licensing / ethics of the classic test images).
FORBIDDEN_NAMES = {"lena.png", "58060.png", "monalisa.png"}


# Drops unreadable files (or raises): ``screen(files, key, folder)``, see data/screening.py.
Screen = Callable[[list[Path], str, Path], list[Path]]


def list_images(
    folder: str | Path, key: str, what: str = "a folder of images", screen: Screen | None = None
) -> list[Path]:
    """Every image file under ``folder`` (searched recursively, sorted, ``FORBIDDEN_NAMES`` left out), screened
    by ``screen`` if given. A missing folder or one without images is a one-line ``MissingDataError`` naming
    ``key`` (the config key or CLI flag the folder came from), the path and ``what`` was expected."""
    folder = _require_dir(Path(folder).expanduser(), key, what)
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and p.name.lower() not in FORBIDDEN_NAMES
    )
    return _require_images(files, folder, key, screen)


def _require_images(files: list[Path], folder: Path, key: str, screen: Screen | None = None) -> list[Path]:
    if not files:
        raise MissingDataError(f"{key}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in {folder}")
    return screen(files, key, folder) if screen is not None else files


def _require_dir(path: Path, key: str, what: str) -> Path:
    if not path.is_dir():
        raise MissingDataError(f"{key}: {path} does not exist or is not a folder (expected {what})")
    return path


def embedded_files() -> tuple[list[Path], list[Path]]:
    """The mvtb-data campus photos (MIT): 20 train photos and 5 held-out photos of building facades."""
    campus = importlib.resources.files("mvtbdata").joinpath("images", "campus")
    root = Path(str(campus))
    train = sorted(p for p in root.glob("*.png") if p.name.lower() not in FORBIDDEN_NAMES)
    val = sorted(p for p in (root / "holdout").glob("*.png") if p.name.lower() not in FORBIDDEN_NAMES)
    return _require_images(train, root, "data.source=embedded"), _require_images(
        val, root / "holdout", "data"
    )


# Photos of other places in the same package, never used in training: a second held-out source for whole-image
# models trained on the campus photos (``evaluate --images embedded:places``).
EMBEDDED_PLACES = (
    "building2-1.png",
    "church.png",
    "eiffel-1.png",
    "notre-dame.png",
    "parks.png",
    "roof.png",
    "street.png",
    "walls-l.png",
)
EMBEDDED_SETS = ("holdout", "places", "cross")
# Photos from other packages (scikit-learn, scikit-image, PyWavelets; licences in cross_source/ATTRIBUTION.md),
# never trained on: the cross-source hold-out (``evaluate --images embedded:cross``).
CROSS_SOURCE_DIR = Path(__file__).with_name("cross_source")

# More scenes from the same package for training (``data.source=embedded_wide``: these plus the 20 campus photos,
# validated on the campus hold-out). Left out on purpose: the ``EMBEDDED_PLACES`` photos and every photo of the same
# scene as one of them (church.jpg, building2-2/2-3, eiffel-2, walls-r), calibration targets, tags, cartoons and
# synthetic test patterns. Never-used names (``FORBIDDEN_NAMES``) stay out as everywhere.
EMBEDDED_WIDE_EXTRA = (
    "road.png",
    "image3.jpg",
    "lab-scene.png",
    "greenscreen.png",
    "butterfly.jpg",
    "rocks2-l.png",
    "castle.png",
    "castle2.png",
    "penguins.png",
    "flowers1.png",
    "flowers5.png",
    "flowers9.png",
    "tomato_14.png",
    "tomato_54.png",
    "mosaic/aerial-08.png",
    "mosaic/aerial-10.png",
    "mosaic/aerial2-001.png",
    "mosaic/aerial2-005.png",
    "mosaic/aerialphoto.png",
    "seq/im.001.png",
)
# Photos of the held-out places' own scenes: never trained on, so the places set stays a clean hold-out.
PLACES_SIBLINGS = ("church.jpg", "building2-2.png", "building2-3.png", "eiffel-2.png", "walls-r.png")


def embedded_wide_files() -> tuple[list[Path], list[Path]]:
    """``embedded_files()`` with ``EMBEDDED_WIDE_EXTRA`` added to the train photos (same campus hold-out)."""
    train, val = embedded_files()
    root = Path(str(importlib.resources.files("mvtbdata").joinpath("images")))
    extra = [root / n for n in EMBEDDED_WIDE_EXTRA if Path(n).name.lower() not in FORBIDDEN_NAMES]
    missing = [str(p) for p in extra if not p.is_file()]
    if missing:
        raise MissingDataError(
            f"data.source=embedded_wide: {missing[0]} is missing (expected mvtb-data==1.6.1)"
        )
    return train + extra, val


def embedded_set(name: str, key: str = "--images") -> list[Path]:
    """Held-out embedded photos by name: ``holdout`` (campus/holdout), ``places`` (``EMBEDDED_PLACES``) or
    ``cross`` (photos from other packages, ``CROSS_SOURCE_DIR``)."""
    if name == "holdout":
        return embedded_files()[1]
    if name == "places":
        root = Path(str(importlib.resources.files("mvtbdata").joinpath("images")))
        return _require_images([root / n for n in EMBEDDED_PLACES if (root / n).is_file()], root, key)
    if name == "cross":
        return list_images(CROSS_SOURCE_DIR, key, "the cross-source photos shipped with the package")
    raise MissingDataError(
        f"{key}: unknown embedded set {name!r}; expected one of {', '.join('embedded:' + n for n in EMBEDDED_SETS)}"
    )


def folder_files(
    root: str | Path,
    val_root: str | Path | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    screen: Screen | None = None,
) -> tuple[list[Path], list[Path]]:
    """Every image under ``root``; validation is ``val_root`` if given, else a seeded ``val_fraction`` split
    (of the readable files, when ``screen`` is given)."""
    root = Path(root).expanduser()
    files = list_images(root, "data.root", screen=screen)
    if val_root is not None:
        return files, list_images(val_root, "data.val_root", screen=screen)
    if not 0 < val_fraction < 1:
        raise DataError(f"data.val_fraction: expected a fraction in (0, 1), got {val_fraction}")
    if len(files) < 2:
        raise DataError(f"data.root: {root} holds {len(files)} image; a train/val split needs at least 2")
    shuffled = files[:]
    random.Random(split_seed).shuffle(shuffled)
    n_val = max(1, round(len(files) * val_fraction))
    return sorted(shuffled[n_val:]), sorted(shuffled[:n_val])


def paris_files(root: str | Path, screen: Screen | None = None) -> tuple[list[Path], list[Path]]:
    """Paris StreetView as distributed: ``paris_train_original/`` (train) and ``paris_eval_gt/`` (val)."""
    root = _require_dir(Path(root).expanduser(), "data.root", "the Paris StreetView root folder")
    train_dir = _require_dir(root / "paris_train_original", "data.root", "paris_train_original/ inside it")
    val_dir = _require_dir(root / "paris_eval_gt", "data.root", "paris_eval_gt/ inside it")
    return (
        list_images(train_dir, "data.root", "paris_train_original/ inside it", screen),
        list_images(val_dir, "data.root", "paris_eval_gt/ inside it", screen),
    )


def resolve_files(
    source: str,
    root: str | None = None,
    val_root: str | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    screen: Screen | None = None,
) -> tuple[list[Path], list[Path]]:
    """Train and val image files for ``data.source``; ``screen`` filters folder/Paris files (not the embedded)."""
    if source == "embedded":
        return embedded_files()
    if source == "embedded_wide":
        return embedded_wide_files()
    if source in ("folder", "paris") and not root:
        raise DataError(f"data.root: required for data.source={source} (got {root!r})")
    if source == "folder":
        return folder_files(root, val_root, val_fraction, split_seed, screen)
    if source == "paris":
        return paris_files(root, screen)
    raise DataError(
        f"data.source: unknown source {source!r}; expected one of embedded, embedded_wide, folder, paris"
    )
