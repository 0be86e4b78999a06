"""Markdown report of an ablation sweep: ``python -m ctx_inpaint.report <sweep dir> [--out DIR]``.

Reads every run's ``metrics.csv``, ``config_resolved.yaml`` (or ``.hydra/config.yaml``) and ``run_status.json``;
W&B is not needed. Writes ``report.md`` and its PNGs into ``--out`` (default: ``<sweep dir>/report``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from ctx_inpaint.common.cli import ArgumentParser, report_user_errors
from ctx_inpaint.common.files import blocking_file
from ctx_inpaint.errors import InputError, one_line
from ctx_inpaint.reporting import claims
from ctx_inpaint.reporting.grid import image_grid
from ctx_inpaint.reporting.plots import gan_bands, gan_curves, gan_overview, psnr_bands, psnr_vs_epoch
from ctx_inpaint.reporting.runs import Run, load_sweep, task_overrides
from ctx_inpaint.reporting.seeds import group
from ctx_inpaint.reporting.tables import (
    DASH,
    chosen_epochs,
    claims_table,
    epoch_table,
    fmt_duration,
    seeds_table,
    status_text,
    summary_table,
)


def _budget_lines(runs: Sequence[Run]) -> list[str]:
    cfg = next((r.config for r in runs if r.config), {})
    if not cfg:
        return ["- Budget: unknown (no run has a config)"]
    data, trainer = cfg.get("data") or {}, cfg.get("trainer") or {}
    budget = (cfg.get("budget") or {}).get("name", "none (train.yaml defaults)")
    return [
        f"- Budget: `{budget}`: {trainer.get('max_epochs')} epochs x {data.get('samples_per_epoch')} random "
        f"crops, batch {data.get('batch_size')}, {data.get('input_size')}px crops; data `{data.get('source')}`, "
        f"{data.get('val_crops_per_image')} fixed val crops per val photo (identical in every run)",
        f"- Network widths: {_widths(runs)} (the paper's: 64, AlexNet 96/256/384/384/256)",
    ]


def _widths(runs: Sequence[Run]) -> str:
    """The widths the budget gave the networks, from the first run of each encoder kind."""
    seen: dict[str, str] = {}
    for run in runs:
        model = run.config.get("model") or {}
        enc = model.get("encoder") or {}
        kind = str(enc.get("_target_", "?")).rsplit(".", 1)[-1]
        if kind in seen or not enc:
            continue
        width = enc.get("width") or "/".join(map(str, enc.get("widths") or [])) or "?"
        dec = (model.get("decoder") or {}).get("width", "?")
        disc = (model.get("discriminator") or {}).get("width")
        seen[kind] = f"{kind} {width}, decoder {dec}" + (f", discriminator {disc}" if disc else "")
    return "; ".join(seen.values()) or "unknown"


def _machine_line(runs: Sequence[Run]) -> str:
    machine = next((r.record.get("machine") for r in runs if r.record.get("machine")), None)
    if not machine:
        return "- Machine: not recorded"
    accel = machine.get("accelerator", "?")
    gpu = machine.get("gpu") or ("no GPU" if accel == "cpu" else "?")
    return (
        f"- Machine: {machine.get('cpu_count')}-core {machine.get('processor')} CPU, {gpu}; accelerator "
        f"`{accel}` x {machine.get('devices')}; torch threads {machine.get('torch_threads')}; "
        f"{machine.get('platform')}"
    )


def _when(text: str) -> datetime:
    """A record's ISO time (checked when read) as an aware time: records without a zone are taken as UTC."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _wall_lines(runs: Sequence[Run]) -> list[str]:
    starts = [r.record["started_at"] for r in runs if r.record.get("started_at")]
    ends = [r.record["updated_at"] for r in runs if r.record.get("updated_at")]
    total = sum(r.wall_time_s or 0.0 for r in runs)
    lines = [f"- Sum of the runs' fit times: {fmt_duration(total)}"]
    if starts and ends:
        first, last = min(starts, key=_when), max(ends, key=_when)
        span = (_when(last) - _when(first)).total_seconds()
        lines.insert(
            0,
            f"- Sweep wall time (first fit start {first} to last record {last}): {fmt_duration(span)}",
        )
    return lines


