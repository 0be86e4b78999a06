"""The Markdown report of an ablation sweep: :func:`write_report` reads every run folder of the sweep and writes
``report.md`` with its figures (PSNR per epoch, discriminator gaps, G/D curves, the val image grid).

Everything is read, and the output folder checked, before anything is written, so a bad input leaves no half
report. ``python -m ctx_inpaint.report`` is its command.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ctx_inpaint.common.files import blocking_file
from ctx_inpaint.errors import InputError
from ctx_inpaint.reporting import claims
from ctx_inpaint.reporting.grid import image_grid
from ctx_inpaint.reporting.header import header_lines, read_notes
from ctx_inpaint.reporting.plots import gan_bands, gan_curves, gan_overview, psnr_bands, psnr_vs_epoch
from ctx_inpaint.reporting.runs import load_sweep, task_overrides
from ctx_inpaint.reporting.seeds import group
from ctx_inpaint.reporting.tables import (
    chosen_epochs,
    claims_table,
    epoch_table,
    seeds_table,
    status_text,
    summary_table,
)

REPORT = "report.md"

METRICS_NOTE = (
    "Metrics: validation on the fixed val crops (the same crops and holes for every seed; experiments with "
    "other masks draw their own), over the hidden pixels of the composited output in [0, 1] (L1 = mean "
    "|x - y|, L2 = mean (x - y)^2, PSNR per image then averaged, SSIM averaged over the hole). The seed "
    "report's PSNR is its epoch-200 figure on Paris StreetView (two runs where it gives two): another dataset, "
    "budget and evaluation, shown for orientation only."
)


def check_out_dir(out_dir: Path) -> None:
    """``out_dir`` is, or can become, a folder: refused in one line before any figure is drawn."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out: {out_dir} is a file; expected a folder for report.md and its figures")
    blocker = blocking_file(out_dir)
    if blocker is not None:
        raise InputError(f"--out: {out_dir} cannot be created: {blocker} is a file; expected a folder there")


def write_report(
    sweep_dir: Path,
    out_dir: Path,
    epochs: list[int] | None = None,
    n_images: int = 6,
    notes: Path | None = None,
    command: Sequence[str] | None = None,
) -> Path:
    """Write report.md and its figures into ``out_dir``; returns the Markdown path.

    ``epochs`` are the columns of the per-experiment tables (default: four evenly spaced, ending at the last),
    ``n_images`` the val images per row of the grid, ``notes`` a Markdown file placed under the header, and
    ``command`` the report command's arguments, quoted in the header (None: rebuilt from the folders)."""
    runs = load_sweep(sweep_dir)
    notes_text = read_notes(notes) if notes is not None else ""
    check_out_dir(out_dir)
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
    md = [f"# Ablation report: `{sweep_dir.name}`", ""]
    md += [*header_lines(sweep_dir, out_dir, runs, exps, overrides, command), "", METRICS_NOTE, ""]
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
    path = out_dir / REPORT
    path.write_text("\n".join(md).rstrip() + "\n")
    return path
