"""Markdown tables: the seed report's epoch-wise table per experiment and the sorted summary of a sweep."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ctx_inpaint.reporting.claims import Judged
from ctx_inpaint.reporting.runs import Run
from ctx_inpaint.reporting.seeds import Experiment, paired_difference

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
        "seed",
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
                DASH if run.seed is None else str(run.seed),
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
    return _table(header, rows, align="rllll" + "r" * 9)


def fmt_interval(stat: dict | None, digits: int = 2, signed: bool = False) -> str:
    """``mean [lo, hi]``; the mean alone when there is no interval (one seed)."""
    if stat is None or not math.isfinite(stat.get("mean", math.nan)):
        return DASH
    sign = "+" if signed else ""
    text = f"{stat['mean']:{sign}.{digits}f}"
    if math.isfinite(stat.get("lo", math.nan)) and math.isfinite(stat.get("hi", math.nan)):
        text += f" [{stat['lo']:{sign}.{digits}f}, {stat['hi']:{sign}.{digits}f}]"
    return text


def seeds_table(experiments: Sequence[Experiment], baseline: str = "l2_0999") -> str:
    """One row per experiment: finished seeds, mean [95% t interval] over seeds of best and final metrics, and the
    paired final-PSNR difference against ``baseline`` (``*``: its interval excludes 0)."""
    base = next((e for e in experiments if e.name == baseline), None)
    header = [
        "experiment",
        "axis",
        "seeds done",
        "best PSNR",
        "final PSNR",
        "final SSIM",
        "final L1",
        "final L2",
        f"final PSNR - `{baseline}` (paired)",
        "seed report PSNR",
    ]
    rows = []
    for exp in experiments:
        if base is None or exp is base:
            diff = DASH if base is None else "(baseline)"
        else:
            effect = paired_difference(exp, base)
            diff = fmt_interval(effect, signed=True)
            if effect is not None and (effect["lo"] > 0 or effect["hi"] < 0):
                diff += " *"
        rows.append(
            [
                f"`{exp.name}`",
                exp.axis,
                f"{len(exp.finished)}/{len(exp.runs)}",
                fmt_interval(exp.over_seeds("psnr", "best")),
                fmt_interval(exp.over_seeds("psnr", "final")),
                fmt_interval(exp.over_seeds("ssim", "final"), 3),
                fmt_interval(exp.over_seeds("l1", "final"), 4),
                fmt_interval(exp.over_seeds("l2", "final"), 4),
                diff,
                " / ".join(f"{v:.2f}" for v in exp.seed_psnr) or DASH,
            ]
        )
    return _table(header, rows, align="llr" + "r" * 7)


def claims_table(judged: Sequence[Judged], experiments: dict[str, Experiment]) -> str:
    """One row per claim: verdict, each link's effect with its interval, and the seed report's figures."""

    def seed_figures(name: str) -> str:
        exp = experiments.get(name)
        values = exp.seed_psnr if exp is not None else []
        return f"`{name}` " + (" / ".join(f"{v:.2f}" for v in values) if values else DASH)

    rows = []
    for j in judged:
        effects, figures = [], []
        for link in j.links:
            what = "D lead" if j.claim.kind == "d_wins" else "dB"
            text = f"`{link.a}` - `{link.b}`: " + (
                fmt_interval(link.effect, 2 if what == "dB" else 3, signed=True) + f" {what}"
                if link.effect is not None
                else "no paired data"
            )
            if j.claim.kind == "d_wins" and link.effect is not None:
                text += f" (leads {link.effect['a']:.2f} vs {link.effect['b']:.2f})"
            if len(j.links) > 1:
                text += f" → {link.verdict}"
            effects.append(text)
            figures += [seed_figures(n) for n in (link.a, link.b) if seed_figures(n) not in figures]
        rows.append([j.claim.finding, f"**{j.verdict}**", "<br>".join(effects), "<br>".join(figures)])
    return _table(
        ["seed report's finding", "verdict", "effect [95% interval], ours", "seed report PSNR (dB)"],
        rows,
        align="llll",
    )
