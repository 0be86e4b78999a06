"""The benchmark command, its bare PyTorch loop, the dense-layer GEMM path and the prepared photo cache."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate

from ctx_inpaint.benchmark import peak
from ctx_inpaint.benchmark.lightning_runs import BatchClock, InterleavingClock, repeated_loader
from ctx_inpaint.benchmark.loops import autocast_for, parts_from_module, plain_step
from ctx_inpaint.benchmark.measure import (
    derive,
    precision_choice,
    resolved_precision,
    straightforward_config,
    want_bf16,
    with_overrides,
)
from ctx_inpaint.benchmark.peak import (
    Gemm,
    ThreadTeam,
    best,
    calls_per_timing,
    candidates,
    parse_shape,
    search,
)
from ctx_inpaint.benchmark.run import expand_sizes_flag, machine_fields, of_theoretical
from ctx_inpaint.benchmark.table import print_table, table_rows
from ctx_inpaint.benchmark.timing import interleaved, median_seconds, put_ratio, ratio, round_order
from ctx_inpaint.common import machine
from ctx_inpaint.config.build import build_module, with_resolved_precision
from ctx_inpaint.data.datasets import ImageStore
from ctx_inpaint.data.prepared import PreparedImages
from ctx_inpaint.models.bottlenecks import DenseBottleneck
from ctx_inpaint.models.decoders import Decoder
from ctx_inpaint.models.dense import set_matmul
from ctx_inpaint.models.encoders import AlexNetEncoder, PaperEncoder
from ctx_inpaint.models.generator import Generator
from tests.commands import run_command
from tests.conftest import TINY, write_images
from tests.test_data import make_dm
from tools import agreement
from tools.bench_summary import write_summary

ROOT = Path(__file__).resolve().parent.parent

# Every ratio comes from interleaved rounds (with _spread and _rounds); absolute figures sit in machine_now.
RATIO_KEYS = [
    "lightning_overhead",
    "speedup_vs_baseline",
    "speedup_bf16_vs_baseline",
    "data_over_train",
    "fraction_of_peak",
    "fraction_of_peak_fp32",
    "fraction_of_peak_bf16",
]
MACHINE_KEYS = [
    "train_images_per_s",
    "plain_images_per_s",
    "baseline_fp32_images_per_s",
    "plain_bf16_images_per_s",
    "data_batch_images_per_s",
    "data_loader_images_per_s",
    "end_to_end_images_per_s",
    "infer_ms_per_image",
    "infer_ms_per_image_b1",
    "infer_ms_per_image_b4",
    "achieved_gflops",
    "sgemm_gflops",
    "bf16_gemm_gflops",
]

TINY_BENCH = [
    *TINY,
    "model.discriminator.width=8",
    "bench.batch_size=4",
    "bench.warmup=1",
    "bench.rounds=3",
    "bench.data_batches=4",
    "bench.fit_batches=2",
    "bench.infer_batches=[1,4]",
    "bench.infer_repeats=2",
    "bench.gemm_size=128",
    "bench.gemm_calls=1",
]


@pytest.mark.slow
def test_bench_cli_prints_every_key_and_sweeps_sizes(tmp_path: Path) -> None:
    """bf16 forced on (emulated where the CPU lacks it): every ratio, its spread and rounds, and the sweep."""
    env = {**os.environ, "CTX_INPAINT_LOG_DIR": str(tmp_path / "logs"), "WANDB_MODE": "disabled"}
    cmd = [
        sys.executable,
        "-m",
        "ctx_inpaint.bench",
        "+experiment=l2_0999",
        *TINY_BENCH,
        "trainer.precision=32-true",  # fp32 whatever the CPU, so the bf16 twin of the step is timed too
        "bench.bf16=true",
    ]
    done = subprocess.run([*cmd, "--sizes"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["rounds"] == 3 and result["precision"] == result["precision_setting"] == "32-true"
    for key in RATIO_KEYS:
        if key.startswith("fraction_of_peak") and result[key] is None:  # refused: how loaded the machine was
            assert "> 1: peak under-measured" in result[f"{key}_refused"] and f"{key}_spread" not in result
            continue
        value, (lo, hi) = result[key], result[f"{key}_spread"]
        assert isinstance(value, float) and math.isfinite(value), key
        assert lo <= value <= hi and result[f"{key}_rounds"] == 3, key
        if key.startswith("fraction_of_peak"):
            assert 0 < value <= 1, key
    for key in ("speedup_vs_baseline", "speedup_bf16_vs_baseline", "data_over_train"):
        assert result[key] > 0, key
    assert result["lightning_overhead"] < 1
    now = result["machine_now"]
    assert "not reproducible" in now["note"] and now["measured_at"]
    for key in MACHINE_KEYS:
        assert isinstance(now[key], float) and now[key] > 0 and math.isfinite(now[key]), key
    assert result["flops_per_image"] > 0 and result["discriminator_params"] > 0
    for dt in ("fp32", "bf16"):  # the peak: the best of the search, with which GEMM it was
        search_rates = now["peak_search"][dt]
        assert now[f"peak_{dt}_gflops"] > 0 and len(search_rates) > 1
        name = f"{now[f'peak_{dt}_kernel']} {now[f'peak_{dt}_shape']} {now[f'peak_{dt}_threads']}"
        assert search_rates[name] == max(search_rates.values())
    assert "theoretical_basis" in result and "float32 peak GEMM" in done.stdout
    assert set(result["steps"]) == {
        "lightning",
        "plain",
        "plain_bf16",
        "baseline",
        "data",
        "matmul_fp32",
        "matmul_bf16",
    }
    sizes = result["sizes"]
    assert sorted(int(k) for k in sizes) == [16, 32, 64, 128]
    assert sizes["16"]["step_cost_vs_first"] == 1.0 and sizes["16"]["step_cost_vs_first_rounds"] == 3
    assert all(v["machine_now"]["ms_per_step"] > 0 for v in sizes.values())
    assert "fraction of peak" in done.stdout and "n=3" in done.stdout  # the table precedes the JSON line
    written = list((tmp_path / "logs" / "bench").glob("*/bench.json"))
    assert len(written) == 1 and json.loads(written[0].read_text()) == result

    # A subset without the Lightning step: the bare loop hosts nothing, the ratios that need it are absent.
    sub = [
        *cmd,
        "bench.bf16=false",
        "bench.measure=[plain,baseline]",
        f"bench.out_json={tmp_path / 'sub.json'}",
    ]
    done = subprocess.run(sub, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    part = json.loads((tmp_path / "sub.json").read_text())
    assert part["speedup_vs_baseline_step"] == "plain" and part["speedup_vs_baseline_rounds"] == 3
    assert "fraction_of_peak" in part and "fraction_of_peak_fp32" in part
    assert not {"lightning_overhead", "speedup_bf16_vs_baseline", "data_over_train"} & set(part)
    assert set(part["steps"]) == {"plain", "baseline", "matmul_fp32"}


# ---- the interleaved timer ----------------------------------------------------------------------------------
class FakeClock:
    """Time that passes only when a fake step says so: the timers' arithmetic is checked exactly (binary fractions
    of a second, so every sum and difference is exact in floating point), however fast or loaded the machine is."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def step(self, costs: list[float], calls: list[str] | None = None, name: str = "") -> Callable[[], None]:
        """A step whose n-th call takes ``costs[n]`` seconds of this clock (the last cost repeats)."""
        left = list(costs)

        def fn() -> None:
            if calls is not None:
                calls.append(name)
            self.now += left.pop(0) if len(left) > 1 else left[0]

        return fn


