"""The training CLI as users call it, in subprocesses."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ctx_inpaint.config.compose import override_problem
from tests.conftest import TINY, run_cli


def val_epochs(metrics_csv: Path) -> list[int]:
    with open(metrics_csv) as f:
        return [int(r["epoch"]) for r in csv.DictReader(f) if r.get("val/psnr")]


@pytest.mark.slow
def test_train_cli_writes_run_dir_with_offline_wandb(tmp_path: Path) -> None:
    tiny = [*TINY, "logger=default"]  # CSV + W&B
    run_dir = tmp_path / "run"
    proc = run_cli(["+experiment=l2_0999", *tiny, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert val_epochs(run_dir / "metrics.csv") == [0]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "checkpoints").glob("epoch000-psnr*.ckpt"))
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "config_resolved.yaml").is_file()
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    assert "[ctx-inpaint] done:" in proc.stdout and "metrics.csv" in proc.stdout


@pytest.mark.slow
def test_multirun_two_jobs_get_their_own_dirs(tmp_path: Path) -> None:
    proc = run_cli(
        ["-m", "+experiment=l2_0999,l2_1", *TINY, f"paths.log_dir={tmp_path / 'logs'}"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweeps = list((tmp_path / "logs" / "multiruns").iterdir())
    assert len(sweeps) == 1
    jobs = sorted(p.name for p in sweeps[0].iterdir() if p.is_dir())
    assert jobs == ["0_l2_0999", "1_l2_1"]
    for job in jobs:
        assert val_epochs(sweeps[0] / job / "metrics.csv") == [0]


def test_unknown_experiment_is_refused_in_one_line(tmp_path: Path) -> None:
    proc = run_cli(["-m", "+experiment=l2_1,nope", *TINY], cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "ctx-inpaint: error: experiment: got nope; expected one of"
    )
    assert "l2_0999" in lines[0] and "campus_cpu" in lines[0]
    assert override_problem(["-m", "+experiment=l2_0999,l2_1"]) is None
    assert override_problem(["-m", "+experiment=choice(l2_1,nope)"]).startswith("experiment: got nope")
    assert override_problem(["+experiment=mine", "hydra.searchpath=[file:///x]"]) is None


@pytest.mark.slow
def test_a_failing_multirun_job_does_not_stop_the_others(tmp_path: Path) -> None:
    proc = run_cli(
        ["-m", "+experiment=l2_1", "model.lambda_rec=2,1.0", *TINY, f"paths.log_dir={tmp_path / 'logs'}"],
        cwd=tmp_path,
    )
    assert proc.returncode != 0  # the sweep reports its failure
    assert "ctx-inpaint: error: model.lambda_rec: got 2; expected a value in [0, 1]" in proc.stderr
    (sweep,) = (tmp_path / "logs" / "multiruns").iterdir()
    second = [p for p in sweep.iterdir() if p.name.startswith("1_")]
    assert len(second) == 1 and val_epochs(second[0] / "metrics.csv") == [0]
