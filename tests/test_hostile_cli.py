"""Hostile input to the inpaint, export and report CLIs (issue 24, items 3.2-3.4, 3.7, 3.8): each case ends in one
``ctx-inpaint: error:`` line naming the file or flag, before anything is written, and never replaces a user's
file. In-process runs of each command (``tests.commands.run_command``); the refusals that must come before the
model loads run with a loader that fails the test if it is called."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.utils import make_grid, save_image

import ctx_inpaint.inference.export as export_library
from ctx_inpaint.errors import MissingDataError
from ctx_inpaint.inference.batch import plan_jobs
from ctx_inpaint.inference.inpainter import Inpainter
from ctx_inpaint.inference.weights import PRETRAINED_DIR
from ctx_inpaint.reporting.grid import last_samples
from ctx_inpaint.reporting.runs import load_run
from tests.commands import run_command
from tests.test_report import _fake_run

PREFIX = "ctx-inpaint: error: "


def one_error_line(capsys: pytest.CaptureFixture) -> str:
    """The captured stderr, asserted to be one policy line (no traceback)."""
    err = capsys.readouterr().err.strip()
    assert err.startswith(PREFIX) and "\n" not in err, err[-2000:]
    return err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def photo(path: Path, w: int = 40, h: int = 32, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=95)
    return path


def mask_file(path: Path, w: int = 40, h: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((h, w), np.uint8)
    m[8:20, 10:25] = 255
    Image.fromarray(m).save(path)
    return path


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a CLI loads its model: these refusals must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(Inpainter, "load", refuse)
    monkeypatch.setattr(export_library, "load_model", refuse)


# ---- export (3.2, 3.7) -----------------------------------------------------------------------------------------


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    """A user's copy of the shipped free-form weights (``X.safetensors`` beside ``X.json``)."""
    folder = tmp_path / "models"
    folder.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(PRETRAINED_DIR / f"freeform{suffix}", folder / f"mine{suffix}")
    return folder / "mine.safetensors"


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link", "its json", "relative path"])
def test_export_never_overwrites_its_own_checkpoint(
    how: str, weights: Path, tmp_path: Path, no_model: None, capsys, monkeypatch
) -> None:
    """``export -c X.safetensors -o X.safetensors`` replaced the weights with ONNX and exited 0."""
    before = snapshot(weights.parent)
    out = {
        "same path": weights,
        "symlink": tmp_path / "link.onnx",
        "hard link": tmp_path / "hard.onnx",
        "its json": weights.with_suffix(".json"),
        "relative path": Path("models") / ".." / "models" / weights.name,
    }[how]
    if how == "symlink":
        out.symlink_to(weights)
    elif how == "hard link":
        os.link(weights, out)
    monkeypatch.chdir(tmp_path)
    assert run_command("export", ["-c", str(weights), "-o", str(out), "--no-latency"]) == 1
    err = one_error_line(capsys)
    assert f"--out: {out}" in err and "--checkpoint" in err
    assert snapshot(weights.parent) == before


def test_export_refuses_a_shipped_models_own_file(no_model: None, capsys) -> None:
    out = PRETRAINED_DIR / "center.safetensors"
    before = out.read_bytes()
    assert run_command("export", ["-c", "center", "-o", str(out), "--no-latency"]) == 1
    assert f"--out: {out}" in one_error_line(capsys)
    assert out.read_bytes() == before


@pytest.mark.parametrize("kind", ["folder", "user file", "under a file"])
def test_export_refuses_an_output_it_cannot_or_must_not_write(
    kind: str, tmp_path: Path, no_model: None, capsys
) -> None:
    """``export -o <folder>`` ended in a traceback; any other existing file was silently replaced."""
    (tmp_path / "notes.txt").write_text("my notes\n")
    out = {
        "folder": tmp_path / "exports",
        "user file": tmp_path / "notes.txt",
        "under a file": tmp_path / "notes.txt" / "model.onnx",
    }[kind]
    if kind == "folder":
        out.mkdir()
    before = snapshot(tmp_path)
    assert run_command("export", ["-c", "freeform", "-o", str(out), "--no-latency"]) == 1
    err = one_error_line(capsys)
    assert err.startswith(f"{PREFIX}--out: {out}")
    assert snapshot(tmp_path) == before