def test_interleaved_ratio_of_steps_of_known_cost() -> None:
    """The machine's speed drifts 8x over the rounds, yet every round's ratio is the steps' true one; the warm-up
    (8 s each, untimed) counts nowhere; the ratio is the median of the per-round ratios, with their spread."""
    clock = FakeClock()
    fast = [8.0, 0.25, 0.5, 0.25, 1.0, 0.125, 0.25]
    slow = [8.0, 0.5, 1.0, 0.75, 2.0, 0.25, 0.375]  # per-round ratios 2, 2, 3, 2, 2, 1.5
    timer = interleaved(
        {"fast": clock.step(fast), "slow": clock.step(slow)},
        rounds=6,
        warmup=1,
        device=torch.device("cpu"),
        clock=clock,
    )
    assert timer["rounds"] == 6
    assert timer["seconds"] == {"fast": fast[1:], "slow": slow[1:]}
    assert timer["median_s"] == {"fast": 0.25, "slow": 0.625}
    r = ratio(timer, "slow", "fast")
    assert r == {"value": 2.0, "spread": [1.5, 3.0], "rounds": 6, "per_round": [2.0, 2.0, 3.0, 2.0, 2.0, 1.5]}
    out: dict = {}
    put_ratio(out, "speedup", r)
    assert out == {"speedup": 2.0, "speedup_spread": [1.5, 3.0], "speedup_rounds": 6}
    scaled = ratio(timer, "slow", "fast", scale=0.5, transform=lambda x: 1 - x)
    assert scaled["per_round"] == [0.0, 0.0, -0.5, 0.0, 0.0, 0.25] and scaled["value"] == 0.0
    assert clock.now == sum(fast) + sum(slow)  # every call ran once, the warm-up included


def test_interleaved_flips_the_order_every_round_and_repeats_inner_calls() -> None:
    calls: list[str] = []
    clock = FakeClock()
    fns = {"a": clock.step([0.25], calls, "a"), "b": clock.step([0.5], calls, "b")}
    timer = interleaved(fns, rounds=4, warmup=1, device=torch.device("cpu"), inner={"b": 2}, clock=clock)
    assert timer["order"] == [["a", "b"], ["b", "a"], ["a", "b"], ["b", "a"]]
    assert calls == ["a", "b"] + ["a", "b", "b", "b", "b", "a", "a", "b", "b", "b", "b", "a"]
    # b's two calls a round are timed together and divided: seconds per call, not per round.
    assert timer["seconds"] == {"a": [0.25] * 4, "b": [0.5] * 4}
    # Three steps rotate: over three rounds each runs once in every position.
    three = interleaved(
        {n: clock.step([0.0]) for n in "xyz"}, rounds=3, warmup=0, device=torch.device("cpu"), clock=clock
    )
    assert three["order"] == [["x", "y", "z"], ["y", "z", "x"], ["z", "x", "y"]]
    assert round_order(["p", "q"], 7) == ["q", "p"]
    with pytest.raises(ValueError, match="bench.rounds"):
        interleaved(fns, rounds=0, warmup=0, device=torch.device("cpu"))


def test_median_seconds_and_batch_clock_skip_the_warm_up() -> None:
    clock = FakeClock()
    assert median_seconds(clock.step([9.0, 1.0, 3.0, 2.0]), 1, 3, torch.device("cpu"), clock) == 2.0
    batches = BatchClock(clock)
    trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")))
    for cost in (9.0, 1.0, 3.0, 2.0, 0.0):  # four iterations, then the stamp that closes the last
        batches.on_train_batch_start(trainer, None)
        clock.now += cost
    assert batches.median_interval(warmup=1) == 2.0


