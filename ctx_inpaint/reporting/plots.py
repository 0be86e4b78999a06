"""Matplotlib figures (PNG): val PSNR of every run on one chart, and G / D training curves per GAN run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers or in tests
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ctx_inpaint.reporting.runs import Run  # noqa: E402
from ctx_inpaint.reporting.seeds import Experiment  # noqa: E402


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average (window shrinks at the start), so noisy per-step curves stay readable."""
    x = np.asarray(values, dtype=float)
    if window <= 1 or len(x) < 2:
        return x
    c = np.cumsum(np.insert(x, 0, 0.0))
    idx = np.arange(1, len(x) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def psnr_vs_epoch(runs: Sequence[Run], path: Path) -> Path:
    """All runs' val PSNR against the epoch; failed / incomplete runs are dashed and labelled."""
    fig, ax = plt.subplots(figsize=(9, 5.5))
    cmap = plt.get_cmap("tab20")
    for i, run in enumerate(runs):
        if not run.val:
            continue
        label = run.name if run.ok else f"{run.name} ({run.status})"
        ax.plot(
            [m.epoch for m in run.val],
            [m.psnr for m in run.val],
            marker="o",
            markersize=3,
            linestyle="-" if run.ok else "--",
            color=cmap(i % 20),
            label=label,
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("val PSNR on hidden pixels (dB)")
    ax.set_title("Validation PSNR per epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def gan_curves(run: Run, path: Path, window: int | None = None) -> Path | None:
    """Left: D loss and G's adversarial loss; right: D's mean probability on real and on generated patches.

    A discriminator that wins outright shows D(real) -> 1, D(fake) -> 0, loss_d -> 0 and a climbing G loss.
    """
    series = run.train
    if "loss_d" not in series:
        return None
    window = window or max(1, len(series["loss_d"]) // 15)  # about 15 windows over the run
    fig, (ax_l, ax_p) = plt.subplots(1, 2, figsize=(11, 3.6))
    for key, color in (("loss_d", "tab:red"), ("loss_adv", "tab:blue"), ("loss_g", "tab:gray")):
        if key in series:
            steps, values = zip(*series[key])
            ax_l.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
            ax_l.plot(steps, smooth(values, window), color=color, label=f"{key} (mean of {window})")
    ax_l.set_xlabel("training step")
    ax_l.set_ylabel("loss")
    ax_l.set_yscale("symlog", linthresh=0.1)
    ax_l.legend(fontsize=7)
    ax_l.grid(alpha=0.3)
    for key, color, label in (("d_real", "tab:green", "D(real)"), ("d_fake", "tab:orange", "D(generated)")):
        if key in series:
            steps, values = zip(*series[key])
            ax_p.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
            ax_p.plot(steps, smooth(values, window), color=color, label=label)
    ax_p.set_ylim(-0.02, 1.02)
    ax_p.axhline(0.5, color="black", linewidth=0.5, linestyle=":")
    ax_p.set_xlabel("training step")
    ax_p.set_ylabel("mean sigmoid(D)")
    ax_p.legend(fontsize=7)
    ax_p.grid(alpha=0.3)
    status = "" if run.ok else f" [{run.status}]"
    fig.suptitle(f"{run.name}: generator and discriminator during training{status}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def gan_overview(runs: Sequence[Run], path: Path) -> Path | None:
    """Every adversarial run on one chart: D's loss and the gap D(real) - D(generated), smoothed.

    A gap near 1 with loss_d near 0 is a discriminator that has won (the generator gets no useful signal).
    """
    gan_runs = [r for r in runs if "loss_d" in r.train and "d_real" in r.train and "d_fake" in r.train]
    if not gan_runs:
        return None
    fig, (ax_l, ax_g) = plt.subplots(1, 2, figsize=(12, 4.2))
    cmap = plt.get_cmap("tab20")
    for i, run in enumerate(gan_runs):
        color = cmap(i % 20)
        steps, loss_d = zip(*run.train["loss_d"])
        window = max(1, len(loss_d) // 15)
        ax_l.plot(steps, smooth(loss_d, window), color=color, label=run.name)
        common, gap = run.d_gap()
        ax_g.plot(common, smooth(gap, window), color=color, label=run.name)
    ax_l.set_yscale("symlog", linthresh=0.1)
    ax_l.set_xlabel("training step")
    ax_l.set_ylabel("loss_d (smoothed)")
    ax_g.set_ylim(-1.02, 1.02)
    ax_g.axhline(0, color="black", linewidth=0.5, linestyle=":")
    ax_g.set_xlabel("training step")
    ax_g.set_ylabel("D(real) - D(generated) (smoothed)")
    for ax in (ax_l, ax_g):
        ax.grid(alpha=0.3)
    ax_g.legend(fontsize=7, ncol=2, loc="best")
    fig.suptitle("Discriminators of all adversarial runs", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def psnr_bands(experiments: Sequence[Experiment], path: Path, baseline: str = "l2_0999") -> Path:
    """Val PSNR per epoch, one panel per ablation axis (the baseline drawn in each): each experiment's mean over
    its finished seeds with the 95% t interval over seeds as a band."""
    axes_of: dict[str, list[Experiment]] = {}
    base = next((e for e in experiments if e.name == baseline), None)
    for exp in experiments:
        if exp is not base:
            axes_of.setdefault(exp.axis, []).append(exp)
    panels = list(axes_of.items()) or [("all", [])]
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False, sharey=True)
    cmap = plt.get_cmap("tab10")
    for ax, (axis, exps) in zip(grid.flat, panels):
        for i, exp in enumerate(([base] if base is not None else []) + exps):
            epochs, mean, lo, hi = exp.curve()
            if not epochs:
                continue
            color = "black" if exp is base else cmap(i % 10)
            ax.plot(
                epochs,
                mean,
                marker="o",
                markersize=3,
                color=color,
                label=f"{exp.name} (n={len(exp.finished)})",
            )
            ax.fill_between(epochs, lo, hi, color=color, alpha=0.15, linewidth=0)
        ax.set_title(f"axis: {axis}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in grid[:, 0]:
        ax.set_ylabel("val PSNR, hidden pixels (dB)")
    for ax in list(grid.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle("Validation PSNR per epoch: mean over seeds, band = 95% interval over seeds", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _smoothed_gap(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    steps, gap = run.d_gap()
    if not steps:
        return None
    return np.asarray(steps, dtype=float), smooth(gap, max(1, len(gap) // 15))


def gan_bands(experiments: Sequence[Experiment], path: Path) -> Path | None:
    """D(real) - D(generated) per adversarial experiment, smoothed: mean over seeds and the seeds' range as a
    band. A curve at 1 is a discriminator that has won outright in every seed."""
    curves = []
    for exp in experiments:
        per_seed = [c for c in (_smoothed_gap(r) for r in exp.finished) if c is not None]
        if per_seed:
            grid = per_seed[0][0]
            values = np.stack([np.interp(grid, steps, gap) for steps, gap in per_seed])
            curves.append((exp.name, grid, values))
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(10, 4.8))
    cmap = plt.get_cmap("tab20")
    for i, (name, grid, values) in enumerate(curves):
        color = cmap(i % 20)
        ax.plot(grid, values.mean(0), color=color, label=f"{name} (n={len(values)})")
        ax.fill_between(grid, values.min(0), values.max(0), color=color, alpha=0.15, linewidth=0)
    ax.set_ylim(-1.02, 1.02)
    ax.axhline(0, color="black", linewidth=0.5, linestyle=":")
    ax.axhline(1, color="tab:red", linewidth=0.5, linestyle="--")
    ax.set_xlabel("training step")
    ax.set_ylabel("D(real) - D(generated) (smoothed)")
    ax.set_title("Discriminators: mean over seeds, band = range of the seeds (1 = D wins outright)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