def build_report(
    sweep_dir: Path,
    out_dir: Path,
    epochs: list[int] | None = None,
    n_images: int = 6,
    notes: Path | None = None,
) -> Path:
    """Write report.md and its figures; returns the Markdown path. Every input is read, and ``out_dir`` checked,
    before anything is written."""
    runs = load_sweep(sweep_dir)
    notes_text = read_notes(notes) if notes is not None else ""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out: {out_dir} is a file; expected a folder for report.md and its figures")
    blocker = blocking_file(out_dir)
    if blocker is not None:
        raise InputError(f"--out: {out_dir} cannot be created: {blocker} is a file; expected a folder there")
    out_dir.mkdir(parents=True, exist_ok=True)
    max_epochs = max((r.max_epochs or len(r.val) for r in runs), default=0)
    epochs = epochs or chosen_epochs(max_epochs)
    experiments = group(runs)
    exps = list(experiments.values())
    seeded = any(len(e.runs) > 1 for e in exps)
    # One run per experiment (its lowest finished seed, else its first) for the grid and the G/D charts.
    firsts = [(e.finished or e.runs)[0] for e in exps]

    psnr_png = (
        psnr_bands(exps, out_dir / "psnr_vs_epoch.png")
        if seeded
        else psnr_vs_epoch(runs, out_dir / "psnr_vs_epoch.png")
    )
    grid_png = image_grid(firsts, out_dir / "val_grid.png", n_images=n_images)
    overview_png = (gan_bands if seeded else gan_overview)(
        exps if seeded else runs, out_dir / "gan_overview.png"
    )
    gan_pngs = {}
    for run in firsts:
        if run.adversarial:
            png = gan_curves(run, out_dir / f"gan_{run.name}.png")
            if png is not None:
                gan_pngs[run.name] = png

    overrides = task_overrides(sweep_dir)
    failed = [r for r in runs if not r.ok]
    seeds = sorted({r.seed for r in runs if r.seed is not None})
    md = [f"# Ablation report: `{sweep_dir.name}`", ""]
    md += [
        f"- Sweep command: `python -m ctx_inpaint.train -m {' '.join(shlex.quote(o) for o in overrides)}`",
        *_budget_lines(runs),
        _machine_line(runs),
        *_wall_lines(runs),
        f"- Runs: {len(runs)} ({len(runs) - len(failed)} finished, {len(failed)} failed / incomplete / missing); "
        f"{len(exps)} experiments x seeds {', '.join(map(str, seeds)) or DASH}",
        f"- Report: `python -m ctx_inpaint.report {' '.join(shlex.quote(a) for a in sys.argv[1:])}`"
        if sys.argv[0].endswith("report.py") or "ctx_inpaint.report" in " ".join(sys.argv)
        else f"- Report: `python -m ctx_inpaint.report {sweep_dir} --out {out_dir}`",
        "",
        "Metrics: validation on the fixed val crops (the same crops and holes for every seed; experiments with "
        "other masks draw their own), over the hidden pixels of the composited output in [0, 1] (L1 = mean "
        "|x - y|, L2 = mean (x - y)^2, PSNR per image then averaged, SSIM averaged over the hole). The seed "
        "report's PSNR is its epoch-200 figure on Paris StreetView (two runs where it gives two): another dataset, "
        "budget and evaluation, shown for orientation only.",
        "",
    ]
    if notes is not None:
        md += [notes_text.strip(), ""]
    judged = claims.judge_all(experiments)
    md += [
        "## The seed report's claims",
        "",
        claims.__doc__.split("\n\n", 1)[1].strip(),
        "",
        f"Equivalence margin: ±{claims.EQUIVALENCE_MARGIN_DB} dB. Effects are of the *final* epoch (the best "
        "epoch is chosen by the same val crops it would be scored on, so it is biased upwards).",
        "",
        claims_table(judged, experiments),
        "",
        "## Experiments over seeds",
        "",
        "Mean [95% t interval over seeds] of each finished seed's best and final val metrics; the paired "
        "difference is the mean over seeds and val crops of (experiment - baseline) on the same seed and crop, "
        "with a two-way bootstrap interval (seeds and crops resampled); `*` marks an interval that excludes 0.",
        "",
        seeds_table(exps),
        "",
        "## Val PSNR per epoch",
        "",
        f"![val PSNR per epoch]({psnr_png.name})",
        "",
    ]
    if overview_png is not None:
        md += [
            "## Discriminators",
            "",
            "The gap between D's mean probability on real and on generated patches, per adversarial "
            + (
                "experiment (smoothed; mean over seeds, band = the seeds' range)"
                if seeded
                else "run (smoothed)"
            )
            + ". A gap near 1 means the discriminator has won and the generator's adversarial gradient carries "
            "little information; one run's own curves per experiment are in its section below.",
            "",
            f"![discriminators]({overview_png.name})",
            "",
        ]
    if grid_png is not None:
        md += [
            "## The same val images in every experiment",
            "",
            "One row per experiment: the last validation of its lowest finished seed (its own "
            "`samples/epoch_XXXX.png`: the first `model.grid_images` fixed val crops); masked input and truth "
            "first. Experiments with other masks validate on other crops and holes and get their own rows.",
            "",
            f"![val images]({grid_png.name})",
            "",
        ]
    md += [f"## Epoch-wise results (val; epochs {', '.join(map(str, epochs))}; mean over finished seeds)", ""]
    for exp in exps:
        md += [f"### `{exp.name}` ({exp.axis})", ""]
        for run in exp.runs:
            if not run.ok:
                md += [f"Seed {run.seed}: {status_text(run)}", ""]
        if exp.seed_psnr:
            md += [f"Seed report PSNR at epoch 200: {' / '.join(f'{v:.2f}' for v in exp.seed_psnr)} dB", ""]
        md += [epoch_table(exp.mean_run(), epochs), ""]
        if exp.name in gan_pngs:
            md += [f"![G and D of {exp.name}]({gan_pngs[exp.name].name})", ""]
    md += ["## Every run", "", "Sorted by best val PSNR; failed, incomplete and missing runs last.", ""]
    md += [summary_table(runs), ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(md).rstrip() + "\n")
    return path