def test_a_failed_export_leaves_nothing_and_keeps_the_earlier_one(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """The graph is checked in a temporary file and renamed only when parity passes: a failure leaves no output
    and no temporary file, and an earlier export at ``--out`` stays as it was."""
    earlier = tmp_path / "model.onnx"
    assert run_command("export", ["-c", "freeform", "-o", str(earlier), "--no-latency"]) == 0
    assert f"wrote {earlier}" in capsys.readouterr().out
    before = earlier.read_bytes()
    monkeypatch.setattr(export_library, "parity", lambda model, path: 1.0)  # onnxruntime far off PyTorch
    for out in (tmp_path / "new.onnx", earlier):
        assert run_command("export", ["-c", "freeform", "-o", str(out), "--no-latency"]) == 1
        # Nothing new at --out, no hidden temporary file.
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
        err = one_error_line(capsys)
        assert f"{out}: not written" in err and "--tolerance" in err
    assert earlier.read_bytes() == before


# ---- inpaint: output names (3.4, 3.7) -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["existing file", "under a file"])
def test_inpaint_refuses_an_output_that_is_a_file_before_loading(
    kind: str, tmp_path: Path, no_model: None, capsys
) -> None:
    """``inpaint -o <existing file>`` loaded the model, then ended in a traceback."""
    photo(tmp_path / "in" / "a.png")
    (tmp_path / "results").write_text("not a folder\n")
    out = tmp_path / "results" if kind == "existing file" else tmp_path / "results" / "sub"
    before = snapshot(tmp_path)
    assert run_command("inpaint", ["-c", "center", "-i", str(tmp_path / "in"), "-o", str(out)]) == 1
    assert one_error_line(capsys).startswith(f"{PREFIX}--output: {out}")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "names, preview",
    [
        (["a.jpg", "a.JPG"], False),  # both became a_jpg.png: one result lost, "wrote 2" printed
        (["a.png", "A.png"], False),  # one file on case-insensitive file systems
        (["a.jpg", "a.png", "a_jpg.png"], False),  # a disambiguated name meets a plain one
        (["a.png", "a_preview.png"], True),  # a preview meets another input's result
    ],
    ids=["ext-case", "stem-case", "disambiguated", "preview"],
)
def test_inputs_whose_results_share_a_name_are_refused_naming_both(
    names: list[str], preview: bool, tmp_path: Path, no_model: None, capsys
) -> None:
    folder, out = tmp_path / "photos", tmp_path / "out"
    for i, name in enumerate(names):
        photo(folder / name, seed=i)
    if len(list(folder.iterdir())) < len(names):
        pytest.skip("this file system ignores case: the names are one file")
    argv = ["-c", "center", "-i", str(folder), "-o", str(out)] + (["--preview"] if preview else [])
    assert run_command("inpaint", argv) == 1
    err = one_error_line(capsys)
    assert "would both be written to" in err
    assert len([n for n in names if str(folder / n) in err]) == 2, err
    assert not out.exists()


