"""The benchmark command, its bare PyTorch loop, the dense-layer GEMM path and the prepared photo cache."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from ctx_inpaint.bench import _expand_sizes_flag
from ctx_inpaint.config import build_module
from ctx_inpaint.data.datasets import ImageStore
from ctx_inpaint.data.prepared import PreparedImages
from ctx_inpaint.models.bottlenecks import DenseBottleneck
from ctx_inpaint.models.decoders import Decoder
from ctx_inpaint.models.dense import set_matmul
from ctx_inpaint.models.encoders import AlexNetEncoder, PaperEncoder
from ctx_inpaint.models.generator import Generator
from ctx_inpaint.perf.lightning_runs import repeated_loader
from ctx_inpaint.perf.loops import parts_from_module, plain_step
from ctx_inpaint.perf.measure import straightforward_config, with_overrides
from tests.conftest import TINY, write_images
from tests.test_data import make_dm

ROOT = Path(__file__).resolve().parent.parent

BENCH_KEYS = [
    "train_images_per_s",
    "plain_images_per_s",
    "baseline_fp32_images_per_s",
    "speedup_vs_baseline",
    "data_images_per_s",
    "end_to_end_images_per_s",
    "infer_ms_per_image",
    "infer_ms_per_image_b1",
    "infer_ms_per_image_b4",
    "flops_per_image",
    "achieved_gflops",
    "sgemm_gflops",
    "fraction_of_peak",
]

TINY_BENCH = [
    *TINY,
    "model.discriminator.width=8",
    "bench.batch_size=4",
    "bench.warmup=1",
    "bench.repeats=2",
    "bench.data_batches=4",
    "bench.fit_batches=2",
    "bench.infer_batches=[1,4]",
    "bench.infer_repeats=2",
    "bench.gemm_size=128",
]


@pytest.mark.slow
def test_bench_cli_prints_every_key_and_sweeps_sizes(tmp_path: Path) -> None:
    env = {**os.environ, "CTX_INPAINT_LOG_DIR": str(tmp_path / "logs"), "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "ctx_inpaint.bench", "+experiment=l2_0999", *TINY_BENCH, "--sizes"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    for key in BENCH_KEYS:
        assert isinstance(result[key], float) and result[key] > 0 and math.isfinite(result[key]), key
    assert math.isfinite(result["lightning_overhead"])
    assert result["lightning_overhead"] == pytest.approx(
        1 - result["train_images_per_s"] / result["plain_images_per_s"]
    )
    assert sorted(int(k) for k in result["sizes"]) == [16, 32, 64, 128]
    assert all(v["ms_per_step"] > 0 for v in result["sizes"].values())
    assert "fraction of peak" in done.stdout  # the table precedes the JSON line
    written = list((tmp_path / "logs" / "bench").glob("*/bench.json"))
    assert len(written) == 1 and json.loads(written[0].read_text()) == result


def test_sizes_flag_expands_to_the_sweep() -> None:
    assert _expand_sizes_flag(["bench", "--sizes", "a=1"]) == ["bench", "a=1", "bench.sizes=[16,32,64,128]"]
    assert _expand_sizes_flag(["bench", "a=1"]) == ["bench", "a=1"]


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