def test_the_lightning_host_time_excludes_the_steps_run_inside_its_iteration() -> None:
    """InterleavingClock driven as trainer.fit drives it: the host's iteration is measured between its stamps
    minus the other steps (0.25 s each) that ran inside the interval, whichever side of the host they ran. The
    host's cost differs in every round, so a round mapped to the wrong interval shows too."""
    calls: list[str] = []
    clock = FakeClock()
    interleaving = InterleavingClock(
        {"plain": clock.step([0.25], calls, "plain")},
        rounds=4,
        warmup=1,
        device=torch.device("cpu"),
        clock=clock,
    )
    host = [8.0, 0.5, 0.75, 1.0, 1.25, 8.0]  # warm-up, four rounds, the closing iteration
    assert interleaving.batches == len(host)
    for cost in host:
        interleaving.on_train_batch_start(None, None)
        calls.append("lightning")
        clock.now += cost  # the Lightning step
        interleaving.on_train_batch_end(None, None)
    timer = interleaving.result()
    assert timer["order"] == [["lightning", "plain"], ["plain", "lightning"]] * 2
    # warm-up (plain after the host), then rounds: L P | P L | L P | P L, and the closing iteration
    assert calls == [
        "lightning",
        "plain",
        "lightning",
        "plain",
        "plain",
        "lightning",
        "lightning",
        "plain",
    ] + [
        "plain",
        "lightning",
        "lightning",
    ]
    # Round 0's interval holds two plain calls (round 0's after the host, round 1's before it): without the
    # subtraction it would read 1.0, not 0.5.
    assert timer["seconds"] == {"lightning": [0.5, 0.75, 1.0, 1.25], "plain": [0.25] * 4}
    r = ratio(timer, "lightning", "plain")
    assert r["per_round"] == [2.0, 3.0, 4.0, 5.0] and r["value"] == 3.5


def test_ratios_of_the_json_come_from_the_rounds() -> None:
    """derive(): each ratio is the median of its per-round ratios, with spread and rounds."""
    seconds = {
        "lightning": [1.0, 2.0, 1.1],
        "plain": [0.98, 1.96, 1.1],
        "baseline": [2.0, 3.0, 2.2],
        "plain_bf16": [0.5, 1.0, 0.55],
        "data": [0.1, 0.2, 0.1],
        "matmul_fp32": [0.01, 0.02, 0.011],
        "matmul_bf16": [0.004, 0.008, 0.0044],
    }
    timer = {"rounds": 3, "order": [list(seconds)] * 3, "seconds": seconds}
    timer["median_s"] = {k: sorted(v)[1] for k, v in seconds.items()}
    result = {"precision": "32-true", "flops_per_image": 1e9}
    now: dict = {}
    peaks = {"fp32": Gemm("mm", 1000, 1000, 1000, 2), "bf16": Gemm("conv1x1", 500, 1000, 1000, 1, copies=2)}
    derive(result, now, timer, batch_size=10, peaks=peaks)
    assert result["lightning_overhead"] == pytest.approx(0.02)
    assert result["lightning_overhead_spread"] == pytest.approx([0.0, 0.02])
    assert result["speedup_vs_baseline"] == pytest.approx(2.0) and result["speedup_vs_baseline_rounds"] == 3
    assert result["speedup_vs_baseline_spread"] == pytest.approx([1.5306, 2.0408], rel=1e-3)
    assert result["speedup_bf16_vs_baseline"] == pytest.approx(4.0)
    assert result["data_over_train"] == pytest.approx(10.0)
    # (1e9 x 10 / t_step) / (2e9 / t_matmul) = 5 x t_matmul / t_step (both peaks do 2e9 FLOPs a call)
    assert result["fraction_of_peak"] == pytest.approx(0.05)
    assert result["fraction_of_peak_fp32"] == pytest.approx(5 * 0.01 / 0.98)
    assert result["fraction_of_peak_bf16"] == pytest.approx(0.04)
    assert not any(k.endswith("_refused") for k in result)
    assert now["train_images_per_s"] == pytest.approx(10 / 1.1)
    assert now["peak_fp32_gflops"] == pytest.approx(2e9 / 0.011 / 1e9)  # the median round of the peak GEMM
    assert (now["peak_fp32_kernel"], now["peak_fp32_shape"], now["peak_fp32_threads"]) == (
        "mm",
        "1000x1000x1000",
        "2x1",
    )
    assert (now["peak_bf16_kernel"], now["peak_bf16_shape"], now["peak_bf16_threads"]) == (
        "conv1x1",
        "500x1000x1000",
        "1x2",
    )
    bf16_run = {"precision": "bf16-mixed", "flops_per_image": 1e9}
    timer_bf16 = {
        **timer,
        "seconds": {k: v for k, v in seconds.items() if k not in ("plain_bf16", "matmul_fp32")},
    }
    timer_bf16["median_s"] = {k: timer["median_s"][k] for k in timer_bf16["seconds"]}
    derive(bf16_run, {}, timer_bf16, batch_size=10, peaks=peaks)
    assert bf16_run["speedup_bf16_vs_baseline"] == bf16_run["speedup_vs_baseline"]
    assert "fraction_of_peak_fp32" not in bf16_run and bf16_run["fraction_of_peak"] == pytest.approx(
        5 * 0.0044 / 1.1
    )


