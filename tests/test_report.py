"""The ablation report: epoch choice, sample-grid parsing and run classification (unit), and the whole report
on a real tiny multirun with a deliberately broken run (slow, subprocess)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from torchvision.utils import make_grid, save_image

from ctx_inpaint.reporting.grid import split_sample_grid
from ctx_inpaint.reporting.header import describe_machine
from ctx_inpaint.reporting.report import write_report
from ctx_inpaint.reporting.runs import load_run, load_sweep
from ctx_inpaint.reporting.tables import chosen_epochs, summary_rows
from tests.commands import run_command
from tests.conftest import TINY

REPO = Path(__file__).resolve().parent.parent


def test_chosen_epochs_are_evenly_spaced_and_end_at_the_last() -> None:
    assert chosen_epochs(200) == [50, 100, 150, 200]  # the seed report's columns
    assert chosen_epochs(8) == [2, 4, 6, 8]
    assert chosen_epochs(6) == [2, 3, 5, 6]
    assert chosen_epochs(3) == [1, 2, 3]
    assert chosen_epochs(0) == []


def test_sample_grid_is_cut_back_into_the_tiles_the_module_saved(tmp_path: Path) -> None:
    """Same layout as ContextEncoderModule._log_grid: rows of (masked | output | truth), padding 2."""
    size, n = 12, 3
    tiles = torch.rand(n, 3, 3, size, size)  # image, column, C, H, W
    save_image(make_grid(tiles.flatten(0, 1), nrow=3, padding=2), tmp_path / "epoch_0000.png")
    array = np.asarray(Image.open(tmp_path / "epoch_0000.png").convert("RGB"))
    out = split_sample_grid(array, size)
    assert out is not None and out["masked"].shape == (n, size, size, 3)
    for j, key in enumerate(("masked", "output", "image")):
        expected = (tiles[:, j] * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        assert np.abs(out[key].astype(int) - expected.astype(int)).max() <= 1
    assert split_sample_grid(array, size + 1) is None  # a wrong size is refused, not misread


def _fake_run(root: Path, name: str, epochs_done: int, max_epochs: int, status: str | None) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "config_resolved.yaml").write_text(
        f"name: {name.split('_', 1)[1]}\ntrainer:\n  max_epochs: {max_epochs}\nablation:\n  axis: x\n"
    )
    if epochs_done:
        with (run_dir / "metrics.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "step", "val/l1", "val/l2", "val/psnr", "val/ssim", "train/loss_d"])
            for e in range(epochs_done):
                w.writerow([e, 2 * e + 1, 0.2, 0.05, 13.0 + e, 0.4, ""])
                w.writerow([e, 2 * e, "", "", "", "", 0.7])
    if status is not None:
        (run_dir / "run_status.json").write_text(json.dumps({"status": status, "wall_time_s": 12.0}))
    return run_dir


def test_runs_are_classified_from_their_record_and_metrics(tmp_path: Path) -> None:
    cases = {
        "0_done": (3, 3, "finished", "finished"),
        "1_short": (2, 3, "finished", "incomplete"),  # e.g. trainer.max_time hit
        "2_killed": (1, 3, "running", "incomplete"),
        "3_norecord": (2, 3, None, "incomplete"),
        "4_crashed": (0, 3, None, "failed"),
        "5_raised": (1, 3, "failed", "failed"),
    }
    for dirname, (done, total, status, _) in cases.items():
        _fake_run(tmp_path, dirname, done, total, status)
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      +experiment: done,short,gone\n"
    )
    runs = load_sweep(tmp_path)
    by_name = {r.name: r for r in runs}
    for dirname, (done, _, _, expected) in cases.items():
        run = by_name[dirname.split("_", 1)[1]]
        assert run.status == expected, dirname
        assert len(run.val) == done
    assert by_name["gone"].status == "not started" and by_name["gone"].path is None
    assert by_name["done"].best().psnr == 15.0 and by_name["done"].best().epoch == 3
    assert by_name["done"].train["loss_d"] == [(0, 0.7), (2, 0.7), (4, 0.7)]
    order = [r.name for r in summary_rows(runs)]
    assert order[0] == "done" and set(order[-2:]) == {"crashed", "gone"}


def test_report_refuses_a_folder_that_is_no_sweep(tmp_path: Path, capsys) -> None:
    assert run_command("report", [tmp_path / "missing"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ctx-inpaint: error: ") and "missing" in err


class CrashInSecondEpoch(pl.Callback):
    """Makes a run crash mid-training (after one validated epoch), as a real bug would."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 1:
            raise RuntimeError("deliberate crash in epoch 2")


