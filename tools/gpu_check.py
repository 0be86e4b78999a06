"""The GPU path, end to end: ``python -m tools.gpu_check --out DIR [--device cuda|cpu] [--tiny]``.

``make gpu-check`` runs it on a CUDA machine (at most 8 minutes): in order, each step a subprocess with a time
limit, stopping at the first failure with a one-line reason and exit status 1:

1. ``bench_b64`` / ``bench_b256``: the benchmark with ``trainer=gpu`` (bf16-mixed, channels_last, pinned
   memory) at batch 64 and 256;
2. ``train_l2_0999`` / ``train_random_region``: 300 GAN steps (batches; each steps D and G) of each
   experiment with ``trainer=gpu``, a short validation; the checkpoint must hold every step;
3. ``ddp_one_epoch``: one epoch with ``trainer=ddp trainer.devices=1``;
4. ``kill_resume``: a ``trainer=gpu`` run killed with SIGKILL once its mid-epoch ``last.ckpt`` exists, then
   resumed with ``ckpt_path=last`` in the same run dir: it must continue from the saved step (no training step
   logged twice in ``metrics.csv``) and end with every step done;
5. ``inpaint`` / ``evaluate`` with ``--device cuda`` on ``train_l2_0999``'s checkpoint.

It writes ``gpu_check.json`` (every step: command, seconds, status, key figures; rewritten after each step) and
``gpu_check.log`` (every step's output) into ``--out``; run dirs and checkpoints go to ``--work`` (not committed).
``--device cpu --tiny`` runs the same steps with their CPU equivalents (``trainer=cpu`` / ``trainer=ddp_cpu``,
``+debug=tiny``, a few steps): ``tests/test_gpu_check.py`` runs it, so the script cannot rot.
``--override STEP:ITEM`` appends ITEM to STEP's command (a Hydra override or a CLI flag; repeatable).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctx_inpaint.common import machine, run_folder
from ctx_inpaint.common.cli import ArgumentParser
from ctx_inpaint.common.run_folder import RunFolder


class StepFailed(Exception):
    """A step ran but its result is wrong; the message is the one-line reason."""


@dataclass
class Step:
    name: str
    cmd: list[str]
    timeout: float
    check: Callable[[Step, str], dict[str, Any]]  # (step, its output) -> key figures; raises StepFailed
    resume_cmd: list[str] | None = None  # kill_resume: the command that resumes the killed run
    run_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    device: str
    tiny: bool
    out: Path
    work: Path
    python: str = sys.executable

    @property
    def trainer(self) -> str:
        return "trainer=gpu" if self.device == "cuda" else "trainer=cpu"

    @property
    def small(self) -> list[str]:
        return ["+debug=tiny", "model.discriminator.width=8"] if self.tiny else []

    @property
    def batch(self) -> int:
        return 4 if self.tiny else 64


# ---- running a command --------------------------------------------------------------------------------------
def run_cmd(cmd: list[str], timeout: float, log: Path) -> tuple[int | None, str, float]:
    """(exit status or None on time-out, output, seconds). The command runs in its own session, so a time-out
    kills what it started too (DDP ranks, loader workers)."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, env=child_env(), start_new_session=True
        )
        try:
            rc: int | None = proc.wait(timeout=max(timeout, 1.0))
        except subprocess.TimeoutExpired:
            kill_group(proc)
            rc = None
    return rc, log.read_text(errors="replace"), time.perf_counter() - t0


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB")}
    env.update(WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    return env


def last_line(output: str) -> str:
    """The line that says why a command failed: the project's one-line error if there is one, else the last
    line of a traceback, else the last non-empty line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("ctx-inpaint: error:"):
            return ln
    for ln in reversed(lines):
        if ln.split(":", 1)[0].endswith(("Error", "Exception")) or ln.startswith(("Killed", "Segmentation")):
            return ln
    return lines[-1] if lines else "(no output)"


# ---- what the steps leave behind --------------------------------------------------------------------------------
def read_ckpt(path: Path) -> dict[str, Any]:
    import torch

    if not path.is_file():
        raise StepFailed(f"no checkpoint {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return {"global_step": int(ckpt["global_step"]), "optimizers": len(ckpt.get("optimizer_states") or [1])}


def train_rows(run_dir: Path) -> list[dict[str, str]]:
    path = RunFolder(run_dir).metrics
    if not path.is_file():
        raise StepFailed(f"no {path}")
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if v} for r in csv.DictReader(f)]


def last_value(rows: list[dict[str, str]], key: str) -> float | None:
    values = [float(r[key]) for r in rows if key in r]
    return values[-1] if values else None


def check_training(run_dir: Path, batches: int, batch_size: int, device: str) -> dict[str, Any]:
    """The run finished, its last.ckpt holds every step (G and D each count one optimizer step), it ran on
    ``device``, and its validation PSNR is a number."""
    folder = RunFolder(run_dir)
    ckpt = read_ckpt(folder.last_checkpoint)
    want = batches * ckpt["optimizers"]
    if ckpt["global_step"] != want:
        raise StepFailed(
            f"{run_folder.LAST_CHECKPOINT} is at step {ckpt['global_step']}, expected {want} ({batches} batches)"
        )
    status = json.loads(folder.status.read_text())
    if status.get("status") != "finished":
        raise StepFailed(f"{run_folder.STATUS} says {status.get('status')!r}")
    accel = (status.get("machine") or {}).get("accelerator")
    if accel != device:
        raise StepFailed(f"the run trained on {accel!r}, not {device!r}")
    psnr = last_value(train_rows(run_dir), "val/psnr")
    if psnr is None or not math.isfinite(psnr):
        raise StepFailed(f"no finite val/psnr in {folder.metrics}")
    wall = status.get("wall_time_s")
    return {
        "batches": batches,
        "batch_size": batch_size,
        "global_step": ckpt["global_step"],
        "fit_wall_time_s": wall,
        "images_per_s": round(batches * batch_size / wall, 1)
        if wall
        else None,  # the whole fit, with validation
        "val_psnr": round(psnr, 3),
        "gpu": (status.get("machine") or {}).get("gpu"),
    }


# ---- the steps -------------------------------------------------------------------------------------------------
def bench_step(plan: Plan, batch: int) -> Step:
    out_json = plan.out / f"bench_b{batch}.json"
    args = [
        "+experiment=l2_0999",
        plan.trainer,
        *plan.small,
        f"bench.batch_size={batch}",
        f"bench.out_json={out_json}",
        f"hydra.run.dir={plan.work / 'runs' / f'bench_b{batch}'}",
    ]
    if plan.tiny:
        args += [
            "bench.warmup=1",
            "bench.rounds=2",
            "bench.data_batches=2",
            "bench.fit_batches=1",
            f"bench.infer_batches=[1,{batch}]",
            "bench.infer_repeats=1",
            "bench.gemm_size=64",
            "bench.gemm_calls=1",
        ]

    def check(step: Step, output: str) -> dict[str, Any]:
        if not out_json.is_file():
            raise StepFailed(f"no {out_json}")
        r = json.loads(out_json.read_text())
        if not str(r.get("device", "")).startswith(plan.device):
            raise StepFailed(f"the bench ran on {r.get('device')!r}, not {plan.device}")
        keys = ["lightning_overhead", "speedup_vs_baseline", "speedup_bf16_vs_baseline", "fraction_of_peak"]
        keys += ["data_over_train"]
        figures: dict[str, Any] = {"precision": r.get("precision"), "rounds": r.get("rounds")}
        for key in keys:
            if (
                key in r and r[key] is None and f"{key}_refused" in r
            ):  # the bench refused the figure (e.g. > 1)
                figures[f"{key}_refused"] = r[f"{key}_refused"]
                continue
            if key in r:
                if not math.isfinite(r[key]):
                    raise StepFailed(f"{key} is {r[key]}")
                figures[key] = round(r[key], 4)
                figures[f"{key}_spread"] = [round(v, 4) for v in r[f"{key}_spread"]]
        for key in ("lightning_overhead", "speedup_vs_baseline", "fraction_of_peak"):
            if key not in r:
                raise StepFailed(f"the bench JSON has no {key}")
        now = r.get("machine_now") or {}
        for key in ("train_images_per_s", "baseline_fp32_images_per_s", "infer_ms_per_image_b1"):
            if key in now:
                figures[key] = round(now[key], 2)
        return figures

    return Step(
        f"bench_b{batch}", [plan.python, "-m", "ctx_inpaint.bench", *args], 240 if plan.tiny else 150, check
    )


def train_args(plan: Plan, experiment: str, batches: int, run_dir: Path, trainer: list[str]) -> list[str]:
    return [
        f"+experiment={experiment}",
        *trainer,
        *plan.small,
        "trainer.max_epochs=1",
        "trainer.max_steps=-1",
        "trainer.max_time=null",
        f"data.batch_size={plan.batch}",
        f"data.samples_per_epoch={batches * plan.batch}",
        "trainer.limit_val_batches=2",
        "logger=csv",
        "callbacks.progress_bar=null",
        f"hydra.run.dir={run_dir}",
    ]


def train_step(
    plan: Plan, name: str, experiment: str, batches: int, trainer: list[str], timeout: float
) -> Step:
    run_dir = plan.work / "runs" / name
    cmd = [plan.python, "-m", "ctx_inpaint.train", *train_args(plan, experiment, batches, run_dir, trainer)]

    def check(step: Step, output: str) -> dict[str, Any]:
        return check_training(run_dir, batches, plan.batch, plan.device)

    return Step(name, cmd, timeout, check, run_dir=run_dir)


def kill_resume_step(plan: Plan) -> Step:
    batches, every = (200, 5) if plan.tiny else (400, 50)
    run_dir = plan.work / "runs" / "kill_resume"
    args = train_args(plan, "l2_0999", batches, run_dir, [plan.trainer])
    args.append(f"callbacks.model_checkpoint.last_every_n_batches={every}")
    cmd = [plan.python, "-m", "ctx_inpaint.train", *args]

    def check(step: Step, output: str) -> dict[str, Any]:
        if "resuming from" not in output:
            raise StepFailed(f"the resumed run did not say 'resuming from' {run_folder.LAST_CHECKPOINT}")
        saved = step.extra["saved_step"]
        final = read_ckpt(RunFolder(run_dir).last_checkpoint)
        want = batches * final["optimizers"]
        if final["global_step"] != want:
            raise StepFailed(f"the resumed run ended at step {final['global_step']}, expected {want}")
        if not 0 < saved < want:
            raise StepFailed(f"the kill landed at step {saved}, not mid-run (0 < step < {want})")
        # A row is its step and the metrics it holds: a run that started over would log those of the first
        # steps a second time (the CSV logger keeps the rows up to the checkpoint and appends the rest).
        keys = [
            (int(r["step"]), tuple(sorted(k for k in r if k not in ("step", "epoch"))))
            for r in train_rows(run_dir)
        ]
        repeated = sorted({k[0] for k in keys if keys.count(k) > 1})
        if repeated:
            raise StepFailed(f"steps logged twice after the resume (it did not continue): {repeated[:5]}")
        steps = sorted({step for step, names in keys if any(n.startswith("train/") for n in names)})
        status = json.loads(RunFolder(run_dir).status.read_text())
        if status.get("status") != "finished" or int(status.get("attempts", 0)) != 2:
            raise StepFailed(
                f"{run_folder.STATUS}: {status.get('status')!r}, attempts {status.get('attempts')}"
            )
        return {
            "killed_at_saved_step": saved,
            "final_step": final["global_step"],
            "batches": batches,
            "logged_train_steps": len(steps),
            "attempts": status["attempts"],
        }

    return Step(
        "kill_resume",
        cmd,
        240 if plan.tiny else 90,
        check,
        resume_cmd=[*cmd, "ckpt_path=last"],
        run_dir=run_dir,
    )


def cli_steps(plan: Plan, ckpt: Path) -> list[Step]:
    from ctx_inpaint.data.sources import embedded_files

    photo = embedded_files()[1][0]
    inpainted = plan.work / "inpainted"
    evaluated = plan.work / "evaluate"
    inpaint = [plan.python, "-m", "ctx_inpaint.inpaint", "-c", str(ckpt), "-i", str(photo), "-m", "center"]
    inpaint += ["-o", str(inpainted), "--device", plan.device, "--preview"]
    evaluate = [plan.python, "-m", "ctx_inpaint.evaluate", "-c", str(ckpt), "-o", str(evaluated)]
    evaluate += ["--baselines", "mean", "--crops-per-image", "2", "--device", plan.device]

    def check_inpaint(step: Step, output: str) -> dict[str, Any]:
        written = sorted(p.name for p in inpainted.glob("*.png"))
        if not any(not n.endswith("_preview.png") for n in written):
            raise StepFailed(f"no inpainted image in {inpainted}")
        return {"input": photo.name, "written": written}

    def check_evaluate(step: Step, output: str) -> dict[str, Any]:
        summary = json.loads((evaluated / "summary.json").read_text())
        model = (summary.get("methods") or {}).get("model") or {}
        psnr = model.get("psnr")
        if psnr is None or not math.isfinite(float(psnr)):
            raise StepFailed(f"no finite model PSNR in {evaluated / 'summary.json'}")
        return {
            "samples": summary.get("samples"),
            "model_psnr": round(float(psnr), 3),
            "seconds": summary.get("seconds"),
        }

    timeout = 240 if plan.tiny else 45
    return [
        Step("inpaint", inpaint, timeout, check_inpaint),
        Step("evaluate", evaluate, timeout, check_evaluate),
    ]


def plan_steps(plan: Plan) -> list[Step]:
    big = 8 if plan.tiny else 256
    batches = 6 if plan.tiny else 300
    train_timeout = 240 if plan.tiny else 75
    ddp = ["trainer=ddp" if plan.device == "cuda" else "trainer=ddp_cpu", "trainer.devices=1"]
    l2 = train_step(plan, "train_l2_0999", "l2_0999", batches, [plan.trainer], train_timeout)
    steps = [
        bench_step(plan, plan.batch),
        bench_step(plan, big),
        l2,
        train_step(plan, "train_random_region", "random_region", batches, [plan.trainer], train_timeout),
        train_step(plan, "ddp_one_epoch", "l2_0999", 4 if plan.tiny else 20, ddp, train_timeout),
        kill_resume_step(plan),
        *cli_steps(plan, RunFolder(l2.run_dir).last_checkpoint),
    ]
    return steps


# ---- the runner -----------------------------------------------------------------------------------------------
def run_kill_resume(step: Step, log: Path, deadline: float) -> tuple[int | None, str, float]:
    """Start the run, SIGKILL it (its whole session) as soon as a mid-epoch last.ckpt exists, then resume it."""
    last = RunFolder(step.run_dir).last_checkpoint
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(
            step.cmd, stdout=f, stderr=subprocess.STDOUT, env=child_env(), start_new_session=True
        )
        limit = min(step.timeout, deadline - time.perf_counter())
        while not last.exists():
            if proc.poll() is not None:
                raise StepFailed(
                    f"the run exited ({proc.returncode}) before its first {last.name}: {last_line(log.read_text())}"
                )
            if time.perf_counter() - t0 > limit:
                kill_group(proc)
                raise StepFailed(f"no {last.name} after {limit:.0f} s")
            time.sleep(0.05)
        kill_group(proc)
        if proc.returncode != -signal.SIGKILL:
            raise StepFailed(
                f"the run finished ({proc.returncode}) before the kill landed: give it more batches"
            )
        step.extra["saved_step"] = read_ckpt(last)["global_step"]
        f.write(f"\n[gpu_check] SIGKILL sent; {last.name} holds step {step.extra['saved_step']}; resuming\n")
    resume_log = log.with_suffix(".resume.log")
    rc, output, _ = run_cmd(step.resume_cmd, min(step.timeout, deadline - time.perf_counter()), resume_log)
    with open(log, "a") as f:
        f.write(output)
    return rc, log.read_text(errors="replace"), time.perf_counter() - t0


def execute(steps: list[Step], plan: Plan, overrides: dict[str, list[str]], budget: float) -> int:
    plan.out.mkdir(parents=True, exist_ok=True)
    plan.work.mkdir(parents=True, exist_ok=True)
    log_path, json_path = plan.out / "gpu_check.log", plan.out / "gpu_check.json"
    unknown = set(overrides) - {s.name for s in steps}
    if unknown:
        print(f"gpu_check: --override names no step: {sorted(unknown)}", file=sys.stderr)
        return 2
    record: dict[str, Any] = {
        "device": plan.device,
        "tiny": plan.tiny,
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "budget_s": budget,
        "status": "running",
        "steps": [],
    }
    deadline = time.perf_counter() + budget
    started = time.perf_counter()
    log_path.write_text("")

    def save() -> None:
        record["seconds"] = round(time.perf_counter() - started, 1)
        json_path.write_text(json.dumps(record, indent=2) + "\n")

    def log(text: str) -> None:
        with open(log_path, "a") as f:
            f.write(text)
        print(text, end="", flush=True)

    def fail(name: str, entry: dict[str, Any], reason: str) -> int:
        entry.update(status="failed", reason=reason)
        record.update(status="failed", failed_step=name, reason=reason)
        save()
        log(f"--- {name} FAILED: {reason}\n")
        print(f"gpu_check: FAILED at step {name}: {reason}", file=sys.stderr, flush=True)
        return 1

    environment = device_facts(plan.device)
    record["environment"] = environment
    entry = {"name": "environment", "command": "(in process)", "seconds": 0.0, "figures": environment}
    record["steps"].append(entry)
    if plan.device == "cuda" and not environment.get("cuda_available"):
        return fail("environment", entry, f"CUDA is not available (torch {environment.get('torch')})")
    entry["status"] = "ok"
    save()
    for step in steps:  # the run dirs are this script's own (under --work): every check starts them afresh
        if step.run_dir is not None and step.run_dir.exists():
            shutil.rmtree(step.run_dir)
    for path in (plan.work / "inpainted", plan.work / "evaluate"):
        if path.exists():
            shutil.rmtree(path)
    for step in steps:
        step.cmd = [*step.cmd, *overrides.get(step.name, [])]
        if step.resume_cmd is not None:
            step.resume_cmd = [*step.resume_cmd, *overrides.get(step.name, [])]
        command = shlex.join(step.cmd) + (
            f"  # SIGKILL, then: {shlex.join(step.resume_cmd)}" if step.resume_cmd else ""
        )
        entry = {"name": step.name, "command": command, "status": "running"}
        record["steps"].append(entry)
        save()
        log(f"=== {step.name}: {command}\n")
        left = deadline - time.perf_counter()
        if left < 5:
            return fail(step.name, entry, f"the {budget:.0f} s budget is spent")
        step_log = plan.work / f"{step.name}.log"
        try:
            if step.resume_cmd is not None:
                rc, output, seconds = run_kill_resume(step, step_log, deadline)
            else:
                rc, output, seconds = run_cmd(step.cmd, min(step.timeout, left), step_log)
        except StepFailed as err:
            log(step_log.read_text(errors="replace") if step_log.is_file() else "")
            return fail(step.name, entry, str(err))
        entry["seconds"] = round(seconds, 1)
        log(output if output.endswith("\n") or not output else output + "\n")
        if rc is None:
            return fail(
                step.name, entry, f"timed out after {seconds:.0f} s; last output: {last_line(output)}"
            )
        if rc != 0:
            return fail(step.name, entry, f"exit status {rc}: {last_line(output)}")
        try:
            entry["figures"] = step.check(step, output)
        except StepFailed as err:
            return fail(step.name, entry, str(err))
        except (OSError, ValueError, KeyError) as err:
            return fail(step.name, entry, f"{type(err).__name__}: {err}")
        entry["status"] = "ok"
        save()
        log(f"--- {step.name} ok in {seconds:.1f} s: {json.dumps(entry['figures'])}\n")
    record["status"] = "ok"
    record["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    save()
    log(f"gpu_check: all {len(steps)} steps ok in {record['seconds']:.0f} s ({json_path})\n")
    return 0


def device_facts(device: str) -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "device": device}
    facts["cuda_available"] = torch.cuda.is_available()
    if facts["cuda_available"]:
        facts["gpu"] = torch.cuda.get_device_name(0)
        facts["gpu_count"] = torch.cuda.device_count()
        facts["capability"] = list(torch.cuda.get_device_capability(0))
        facts["bf16_supported"] = machine.bf16_native("cuda")
    return facts


def parse_overrides(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name or not value:
            raise SystemExit(f"gpu_check: --override: expected STEP:ITEM, got {item!r}")
        out.setdefault(name, []).append(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path("experiments/perf/gpu"), help="gpu_check.json and .log"
    )
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true", help="the test suite's tiny networks and a few steps")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")) / "ctx_gpu_check",
        help="run dirs, checkpoints and each step's output (large; not committed)",
    )
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds for all steps (default 480; tiny 1200)"
    )
    parser.add_argument("--override", action="append", default=[], metavar="STEP:ITEM")
    args = parser.parse_args(argv)
    plan = Plan(args.device, args.tiny, args.out.resolve(), args.work.resolve())
    budget = args.budget if args.budget is not None else (1200.0 if args.tiny else 480.0)
    return execute(plan_steps(plan), plan, parse_overrides(args.override), budget)


if __name__ == "__main__":
    sys.exit(main())