def _timer(seconds: dict[str, list[float]]) -> dict:
    """A timer record as :func:`ctx_inpaint.benchmark.timing.interleaved` returns it, from per-round seconds."""
    return {
        "rounds": len(next(iter(seconds.values()))),
        "order": [list(seconds)] * len(next(iter(seconds.values()))),
        "seconds": seconds,
        "median_s": {k: sorted(v)[len(v) // 2] for k, v in seconds.items()},
    }


def test_a_fraction_of_the_peak_above_one_is_refused_and_the_rest_still_comes(capsys) -> None:
    """The fp32 peak GEMM (2e6 FLOPs a call) runs slower than the step: a fraction of 50 is a peak under-measured,
    not a step faster than the machine, so the JSON holds null and the reason, the table says refused, and every
    other figure (the bf16 fraction below 1 included) is still there."""
    timer = _timer(
        {
            "lightning": [1.0, 2.0, 1.1],
            "plain": [0.98, 1.96, 1.1],
            "baseline": [2.0, 3.0, 2.2],
            "plain_bf16": [0.5, 1.0, 0.55],
            "matmul_fp32": [0.01, 0.02, 0.011],
            "matmul_bf16": [0.004, 0.008, 0.0044],
        }
    )
    result = {"name": "l2_0999", "rounds": 3, "precision": "32-true", "flops_per_image": 1e9}
    now: dict = {}
    peaks = {"fp32": Gemm("mm", 100, 100, 100, 2), "bf16": Gemm("mm", 1000, 1000, 1000, 2)}
    derive(result, now, timer, batch_size=10, peaks=peaks)
    for key in ("fraction_of_peak", "fraction_of_peak_fp32"):
        assert result[key] is None and f"{key}_spread" not in result and f"{key}_rounds" not in result
        assert "peak under-measured" in result[f"{key}_refused"]
    assert result["fraction_of_peak_refused"].startswith("50.00 > 1: peak under-measured")
    assert "mm 100x100x100 2x1" in result["fraction_of_peak_refused"]
    assert (
        result["fraction_of_peak_bf16"] == pytest.approx(0.04)
        and "fraction_of_peak_bf16_refused" not in result
    )
    assert result["speedup_vs_baseline"] == pytest.approx(2.0) and result[
        "lightning_overhead"
    ] == pytest.approx(0.02)
    result["machine_now"] = now
    line = json.dumps(result)
    assert '"fraction_of_peak": null' in line and "50.00 > 1" in line

    rows = table_rows(result)
    shown = {label: (value, unit) for label, value, unit in rows}
    value, unit = shown["fraction of peak (Lightning step)"]
    assert value is None and unit.startswith("50.00 > 1: peak under-measured")
    assert shown["fraction of bf16 matmul peak (bare loop)"][0] == pytest.approx(0.04)
    assert shown["float32 peak GEMM"][0] == pytest.approx(2e6 / 0.011 / 1e9)
    cfg = SimpleNamespace(
        name="l2_0999",
        model=SimpleNamespace(lambda_rec=0.999, get=lambda key: None),
        trainer=SimpleNamespace(precision="32-true"),
        bench=SimpleNamespace(batch_size=10),
    )
    print_table(cfg, rows)
    out = capsys.readouterr().out
    assert "     refused  50.00 > 1: peak under-measured" in out
    assert (
        "speed-up vs straightforward fp32" in out and "Lightning overhead" in out and "bf16 peak GEMM" in out
    )
    assert "50.000" not in out  # the refused figure appears only in its reason, never as a table value


def test_the_peak_is_the_best_of_every_gemm_searched() -> None:
    """Every GEMM is timed once a pass (a fresh build, one untimed call, then the timed ones), the order rotated
    each pass; its figure is the median over passes (a pass on a machine slowed 4x does not move it), and the
    peak is the highest, however the search is ordered."""
    clock = FakeClock()
    gemms = [
        Gemm("mm", 4, 4, 4, 2),  # 128 FLOPs: one call covers the n=4 cube
        Gemm("conv1x1", 8, 4, 2, 2),  # 128 FLOPs
        Gemm("mm", 4, 4, 4, 1, copies=2),  # 256 FLOPs
        Gemm("mm", 2, 2, 2, 2),  # 16 FLOPs: 8 calls timed together
    ]
    seconds = {gemms[0].name: 2.0, gemms[1].name: 0.5, gemms[2].name: 1.0, gemms[3].name: 0.015625}
    builds: list[str] = []

    def build(g: Gemm) -> Callable[[], None]:
        builds.append(g.name)
        slowdown = 4.0 if len(gemms) < len(builds) <= 2 * len(gemms) else 1.0  # pass 1 on a slow machine
        return clock.step([8.0, seconds[g.name] * slowdown])  # the untimed first call, then every timed one

    rates = search(gemms, build, passes=3, n=4, device=torch.device("cpu"), clock=clock)
    assert rates == {g.name: g.flops / seconds[g.name] / 1e9 for g in gemms}
    assert list(rates.values()) == [6.4e-8, 2.56e-7, 2.56e-7, 1.024e-6]
    assert best(gemms, rates) == gemms[3]
    assert best(gemms[:3], rates) == gemms[1]  # the first of equals
    assert builds[:4] == [g.name for g in gemms] and builds[4:8] == [g.name for g in gemms[1:] + gemms[:1]]
    assert [calls_per_timing(g, 4) for g in gemms] == [1, 1, 1, 8]
    with pytest.raises(ValueError, match="bench.gemm_passes"):
        search(gemms, build, passes=0, n=4, device=torch.device("cpu"))


def test_gemm_shapes_kernels_and_thread_layouts(monkeypatch) -> None:
    assert parse_shape("n", 2048) == (2048, 2048, 2048)
    assert parse_shape("3n/2", 2048) == (3072, 3072, 3072)
    assert parse_shape("32n x n/2 x n/16", 2048) == (65536, 1024, 128)
    assert parse_shape("100 x 2n x 7", 8) == (100, 16, 7)
    for bad in ("", "n x n", "2m", "n/0", "0", "x n x n", "n x n x n x n"):
        with pytest.raises(ValueError, match="bench.gemm_shapes: cannot read"):
            parse_shape(bad, 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    found = candidates(["n", "2n x n x n/2"], ["mm", "conv1x1"], ["all", "one_each"], 8, torch.device("cpu"))
    assert [g.name for g in found] == [
        "mm 8x8x8 2x1",
        "mm 8x8x8 1x2",
        "conv1x1 8x8x8 2x1",
        "conv1x1 8x8x8 1x2",
        "mm 16x8x4 2x1",
        "mm 16x8x4 1x2",
        "conv1x1 16x8x4 2x1",
        "conv1x1 16x8x4 1x2",
    ]
    assert found[1].flops == 2 * 2 * 8**3
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # one thread: one_each is all
    assert [g.name for g in candidates(["n"], ["mm"], ["all", "one_each"], 8, torch.device("cpu"))] == [
        "mm 8x8x8 1x1"
    ]
    with pytest.raises(ValueError, match="bench.gemm_kernels"):
        candidates(["n"], ["gemv"], ["all"], 8, torch.device("cpu"))
    with pytest.raises(ValueError, match="bench.gemm_threads"):
        candidates(["n"], ["mm"], [], 8, torch.device("cpu"))


def test_the_gemms_compute_their_product_and_the_team_runs_one_thread_each() -> None:
    """What the search times is the product it is credited with, on one torch thread per team member, and the
    caller's thread count is left as it was."""
    threads = torch.get_num_threads()
    team = ThreadTeam(2)
    try:
        assert torch.get_num_threads() == threads
        seen: list[int] = []
        team.run([lambda: seen.append(torch.get_num_threads())] * 2)
        assert seen == [1, 1]
        later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        later.start()
        later.join()
        assert seen[-1] == threads  # a thread started later gets the caller's count, not the team's
        for kernel in peak.KERNELS:
            out = peak.one_product(Gemm(kernel, 32, 8, 4, 1), torch.float32, torch.device("cpu"))()
            assert out.numel() == 32 * 4 and out.abs().sum() > 0  # M x N sums of K products
            peak.gemm_fn(Gemm(kernel, 32, 8, 4, 1, copies=2), torch.float32, torch.device("cpu"), team)()
        with pytest.raises(ValueError, match="needs a team"):
            peak.gemm_fn(Gemm("mm", 4, 4, 4, 1, copies=2), torch.float32, torch.device("cpu"), None)
        with pytest.raises(ZeroDivisionError):  # a member's error reaches the caller
            team.run([lambda: 1 / 0])
    finally:
        team.close()
    assert torch.get_num_threads() == threads


def _cpuinfo(
    flags: str, cpus: list[tuple[int, int]], vendor: str = "AuthenticAMD", family: int = 25
) -> tuple:
    """Fake /proc/cpuinfo: one block per (processor, core id)."""
    lines: list[str] = []
    for processor, core in cpus:
        lines += [
            f"processor\t: {processor}",
            f"vendor_id\t: {vendor}",
            f"cpu family\t: {family}",
            "model name\t: Test CPU",
            "cpu MHz\t\t: 2445.432",
            "physical id\t: 0",
            f"core id\t\t: {core}",
            f"flags\t\t: fpu sse sse2 {flags}",
            "",
        ]
    return tuple(lines)


@pytest.mark.parametrize(
    ("flags", "vendor", "family", "per_cycle", "words"),
    [
        ("avx avx2 fma", "AuthenticAMD", 25, 32, "AVX2 FMA: 2 FMA units x 8 fp32 lanes x 2"),
        (
            "avx avx2 fma avx512f avx512_bf16",
            "AuthenticAMD",
            25,
            32,
            "Zen 4",
        ),  # 512 bits on a 256-bit datapath
        ("avx avx2 fma avx512f", "AuthenticAMD", 26, 64, "assuming 2 units of 512 bits"),
        ("avx avx2 fma avx512f avx512_bf16 amx_bf16", "GenuineIntel", 6, 64, "assuming 2 units of 512 bits"),
        ("avx", "GenuineIntel", 6, 16, "AVX without FMA"),
    ],
)
def test_theoretical_peak_from_flags_and_clock(
    monkeypatch, tmp_path, flags, vendor, family, per_cycle, words
) -> None:
    """cores x GHz x FLOP/cycle: two logical CPUs on two cores, 2445.432 MHz from /proc/cpuinfo (no sysfs)."""
    monkeypatch.setattr(machine, "_cpuinfo_lines", lambda: _cpuinfo(flags, [(0, 0), (1, 1)], vendor, family))
    monkeypatch.setattr(peak, "MAX_FREQ", tmp_path / "absent")
    out = peak.theoretical(torch.device("cpu"), cpus={0, 1})
    assert out["theoretical_fp32_gflops"] == pytest.approx(2 * 2.445432 * per_cycle)
    basis = out["theoretical_basis"]
    assert (
        basis.startswith(f"2 cores x 2.445 GHz (/proc/cpuinfo cpu MHz) x {per_cycle} fp32 FLOP/cycle")
        and words in basis
    )
    bf16 = {"amx_bf16": 1024, "avx512_bf16": 2 * per_cycle}
    expected = next((v for k, v in bf16.items() if k in flags.split()), None)
    assert out.get("theoretical_bf16_gflops") == (
        None if expected is None else pytest.approx(2 * 2.445432 * expected)
    )


def test_theoretical_peak_counts_cores_not_smt_siblings_and_prefers_the_max_clock(
    monkeypatch, tmp_path
) -> None:
    """Four logical CPUs on two cores (SMT siblings share the FMA units); sysfs's cpuinfo_max_freq (kHz) wins over
    cpu MHz; the process's CPUs only; no clock, no theoretical peak; none for CUDA."""
    lines = _cpuinfo("avx avx2 fma", [(0, 0), (1, 1), (2, 0), (3, 1)])
    monkeypatch.setattr(machine, "_cpuinfo_lines", lambda: lines)
    (tmp_path / "max").write_text("3500000\n")
    monkeypatch.setattr(peak, "MAX_FREQ", tmp_path / "max")
    out = peak.theoretical(torch.device("cpu"), cpus={0, 1, 2, 3})
    assert out["theoretical_fp32_gflops"] == pytest.approx(2 * 3.5 * 32)
    assert "2 cores x 3.500 GHz (cpuinfo_max_freq)" in out["theoretical_basis"]
    assert peak.theoretical(torch.device("cpu"), cpus={0, 2})["theoretical_fp32_gflops"] == pytest.approx(
        3.5 * 32
    )
    monkeypatch.setattr(peak, "MAX_FREQ", tmp_path / "absent")
    monkeypatch.setattr(
        machine, "_cpuinfo_lines", lambda: tuple(x for x in lines if not x.startswith("cpu MHz"))
    )
    assert peak.theoretical(torch.device("cpu")) == {
        "theoretical_basis": "unknown: no clock in /proc/cpuinfo or sysfs"
    }
    assert peak.theoretical(torch.device("cuda")) == {"theoretical_basis": "not computed for cuda"}


def test_measured_over_theoretical_is_refused_above_one() -> None:
    """A GEMM faster than the theoretical peak says the clock read (or the FLOP/cycle assumption) is wrong."""
    result = {"precision": "32-true", "theoretical_fp32_gflops": 100.0, "theoretical_basis": "2 cores x ..."}
    now = {"peak_fp32_gflops": 150.0, "achieved_gflops": 50.0, "peak_bf16_gflops": 10.0}
    for dt in ("fp32", "bf16"):
        now.update({f"peak_{dt}_kernel": "mm", f"peak_{dt}_shape": "8x8x8", f"peak_{dt}_threads": "2x1"})
    of_theoretical(result, now)
    assert now["peak_fp32_of_theoretical"] is None
    assert now["peak_fp32_of_theoretical_refused"].startswith("1.50 > 1: the peak GEMM ran faster")
    assert "2 cores x ..." in now["peak_fp32_of_theoretical_refused"]
    assert now["achieved_of_theoretical"] == 0.5
    assert "peak_bf16_of_theoretical" not in now  # no bf16 ceiling known
    rows = {label: (value, unit) for label, value, unit in table_rows({**result, "machine_now": now})}
    assert rows["float32 peak GEMM / theoretical"][0] is None and rows["achieved / theoretical"][0] == 0.5


def test_precision_auto_is_resolved_for_every_step(monkeypatch, tiny_cfg) -> None:
    """``trainer.precision: auto`` becomes bf16-mixed on a bf16 CPU and 32-true elsewhere (Lightning's Trainer
    knows no auto; machine.resolve_precision decides); null and 32 are float32, 32-true."""
    cpu = torch.device("cpu")
    assert precision_choice(None, cpu)[0] == "32-true" and precision_choice(32, cpu)[0] == "32-true"
    for flags, expected in ((frozenset({"avx512_bf16"}), "bf16-mixed"), (frozenset({"avx2"}), "32-true")):
        monkeypatch.setattr(machine, "cpu_flags", lambda flags=flags: flags)
        assert resolved_precision("auto", cpu) == expected
        assert (
            resolved_precision("32-true", cpu) == "32-true"
            and resolved_precision("bf16-mixed", cpu) == "bf16-mixed"
        )
    cfg = tiny_cfg("+experiment=l2_0999", "trainer.precision=auto")
    resolved, line = with_resolved_precision(cfg, cpu.type)
    assert resolved.trainer.precision == "32-true" and cfg.trainer.precision == "auto"
    assert line == "precision: auto -> 32-true (no native bf16 on cpu)"
    assert with_resolved_precision(resolved, cpu.type) == (resolved, "")
    calls = []

    def resolve(value, accelerator):  # ctx_inpaint.common.machine.resolve_precision's contract
        calls.append((value, accelerator))
        return ("bf16-mixed", "because") if value == "auto" else (value, "set explicitly")

    monkeypatch.setattr(machine, "resolve_precision", resolve)
    assert precision_choice("auto", cpu) == ("bf16-mixed", "because") and calls == [("auto", "cpu")]
    assert resolved_precision("32-true", cpu) == "32-true"


def test_the_bench_json_shows_precision_auto_resolved_and_refuses_an_under_measured_peak(
    monkeypatch, tmp_path, capsys
) -> None:
    """The command on a (faked) bf16 CPU with trainer.precision=auto: the JSON says bf16-mixed, as the steps ran.
    The peak is a 1x1x1 matmul (bench.gemm_size=1), far below the step: both fractions are refused, and the
    table and the JSON still come with every other figure."""
    monkeypatch.setenv("CTX_INPAINT_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"avx2", "fma", "avx512_bf16"}))
    out_json = tmp_path / "bench.json"
    argv = [
        "+experiment=l2_0999",
        *TINY_BENCH,
        "trainer.precision=auto",
        "bench.measure=[plain,baseline]",
        "bench.rounds=2",
        "bench.gemm_size=1",
        "bench.gemm_shapes=[1]",
        "bench.gemm_kernels=[mm]",
        "bench.gemm_threads=[all]",
        "bench.gemm_passes=1",
        f"bench.out_json={out_json}",
    ]
    assert run_command("bench", argv) == 0
    printed = capsys.readouterr().out
    result = json.loads(out_json.read_text())
    assert json.loads(printed.strip().splitlines()[-1]) == result
    assert result["precision"] == "bf16-mixed" and result["precision_setting"] == "auto"
    assert "bf16" in result["precision_reason"]
    assert "precision=bf16-mixed (auto)" in printed
    for key in ("fraction_of_peak", "fraction_of_peak_bf16"):
        assert result[key] is None and "> 1: peak under-measured" in result[f"{key}_refused"]
    assert result["speedup_vs_baseline"] > 0 and result["speedup_vs_baseline_rounds"] == 2
    now = result["machine_now"]
    assert now["peak_bf16_shape"] == "1x1x1" and now["plain_images_per_s"] > 0 and now["bf16_gemm_gflops"] > 0
    assert " refused  " in printed and "speed-up vs straightforward fp32" in printed


def test_three_runs_agree_or_fail_on_the_worst_ratio(tmp_path: Path) -> None:
    def run(speedup: float, overhead: float) -> dict:
        return {
            "name": "l2_0999",
            "speedup_vs_baseline": speedup,
            "speedup_vs_baseline_spread": [speedup - 0.1, speedup + 0.1],
            "speedup_vs_baseline_rounds": 10,
            "lightning_overhead": overhead,
            "lightning_overhead_spread": [overhead - 0.01, overhead + 0.01],
            "lightning_overhead_rounds": 10,
            "machine_now": {"measured_at": "now", "train_images_per_s": 30.0},
        }

    paths = []
    for i, (s, o) in enumerate([(2.0, 0.01), (2.1, 0.03), (1.95, -0.01)]):
        paths.append(tmp_path / f"run{i}.json")
        paths[-1].write_text(json.dumps(run(s, o)) + "\n")
    out = tmp_path / "three.md"
    assert agreement.main([str(out), *map(str, paths)]) == 0  # 2.1 / 1.95 - 1 = 7.7 %; overhead 0.99..1.01
    text = out.read_text()
    assert "**PASS**" in text and "| speedup_vs_baseline | 2.0000 [1.900..2.100] | 2.1000" in text
    assert "1 - value" in text and "7.7%" in text
    paths[1].write_text(json.dumps(run(2.4, 0.01)) + "\n")
    assert agreement.main([str(out), *map(str, paths)]) == 1
    assert "**FAIL**" in out.read_text()


def test_summary_prints_ratios_with_spread_and_reads_older_files(tmp_path: Path) -> None:
    new = {
        "name": "l2_0999",
        "batch_size": 64,
        "rounds": 10,
        "speedup_vs_baseline": 2.05,
        "speedup_vs_baseline_spread": [1.9, 2.2],
        "speedup_vs_baseline_rounds": 10,
        "machine_now": {"train_images_per_s": 40.0, "measured_at": "2026-12-02T07:30:00+00:00"},
    }
    old = {"name": "l2_1", "batch_size": 64, "speedup_vs_baseline": 2.45, "train_images_per_s": 61.8}
    (tmp_path / "bench_l2_0999.json").write_text(json.dumps(new))
    (tmp_path / "bench_l2_1.json").write_text(json.dumps(old))
    text = write_summary(tmp_path).read_text()
    assert (
        "| speed-up vs straightforward fp32 | >= 2.0 | 2.050 [1.900..2.200] n=10 (met) | 2.450 (met) |"
        in text
    )
    assert "| 40.0 | 61.8 |" in text and "measured 2026-12-02T07:30:00+00:00. Ratios: median" in text


def test_sizes_flag_expands_to_the_sweep() -> None:
    assert expand_sizes_flag(["bench", "--sizes", "a=1"]) == ["bench", "a=1", "bench.sizes=[16,32,64,128]"]
    assert expand_sizes_flag(["bench", "a=1"]) == ["bench", "a=1"]


@pytest.mark.parametrize("flags", [frozenset(), frozenset({"avx512_bf16"}), frozenset({"amx_bf16"})])
def test_bf16_auto_follows_the_one_machine_description(monkeypatch, flags: frozenset[str]) -> None:
    """``bench.bf16=auto`` asks ctx_inpaint.common.machine (the CPU's flags), as the precision choice does."""
    monkeypatch.setattr("ctx_inpaint.common.machine.cpu_flags", lambda: flags)
    assert want_bf16("auto", torch.device("cpu")) == bool(flags)
    assert want_bf16("true", torch.device("cpu")) and not want_bf16("false", torch.device("cpu"))
    with pytest.raises(ValueError, match="bench.bf16: expected auto, true or false"):
        want_bf16("maybe", torch.device("cpu"))


def test_the_bench_record_describes_the_machine_under_the_keys_its_readers_know() -> None:
    info = machine_fields()
    assert info["cpu"] and info["cpu_count"] == os.cpu_count() and info["torch"] == torch.__version__
    assert info["threads"] == info["torch_threads"] == torch.get_num_threads()


def test_overrides_follow_hydra_add_rule(tiny_cfg) -> None:
    """A plain key must exist (a typo would time an unchanged config); ``+key`` adds; the baseline list skips."""
    cfg = tiny_cfg("+experiment=l2_0999")
    with pytest.raises(ValueError, match=r"model.chanels_last is not in the composed config; write \+"):
        with_overrides(cfg, ["model.chanels_last=true"])
    assert with_overrides(cfg, ["+optim.generator.foreach=true"]).optim.generator.foreach is True
    assert "chanels_last" not in with_overrides(cfg, ["model.chanels_last=true"], skip_missing=True).model


def test_straightforward_config_turns_every_speed_option_off(tiny_cfg) -> None:
    cfg = tiny_cfg("+experiment=l2_0999", "model.channels_last=true", "trainer.precision=bf16-mixed")
    from omegaconf import OmegaConf, open_dict

    with open_dict(cfg):
        cfg.bench = OmegaConf.create(
            {
                "baseline_overrides": [
                    "model.channels_last=false",
                    "trainer.precision=32-true",
                    "model.bottleneck.matmul=false",
                    "optim.generator.fused=null",
                    "optim.generator.foreach=null",
                ]
            }
        )
    base = straightforward_config(cfg)
    assert base.model.channels_last is False and base.trainer.precision == "32-true"
    assert base.model.bottleneck.matmul is False
    assert cfg.optim.generator.fused is True and base.optim.generator.fused is None
    assert "foreach" not in base.optim.generator  # absent keys are skipped, not added
    assert cfg.model.channels_last is True  # the original is untouched


def _first_batch(cfg):
    """The config's mask generator and the first batch of its training loader."""
    masks = instantiate(cfg.masks)
    dm = instantiate(cfg.data, masks=masks)
    dm.setup("fit")
    return masks, next(iter(dm.train_dataloader()))


@pytest.mark.parametrize(
    "option",
    [
        "model.lambda_rec=0.999",
        "model.channels_last=true",
        "model.ssim_weight=0.5",
        "trainer.precision=bf16-mixed",
    ],
)
def test_plain_loop_matches_the_lightning_step(tiny_cfg, option: str) -> None:
    """One step of the bare loop (under the autocast the bench puts around it) leaves both networks exactly where
    the LightningModule's step leaves them, in float32 and in bf16-mixed."""
    cfg = with_resolved_precision(tiny_cfg("+experiment=l2_0999", option), "cpu")[0]  # as the bench
    masks, batch = _first_batch(cfg)

    torch.manual_seed(0)
    lit = build_module(cfg, masks)
    torch.manual_seed(0)
    bare = build_module(cfg, masks)
    assert all(torch.equal(a, b) for a, b in zip(lit.parameters(), bare.parameters()))

    trainer = instantiate(
        cfg.trainer,
        logger=False,
        callbacks=[],
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_train_batches=1,
        limit_val_batches=0,
        max_epochs=1,
    )
    trainer.fit(lit, train_dataloaders=repeated_loader(batch, 1))
    bare.apply_speed_settings(torch.device("cpu"))
    with autocast_for(cfg.trainer.precision, torch.device("cpu")):
        plain_step(parts_from_module(bare), bare.format_batch(batch), toggle=True)
    nhwc = lit.generator.encoder.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert nhwc == (option == "model.channels_last=true")  # the option reached the trained networks
    for (name, a), b in zip(lit.named_parameters(), bare.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    moved = [not torch.equal(a, b) for a, b in zip(lit.parameters(), build_module(cfg, masks).parameters())]
    assert any(moved)


@pytest.mark.parametrize(
    "encoder", [PaperEncoder(32, 8), AlexNetEncoder(32, resize_to=67, widths=(8, 8, 8, 8, 8))]
)
def test_dense_layers_as_gemm_equal_the_convolutions(encoder) -> None:
    torch.manual_seed(0)
    g = Generator(encoder, partial(DenseBottleneck, units=16), partial(Decoder, width=8), 16).double()
    x = torch.randn(3, 3, 32, 32, dtype=torch.double)
    grads = []
    for matmul in (True, False):
        assert set_matmul(g, matmul) == 2
        g.zero_grad()
        y = g(x)
        y.square().sum().backward()
        grads.append((y.detach(), [p.grad.clone() for p in g.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b)


def test_channels_last_option_keeps_outputs(tiny_cfg) -> None:
    cfg = tiny_cfg("+experiment=l2_1")
    masks = instantiate(cfg.masks)
    torch.manual_seed(0)
    plain = build_module(cfg, masks).eval()
    assert cfg.model.channels_last == "auto"
    plain.apply_speed_settings(torch.device("cpu"))  # auto: NHWC only on CUDA
    assert plain.generator.encoder.net[0].weight.is_contiguous()
    cfg.model.channels_last = True
    torch.manual_seed(0)
    fast = build_module(cfg, masks).eval()
    fast.configure_model()
    conv = fast.generator.encoder.net[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    batch = fast.format_batch({"masked": torch.randn(2, 3, 32, 32), "mask": torch.ones(2, 1, 32, 32)})
    assert batch["masked"].is_contiguous(memory_format=torch.channels_last)
    assert batch["mask"].is_contiguous()  # only image tensors change format
    with torch.no_grad():
        torch.testing.assert_close(
            fast(batch["masked"]), plain(batch["masked"].contiguous()), rtol=1e-4, atol=1e-5
        )


# ---- the prepared cache -----------------------------------------------------------------------------------
def test_prepared_cache_is_built_reused_and_invalidated(tmp_path: Path) -> None:
    files = write_images(tmp_path / "photos", 4, size=(90, 60), ext="jpg")
    cache = tmp_path / "cache"
    first = PreparedImages(files, 48, 32, cache)
    assert first.built and len(first) == 4
    reference = ImageStore(files, 48, 32, cache=False)
    for i in range(4):
        assert torch.equal(first[i], reference[i])
    assert first[0].shape == (3, 48, 72)

    again = PreparedImages(files, 48, 32, cache)
    assert not again.built and again.dir == first.dir
    assert torch.equal(again[2], first[2])

    resized = PreparedImages(files, 40, 32, cache)  # another short side: another cache, built afresh
    assert resized.built and resized.dir != first.dir
    assert resized[0].shape == (3, 40, 60)
    assert not PreparedImages(files, 48, 32, cache).built  # the first one is still valid

    write_images(tmp_path / "photos", 1, size=(60, 90), seed=7, ext="jpg")  # photo 0 replaced by a portrait
    os.utime(files[0], ns=(1, 1))  # a different mtime even on coarse-clock file systems
    changed = PreparedImages(files, 48, 32, cache)
    assert changed.built and changed.dir == first.dir
    assert changed[0].shape == (3, 72, 48)


def test_datamodule_serves_crops_from_the_prepared_cache(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    write_images(root, 6, size=(70, 50))
    batches = []
    for prepared in (str(tmp_path / "cache"), None):
        dm = make_dm(root, prepared_dir=prepared, cache_images=False, val_crops_per_image=1)
        dm.prepare_data()
        dm.setup("fit")
        assert isinstance(dm.train_set.store, PreparedImages) == (prepared is not None)
        torch.manual_seed(3)
        batches.append(next(iter(dm.train_dataloader())))
    assert len([d for d in (tmp_path / "cache").iterdir() if d.is_dir()]) == 2  # the train and the val cache
    for key in ("image", "masked", "mask", "weight"):
        assert torch.equal(batches[0][key], batches[1][key])


def test_the_gan_step_runs_three_discriminator_passes_and_steps_both_networks(tiny_cfg) -> None:
    """D on the real region and the detached prediction, then a fresh D forward for the G loss."""
    cfg = tiny_cfg("+experiment=l2_0999", "model.lambda_rec=0.5")
    masks, batch = _first_batch(cfg)
    torch.manual_seed(0)
    module = build_module(cfg, masks)
    calls = []
    module.discriminator.register_forward_hook(lambda *_, calls=calls: calls.append(1))
    nets = (module.generator, module.discriminator)
    before = [[p.detach().clone() for p in net.parameters()] for net in nets]
    logs = plain_step(parts_from_module(module), batch)
    assert len(calls) == 3
    assert set(logs) == {"loss_d", "d_real", "d_fake", "loss_adv", "loss_rec", "loss_g"}
    for net, old in zip(nets, before):
        assert any(not torch.equal(a, b) for a, b in zip(old, net.parameters()))
