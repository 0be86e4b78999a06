from pathlib import Path

import pytest
import torch

from ctx_inpaint.data import InpaintingDataModule
from ctx_inpaint.data.images import resize_short_side
from ctx_inpaint.data.sources import FORBIDDEN_NAMES, embedded_files, paris_files, resolve_files
from ctx_inpaint.masks.generators import CenterMask, RandomRegion
from tests.conftest import write_images


def make_dm(root: Path, **kw) -> InpaintingDataModule:
    args = dict(
        masks=CenterMask(image_size=32, target_size=16, overlap=2),
        source="folder",
        root=str(root),
        input_size=32,
        short_side=40,
        samples_per_epoch=8,
        batch_size=4,
        val_crops_per_image=2,
        num_workers=0,
    )
    args.update(kw)
    return InpaintingDataModule(**args)


def test_folder_datamodule_batches(image_folder: Path) -> None:
    dm = make_dm(image_folder)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) >= {"image", "masked", "mask", "weight"}
    assert batch["image"].shape == (4, 3, 32, 32) and batch["mask"].shape == (4, 1, 32, 32)
    assert batch["weight"].shape == (4, 1, 16, 16)
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    hidden = batch["mask"].bool().expand_as(batch["image"])
    assert torch.equal(batch["masked"][~hidden], batch["image"][~hidden])
    assert not torch.equal(batch["masked"][hidden], batch["image"][hidden])
    assert len(dm.train_dataloader()) == 2  # samples_per_epoch / batch_size
    # seeded split: 6 images, 10% -> 1 val image, 2 crops each
    assert len(dm.val_set) == 2 and len(dm.train_set.store) == 5


def test_val_set_is_identical_across_runs_and_random_masks_are_fixed(image_folder: Path) -> None:
    masks = RandomRegion(image_size=32, noise_size=30, scale=8)
    a, b = make_dm(image_folder, masks=masks), make_dm(image_folder, masks=masks)
    a.setup("fit")
    torch.manual_seed(99)  # global RNG state must not matter
    b.setup("fit")
    for i in range(len(a.val_set)):
        sa, sb = a.val_set[i], b.val_set[i]
        assert torch.equal(sa["image"], sb["image"]) and torch.equal(sa["mask"], sb["mask"])


def test_train_crops_are_random(image_folder: Path) -> None:
    dm = make_dm(image_folder)
    dm.setup("fit")
    first = [dm.train_set[0]["image"] for _ in range(5)]
    assert any(not torch.equal(first[0], x) for x in first[1:])


def test_separate_val_folder(tmp_path: Path) -> None:
    write_images(tmp_path / "train", 3)
    write_images(tmp_path / "val", 2, seed=1)
    train, val = resolve_files("folder", str(tmp_path / "train"), str(tmp_path / "val"))
    assert len(train) == 3 and len(val) == 2


def test_embedded_source_uses_campus_photos_only() -> None:
    train, val = embedded_files()
    assert len(train) == 20 and len(val) == 5
    assert all(p.parent.name == "campus" for p in train)
    assert all(p.parent.name == "holdout" for p in val)
    assert not {p.name for p in train + val} & FORBIDDEN_NAMES


def test_paris_layout(tmp_path: Path) -> None:
    write_images(tmp_path / "paris_train_original", 2, ext="jpg")
    write_images(tmp_path / "paris_eval_gt", 2)
    train, val = paris_files(tmp_path)
    assert [p.parent.name for p in train + val] == ["paris_train_original"] * 2 + ["paris_eval_gt"] * 2
    with pytest.raises(FileNotFoundError, match="paris_train_original"):
        paris_files(tmp_path / "paris_train_original")


def test_missing_folder_and_bad_source_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="data.root"):
        resolve_files("folder", str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        resolve_files("folder", str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="data.source"):
        resolve_files("flickr")


def test_resize_keeps_small_photos_and_never_goes_below_crop() -> None:
    big = torch.zeros(3, 537, 936, dtype=torch.uint8)
    assert resize_short_side(big, 350, 128).shape[-2:] == (350, 610)
    mid = torch.zeros(3, 200, 300, dtype=torch.uint8)
    assert resize_short_side(mid, 350, 128).shape[-2:] == (200, 300)
    small = torch.zeros(3, 50, 100, dtype=torch.uint8)
    assert resize_short_side(small, 350, 128).shape[-2:] == (128, 256)


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_wide_training_set_keeps_every_held_out_scene_out() -> None:
    """``embedded_wide`` adds the package's other scenes to the campus photos, never a held-out place, a photo of
    a held-out place's scene, a forbidden name, or a validation photo."""
    from ctx_inpaint.data.sources import EMBEDDED_PLACES, PLACES_SIBLINGS, embedded_set

    train, val = resolve_files("embedded_wide")
    campus_train, campus_val = embedded_files()
    assert val == campus_val and train[: len(campus_train)] == campus_train
    assert len(train) == len(campus_train) + 20 and len(set(train)) == len(train)
    names = {p.name.lower() for p in train}
    assert not names & {n.lower() for n in (*EMBEDDED_PLACES, *PLACES_SIBLINGS, *FORBIDDEN_NAMES)}
    held_out = [*val, *embedded_set("places")]
    assert not {_digest(p) for p in train} & {_digest(p) for p in held_out}


def test_cross_source_set_is_disjoint_from_every_training_photo_by_content() -> None:
    """The cross-source hold-out (photos from other packages) shares no file content with any training set."""
    from ctx_inpaint.data.sources import CROSS_SOURCE_DIR, embedded_set

    cross = embedded_set("cross")
    assert len(cross) == 10 and all(p.parent == CROSS_SOURCE_DIR for p in cross)
    assert (CROSS_SOURCE_DIR / "ATTRIBUTION.md").is_file()
    attribution = (CROSS_SOURCE_DIR / "ATTRIBUTION.md").read_text()
    assert all(p.name in attribution for p in cross)  # every photo credited
    trained = {_digest(p) for p in resolve_files("embedded_wide")[0]}
    others = {_digest(p) for p in [*embedded_set("holdout"), *embedded_set("places")]}
    digests = [_digest(p) for p in cross]
    assert len(set(digests)) == len(cross)
    assert not set(digests) & trained and not set(digests) & others
