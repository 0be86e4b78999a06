"""Evaluation: numbers checked by hand, the model row equals training validation, baselines, Paris, errors."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ctx_inpaint.evaluation.baselines import make_baselines
from ctx_inpaint.evaluation.run import evaluate
from ctx_inpaint.masks.generators import CenterMask
from tests.commands import run_command
from tests.tiny_checkpoints import tiny_checkpoint


@pytest.fixture(scope="session")
def center_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint("center", tmp_path_factory)


def rows_of(out: Path, method: str) -> list[dict[str, str]]:
    with open(out / "per_image.csv") as f:
        return [r for r in csv.DictReader(f) if r["method"] == method]


def gradient(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([xx * 6.0, yy * 5.0, (xx + yy) * 3.0], axis=-1) + rng.integers(0, 30, 3)
    return base.clip(0, 255).astype(np.uint8)


def test_mean_fill_numbers_match_a_hand_computation(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    for i, arr in enumerate(arrays):
        Image.fromarray(arr).save(folder / f"{i}.png")
    # 32x32 photos, short side 32, one crop each: every crop is the whole photo.
    result = evaluate(
        images=folder,
        out_dir=tmp_path / "out",
        baselines=("mean",),
        input_size=32,
        short_side=32,
        crops_per_image=1,
        seed=0,
    )
    y0, y1, x0, x1 = CenterMask(32, 16, 1).hidden_box  # the paper geometry at 32 px: hole = inner 14x14
    hole = np.zeros((32, 32), dtype=bool)
    hole[y0:y1, x0:x1] = True
    l1s, l2s, psnrs = [], [], []
    for arr in arrays:
        x = arr.astype(np.float64) / 255.0
        fill = x[~hole].mean(axis=0)  # mean colour of the visible pixels
        err = fill[None, :] - x[hole]
        l1s.append(np.abs(err).mean())
        l2s.append((err**2).mean())
        psnrs.append(10 * math.log10(1.0 / l2s[-1]))
    rows = rows_of(tmp_path / "out", "mean")
    assert [int(r["hidden_pixels"]) for r in rows] == [hole.sum()] * 3
    for row, l1, l2, p in zip(rows, l1s, l2s, psnrs):
        assert float(row["l1"]) == pytest.approx(l1, rel=1e-5)
        assert float(row["l2"]) == pytest.approx(l2, rel=1e-5)
        assert float(row["psnr"]) == pytest.approx(p, rel=1e-5)
    summary = result["methods"]["mean"]
    assert summary["l1_pct"] == pytest.approx(100 * np.mean(l1s), rel=1e-5)
    assert summary["l2_pct"] == pytest.approx(100 * np.mean(l2s), rel=1e-5)
    assert summary["psnr"] == pytest.approx(np.mean(psnrs), rel=1e-5)  # per image, then averaged
    assert summary["psnr"] != pytest.approx(10 * math.log10(1 / np.mean(l2s)), rel=1e-4)
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["methods"]["mean"]["psnr"] == pytest.approx(summary["psnr"])
    assert "| mean-colour fill |" in (tmp_path / "out" / "table.md").read_text()


def test_model_row_repeats_training_validation(center_ckpt: Path, tmp_path: Path) -> None:
    """Default images and masks = the checkpoint's own validation set (embedded holdout, its crops and seed)."""
    result = evaluate(checkpoint=center_ckpt, out_dir=tmp_path / "out", baselines=("telea",), grid=2)
    with open(center_ckpt.parent.parent / "metrics.csv") as f:
        val = [r for r in csv.DictReader(f) if r.get("val/psnr")][-1]
    model = result["methods"]["model"]
    assert result["samples"] == 5  # 5 held-out photos x 1 crop (the tiny run's data.val_crops_per_image)
    assert model["psnr"] == pytest.approx(float(val["val/psnr"]), rel=1e-5)
    assert model["ssim"] == pytest.approx(float(val["val/ssim"]), rel=1e-5)
    assert model["l1_pct"] == pytest.approx(100 * float(val["val/l1"]), rel=1e-5)
    assert model["l2_pct"] == pytest.approx(100 * float(val["val/l2"]), rel=1e-5)
    assert set(result["methods"]) == {"model", "telea"}
    assert (tmp_path / "out" / "samples.png").is_file()


