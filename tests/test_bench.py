"""The benchmark command, its bare PyTorch loop, the dense-layer GEMM path and the prepared photo cache."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate

from ctx_inpaint.benchmark.lightning_runs import BatchClock, InterleavingClock, repeated_loader
from ctx_inpaint.benchmark.loops import parts_from_module, plain_step
from ctx_inpaint.benchmark.measure import derive, straightforward_config, want_bf16, with_overrides
from ctx_inpaint.benchmark.run import expand_sizes_flag, machine_fields
from ctx_inpaint.benchmark.timing import interleaved, median_seconds, put_ratio, ratio, round_order
from ctx_inpaint.config.build import build_module
from ctx_inpaint.data.datasets import ImageStore
from ctx_inpaint.data.prepared import PreparedImages
from ctx_inpaint.models.bottlenecks import DenseBottleneck
from ctx_inpaint.models.decoders import Decoder
from ctx_inpaint.models.dense import set_matmul
from ctx_inpaint.models.encoders import AlexNetEncoder, PaperEncoder
from ctx_inpaint.models.generator import Generator
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
    cmd = [sys.executable, "-m", "ctx_inpaint.bench", "+experiment=l2_0999", *TINY_BENCH, "bench.bf16=true"]
    done = subprocess.run([*cmd, "--sizes"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["rounds"] == 3 and result["precision"] == "32-true"
    for key in RATIO_KEYS:
        value, (lo, hi) = result[key], result[f"{key}_spread"]
        assert isinstance(value, float) and math.isfinite(value), key
        assert lo <= value <= hi and result[f"{key}_rounds"] == 3, key
    for key in ("speedup_vs_baseline", "speedup_bf16_vs_baseline", "data_over_train", "fraction_of_peak"):
        assert result[key] > 0, key
    assert result["lightning_overhead"] < 1
    assert result["fraction_of_peak_fp32"] > 0 and result["fraction_of_peak_bf16"] > 0
    now = result["machine_now"]
    assert "not reproducible" in now["note"] and now["measured_at"]
    for key in MACHINE_KEYS:
        assert isinstance(now[key], float) and now[key] > 0 and math.isfinite(now[key]), key
    assert result["flops_per_image"] > 0 and result["discriminator_params"] > 0
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
    derive(result, now, timer, batch_size=10, gemm_size=100)
    assert result["lightning_overhead"] == pytest.approx(0.02)
    assert result["lightning_overhead_spread"] == pytest.approx([0.0, 0.02])
    assert result["speedup_vs_baseline"] == pytest.approx(2.0) and result["speedup_vs_baseline_rounds"] == 3
    assert result["speedup_vs_baseline_spread"] == pytest.approx([1.5306, 2.0408], rel=1e-3)
    assert result["speedup_bf16_vs_baseline"] == pytest.approx(4.0)
    assert result["data_over_train"] == pytest.approx(10.0)
    # (1e9 x 10 / t_step) / (2e6 / t_matmul) = 5000 x t_matmul / t_step
    assert result["fraction_of_peak"] == pytest.approx(50.0)
    assert result["fraction_of_peak_fp32"] == pytest.approx(5000 * 0.01 / 0.98)
    assert result["fraction_of_peak_bf16"] == pytest.approx(40.0)
    assert now["train_images_per_s"] == pytest.approx(10 / 1.1) and now["sgemm_gflops"] == pytest.approx(
        2e6 / 0.011 / 1e9
    )
    bf16_run = {"precision": "bf16-mixed", "flops_per_image": 1e9}
    timer_bf16 = {
        **timer,
        "seconds": {k: v for k, v in seconds.items() if k not in ("plain_bf16", "matmul_fp32")},
    }
    timer_bf16["median_s"] = {k: timer["median_s"][k] for k in timer_bf16["seconds"]}
    derive(bf16_run, {}, timer_bf16, batch_size=10, gemm_size=100)
    assert bf16_run["speedup_bf16_vs_baseline"] == bf16_run["speedup_vs_baseline"]
    assert "fraction_of_peak_fp32" not in bf16_run and bf16_run["fraction_of_peak"] == pytest.approx(
        5000 * 0.0044 / 1.1
    )


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
    ],
)
def test_plain_loop_matches_the_lightning_step(tiny_cfg, option: str) -> None:
    """One step of the bare loop leaves both networks exactly where the LightningModule's step leaves them."""
    cfg = tiny_cfg("+experiment=l2_0999", option)
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