def test_the_same_stems_without_a_clash_are_still_disambiguated(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    for i, name in enumerate(["a.jpg", "a.png", "b.png"]):
        photo(folder / name, seed=i)
    jobs = plan_jobs(folder, "center", tmp_path / "out", with_preview=True)
    assert sorted(target.name for _, _, target in jobs) == ["a_jpg.png", "a_png.png", "b.png"]


def test_a_result_never_replaces_a_mask(tmp_path: Path, no_model: None, capsys) -> None:
    """Masks are the user's files too: ``-m masks -o masks`` would have written a.png over its own mask."""
    photo(tmp_path / "photos" / "a.png")
    mask_file(tmp_path / "masks" / "a.png")
    before = snapshot(tmp_path)
    masks = str(tmp_path / "masks")
    argv = ["-c", "center", "-i", str(tmp_path / "photos"), "-m", masks, "-o", masks]
    assert run_command("inpaint", argv) == 1
    assert "would overwrite the mask" in one_error_line(capsys)
    assert snapshot(tmp_path) == before


# ---- inpaint: mask pairing (3.3) ------------------------------------------------------------------------------


@pytest.mark.parametrize("stem, other", [("a[1]", "a1"), ("b?", "bc"), ("c*", "cd"), ("[d]", "d")])
def test_masks_pair_by_exact_stem_not_by_glob(stem: str, other: str, tmp_path: Path) -> None:
    """``a[1].png`` silently took ``a1.png``'s mask: the stem was used as a glob pattern."""
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photo(photos / f"{stem}.png")
    mask_file(masks / f"{other}.png")
    with pytest.raises(MissingDataError, match=f"no mask for {re.escape(stem)}.png"):
        plan_jobs(photos, str(masks), tmp_path / "out")
    mask_file(masks / f"{stem}_mask.png")
    photo(photos / f"{other}.jpg", seed=1)
    jobs = {path.name: source.name for path, source, _ in plan_jobs(photos, str(masks), tmp_path / "out")}
    assert jobs == {f"{stem}.png": f"{stem}_mask.png", f"{other}.jpg": f"{other}.png"}


# ---- inpaint: every input checked first (3.8) -----------------------------------------------------------------


@pytest.mark.parametrize(
    "problem", ["truncated image", "truncated mask", "mask of another size", "shared mask"]
)
def test_every_input_and_mask_is_decoded_before_the_first_result(
    problem: str, tmp_path: Path, no_model: None, capsys
) -> None:
    """A folder whose last image was truncated wrote the first results, then stopped."""
    photos, masks, out = tmp_path / "photos", tmp_path / "masks", tmp_path / "out"
    for name in ("a", "b", "c"):
        photo(photos / f"{name}.png", seed=ord(name))
        mask_file(masks / f"{name}.png")
    mask_arg, named = str(masks), photos / "c.png"
    if problem == "truncated image":
        truncate(photos / "c.png")
    elif problem == "truncated mask":
        truncate(masks / "c.png")
        named = masks / "c.png"
    elif problem == "mask of another size":
        mask_file(masks / "c.png", w=39)
        named = masks / "c.png"
    else:  # one mask for every input; the last input has another size
        photo(photos / "c.png", w=41)
        mask_arg, named = str(masks / "a.png"), masks / "a.png"
    assert run_command("inpaint", ["-c", "center", "-i", str(photos), "-m", mask_arg, "-o", str(out)]) == 1
    assert str(named) in one_error_line(capsys)
    assert not out.exists()


# ---- report on damaged run folders (3.7) ----------------------------------------------------------------------

# (file in the run dir, its damaged content)
DAMAGED = {
    "status-list": ("run_status.json", b"[1, 2]"),
    "status-string": ("run_status.json", b'"finished"'),
    "status-wall-time-text": ("run_status.json", b'{"status": "finished", "wall_time_s": "12 s"}'),
    "status-start-not-a-time": (
        "run_status.json",
        b'{"status": "finished", "started_at": 5, "updated_at": 7}',
    ),
    "status-status-list": ("run_status.json", b'{"status": ["finished"]}'),
    "status-machine-list": ("run_status.json", b'{"status": "finished", "machine": ["cpu"]}'),
    "status-invalid-json": ("run_status.json", b'{"status": "fini'),
    "status-not-utf8": ("run_status.json", b'{"status": "\xff"}'),
    "hydra-config-list": (".hydra/config.yaml", b"- name: a\n- seed: 1\n"),
    "hydra-config-scalar": (".hydra/config.yaml", b"just a line\n"),
    "hydra-config-invalid": (".hydra/config.yaml", b"trainer: [1,\n"),
    "config-trainer-scalar": ("config_resolved.yaml", b"name: a\ntrainer: 3\n"),
    "config-max-epochs-text": ("config_resolved.yaml", b"name: a\ntrainer:\n  max_epochs: three\n"),
    "config-seed-psnr-text": ("config_resolved.yaml", b"name: a\nablation:\n  seed_psnr: high\n"),
    "config-model-list": ("config_resolved.yaml", b"name: a\nmodel: [1]\n"),
    "config-not-utf8": ("config_resolved.yaml", b"name: \xff\n"),
    "overrides-task-scalar": ("../multirun.yaml", b"hydra:\n  overrides:\n    task: 5\n"),
    "overrides-list": ("../multirun.yaml", b"hydra:\n  overrides:\n  - task\n"),
    "sweeper-params-list": ("../multirun.yaml", b"hydra:\n  sweeper:\n    params: [1]\n"),
    "multirun-invalid": ("../multirun.yaml", b"hydra: {overrides\n"),
    "metrics-not-utf8": ("metrics.csv", b"epoch,step,val/psnr\n0,1,\xff\xfe\n"),
    "metrics-no-epoch-column": ("metrics.csv", b"step,val/psnr\n1,13.0\n"),
    "metrics-non-numeric-column": ("metrics.csv", b"epoch,step,val/psnr\n0,1,good\n1,3,better\n"),
    "val-images-missing-columns": ("val_images.csv", b"epoch,crop,psnr\n0,0,13\n"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_report_names_a_damaged_run_file_in_one_line(case: str, tmp_path: Path, capsys) -> None:
    """Before: tracebacks (AttributeError, TypeError, ValueError...) or a report built on a silently ignored
    file. Now one line naming the file (and the key) and what was expected, and no report folder."""
    sweep = tmp_path / "sweep"
    run_dir = _fake_run(sweep, "0_a", 2, 3, "finished")
    rel, content = DAMAGED[case]
    if rel.startswith(".hydra/"):  # read only without config_resolved.yaml (a run killed before writing it)
        (run_dir / "config_resolved.yaml").unlink()
    damaged = (run_dir / rel).resolve()
    damaged.parent.mkdir(parents=True, exist_ok=True)
    damaged.write_bytes(content)
    out = tmp_path / "report"
    assert run_command("report", [str(sweep), "--out", str(out)]) == 1
    err = one_error_line(capsys)
    assert err.startswith(f"{PREFIX}{damaged}: ") and "expected" in err
    assert not out.exists()


def test_report_refuses_an_out_that_is_a_file_and_notes_that_are_not_text(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sweep"
    _fake_run(sweep, "0_a", 2, 3, "finished")
    (tmp_path / "taken").write_text("mine\n")
    assert run_command("report", [str(sweep), "--out", str(tmp_path / "taken")]) == 1
    assert one_error_line(capsys).startswith(f"{PREFIX}--out: {tmp_path / 'taken'}")
    assert (tmp_path / "taken").read_text() == "mine\n"
    (tmp_path / "notes.md").write_bytes(b"# notes \xff\n")
    out = tmp_path / "report"
    assert run_command("report", [str(sweep), "--out", str(out), "--notes", str(tmp_path / "notes.md")]) == 1
    assert one_error_line(capsys).startswith(f"{PREFIX}--notes: {tmp_path / 'notes.md'}")
    assert not out.exists()


def test_report_passes_over_a_sample_grid_cut_short_and_mixed_time_zones(tmp_path: Path, capsys) -> None:
    """A run killed while saving ``samples/epoch_0002.png`` (and a stray ``epoch_final.png``) ended the report in
    a traceback: the last readable grid is used. A record without a time zone beside one with it (a
    TypeError when subtracted) is read as UTC."""
    sweep = tmp_path / "sweep"
    run_dir = _fake_run(sweep, "0_a", 2, 3, "finished")
    (run_dir / "config_resolved.yaml").write_text(
        "name: a\ntrainer:\n  max_epochs: 3\ndata:\n  input_size: 8\n"
    )
    samples = run_dir / "samples"
    samples.mkdir()
    save_image(make_grid(torch.rand(6, 3, 8, 8), nrow=3, padding=2), samples / "epoch_0001.png")
    (samples / "epoch_0002.png").write_bytes((samples / "epoch_0001.png").read_bytes()[:40])
    (samples / "epoch_final.png").write_bytes(b"not a png")
    (run_dir / "run_status.json").write_text(
        json.dumps(
            {
                "status": "finished",
                "started_at": "2026-01-01T10:00:00",
                "updated_at": "2026-01-01T10:05:00+00:00",
            }
        )
    )
    out = tmp_path / "report"
    assert run_command("report", [str(sweep), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "![val images](val_grid.png)" in text
    assert last_samples(load_run(run_dir)).epoch == 2  # epoch_0001.png: the grid after the second epoch
    assert "Sweep wall time" in text and "5m00s" in text


def test_report_reads_an_unresolved_hydra_config_as_unknown_values(tmp_path: Path) -> None:
    """A run that stopped before training wrote ``config_resolved.yaml`` has only Hydra's ``.hydra/config.yaml``,
    whose ``${...}`` interpolations are not the integers and lists they resolve to (``int('${...}')`` was a
    traceback): they are unknown, not damage."""
    sweep = tmp_path / "sweep"
    run_dir = _fake_run(sweep, "0_a", 2, 3, "finished")
    (run_dir / "config_resolved.yaml").unlink()
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text(
        "name: a\ntrainer:\n  max_epochs: ${budget.epochs}\ndata:\n  input_size: 32\nmodel:\n  encoder:\n"
        "    _target_: ctx_inpaint.models.AlexNetEncoder\n    widths: ${oc.select:budget.alexnet_widths,[96]}\n"
    )
    out = tmp_path / "report"
    assert run_command("report", [str(sweep), "--out", str(out)]) == 0
    run = load_run(run_dir)
    assert run.name == "a" and run.max_epochs is None and run.config["data"]["input_size"] == 32