def test_baselines_fill_only_the_hole_and_beat_mean_fill_on_a_gradient() -> None:
    image = torch.from_numpy(gradient(40, 1)).permute(2, 0, 1).float() / 255
    mask = torch.zeros(1, 40, 40)
    mask[:, 12:28, 12:28] = 1
    errors = {}
    for name, fn in make_baselines(["mean", "telea", "ns"]).items():
        out = fn(image, mask)
        assert torch.equal(out[:, mask[0] == 0], image[:, mask[0] == 0])
        errors[name] = float((out - image).abs()[:, mask[0] == 1].mean())
    # A linear ramp is what diffusion-style inpainting recovers and a flat colour cannot.
    assert errors["telea"] < errors["mean"] / 2 and errors["ns"] < errors["mean"] / 2


def test_paris_protocol_resizes_whole_images_with_centre_hole(center_ckpt: Path, tmp_path: Path) -> None:
    gt = tmp_path / "paris" / "paris_eval_gt"
    gt.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(gradient(227, i)).save(gt / f"{i + 1:03d}_im.png")
    result = evaluate(checkpoint=center_ckpt, images=tmp_path / "paris", out_dir=tmp_path / "out")
    assert result["protocol"] == "paris" and result["samples"] == 3 and result["input_size"] == 32
    rows = rows_of(tmp_path / "out", "model")
    assert [r["image"] for r in rows] == ["001_im.png", "002_im.png", "003_im.png"]
    assert all(r["crop_y"] == "" for r in rows)
    assert all(int(r["hidden_pixels"]) == 12 * 12 for r in rows)  # the tiny model's centre hole


