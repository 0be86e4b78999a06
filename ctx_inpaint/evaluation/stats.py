"""Paired statistics for comparing two methods on the same images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], resamples: int = 5000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """Mean of ``a - b`` over paired items with a percentile bootstrap interval (items resampled with
    replacement), and how many items ``a`` wins."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if diff.size == 0:
        raise ValueError("paired_bootstrap: no pairs")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {
        "mean": float(diff.mean()),
        "lo": float(lo),
        "hi": float(hi),
        "wins": int((diff > 0).sum()),
        "n": int(diff.size),
    }


def mean_interval(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Mean over independent runs (seeds) with Student's t interval; a single value has no interval (nan)."""
    from scipy import stats as scipy_stats

    x = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    if x.size == 1:
        return {"mean": float(x[0]), "lo": float("nan"), "hi": float("nan"), "n": 1}
    half = scipy_stats.t.ppf((1 + level) / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return {
        "mean": float(x.mean()),
        "lo": float(x.mean() - half),
        "hi": float(x.mean() + half),
        "n": int(x.size),
    }


def two_way_bootstrap(
    diff: np.ndarray, resamples: int = 10000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """Mean of a (seeds, items) matrix of paired differences with a percentile interval that resamples seeds
    and items independently (both are random draws: another seed and other val crops would give other values).

    A single seed resamples the items only. NaN cells (a crop a run did not score) are left out of each mean."""
    d = np.asarray(diff, dtype=np.float64)
    if d.ndim != 2 or d.size == 0:
        raise ValueError(
            f"two_way_bootstrap: expected a non-empty (seeds, items) matrix, got shape {d.shape}"
        )
    n_seeds, n_items = d.shape
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for k in range(resamples):
        rows = rng.integers(0, n_seeds, n_seeds) if n_seeds > 1 else np.zeros(1, dtype=int)
        cols = rng.integers(0, n_items, n_items)
        means[k] = np.nanmean(d[np.ix_(rows, cols)])
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {
        "mean": float(np.nanmean(d)),
        "lo": float(lo),
        "hi": float(hi),
        "seeds": int(n_seeds),
        "items": int(n_items),
        "seed_means": [float(v) for v in np.nanmean(d, axis=1)],
    }