def read_notes(path: Path) -> str:
    """The ``--notes`` Markdown, or one line naming it when it cannot be read as text."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(
            f"--notes: {path} is not UTF-8 text ({one_line(err)[:120]}); expected a Markdown file"
        ) from None
    except OSError as err:
        raise InputError(f"--notes: {path} cannot be read ({err.strerror or one_line(err)})") from None


def parse_epochs(text: str) -> list[int]:
    try:
        epochs = sorted({int(e) for e in text.split(",") if e.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--epochs: expected comma-separated integers, got {text!r}"
        ) from None
    if not epochs or epochs[0] < 1:
        raise argparse.ArgumentTypeError(f"--epochs: expected epochs >= 1, got {text!r}")
    return epochs


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m ctx_inpaint.report", description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweep_dir", type=Path, help="a Hydra multirun dir, e.g. logs/multiruns/<stamp>_<pid>"
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <sweep_dir>/report)")
    parser.add_argument(
        "--epochs", type=parse_epochs, default=None, help="epochs of the per-run tables, e.g. 5,10"
    )
    parser.add_argument("--images", type=int, default=6, help="val images per row of the grid")
    parser.add_argument("--notes", type=Path, default=None, help="a Markdown file included under the header")
    args = parser.parse_args(argv)
    if args.notes is not None and not args.notes.is_file():
        parser.error(f"--notes: {args.notes} is not a file")
    with report_user_errors():
        path = build_report(
            args.sweep_dir, args.out or args.sweep_dir / "report", args.epochs, args.images, args.notes
        )
    print(f"[ctx-inpaint] report written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
