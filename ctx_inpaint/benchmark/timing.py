"""The one timer of the benchmark and of ``benchmark.ab``: interleaved rounds, per-round ratios, their median and spread.

On a shared machine the speed of the machine drifts by a factor of two within minutes (another process's burst,
OpenMP threads waiting on each other), so two figures measured one after the other compare two moments, not two
pieces of code. :func:`interleaved` therefore runs the compared steps alternately, one call of each per round, the
order rotated every round (for two steps: flipped), and :func:`ratio` takes the ratio of two steps *within* each
round, where both saw the same machine, and reports the median of those per-round ratios with their spread
(lowest and highest) and the number of rounds. Hosts that cannot be called as a function (the Lightning step
inside ``trainer.fit``) feed their own per-round times into the same record (:func:`record` and
``benchmark.lightning_runs.InterleavingClock``), so every ratio is computed the same way.

Every timer takes its ``clock`` as an argument (``time.perf_counter`` by default): the tests drive a fake clock
and check the arithmetic exactly, whatever the speed or the load of the machine they run on.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ctx_inpaint.errors import ConfigError

Clock = Callable[[], float]  # seconds, e.g. time.perf_counter


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall time covers it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    fn: Callable[[], object],
    warmup: int,
    repeats: int,
    device: torch.device,
    clock: Clock = time.perf_counter,
) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after ``warmup`` untimed ones (absolute figures only)."""
    if repeats < 1:
        raise ConfigError(f"bench: expected at least 1 timed repeat, got {repeats}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        synchronize(device)
        times.append(clock() - t0)
    return statistics.median(times)


def round_order(names: Sequence[str], r: int) -> list[str]:
    """Round ``r``'s order: ``names`` rotated by ``r``, so over ``len(names)`` rounds every step runs once in
    every position (for two steps the order flips every round)."""
    k = r % len(names)
    return [*names[k:], *names[:k]]


def timed_call(
    fn: Callable[[], object], device: torch.device, inner: int = 1, clock: Clock = time.perf_counter
) -> tuple[float, float]:
    """(start, seconds per call) of ``inner`` calls of ``fn``, CUDA synchronised on both sides."""
    synchronize(device)
    t0 = clock()
    for _ in range(inner):
        fn()
    synchronize(device)
    return t0, (clock() - t0) / inner


def inner_of(inner: int | Mapping[str, int], name: str) -> int:
    n = int(inner.get(name, 1)) if isinstance(inner, Mapping) else int(inner)
    if n < 1:
        raise ConfigError(f"bench: {name}: expected at least 1 call per round, got {n}")
    return n


def check_rounds(rounds: int, warmup: int) -> None:
    if int(rounds) < 1:
        raise ConfigError(f"bench.rounds: expected >= 1, got {rounds}")
    if int(warmup) < 0:
        raise ConfigError(f"bench.warmup: expected >= 0, got {warmup}")


def record(seconds: dict[str, list[float]], order: list[list[str]]) -> dict[str, Any]:
    """The timer's result: per-round seconds per call of every step, the order of every round, and medians."""
    rounds = len(order)
    bad = {n: len(v) for n, v in seconds.items() if len(v) != rounds}
    if bad:
        raise RuntimeError(f"bench: {rounds} rounds but {bad} timings")
    return {
        "rounds": rounds,
        "order": order,
        "seconds": seconds,
        "median_s": {n: statistics.median(v) for n, v in seconds.items()},
    }


def interleaved(
    fns: Mapping[str, Callable[[], object]],
    rounds: int,
    warmup: int,
    device: torch.device,
    inner: int | Mapping[str, int] = 1,
    clock: Clock = time.perf_counter,
) -> dict[str, Any]:
    """Time the named steps in interleaved rounds: ``warmup`` untimed rounds, then ``rounds`` rounds in which
    every step runs ``inner`` times (an int, or per name) in the order :func:`round_order` gives, each timed on
    its own with ``clock`` (CUDA synchronised around it). Returns :func:`record`'s dict: ``seconds[name]``
    is the per-round time of one call, ``median_s[name]`` its median; :func:`ratio` compares two steps."""
    check_rounds(rounds, warmup)
    names = list(fns)
    if not names:
        raise ConfigError("bench: nothing to time")
    for w in range(int(warmup)):
        for name in round_order(names, w):
            fns[name]()
    synchronize(device)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    order = []
    for r in range(int(rounds)):
        this = round_order(names, r)
        order.append(this)
        for name in this:
            seconds[name].append(timed_call(fns[name], device, inner_of(inner, name), clock)[1])
    return record(seconds, order)


def ratio(
    result: Mapping[str, Any],
    a: str,
    b: str,
    scale: float = 1.0,
    transform: Callable[[float], float] | None = None,
) -> dict[str, Any]:
    """``scale * seconds[a] / seconds[b]`` in every round (then ``transform``, e.g. ``lambda x: 1 - x``): the
    median over rounds as ``value``, ``[lowest, highest]`` as ``spread``, the number of rounds, and the
    per-round values. ``ratio(r, "baseline", "plain")`` is how many times faster ``plain`` is than ``baseline``."""
    ta, tb = result["seconds"][a], result["seconds"][b]
    per = [scale * x / y for x, y in zip(ta, tb)]
    if transform is not None:
        per = [transform(x) for x in per]
    return {
        "value": statistics.median(per),
        "spread": [min(per), max(per)],
        "rounds": len(per),
        "per_round": per,
    }


def put_ratio(out: dict[str, Any], key: str, r: Mapping[str, Any]) -> None:
    """``out[key]``, ``out[key + "_spread"]`` and ``out[key + "_rounds"]`` from a :func:`ratio`."""
    out[key] = r["value"]
    out[f"{key}_spread"] = list(r["spread"])
    out[f"{key}_rounds"] = r["rounds"]
