"""Checkpoints written before issue 25's redesign (``tests/fixtures/legacy``, made by ``make_checkpoints.sh`` with the
code of commit 551f862, whose class paths were ``ctx_inpaint.module.ContextEncoderModule``, ``ctx_inpaint.masks.*``)
still work for all three jobs: inference (the library and the inpaint command), evaluation (the library and the
evaluate command, real numbers) and resuming training for one more epoch."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ctx_inpaint.config.checkpoint import CONFIG_KEY, load_checkpoint
from ctx_inpaint.config.compose import compose_config
from ctx_inpaint.evaluation.run import evaluate
from ctx_inpaint.inference.inpainter import Inpainter
from ctx_inpaint.inference.loading import load_model
from ctx_inpaint.training.run import train
from tests.commands import run_command
from tests.conftest import TINY, run_cli

LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy"
# The overrides each fixture was trained with (make_checkpoints.sh), less the epoch budget.
OVERRIDES = {
    "center": ["+experiment=l2_0999"],
    "freeform": [
        "+experiment=campus_freeform",
        "model.encoder.width=8",
        "model.decoder.width=8",
        "model.discriminator.width=8",
        "data.batch_size=4",
    ],
}
KINDS = {"center": "center", "freeform": "whole"}


def fixture(name: str) -> Path:
    """The legacy checkpoint ``name``; the test fails (never skips) without it: old checkpoints must keep working."""
    path = LEGACY / f"{name}_tiny.ckpt"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run bash tests/fixtures/legacy/make_checkpoints.sh (about a minute)")
    return path


def photo(w: int = 48, h: int = 40) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w * 200, yy / h * 200, (xx + yy) / (w + h) * 255], axis=-1)
    return (base + rng.integers(0, 40, (h, w, 3))).clip(0, 255).astype(np.uint8)


def hole(w: int = 48, h: int = 40) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[12:26, 15:33] = True
    return m


@pytest.mark.parametrize("name", list(OVERRIDES))
def test_the_fixture_is_from_before_the_redesign(name: str) -> None:
    """What makes these checkpoints legacy: the class paths of the old layout, read through the mapping."""
    raw = torch.load(fixture(name), map_location="cpu", weights_only=True)
    assert raw[CONFIG_KEY]["model"]["_target_"] == "ctx_inpaint.module.ContextEncoderModule"
    assert raw[CONFIG_KEY]["masks"]["_target_"].startswith("ctx_inpaint.masks.")
    read = load_checkpoint(fixture(name))[CONFIG_KEY]
    assert read["model"]["_target_"] == "ctx_inpaint.training.module.ContextEncoderModule"
    assert read["masks"]["_target_"].startswith("ctx_inpaint.masks.generators.")


@pytest.mark.parametrize("name", list(OVERRIDES))
def test_a_legacy_checkpoint_inpaints_a_photo(name: str, tmp_path: Path, capsys) -> None:
    model = load_model(fixture(name))
    assert model.kind == KINDS[name] and model.input_size == 32 and model.meta["epoch"] == 1
    image, hidden = photo(), hole()
    out = Inpainter(model, device="cpu")(torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(hidden))
    result = out.permute(1, 2, 0).numpy()
    assert result.shape == image.shape and result.dtype == np.uint8
    assert np.array_equal(result[~hidden], image[~hidden])  # visible pixels bit-identical
    assert (result[hidden] != image[hidden]).any(-1).mean() > 0.5  # the hole filled
    floats = Inpainter.load(fixture(name), device="cpu")(
        torch.from_numpy(image).permute(2, 0, 1) / 255.0, "center"
    )
    assert bool(torch.isfinite(floats).all())

    (tmp_path / "in").mkdir()
    Image.fromarray(image).save(tmp_path / "in" / "p.png")
    Image.fromarray(hidden.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    argv = ["-c", fixture(name), "-i", tmp_path / "in", "-m", tmp_path / "mask.png", "-o", tmp_path / "out"]
    assert run_command("inpaint", argv) == 0
    assert "wrote 1 image(s)" in capsys.readouterr().out
    written = np.asarray(Image.open(tmp_path / "out" / "p.png"))
    assert written.shape == image.shape and np.array_equal(written[~hidden], image[~hidden])


@pytest.mark.parametrize("name", list(OVERRIDES))
def test_a_legacy_checkpoint_is_evaluated_with_real_numbers(name: str, tmp_path: Path, capsys) -> None:
    result = evaluate(checkpoint=fixture(name), out_dir=tmp_path / "lib", baselines=("mean",), device="cpu")
    model = result["methods"]["model"]
    assert result["samples"] > 0 and result["trained"]["epoch"] == 1
    assert all(math.isfinite(model[k]) for k in ("psnr", "ssim", "l1_pct", "l2_pct")) and model["psnr"] > 5
    argv = ["-c", fixture(name), "-o", tmp_path / "cli", "--baselines", "mean", "--device", "cpu"]
    assert run_command("evaluate", argv) == 0
    assert "| context encoder" in capsys.readouterr().out
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert summary["methods"]["model"]["psnr"] == pytest.approx(model["psnr"])


def resume_dir(name: str, tmp_path: Path) -> tuple[Path, dict]:
    """A run folder holding the fixture as its ``last.ckpt``, and the fixture's stored epoch and step."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(fixture(name), run_dir / "checkpoints" / "last.ckpt")
    stored = load_checkpoint(fixture(name))
    return run_dir, {"epoch": stored["epoch"], "global_step": stored["global_step"]}


@pytest.mark.parametrize("name", list(OVERRIDES))
def test_a_legacy_checkpoint_resumes_training_for_one_more_epoch(name: str, tmp_path: Path) -> None:
    run_dir, stored = resume_dir(name, tmp_path)
    overrides = [*OVERRIDES[name], *TINY, "ckpt_path=last", f"trainer.max_epochs={stored['epoch'] + 2}"]
    metrics = train(compose_config(overrides, run_dir))
    assert math.isfinite(metrics["val/psnr"])
    resumed = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert resumed["epoch"] == stored["epoch"] + 1 and resumed["global_step"] > stored["global_step"]
    assert resumed[CONFIG_KEY]["model"]["_target_"] == "ctx_inpaint.training.module.ContextEncoderModule"
    assert load_model(run_dir / "checkpoints" / "last.ckpt").meta["epoch"] == stored["epoch"] + 1


@pytest.mark.slow
def test_the_train_command_resumes_a_legacy_checkpoint(tmp_path: Path) -> None:
    """``python -m ctx_inpaint.train ... hydra.run.dir=<run> ckpt_path=last`` as a user resumes an old run."""
    run_dir, stored = resume_dir("center", tmp_path)
    args = [*OVERRIDES["center"], *TINY, f"hydra.run.dir={run_dir}", "ckpt_path=last"]
    proc = run_cli([*args, f"trainer.max_epochs={stored['epoch'] + 2}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from" in proc.stdout + proc.stderr
    resumed = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert resumed["epoch"] == stored["epoch"] + 1 and resumed["global_step"] > stored["global_step"]
