"""Time to quality of `make train` before and after a change, from a `run_side_by_side.sh` folder.

    python experiments/perf/time_to_quality/timeline.py OUT --record experiments/perf/time_to_quality/NAME [--title T]

For each side: every validation's val PSNR against the wall time since the process was launched (imports and
set-up included) and the optimizer steps; when it first reaches OpenCV Telea's PSNR on the same val crops (scored
here by `ctx_inpaint.evaluate` with the run's own val settings) and when it first comes within 0.2 dB of the
run's final value; where the fit's time went (Lightning's SimpleProfiler). Writes timeline.md, timeline.json and
timeline.png into the record folder, with each side's metrics.csv, run_status.json, profile and revision.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from ctx_inpaint.common.run_folder import RunFolder  # noqa: E402
from ctx_inpaint.evaluation.run import evaluate  # noqa: E402

SIDES = ("before", "after")
WITHIN_DB = 0.2
# SimpleProfiler actions -> where the time went (the rest of the fit is "other": loop and hook overhead, logging)
PHASES = {
    "training steps": ["run_training_batch"],
    "training batches fetched": ["[_TrainingEpochLoop].train_dataloader_next"],
    "validation": ["[_EvaluationLoop].val_next", "[Strategy]SingleDeviceStrategy.validation_step"],
    "validation epoch end (metrics, grid, per-crop file)": [
        "[LightningModule]ContextEncoderModule.on_validation_epoch_end"
    ],
    "checkpoint writes": ["save_checkpoint"],
}


def read_profile(path: Path) -> dict[str, tuple[float, int]]:
    """action -> (total seconds, calls) from a SimpleProfiler report."""
    actions = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or cells[0] in ("Action", ""):
            continue
        try:
            actions[cells[0]] = (float(cells[3]), int(cells[2]))
        except ValueError:
            continue
    total = re.search(r"\|\s*Total\s*\|\s*-\s*\|\s*(\d+)\s*\|\s*([\d.]+)", path.read_text())
    if total:
        actions["Total"] = (float(total.group(2)), int(total.group(1)))
    return actions


def side_record(folder: Path) -> dict[str, Any]:
    run = RunFolder(folder / "run")
    launched = float((folder / "launched_at").read_text())
    exited = float((folder / "exited_at").read_text())
    status = json.loads(run.status.read_text())
    fit_start = datetime.fromisoformat(status["started_at"]).timestamp()  # 1-second resolution
    startup = fit_start - launched
    rows = [r for r in csv.DictReader(open(run.metrics, newline="")) if r.get("val/psnr")]
    vals = [
        {
            "epoch": int(r["epoch"]),
            "step": int(r["step"]),
            "val_psnr": float(r["val/psnr"]),
            "val_ssim": float(r["val/ssim"]),
            "fit_s": float(r["time/wall_s"]),
            "since_launch_s": startup + float(r["time/wall_s"]),
        }
        for r in rows
    ]
    profile_file = next(folder.glob("*profile*.txt"), None)
    profile = read_profile(profile_file) if profile_file else {}
    phases = {name: sum(profile.get(a, (0.0, 0))[0] for a in acts) for name, acts in PHASES.items()}
    fit_total = float(status["wall_time_s"])
    phases["other (loop, hooks, logging)"] = max(fit_total - sum(phases.values()), 0.0)
    config = OmegaConf.load(run.resolved_config)
    return {
        "revision": (folder / "revision").read_text().strip(),
        "overrides": list(OmegaConf.load(run.overrides)) if run.overrides.is_file() else [],
        "precision": str(OmegaConf.select(config, "trainer.precision")),
        "exit_code": int((folder / "exit_code").read_text()),
        "process_s": exited - launched,
        "startup_s": startup,
        "fit_s": fit_total,
        "after_fit_s": exited - launched - startup - fit_total,
        "epochs": status["epochs_completed"],
        "global_step": status["global_step"],
        "final_psnr": vals[-1]["val_psnr"],
        "final_ssim": vals[-1]["val_ssim"],
        "validations": vals,
        "phases_s": phases,
        "checkpoint_writes": profile.get("save_checkpoint", (0.0, 0))[1],
        "machine": status.get("machine"),
    }


def first(vals: list[dict[str, Any]], threshold: float, ssim: float = -1.0) -> dict[str, Any] | None:
    """The first validation at or above ``threshold`` dB (and ``ssim``)."""
    return next((v for v in vals if v["val_psnr"] >= threshold and v["val_ssim"] >= ssim), None)


def baselines(checkpoint: Path) -> dict[str, float]:
    """Telea's and Navier-Stokes' PSNR/SSIM on the run's own val crops (evaluate takes its val settings)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = evaluate(checkpoint=checkpoint, out_dir=tmp, baselines=("telea", "ns"), device="cpu")
    m = result["methods"]
    return {
        "telea_psnr": m["telea"]["psnr"],
        "telea_ssim": m["telea"]["ssim"],
        "ns_psnr": m["ns"]["psnr"],
        "ns_ssim": m["ns"]["ssim"],
        "model_psnr_final_checkpoint": m["model"]["psnr"],
        "samples": result["samples"],
    }


