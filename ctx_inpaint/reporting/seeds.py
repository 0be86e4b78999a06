"""A sweep's runs grouped by experiment over seeds: means and intervals over seeds, per-crop paired differences
between experiments, PSNR curves with a band, and how far each discriminator won."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ctx_inpaint.evaluation.stats import mean_interval, two_way_bootstrap
from ctx_inpaint.reporting.runs import EpochMetrics, Run

METRICS = ("psnr", "ssim", "l1", "l2")


@dataclass
class Experiment:
    """Every run of one experiment (``name``) in a sweep, one per seed."""

    name: str
    runs: list[Run] = field(default_factory=list)

    @property
    def axis(self) -> str:
        return next((r.axis for r in self.runs if r.config), "-")

    @property
    def seed_psnr(self) -> list[float]:
        return next((r.seed_psnr for r in self.runs if r.config), [])

    @property
    def finished(self) -> list[Run]:
        """Finished runs, one per seed (a seed run twice counts once: its last run)."""
        by_seed = {r.seed: r for r in self.runs if r.ok}
        return [by_seed[s] for s in sorted(by_seed, key=lambda s: (s is None, s))]

    def over_seeds(self, metric: str, which: str) -> dict[str, float]:
        """Mean and t interval over the finished seeds of the ``final`` or ``best`` epoch's ``metric`` (the best
        epoch is the one of highest val PSNR)."""
        values = []
        for run in self.finished:
            m = run.final() if which == "final" else run.best()
            if m is not None:
                values.append(getattr(m, metric))
        return mean_interval(values)

    def final_images(self, metric: str = "psnr") -> dict[int, dict[int, float]]:
        """Seed -> val crop -> ``metric`` at each finished run's last validated epoch (needs val_images.csv)."""
        out = {}
        for run in self.finished:
            if run.images and run.seed is not None:
                last = max(run.images)
                out[run.seed] = {i: v[metric] for i, v in run.images[last].items()}
        return out

    def curve(self) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
        """Val PSNR per epoch over the finished seeds: epochs, mean, and the t interval's bounds (the mean where
        only one seed has the epoch)."""
        by_epoch: dict[int, list[float]] = {}
        for run in self.finished:
            for m in run.val:
                by_epoch.setdefault(m.epoch, []).append(m.psnr)
        epochs = sorted(by_epoch)
        stats = [mean_interval(by_epoch[e]) for e in epochs]
        mean = np.array([s["mean"] for s in stats])
        lo = np.array([s["lo"] if math.isfinite(s["lo"]) else s["mean"] for s in stats])
        hi = np.array([s["hi"] if math.isfinite(s["hi"]) else s["mean"] for s in stats])
        return epochs, mean, lo, hi

    def mean_run(self) -> Run:
        """A run whose val metrics per epoch are the means over the finished seeds (for the epoch tables)."""
        by_epoch: dict[int, list[EpochMetrics]] = {}
        for run in self.finished:
            for m in run.val:
                by_epoch.setdefault(m.epoch, []).append(m)
        val = [
            EpochMetrics(e, **{k: float(np.mean([getattr(m, k) for m in ms])) for k in METRICS})
            for e, ms in sorted(by_epoch.items())
        ]
        first = (self.finished or self.runs)[0]
        return Run(num=first.num, name=self.name, path=None, config=first.config, status="finished", val=val)

    def d_gaps(self, fraction: float = 0.25) -> dict[int, float]:
        """Seed -> mean of D(real) - D(generated) over the last ``fraction`` of training steps: near 1, the
        discriminator has won outright (the generator's adversarial gradient says little)."""
        out = {}
        for run in self.finished:
            steps, gap = run.d_gap()
            if not steps or run.seed is None:
                continue
            cut = steps[-1] - fraction * (steps[-1] - steps[0])
            tail = [g for s, g in zip(steps, gap) if s >= cut]
            out[run.seed] = float(np.mean(tail))
        return out


def group(runs: Sequence[Run]) -> dict[str, Experiment]:
    """Runs by experiment name, in the sweep's launch order."""
    out: dict[str, Experiment] = {}
    for run in sorted(runs, key=lambda r: r.num):
        out.setdefault(run.name, Experiment(run.name)).runs.append(run)
    return out


def paired_matrix(a: Experiment, b: Experiment, metric: str = "psnr") -> np.ndarray | None:
    """(seeds, val crops) matrix of ``a - b`` on the final epoch's per-crop ``metric``, over the seeds and crops
    both experiments have; None when they share no seed."""
    ia, ib = a.final_images(metric), b.final_images(metric)
    seeds = sorted(ia.keys() & ib.keys())
    if not seeds:
        return None
    crops = sorted(set.intersection(*[set(ia[s]) & set(ib[s]) for s in seeds]))
    if not crops:
        return None
    return np.array([[ia[s][i] - ib[s][i] for i in crops] for s in seeds])


def paired_difference(a: Experiment, b: Experiment, metric: str = "psnr", seed: int = 0) -> dict | None:
    """Mean of ``a - b`` over shared seeds and val crops with a two-way bootstrap 95% interval (seeds and crops
    resampled); None when the two cannot be paired."""
    matrix = paired_matrix(a, b, metric)
    return None if matrix is None else two_way_bootstrap(matrix, seed=seed)


def gap_difference(a: Experiment, b: Experiment, seed: int = 0) -> dict | None:
    """``a``'s discriminator gap minus ``b``'s, per shared seed, with a bootstrap interval over seeds."""
    ga, gb = a.d_gaps(), b.d_gaps()
    seeds = sorted(ga.keys() & gb.keys())
    if not seeds:
        return None
    result = two_way_bootstrap(np.array([[ga[s] - gb[s]] for s in seeds]), seed=seed)
    result["a"] = float(np.mean([ga[s] for s in seeds]))
    result["b"] = float(np.mean([gb[s] for s in seeds]))
    return result
