"""Inpainting API and CLI on tiny trained checkpoints: only hole pixels change, any size, bad input refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from ctx_inpaint.inference.inpainter import Inpainter, center_mask, mask_to_bool
from ctx_inpaint.masks.generators import apply_mask, crop_box
from tests.commands import run_command
from tests.tiny_checkpoints import tiny_checkpoint

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def center_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint("center", tmp_path_factory)


@pytest.fixture(scope="session")
def region_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint("region", tmp_path_factory)


def photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """A smooth colour gradient plus noise: something to fill that is not constant."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w * 200, yy / h * 200, (xx + yy) / (w + h) * 255], axis=-1)
    return Image.fromarray((base + rng.integers(0, 40, (h, w, 3))).clip(0, 255).astype(np.uint8))


def holes(w: int, h: int) -> np.ndarray:
    """Three holes: one inside, one on the border, one in a corner."""
    m = np.zeros((h, w), dtype=bool)
    m[h // 3 : h // 3 + 9, w // 2 : w // 2 + 12] = True
    m[h - 5 :, 4:14] = True
    m[:6, w - 7 :] = True
    return m


@pytest.mark.parametrize("kind", ["center", "region"])
@pytest.mark.parametrize("size", [(32, 32), (75, 41), (300, 180)])
def test_only_hole_pixels_change(
    kind: str, size: tuple[int, int], center_ckpt: Path, region_ckpt: Path
) -> None:
    inpainter = Inpainter.load(center_ckpt if kind == "center" else region_ckpt, device="cpu")
    assert inpainter.kind == ("center" if kind == "center" else "whole")
    w, h = size
    image = photo(w, h)
    mask = holes(w, h)
    out = inpainter(image, Image.fromarray(mask.astype(np.uint8) * 255))
    assert out.size == image.size and out.mode == "RGB"
    a, b = np.asarray(image), np.asarray(out)
    assert np.array_equal(a[~mask], b[~mask])  # visible pixels bit-identical
    assert (a[mask] != b[mask]).any(axis=-1).mean() > 0.9  # hole pixels replaced


def test_tensor_inputs_keep_dtype_and_visible_values(center_ckpt: Path) -> None:
    inpainter = Inpainter.load(center_ckpt, device="cpu")
    image = torch.rand(3, 50, 70, dtype=torch.float64)
    out = inpainter(image, "center")
    hole = center_mask(50, 70, inpainter.hole_fraction)
    assert out.dtype == torch.float64 and out.shape == image.shape
    assert torch.equal(out[:, ~hole], image[:, ~hole])
    assert not torch.equal(out[:, hole], image[:, hole])
    batch = (torch.rand(2, 3, 40, 40) * 255).to(torch.uint8)
    out_b = inpainter(batch)
    assert out_b.dtype == torch.uint8 and out_b.shape == batch.shape


def test_centre_hole_at_model_size_equals_the_trained_forward(center_ckpt: Path) -> None:
    """At the model's own size the API does exactly what validation does: no resizing, same hole."""
    inpainter = Inpainter.load(center_ckpt, device="cpu")
    image = torch.rand(3, 32, 32)
    hole = inpainter.center_mask(32, 32)
    assert torch.equal(hole.float()[None], inpainter.model.masks.sample())
    out = inpainter(image, hole)
    masked = apply_mask(image * 2 - 1, hole.float()[None])
    with torch.no_grad():
        pred = inpainter.generator(masked[None])[0]
    expected = image.clone()
    box = inpainter.model.masks.target_box
    crop_box(expected, box)[:, crop_box(hole, box)] = ((pred + 1) / 2).clamp(0, 1)[:, crop_box(hole, box)]
    assert torch.allclose(out, expected, atol=1e-6)


def test_mask_of_another_size_and_unknown_mode_are_refused(center_ckpt: Path) -> None:
    inpainter = Inpainter.load(center_ckpt, device="cpu")
    with pytest.raises(ValueError, match="differs from the image"):
        inpainter(photo(40, 30), Image.new("L", (41, 30)))
    with pytest.raises(ValueError, match="unknown mode"):
        inpainter(photo(40, 30), "left")


def test_cli_folder_with_mask_folder_and_previews(center_ckpt: Path, tmp_path: Path, capsys) -> None:
    inputs, masks, out = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    (inputs / "sub").mkdir(parents=True)
    masks.mkdir()
    (masks / "sub").mkdir()
    sizes = {"a.jpg": (64, 48), "sub/b.png": (40, 90)}
    for name, (w, h) in sizes.items():
        photo(w, h).save(inputs / name, quality=95)
        mask_name = Path(name).with_name(Path(name).stem + "_mask.png")
        Image.fromarray(holes(w, h).astype(np.uint8) * 255).save(masks / mask_name)
    assert (
        run_command(
            "inpaint",
            ["-c", str(center_ckpt), "-i", str(inputs), "-m", str(masks), "-o", str(out), "--preview"],
        )
        == 0
    )
    for name, (w, h) in sizes.items():
        result = Image.open(out / Path(name).with_suffix(".png"))
        assert result.size == (w, h)
        original = np.asarray(Image.open(inputs / name).convert("RGB"))
        m = holes(w, h)
        assert np.array_equal(np.asarray(result)[~m], original[~m])
        assert Image.open(out / Path(name).with_name(Path(name).stem + "_preview.png")).size == (2 * w + 4, h)
    assert "wrote 2 image(s)" in capsys.readouterr().out


@pytest.mark.parametrize("problem", ["mask_size", "not_an_image", "truncated", "no_mask", "bad_checkpoint"])
def test_cli_malformed_inputs_give_one_line_errors(
    problem: str, center_ckpt: Path, tmp_path: Path, capsys
) -> None:
    image = tmp_path / "in" / "photo.png"
    image.parent.mkdir()
    photo(48, 40).save(image)
    mask = tmp_path / "mask.png"
    Image.new("L", (48, 40), 255).save(mask)
    ckpt, named = center_ckpt, None
    if problem == "mask_size":
        Image.new("L", (20, 40), 255).save(mask)
        named = mask
    elif problem == "not_an_image":
        image.write_text("hello")
        named = image
    elif problem == "truncated":
        data = image.read_bytes()
        image.write_bytes(data[: len(data) // 2])
        named = image
    elif problem == "no_mask":
        mask = tmp_path / "masks"
        mask.mkdir()
        named = "photo"
    elif problem == "bad_checkpoint":
        ckpt = tmp_path / "model.ckpt"
        ckpt.write_bytes(b"garbage")
        named = ckpt
    rc = run_command(
        "inpaint", ["-c", str(ckpt), "-i", str(image.parent), "-m", str(mask), "-o", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert err.startswith("ctx-inpaint: error: ") and "\n" not in err and str(named) in err


@pytest.mark.slow
def test_cli_subprocess_center_mode(region_ckpt: Path, tmp_path: Path) -> None:
    photo(100, 60).save(tmp_path / "p.png")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ctx_inpaint.inpaint",
            "-c",
            str(region_ckpt),
            "-i",
            str(tmp_path / "p.png"),
            "-o",
            str(tmp_path / "out"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = np.asarray(Image.open(tmp_path / "out" / "p.png"))
    hole = center_mask(60, 100).numpy()
    original = np.asarray(Image.open(tmp_path / "p.png"))
    assert np.array_equal(out[~hole], original[~hole]) and (out[hole] != original[hole]).any()


def test_cli_reads_files_as_training_does_exif_and_16_bit(center_ckpt: Path, tmp_path: Path) -> None:
    """A JPEG with EXIF orientation 6 is inpainted as displayed (its mask drawn on the displayed photo is
    accepted); a 16-bit photo and a 16-bit mask are scaled to 8 bits, not saturated."""
    inputs, masks, out = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    inputs.mkdir()
    masks.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 64x40, displayed 40x64 (rotate 90 CW)
    photo(64, 40).save(inputs / "rotated.jpg", quality=95, exif=exif.tobytes())
    Image.fromarray(holes(40, 64).astype(np.uint8) * 255).save(masks / "rotated.png")
    grey = (np.asarray(photo(48, 36).convert("L")).astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(grey).save(inputs / "deep.png")  # 16-bit greyscale
    mask16 = np.full((36, 48), 1000, dtype=np.uint16)  # dark grey (about 4 / 255): visible
    mask16[holes(48, 36)] = 65535
    Image.fromarray(mask16).save(masks / "deep.png")
    assert (
        run_command("inpaint", ["-c", str(center_ckpt), "-i", str(inputs), "-m", str(masks), "-o", str(out)])
        == 0
    )

    displayed = np.asarray(ImageOps.exif_transpose(Image.open(inputs / "rotated.jpg")).convert("RGB"))
    result = np.asarray(Image.open(out / "rotated.png"))
    m = holes(40, 64)
    assert result.shape == (64, 40, 3)
    assert np.array_equal(result[~m], displayed[~m]) and (result[m] != displayed[m]).any(axis=-1).mean() > 0.9

    result = np.asarray(Image.open(out / "deep.png"))
    m = holes(48, 36)
    expected = np.dstack([(grey.astype(np.float64) / 257).round().astype(np.uint8)] * 3)
    assert np.array_equal(result[~m], expected[~m])  # visible: the 8-bit photo, not all white
    assert (result[m] != expected[m]).any(axis=-1).mean() > 0.9  # only the drawn holes are holes


def test_mask_pixels_count_the_same_whatever_the_channel_count() -> None:
    """White (> 127) is a hole per channel, then any channel: grey 100 is visible, 200 a hole, in (H, W),
    (1, H, W) and (3, H, W) uint8 masks alike; float and bool (3, H, W) masks likewise per channel."""
    grey = torch.tensor([[0, 100, 127], [128, 200, 255]], dtype=torch.uint8)
    expected = torch.tensor([[False, False, False], [True, True, True]])
    for mask in (grey, grey[None], grey.expand(3, -1, -1), grey.expand(3, -1, -1).numpy()):
        assert torch.equal(mask_to_bool(mask), expected)
    assert torch.equal(mask_to_bool(Image.fromarray(grey.numpy())), expected)
    red = torch.zeros(3, 1, 2, dtype=torch.uint8)
    red[0, 0, 0] = 255  # one white channel is enough
    assert mask_to_bool(red).tolist() == [[True, False]]
    soft = torch.tensor([[[0.2, 0.7]], [[0.2, 0.1]], [[0.2, 0.1]]])
    assert mask_to_bool(soft).tolist() == [[False, True]]
    assert mask_to_bool(soft > 0.5).tolist() == [[False, True]]
    with pytest.raises(ValueError, match=r"mask: expected a \(H, W\)"):
        mask_to_bool(torch.zeros(2, 4, 4))


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--device", "foo"], "--device: expected auto, cpu, cuda or cuda:N, got 'foo'"),
        (["--margin", "0.5"], "--margin: expected a number >= 1"),
        (["--margin", "nan"], "--margin: expected a number >= 1"),
    ],
)
def test_cli_bad_flags_give_one_line_errors_naming_the_flag(
    flags: list[str], named: str, region_ckpt: Path, tmp_path: Path, capsys
) -> None:
    photo(300, 180).save(tmp_path / "p.png")  # a centre hole wider than a 0.5-margin window
    rc = run_command(
        "inpaint",
        ["-c", str(region_ckpt), "-i", str(tmp_path / "p.png"), "-o", str(tmp_path / "out"), *flags],
    )
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert err.startswith("ctx-inpaint: error: ") and "\n" not in err and named in err


def test_margin_below_one_is_refused_only_where_it_is_used(center_ckpt: Path, region_ckpt: Path) -> None:
    with pytest.raises(ValueError, match="margin: expected a number >= 1"):
        Inpainter.load(region_ckpt, device="cpu", margin=0.9)
    assert Inpainter.load(region_ckpt, device="cpu", margin=1).margin == 1
    Inpainter.load(center_ckpt, device="cpu", margin=0.5)  # centre models ignore the margin
    with pytest.raises(ValueError, match="device: expected"):
        Inpainter.load(center_ckpt, device="gpu0")


def test_cli_lists_inputs_as_training_does(center_ckpt: Path, tmp_path: Path, capsys) -> None:
    """The excluded classic test images (data.sources.FORBIDDEN_NAMES) are skipped in folders and refused
    as single files; a missing --input is named."""
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    photo(40, 30).save(inputs / "ok.png")
    photo(40, 30).save(inputs / "sub" / "Lena.png")
    out = tmp_path / "out"
    assert run_command("inpaint", ["-c", str(center_ckpt), "-i", str(inputs), "-o", str(out)]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["ok.png"]
    capsys.readouterr()
    assert (
        run_command(
            "inpaint", ["-c", str(center_ckpt), "-i", str(inputs / "sub" / "Lena.png"), "-o", str(out)]
        )
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("ctx-inpaint: error: --input: ") and "Lena.png" in err and "excluded" in err
    missing = tmp_path / "nowhere"
    assert run_command("inpaint", ["-c", str(center_ckpt), "-i", str(missing), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"ctx-inpaint: error: --input: {missing} does not exist or is not a folder (expected an image file or a folder of images)"
    )


def _hole_shapes(w: int, h: int) -> dict[str, np.ndarray]:
    square, thin, several = (np.zeros((h, w), dtype=bool) for _ in range(3))
    s = max(2, min(w, h) // 3)
    square[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s] = True
    thin[h // 2 : h // 2 + 2, w // 8 : w - w // 8] = True  # a 2-px line across most of the image
    several[2:5, 2:6] = True
    several[h // 2 : h // 2 + 3, w // 2 : w // 2 + 4] = True
    several[h - 6 : h - 2, w - 5 : w - 1] = True
    return {"square": square, "thin": thin, "several": several}


@pytest.mark.parametrize("kind", ["center", "region"])
@pytest.mark.parametrize(
    "size", [(20, 24), (32, 32), (200, 150)]
)  # windows below, at and above the model's 32
def test_result_never_depends_on_the_hidden_pixels(
    kind: str, size: tuple[int, int], center_ckpt: Path, region_ckpt: Path
) -> None:
    """Two photos that differ only inside the hole give bit-identical results (PIL and tensor inputs)."""
    inpainter = Inpainter.load(center_ckpt if kind == "center" else region_ckpt, device="cpu")
    w, h = size
    base = np.asarray(photo(w, h, seed=1))
    rng = np.random.default_rng(7)
    for name, hole in _hole_shapes(w, h).items():
        other = base.copy()
        other[hole] = rng.integers(
            0, 256, (int(hole.sum()), 3), dtype=np.uint8
        )  # new content in the hole only
        mask = Image.fromarray(hole.astype(np.uint8) * 255)
        a = np.asarray(inpainter(Image.fromarray(base), mask))
        b = np.asarray(inpainter(Image.fromarray(other), mask))
        assert np.array_equal(a, b), f"{name} hole, {w}x{h}: the fill depends on hidden pixels"
        ta = inpainter(torch.from_numpy(base.copy()).permute(2, 0, 1).float() / 255, torch.from_numpy(hole))
        tb = inpainter(torch.from_numpy(other).permute(2, 0, 1).float() / 255, torch.from_numpy(hole))
        assert torch.equal(ta, tb), f"{name} hole, {w}x{h}, tensor input: the fill depends on hidden pixels"


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path: Path, monkeypatch) -> None:
    """A 20000x20000 PNG of a few KB (a decompression bomb) is refused from its header, in one line."""
    from ctx_inpaint.data.images import MAX_PIXELS_ENV, load_rgb
    from ctx_inpaint.errors import DataError

    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)
    assert bomb.stat().st_size < 100_000
    with pytest.raises(DataError) as err:
        load_rgb(bomb)
    assert "20000x20000" in str(err.value) and MAX_PIXELS_ENV in str(err.value) and "\n" not in str(err.value)
    small = tmp_path / "small.png"
    photo(40, 30).save(small)
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")  # the limit is configurable: 40x30 = 1200 pixels is over it
    with pytest.raises(DataError, match="1,200 pixels"):
        load_rgb(small)
    monkeypatch.setenv(MAX_PIXELS_ENV, "2000")
    assert load_rgb(small).shape == (3, 30, 40)


@pytest.mark.parametrize("ext", ["gif", "png", "tiff"])
def test_multi_frame_images_give_their_first_frame(tmp_path: Path, ext: str) -> None:
    from ctx_inpaint.data.images import load_rgb

    frames = [Image.fromarray(np.full((12, 16, 3), 40 * i, np.uint8)) for i in range(3)]
    path = tmp_path / f"anim.{ext}"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    img = load_rgb(path)
    assert img.shape == (3, 12, 16) and int(img.float().mean()) == 0  # frame 0 is black
    disguised = tmp_path / "anim_gif.jpg"  # a GIF named .jpg, as a training folder may hold
    disguised.write_bytes((tmp_path / f"anim.{ext}").read_bytes())
    assert load_rgb(disguised).shape == (3, 12, 16)


def test_cli_never_overwrites_inputs_and_disambiguates_names(
    center_ckpt: Path, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    photo(40, 32, seed=1).save(folder / "a.png")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    # Writing into the input folder would replace a.png: refused, nothing written, nothing changed.
    assert run_command("inpaint", ["-c", str(center_ckpt), "-i", str(folder), "-o", str(folder)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ctx-inpaint: error: --output: ") and "a.png" in err and "\n" not in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert (
        run_command("inpaint", ["-c", str(center_ckpt), "-i", str(folder / "a.png"), "-o", str(folder)]) == 1
    )
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    capsys.readouterr()
    photo(40, 32, seed=2).save(folder / "a.jpg")
    # a.jpg and a.png get two results, not one; a second run does not read the first run's results as inputs.
    out = folder / "out"
    for _ in range(2):
        assert run_command("inpaint", ["-c", str(center_ckpt), "-i", str(folder), "-o", str(out)]) == 0
        assert "wrote 2 image(s)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["a_jpg.png", "a_png.png"]
    assert not list(out.glob(".*"))  # no temporary files left


def test_results_are_written_atomically(tmp_path: Path, monkeypatch) -> None:
    """A writer that dies half-way leaves no file at the target and no temporary file."""
    from ctx_inpaint.inference.batch import save_png

    target = tmp_path / "r.png"
    image = photo(20, 10)
    real = Image.Image.save

    def dies(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", dies)
    with pytest.raises(OSError):
        save_png(image, target)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(Image.Image, "save", real)
    save_png(image, target)
    assert np.array_equal(np.asarray(Image.open(target)), np.asarray(image))


def test_a_checkpoint_with_non_finite_weights_is_refused(center_ckpt: Path, tmp_path: Path) -> None:
    from ctx_inpaint.inference.loading import CheckpointError, load_model

    ckpt = torch.load(center_ckpt, weights_only=True)
    key = next(k for k in ckpt["state_dict"] if k.startswith("generator.") and k.endswith("weight"))
    ckpt["state_dict"][key] = torch.full_like(ckpt["state_dict"][key], float("nan"))
    bad = tmp_path / "nan.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match="NaN or inf"):
        load_model(bad)


def test_input_and_mask_problems_are_found_before_the_model_loads(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """A folder missing one mask stops before any output and before the checkpoint is read."""

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(Inpainter, "load", no_loading)
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir(), masks.mkdir()
    for name in ("a", "b"):
        photo(40, 32).save(photos / f"{name}.png")
    Image.fromarray(np.zeros((32, 40), np.uint8)).save(masks / "a.png")  # no mask for b
    args = [
        "-c",
        str(tmp_path / "model.ckpt"),
        "-i",
        str(photos),
        "-m",
        str(masks),
        "-o",
        str(tmp_path / "out"),
    ]
    assert run_command("inpaint", args) == 1
    err = capsys.readouterr().err
    assert "--mask: no mask for b.png" in err and not (tmp_path / "out").exists()


def test_the_library_call_names_its_parameters_and_writes_what_the_command_writes(
    center_ckpt: Path, tmp_path: Path
) -> None:
    """``inpaint_files`` is the command without argparse: errors name its parameters (the command, its flags)."""
    from ctx_inpaint.errors import InputError
    from ctx_inpaint.inference.batch import inpaint_files

    photo(40, 30).save(tmp_path / "p.png")
    (tmp_path / "taken").write_text("a file\n")
    with pytest.raises(InputError, match="^output: .*taken is a file"):
        inpaint_files(center_ckpt, tmp_path / "p.png", output=tmp_path / "taken")
    with pytest.raises(InputError, match="^device: expected auto"):
        inpaint_files(center_ckpt, tmp_path / "p.png", output=tmp_path / "out", device="gpu0")
    written = inpaint_files(
        center_ckpt, tmp_path / "p.png", output=tmp_path / "out", with_preview=True, device="cpu"
    )
    assert written == [tmp_path / "out" / "p.png"] and (tmp_path / "out" / "p_preview.png").is_file()