@pytest.mark.parametrize("problem", ["not_an_image", "empty_folder", "bad_baseline"])
def test_cli_errors_are_one_line(problem: str, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(gradient(40, 0)).save(folder / "ok.png")
    args = ["--images", str(folder), "--out", str(tmp_path / "out"), "--input-size", "32"]
    named = str(folder)
    if problem == "not_an_image":
        (folder / "broken.png").write_text("not a png")
        named = str(folder / "broken.png")
    elif problem == "empty_folder":
        (folder / "ok.png").unlink()
    else:
        args += ["--baselines", "mean,magic"]
        named = "magic"
    assert run_command("evaluate", args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ctx-inpaint: error: ") and "\n" not in err and named in err


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--crops-per-image", "0"], "argument --crops-per-image: expected an integer >= 1, got '0'"),
        (["--batch-size", "0"], "argument --batch-size: expected an integer >= 1, got '0'"),
        (["--short-side", "-5"], "argument --short-side: expected an integer >= 1, got '-5'"),
        (["--short-side", "big"], "argument --short-side: expected an integer >= 1, got 'big'"),
        (["--radius", "-1"], "argument --radius: expected a number > 0, got '-1'"),
        (["--grid", "-3"], "argument --grid: expected an integer >= 0, got '-3'"),
        (["--input-size", "7"], "argument --input-size: expected an integer >= 16, got '7'"),
    ],
)
def test_cli_non_positive_counts_are_refused_naming_the_flag(
    flags: list[str], named: str, tmp_path: Path, capsys
) -> None:
    assert run_command("evaluate", ["--out", str(tmp_path / "out"), "--baselines", "mean", *flags]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ctx-inpaint: error: ") and "\n" not in err and named in err
    assert not (tmp_path / "out").exists()


def test_cli_bad_device_is_one_line_naming_the_flag(tmp_path: Path, capsys) -> None:
    assert (
        run_command("evaluate", ["--out", str(tmp_path / "out"), "--baselines", "mean", "--device", "foo"])
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert err == "ctx-inpaint: error: --device: expected auto, cpu, cuda or cuda:N, got 'foo'"


def test_flags_are_checked_before_loading_anything(tmp_path: Path, monkeypatch, capsys) -> None:
    """A misspelt baseline or nothing to score is reported before the checkpoint, images or model pass; the
    library names its parameters, the command its flags."""
    import ctx_inpaint.evaluation.run as evaluation_run

    def no_loading(*args, **kwargs):
        raise AssertionError("loaded before the flags were checked")

    monkeypatch.setattr(evaluation_run, "load_model", no_loading)
    monkeypatch.setattr(evaluation_run, "crop_samples", no_loading)
    with pytest.raises(ValueError, match="^baselines: unknown baseline 'magic'"):
        evaluate(checkpoint=tmp_path / "model.ckpt", out_dir=tmp_path / "out", baselines=("mean", "magic"))
    with pytest.raises(ValueError, match="nothing to score: give checkpoint or at least one of baselines"):
        evaluate(images=tmp_path, out_dir=tmp_path / "out", baselines=())
    with pytest.raises(ValueError, match="^protocol: expected auto, crops or paris, got 'nope'"):
        evaluate(checkpoint=tmp_path / "model.ckpt", out_dir=tmp_path / "out", protocol="nope")
    assert not (tmp_path / "out").exists()
    assert run_command("evaluate", ["-c", str(tmp_path / "model.ckpt"), "--baselines", "mean,magic"]) == 1
    assert "ctx-inpaint: error: --baselines: unknown baseline 'magic'" in capsys.readouterr().err
    assert run_command("evaluate", ["-i", str(tmp_path), "--baselines", ""]) == 1
    assert capsys.readouterr().err.strip() == (
        "ctx-inpaint: error: nothing to score: give --checkpoint or at least one of --baselines mean,telea,ns"
    )


def test_each_image_is_scored_once_and_the_summary_pools_its_rows(tmp_path: Path, monkeypatch) -> None:
    """One metric object per method gives the rows and the summary; they agree to float32 rounding."""
    import ctx_inpaint.evaluation.metrics as metrics

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(gradient(48, i)).save(folder / f"{i}.png")
    calls = []
    real = metrics.hole_ssim
    monkeypatch.setattr(metrics, "hole_ssim", lambda *a: calls.append(1) or real(*a))
    result = evaluate(
        images=folder,
        out_dir=tmp_path / "out",
        baselines=("mean", "telea"),
        input_size=32,
        short_side=40,
        crops_per_image=2,
        seed=3,
    )
    assert len(calls) == 2 * 6  # 2 methods x 6 crops, each scored once
    for name in ("mean", "telea"):
        rows = rows_of(tmp_path / "out", name)
        w = np.array([int(r["hidden_pixels"]) for r in rows], dtype=np.float64)
        col = {k: np.array([float(r[k]) for r in rows]) for k in ("l1", "l2", "psnr", "ssim")}
        m = result["methods"][name]
        assert m["l1_pct"] == pytest.approx(100 * (col["l1"] * w).sum() / w.sum(), rel=1e-5)
        assert m["l2_pct"] == pytest.approx(100 * (col["l2"] * w).sum() / w.sum(), rel=1e-5)
        assert m["psnr"] == pytest.approx(col["psnr"].mean(), rel=1e-5)
        assert m["ssim"] == pytest.approx(col["ssim"].mean(), rel=1e-5)


def test_embedded_image_sets_work_in_every_protocol(tmp_path: Path) -> None:
    """``-i embedded:places`` without mask sets took the Paris-folder check's path and crashed on a str."""
    from ctx_inpaint.data.sources import EMBEDDED_PLACES
    from ctx_inpaint.errors import MissingDataError

    result = evaluate(
        images="embedded:places", out_dir=tmp_path / "a", baselines=("mean",), crops_per_image=1
    )
    assert result["protocol"] == "crops" and result["images"] == "embedded:places"
    assert result["image_files"] == len(EMBEDDED_PLACES) == result["samples"]
    with pytest.raises(MissingDataError, match="unknown embedded set 'nope'"):
        evaluate(images="embedded:nope", out_dir=tmp_path / "b", baselines=("mean",))
