"""``make gpu-check`` cannot rot: its steps run end to end with their CPU equivalents (``--device cpu --tiny``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools.gpu_check import last_line, parse_overrides

ROOT = Path(__file__).resolve().parent.parent
STEPS = [
    "environment",
    "bench_b4",
    "bench_b8",
    "train_l2_0999",
    "train_random_region",
    "ddp_one_epoch",
    "kill_resume",
    "inpaint",
    "evaluate",
]


def gpu_check(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tools.gpu_check", "--device", "cpu", "--tiny"]
    cmd += ["--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1500)


@pytest.mark.slow
def test_every_step_of_the_gpu_check_runs_on_cpu(tmp_path: Path) -> None:
    done = gpu_check(tmp_path)
    assert done.returncode == 0, (done.stderr + done.stdout)[-4000:]
    record = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert record["status"] == "ok" and record["device"] == "cpu" and record["tiny"] is True
    assert [s["name"] for s in record["steps"]] == STEPS
    assert all(s["status"] == "ok" for s in record["steps"]), record["steps"]
    by_name = {s["name"]: s for s in record["steps"]}
    assert by_name["bench_b8"]["figures"]["speedup_vs_baseline"] > 0
    assert by_name["bench_b4"]["figures"]["lightning_overhead_spread"]
    assert by_name["train_l2_0999"]["figures"]["global_step"] == 12  # 6 batches, D and G steps
    kill = by_name["kill_resume"]["figures"]
    assert 0 < kill["killed_at_saved_step"] < kill["final_step"] == 400
    assert "ckpt_path=last" in by_name["kill_resume"]["command"]
    assert by_name["evaluate"]["figures"]["model_psnr"] > 0
    log = (tmp_path / "out" / "gpu_check.log").read_text()
    assert "=== ddp_one_epoch:" in log and "trainer=ddp_cpu" in log and "all 8 steps ok" in log


@pytest.mark.slow
def test_a_broken_step_stops_the_check_with_a_one_line_reason(tmp_path: Path) -> None:
    done = gpu_check(tmp_path, "--override", "bench_b4:bench.rounds=0")
    assert done.returncode == 1
    reason = done.stderr.strip().splitlines()[-1]
    assert reason == (
        "gpu_check: FAILED at step bench_b4: exit status 1: ctx-inpaint: error: bench.rounds: expected >= 1, got 0"
    )
    record = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert record["status"] == "failed" and record["failed_step"] == "bench_b4"
    assert [s["status"] for s in record["steps"]] == ["ok", "failed"]  # nothing after it ran
    assert record["steps"][-1]["command"].endswith("bench.rounds=0")
    assert "FAILED" in (tmp_path / "out" / "gpu_check.log").read_text()
    bad = gpu_check(tmp_path, "--override", "no_such_step:x=1")
    assert bad.returncode == 2 and "no_such_step" in bad.stderr


def test_overrides_name_a_step_and_reasons_are_one_line() -> None:
    assert parse_overrides(["a:x=1", "a:y=2", "b:--flag"]) == {"a": ["x=1", "y=2"], "b": ["--flag"]}
    with pytest.raises(SystemExit, match="STEP:ITEM"):
        parse_overrides(["no-colon"])
    out = "noise\nTraceback (most recent call last):\n  File x\nValueError: bad thing\n\n"
    assert last_line(out) == "ValueError: bad thing"
    assert last_line("x\nctx-inpaint: error: trainer.max_epochs: bad\nmore\n").startswith(
        "ctx-inpaint: error:"
    )
    assert last_line("") == "(no output)"