def milestones(side: dict[str, Any], telea: float, before: dict[str, Any]) -> dict[str, Any]:
    """When ``side`` first reaches Telea's PSNR, comes within 0.2 dB of its own final value, and reaches the before
    run's final PSNR and SSIM together (the "same quality in less time" of a speed change)."""
    out = {}
    for name, threshold, ssim in (
        ("telea", telea, -1.0),
        ("within_0.2dB_of_final", side["final_psnr"] - WITHIN_DB, -1.0),
        ("before_final", before["final_psnr"], before["final_ssim"]),
    ):
        hit = first(side["validations"], threshold, ssim)
        out[name] = (
            None
            if hit is None
            else {k: hit[k] for k in ("epoch", "step", "since_launch_s", "fit_s", "val_psnr")}
        )
    return out


def plot(record: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, colour in zip(SIDES, ("tab:grey", "tab:blue")):
        vals = record["sides"][name]["validations"]
        ax.plot(
            [v["since_launch_s"] / 60 for v in vals],
            [v["val_psnr"] for v in vals],
            marker=".",
            color=colour,
            label=f"{name} ({record['sides'][name]['revision'][:7]})",
        )
    b = record["baselines"]
    ax.axhline(
        b["telea_psnr"], color="tab:red", ls="--", lw=1, label=f"OpenCV Telea {b['telea_psnr']:.2f} dB"
    )
    ax.axhline(b["ns_psnr"], color="tab:orange", ls=":", lw=1, label=f"OpenCV NS {b['ns_psnr']:.2f} dB")
    ax.set_xlabel("minutes since the process started")
    ax.set_ylabel("val PSNR (dB), hidden pixels")
    ax.set_title(f"{record['title']}, one CPU core each, side by side", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def recipe(side: dict[str, Any]) -> str:
    """The side's experiment and precision, from its overrides and run record."""
    exp = next((o.split("=", 1)[1] for o in side.get("overrides", []) if o.startswith("+experiment=")), "?")
    return f"{exp}, {side.get('precision', '?')}"


def fmt_s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f} s ({seconds / 60:.1f} min)"


def markdown(record: dict[str, Any], command: str) -> str:
    s, b = record["sides"], record["baselines"]
    lines = [
        f"# Time to quality of {record['title']}: before and after",
        "",
        f"Generated by `{command}` from the runs of `run_side_by_side.sh` (see README.md here).",
        "",
        f"OpenCV on the same {b['samples']} val crops: Telea {b['telea_psnr']:.2f} dB / SSIM {b['telea_ssim']:.4f}, "
        f"Navier-Stokes {b['ns_psnr']:.2f} dB / {b['ns_ssim']:.4f}.",
        "",
        "| | before | after | after / before |",
        "|---|---|---|---|",
    ]

    def row(label: str, get, ratio: bool = True, f=fmt_s) -> None:
        a, c = get(s["before"]), get(s["after"])
        r = f"{c / a:.2f}x" if ratio and a and c else ""
        lines.append(f"| {label} | {f(a)} | {f(c)} | {r} |")

    def hit(name: str, key: str):
        return lambda side: (side["milestones"][name] or {}).get(key)

    lines.append(f"| revision | {s['before']['revision'][:7]} | {s['after']['revision'][:7]} | |")
    lines.append(f"| recipe | {recipe(s['before'])} | {recipe(s['after'])} | |")
    row("time to Telea's PSNR (since launch)", hit("telea", "since_launch_s"))
    row("steps to Telea's PSNR", hit("telea", "step"), f=lambda v: "not reached" if v is None else f"{v}")
    row(
        "epochs to Telea's PSNR",
        lambda x: None if x["milestones"]["telea"] is None else x["milestones"]["telea"]["epoch"] + 1,
        ratio=False,
        f=lambda v: "not reached" if v is None else str(v),
    )
    row(f"time to within {WITHIN_DB} dB of the final", hit("within_0.2dB_of_final", "since_launch_s"))
    row(
        f"steps to within {WITHIN_DB} dB of the final",
        hit("within_0.2dB_of_final", "step"),
        f=lambda v: f"{v}",
    )
    row("time to the before run's final PSNR and SSIM", hit("before_final", "since_launch_s"))
    row("process wall time (launch to exit)", lambda x: x["process_s"])
    row("final val PSNR (dB)", lambda x: x["final_psnr"], ratio=False, f=lambda v: f"{v:.2f}")
    row("final val SSIM", lambda x: x["final_ssim"], ratio=False, f=lambda v: f"{v:.4f}")
    row("epochs run", lambda x: x["epochs"], ratio=False, f=str)
    row("optimizer steps run", lambda x: x["global_step"], f=str)
    row("fit wall time", lambda x: x["fit_s"])
    row("seconds per epoch (fit / epochs)", lambda x: x["fit_s"] / x["epochs"], f=lambda v: f"{v:.1f}")
    row("start-up before fit", lambda x: x["startup_s"])
    row("after fit (W&B finish, exit)", lambda x: x["after_fit_s"])
    row("checkpoint writes", lambda x: x["checkpoint_writes"], ratio=False, f=str)
    lines += ["", "Where the fit's time went (SimpleProfiler totals, seconds and share of the fit):", ""]
    lines += ["| phase | before | after |", "|---|---|---|"]
    for phase in s["before"]["phases_s"]:
        cells = [
            f"{x['phases_s'][phase]:.1f} ({100 * x['phases_s'][phase] / x['fit_s']:.1f} %)"
            for x in (s["before"], s["after"])
        ]
        lines.append(f"| {phase} | {cells[0]} | {cells[1]} |")
    lines += ["", "Every validation (epoch, step, minutes since launch, val PSNR):", ""]
    lines += ["| epoch | before step | before min | before PSNR | after step | after min | after PSNR |"]
    lines += ["|---|---|---|---|---|---|---|"]
    by_epoch = {side: {v["epoch"]: v for v in s[side]["validations"]} for side in SIDES}
    for epoch in sorted(set(by_epoch["before"]) | set(by_epoch["after"])):
        cells = [str(epoch)]
        for side in SIDES:
            v = by_epoch[side].get(epoch)
            cells += (
                ["", "", ""]
                if v is None
                else [str(v["step"]), f"{v['since_launch_s'] / 60:.2f}", f"{v['val_psnr']:.2f}"]
            )
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "![val PSNR against time](timeline.png)", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="the folder run_side_by_side.sh wrote")
    p.add_argument("--record", type=Path, required=True, help="where the record goes")
    p.add_argument("--title", default="make train (campus_cpu)", help="what the two runs were")
    args = p.parse_args()
    runs = {n: RunFolder(args.out / n / "run") for n in SIDES}
    missing = [str(run.metrics) for run in runs.values() if not run.metrics.is_file()]
    if missing:
        p.exit(
            2,
            f"timeline.py: {', '.join(missing)}: not found; OUT must be a folder run_side_by_side.sh wrote\n",
        )
    sides = {name: side_record(args.out / name) for name in SIDES}
    base = baselines(runs["after"].last_checkpoint)
    for side in sides.values():
        side["milestones"] = milestones(side, base["telea_psnr"], sides["before"])
    record = {"source": str(args.out), "title": args.title, "baselines": base, "sides": sides}
    args.record.mkdir(parents=True, exist_ok=True)
    for name in SIDES:
        dest = args.record / name
        dest.mkdir(exist_ok=True)
        run = runs[name]
        for f in (run.metrics, run.status, run.overrides, args.out / name / "revision"):
            if f.exists():
                shutil.copy(f, dest / f.name)
        for f in (args.out / name).glob("*profile*.txt"):
            shutil.copy(f, dest / "profile.txt")
    (args.record / "timeline.json").write_text(json.dumps(record, indent=1) + "\n")
    plot(record, args.record / "timeline.png")
    record["title"] = args.title
    command = f"python experiments/perf/time_to_quality/timeline.py {args.out} --record {args.record}"
    if args.title != p.get_default("title"):
        command += f" --title '{args.title}'"
    (args.record / "timeline.md").write_text(markdown(record, command))
    print((args.record / "timeline.md").read_text())


if __name__ == "__main__":
    main()