BROKEN = """# @package _global_
# A deliberately broken experiment: the baseline plus a callback that raises in the second epoch.
defaults:
  - l2_0999
  - _self_
name: broken
callbacks:
  crash:
    _target_: tests.test_report.CrashInSecondEpoch
"""


@pytest.mark.slow
def test_report_on_a_real_two_seed_multirun_with_a_broken_run(tmp_path: Path) -> None:
    """3 experiments x 2 seeds (one experiment crashes): the per-seed runs are aggregated per experiment (means,
    intervals, paired differences, claims), the PSNR chart has bands, the grid one row per experiment."""
    extra = tmp_path / "extra_conf"
    (extra / "experiment").mkdir(parents=True)
    (extra / "experiment" / "broken.yaml").write_text(BROKEN)
    env = {**os.environ, "CTX_INPAINT_LOG_DIR": str(tmp_path / "logs"), "WANDB_MODE": "offline"}
    tiny = list(TINY)
    cmd = [
        sys.executable, "-m", "ctx_inpaint.train", "-m", "seed=0,1", "+experiment=l2_0999,l2_1,broken",
        f"hydra.searchpath=[file://{extra}]", *tiny, "trainer.max_epochs=2", "data.val_crops_per_image=2",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode != 0  # Hydra re-raises the broken job's error after running every job
    (sweep,) = (tmp_path / "logs" / "multiruns").iterdir()

    out = tmp_path / "report"
    assert run_command("report", [sweep, "--out", out]) == 0
    md = (out / "report.md").read_text()
    every = md.split("## Every run")[1].split("## ")[0]
    rows = [ln for ln in every.splitlines() if ln.startswith("| ") and ln.split("|")[1].strip().isdigit()]
    assert len(rows) == 6
    assert [r.split("`")[1] for r in rows][-2:] == ["broken", "broken"]
    assert "FAILED" in rows[-1] and "RuntimeError: deliberate crash in epoch 2" in rows[-1]
    assert "| 1/2 |" in rows[-1]  # its first epoch is kept and shown
    assert all("| finished |" in r for r in rows[:4])
    assert "seeds 0, 1" in md

    # Per experiment over seeds: the mean of the two seeds' final PSNR, and each seed's per-crop file.
    finals = []
    for seed in (0, 1):
        (run_dir,) = [r.path for r in load_sweep(sweep) if r.name == "l2_0999" and r.seed == seed]
        with (run_dir / "metrics.csv").open() as f:
            rows = [r for r in csv.DictReader(f) if r["val/psnr"]]
        finals.append(float(rows[-1]["val/psnr"]))
        walls = [float(r["time/wall_s"]) for r in rows]  # RunStatus: the run's wall time at each validation
        assert len(walls) == 2 and 0 < walls[0] < walls[1]
        with (run_dir / "val_images.csv").open() as f:
            crops = [r for r in csv.DictReader(f) if r["epoch"] == "2"]
        assert len(crops) == len({r["index"] for r in crops}) > 1  # one row per val crop
        # The crops' PSNR mean is the epoch's val/psnr (PSNR per image, then averaged).
        assert np.mean([float(r["psnr"]) for r in crops]) == pytest.approx(finals[-1], abs=1e-3)
    table = md.split("## Experiments over seeds")[1].split("## ")[0]
    (row,) = [ln for ln in table.splitlines() if ln.startswith("| `l2_0999`")]
    assert "| 2/2 | " in row and f"{np.mean(finals):.2f} [" in row.split("|")[5]
    (row,) = [ln for ln in table.splitlines() if ln.startswith("| `l2_1`")]
    assert "[" in row.split("|")[9]  # a paired difference against l2_0999 with its interval
    claims_md = md.split("## The seed report's claims")[1].split("## ")[0]
    assert "| L2 only scores above L2 + adversarial (PSNR) | **" in claims_md
    assert "**missing run**" in claims_md  # e.g. the SGD claim: no sgd run in this sweep

    # Plots: one PSNR chart (bands), D gaps, G/D curves for one run per adversarial experiment, the image grid.
    expected = {"psnr_vs_epoch.png", "val_grid.png", "gan_overview.png", "gan_l2_0999.png", "gan_broken.png"}
    assert {p.name for p in out.glob("*.png")} == expected
    for png in out.glob("*.png"):
        assert Image.open(png).size[0] > 300
    runs = load_sweep(sweep)
    assert sorted(r.seed for r in runs) == [0, 0, 0, 1, 1, 1]
    assert load_run(sweep / "1_l2_1").wall_time_s > 0


def test_a_killed_sweep_lists_its_never_started_jobs_whatever_key_it_varies(tmp_path: Path) -> None:
    """Issue 15.13: asked for model.lambda_rec=0.999,0.99,0.9 and killed during job 2, the report said "Runs: 2"
    (it only read +experiment). The planned jobs come from multirun.yaml, expanded as Hydra's sweeper does."""
    _fake_run(tmp_path, "0_l2_0999", 3, 3, "finished")
    _fake_run(tmp_path, "1_l2_0999", 1, 3, "running")
    (tmp_path / "multirun.yaml").write_text(
        "name: l2_0999\nhydra:\n  overrides:\n    task:\n    - +experiment=l2_0999\n"
        "    - model.lambda_rec=0.999,0.99,0.9\n    - trainer.max_epochs=3\n"
    )
    runs = load_sweep(tmp_path)
    assert [(r.num, r.name, r.status) for r in runs] == [
        (0, "l2_0999", "finished"),
        (1, "l2_0999", "incomplete"),
        (2, "l2_0999", "not started"),
    ]
    assert "model.lambda_rec=0.9" in runs[2].detail
    path = write_report(tmp_path, tmp_path / "report")
    assert "- Runs: 3 (1 finished, 2 failed / incomplete / missing)" in path.read_text()


def test_the_header_names_the_machine_and_the_command_that_made_the_report(tmp_path: Path, capsys) -> None:
    """The machine line reads what common.machine.describe records (and the older records' ``processor``); the
    report line quotes the command's own arguments."""
    run_dir = _fake_run(tmp_path, "0_l2_0999", 2, 2, "finished")
    machine = {
        "cpu": "Test CPU",
        "cpu_count": 4,
        "torch_threads": 2,
        "platform": "Linux",
        "accelerator": "cpu",
    }
    record = {"status": "finished", "wall_time_s": 12.0, "machine": {**machine, "devices": 1}}
    (run_dir / "run_status.json").write_text(json.dumps(record))
    out = tmp_path / "the report"
    assert run_command("report", [tmp_path, "--out", out, "--images", "2"]) == 0
    assert capsys.readouterr().out.strip() == f"[ctx-inpaint] report written to {out / 'report.md'}"
    md = (out / "report.md").read_text()
    line = "- Machine: 4-core Test CPU CPU, no GPU; accelerator `cpu` x 1; torch threads 2; Linux"
    assert line in md
    assert f"- Report: `python -m ctx_inpaint.report {tmp_path} --out '{out}' --images 2`" in md
    old = {**machine, "processor": machine.pop("cpu")}
    assert describe_machine(old) == describe_machine({**machine, "cpu": "Test CPU"})


@pytest.mark.parametrize(
    "content",
    [b"epoch,step,val/psnr\n0,1,\xff\xfe\n", b'epoch,step,val/psnr\n0,1,"' + b"x" * 200_000 + b'"\n'],
    ids=["not-utf8", "huge-field"],
)
def test_the_report_names_an_unreadable_metrics_file_in_one_line(
    content: bytes, tmp_path: Path, capsys
) -> None:
    """Issue 15.12: a metrics.csv that is not text CSV (binary garbage, a field over csv's limit) gave a
    traceback."""
    run_dir = _fake_run(tmp_path, "0_l2_0999", 2, 2, "finished")
    (run_dir / "metrics.csv").write_bytes(content)
    assert run_command("report", [tmp_path]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(
        f"ctx-inpaint: error: {run_dir / 'metrics.csv'}: not a readable"
    )


def test_odd_rows_of_metrics_csv_are_skipped_not_fatal(tmp_path: Path) -> None:
    """More fields than the header, non-finite or non-numeric epochs and steps: skipped, the rest is read."""
    run_dir = _fake_run(tmp_path, "0_l2_0999", 2, 2, "finished")
    with (run_dir / "metrics.csv").open("a") as f:
        f.write("1,3,0.2,0.05,14.5,0.4,,extra,fields\n1e999,nan,0.2,0.05,99,0.4,0.1\nx,y,,,,,0.3\n")
    run = load_run(run_dir)
    assert [m.psnr for m in run.val] == [13.0, 14.5] and run.train["loss_d"] == [(0, 0.7), (2, 0.7)]
