"""Markdown tables: the seed report's epoch-wise table per experiment and the sorted summary of a sweep."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ctx_inpaint.reporting.runs import Run

DASH = "—"


def chosen_epochs(max_epochs: int, count: int = 4) -> list[int]:
    """``count`` evenly spaced epochs ending at ``max_epochs`` (200 -> 50, 100, 150, 200 as the seed report)."""
    if max_epochs < 1:
        return []
    count = max(1, min(count, max_epochs))
    return sorted({max(1, math.floor(max_epochs * (i + 1) / count + 0.5)) for i in range(count)})


def fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    return f"{value:.{digits}f}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{sec:02d}s" if hours else f"{minutes}m{sec:02d}s"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def status_text(run: Run) -> str:
    if run.ok:
        return "finished"
    return f"**{run.status.upper()}**" + (f": {run.detail}" if run.detail else "")


def epoch_table(run: Run, epochs: Sequence[int]) -> str:
    """Rows L1, L2, PSNR (val, hidden pixels) at the chosen epochs; missing epochs show a dash."""
    cells = {e: run.at_epoch(e) for e in epochs}
    rows = [
        ["L1", *[fmt(m.l1 if m else None) for m in cells.values()]],
        ["L2", *[fmt(m.l2 if m else None) for m in cells.values()]],
        ["PSNR (dB)", *[fmt(m.psnr if m else None, 2) for m in cells.values()]],
    ]
    return _table(["Epoch", *[str(e) for e in epochs]], rows)


def summary_rows(runs: Sequence[Run]) -> list[Run]:
    """Finished runs by best PSNR (high first), then incomplete ones by best PSNR, then failed / missing."""

    def key(run: Run) -> tuple[int, float]:
        best = run.best()
        group = 0 if run.ok else (1 if best is not None else 2)
        return group, -(best.psnr if best is not None else -math.inf)

    return sorted(runs, key=key)


def summary_table(runs: Sequence[Run], baseline: str = "l2_0999") -> str:
    header = [
        "#",
        "experiment",
        "axis",
        "status",
        "epochs",
        "best PSNR (epoch)",
        "final PSNR",
        "final SSIM",
        "final L1",
        "final L2",
        f"best vs `{baseline}` (dB)",
        "wall time",
        "seed report PSNR",
    ]
    base = next((r.best() for r in runs if r.name == baseline), None)
    rows = []
    for rank, run in enumerate(summary_rows(runs), 1):
        best, final = run.best(), run.final()
        delta = f"{best.psnr - base.psnr:+.2f}" if best is not None and base is not None else DASH
        seed = " / ".join(f"{v:.2f}" for v in run.seed_psnr) or DASH
        rows.append(
            [
                str(rank),
                f"`{run.name}`",
                run.axis,
                status_text(run),
                f"{len(run.val)}/{run.max_epochs or '?'}",
                f"{fmt(best.psnr, 2)} ({best.epoch})" if best else DASH,
                fmt(final.psnr if final else None, 2),
                fmt(final.ssim if final else None, 3),
                fmt(final.l1 if final else None),
                fmt(final.l2 if final else None),
                delta,
                fmt_duration(run.wall_time_s),
                seed,
            ]
        )
    return _table(header, rows, align="rlll" + "r" * 9)
