"""The ablation suite: every experiment composes, trains (fast_dev_run) and differs from l2_0999 only in its axis;
sweeps and budgets cover them identically; the SLURM launcher config composes and submitit runs a job."""

from __future__ import annotations

import functools
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from ctx_inpaint.config.build import build_module
from ctx_inpaint.config.compose import CONFIG_DIR
from ctx_inpaint.inference.loading import load_model
from ctx_inpaint.models import AlexNetEncoder, ChannelwiseFC, DenseBottleneck, PaperEncoder
from ctx_inpaint.training.run import train
from tests.conftest import TINY as SHARED_TINY

CONF = Path(CONFIG_DIR)
REPO = CONF.parent
ALL_EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
# The ablation suite: experiments with `ablation` metadata (campus_cpu, the CPU training recipe, has none).
EXPERIMENTS = [
    e for e in ALL_EXPERIMENTS if yaml.safe_load((CONF / "experiment" / f"{e}.yaml").read_text())["ablation"]
]
ISSUE_LIST = {
    "l2_0", "l2_05", "l2_09", "l2_0999", "l2_09999", "l2_1", "l1_0999", "sgd", "lr_scheduler",
    "alexnet_l2", "alexnet_adv", "cwfc", "extra_layer", "random_patches", "random_region",
}  # fmt: skip
# What each axis may change relative to l2_0999 (dotted prefixes of the resolved config).
AXIS_KEYS = {
    "l2_weight": ("model.lambda_rec", "model.discriminator"),
    "rec_loss": ("model.rec_loss",),
    "optimizer": ("optim.",),
    "architecture": ("model.encoder.", "model.bottleneck.", "model.decoder."),
    "masks": ("masks.",),
}
# Experiments built on another ablation's setting, allowed that axis too (the paper trained AlexNet L2-only).
ALSO = {"alexnet_l2": "l2_weight"}
METADATA = (
    "name",
    "tags",
    "ablation.",
    "logger.wandb.name",
    "logger.wandb.tags",
)  # who it is, not what it does
SWEEPS = {"l2_weights", "losses", "optimizers", "architecture", "masks", "all"}

# The shared tiny data/trainer overrides; widths and mask sizes are shrunk per experiment by _shrink (the mask
# and network keys differ between experiments, e.g. random masks have no target_size).
TINY = list(SHARED_TINY)


def _compose(overrides: list[str], output_dir: Path, hydra_cfg: bool = False):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=hydra_cfg)
    GlobalHydra.instance().clear()
    if not hydra_cfg:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg


def _shrink(cfg) -> None:
    """Tiny widths for every network the experiment builds (the AlexNet encoder too)."""
    with open_dict(cfg):
        model, masks = cfg.model, cfg.masks
        if "width" in model.encoder:
            model.encoder.width = 8
        if "widths" in model.encoder:
            model.encoder.widths = [8, 8, 8, 8, 8]
        if "units" in model.bottleneck:
            model.bottleneck.units = 32
        model.decoder.width = 8
        if model.get("discriminator") is not None:
            model.discriminator.width = 8
        if "target_size" in masks:
            masks.target_size, masks.overlap = 16, 2
        if "max_patches" in masks:
            masks.min_size, masks.max_size = 4, 12


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        if not node:
            return {prefix: {}}
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


@functools.cache
def _resolved(experiment: str, *extra: str) -> dict[str, Any]:
    """Flat resolved config (cached: composing is the slow part); the output dir is never written to."""
    cfg = _compose([f"+experiment={experiment}", *extra], Path("/nonexistent/run"))
    return _flat(OmegaConf.to_container(cfg, resolve=True))


def test_every_listed_experiment_exists() -> None:
    assert ISSUE_LIST <= set(EXPERIMENTS), ISSUE_LIST - set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_file_header_and_metadata(name: str) -> None:
    text = (CONF / "experiment" / f"{name}.yaml").read_text()
    data = yaml.safe_load(text)
    assert text.startswith("# @package _global_\n")
    assert f"python -m ctx_inpaint.train +experiment={name}" in text
    assert data["name"] == name
    axis = data["ablation"]["axis"]
    assert axis in AXIS_KEYS or (name == "l2_0999" and axis == "baseline")
    assert axis in data["tags"]
    # The seed report's PSNR(s) in the header comment and in ablation.seed_psnr agree.
    line = next(ln for ln in text.splitlines() if ln.startswith("# Seed report PSNR"))
    header_values = [float(v) for v in re.findall(r"\d+\.\d+", line)]
    assert header_values == [float(v) for v in data["ablation"]["seed_psnr"]]


@pytest.mark.parametrize("name", [e for e in EXPERIMENTS if e != "l2_0999"])
def test_experiment_differs_from_l2_0999_only_in_its_axis(name: str, tmp_path: Path) -> None:
    base = _resolved("l2_0999", "+budget=cpu")
    other = _resolved(name, "+budget=cpu")
    axis = other["ablation.axis"]
    allowed = AXIS_KEYS[axis] + (AXIS_KEYS[ALSO[name]] if name in ALSO else ())
    changed = {k for k in base.keys() | other.keys() if base.get(k, "<missing>") != other.get(k, "<missing>")}
    changed = {k for k in changed if not k.startswith(METADATA) and k not in METADATA}
    assert changed, f"{name} does not change anything"
    outside = {k for k in changed if not any(k == p.rstrip(".") or k.startswith(p) for p in allowed)}
    assert not outside, f"{name} ({axis}) also changes {sorted(outside)}"
    assert any(k.startswith(AXIS_KEYS[axis]) or k in AXIS_KEYS[axis] for k in changed)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_builds_what_it_says_and_runs_fast_dev_run(name: str, tmp_path: Path) -> None:
    cfg = _compose([f"+experiment={name}", *TINY, "trainer.fast_dev_run=true"], tmp_path / "run")
    _shrink(cfg)
    masks = instantiate(cfg.masks)
    module = build_module(cfg, masks)
    encoder, bottleneck = module.generator.encoder, module.generator.bottleneck
    assert isinstance(encoder, AlexNetEncoder if name.startswith("alexnet") else PaperEncoder)
    assert isinstance(
        bottleneck, ChannelwiseFC if name in ("cwfc", "alexnet_l2", "alexnet_adv") else DenseBottleneck
    )
    assert (module.discriminator is None) == (cfg.model.lambda_rec == 1.0)
    assert module.rec_loss == ("l1" if name == "l1_0999" else "l2")
    assert module.generator.output_size == (32 if name.startswith("random_") else 16)
    extra = [m for m in module.generator.decoder.net if isinstance(m, torch.nn.Conv2d)]
    assert bool(extra) == (name == "extra_layer")
    opt_g = module.configure_optimizers()
    opt_g = opt_g[0][0] if isinstance(opt_g, tuple) else opt_g[0]
    assert isinstance(opt_g, torch.optim.SGD if name == "sgd" else torch.optim.Adam)

    metrics = train(cfg)
    assert math.isfinite(metrics["val/psnr"])
    assert (tmp_path / "run" / "run_status.json").is_file()


def test_lr_scheduler_steps_a_quarter_of_the_budget(tmp_path: Path) -> None:
    for budget, step in (("cpu", None), ("paper", 50), (None, 5)):
        extra = [f"+budget={budget}"] if budget else []
        cfg = _compose(["+experiment=lr_scheduler", *extra], tmp_path / "r")
        sched = OmegaConf.to_container(cfg.optim.scheduler, resolve=True)
        expected = step if step is not None else max(1, cfg.trainer.max_epochs // 4)
        assert sched["step_size"] == expected
        assert sched["gamma"] == 0.5 and cfg.optim.generator.lr == 0.01 and cfg.optim.g_lr_mult == 1.0


@pytest.mark.parametrize("budget", ["cpu", "paper"])
def test_budget_scales_every_experiment_identically(budget: str, tmp_path: Path) -> None:
    keys = ("trainer.max_epochs", "data.samples_per_epoch", "data.batch_size", "budget.name")
    seen = {tuple(_resolved(e, f"+budget={budget}")[k] for k in keys) for e in EXPERIMENTS}
    assert len(seen) == 1
    spec = yaml.safe_load((CONF / "budget" / f"{budget}.yaml").read_text())
    assert seen.pop()[:2] == (spec["trainer"]["max_epochs"], spec["data"]["samples_per_epoch"])
    # A budget's widths reach every network of every experiment (also those without a discriminator).
    width = spec["budget"].get("width", 64)
    alexnet = spec["budget"].get("alexnet_widths", [96, 256, 384, 384, 256])
    for e in EXPERIMENTS:
        cfg = _resolved(e, f"+budget={budget}")
        assert cfg.get("model.encoder.width", width) == width, e
        assert cfg.get("model.encoder.widths", alexnet) == alexnet, e
        assert cfg["model.decoder.width"] == width, e
        assert cfg.get("model.discriminator") is None or cfg["model.discriminator.width"] == width, e


def test_seeds_vary_slowest_in_every_sweep(tmp_path: Path) -> None:
    """`make ablations SEEDS=3` passes seed=42,43,44 on the command line: it takes the place of the sweep's first
    param, so all experiments of seed 42 run before any of seed 43 (a stopped sweep keeps whole seeds)."""
    from ctx_inpaint.reporting.runs import planned_jobs

    for sweep in SWEEPS:
        params = yaml.safe_load((CONF / "sweep" / f"{sweep}.yaml").read_text())["hydra"]["sweeper"]["params"]
        assert list(params)[0] == "seed", sweep
    (tmp_path / "multirun.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "hydra": {
                    "sweeper": {"params": {"seed": 42, "+experiment": "l2_0999,l2_1"}},
                    "overrides": {"task": ["+sweep=all", "seed=42,43"]},
                },
            },
            sort_keys=False,  # as Hydra writes it: the params in the sweep file's order
        )
    )
    jobs = planned_jobs(tmp_path)
    assert [(j.name, j.varying) for j in jobs] == [
        ("l2_0999", ["seed=42", "+experiment=l2_0999"]),
        ("l2_1", ["seed=42", "+experiment=l2_1"]),
        ("l2_0999", ["seed=43", "+experiment=l2_0999"]),
        ("l2_1", ["seed=43", "+experiment=l2_1"]),
    ]


def _sweep_experiments(name: str) -> list[str]:
    params = yaml.safe_load((CONF / "sweep" / f"{name}.yaml").read_text())["hydra"]["sweeper"]["params"]
    return params["+experiment"].split(",")


def test_sweeps_name_existing_experiments_and_all_covers_every_one(tmp_path: Path) -> None:
    assert SWEEPS <= {p.stem for p in (CONF / "sweep").glob("*.yaml")}
    for sweep in SWEEPS:
        assert set(_sweep_experiments(sweep)) <= set(EXPERIMENTS), sweep
        assert "l2_0999" in _sweep_experiments(sweep), f"{sweep} lacks the baseline"
    assert sorted(_sweep_experiments("all")) == EXPERIMENTS
    cfg = _compose(["+sweep=l2_weights", "+budget=cpu"], tmp_path, hydra_cfg=True)
    assert cfg.hydra.sweeper.params["+experiment"] == "l2_0,l2_05,l2_09,l2_0999,l2_09999,l2_1"


def test_slurm_launcher_config_composes(tmp_path: Path) -> None:
    cfg = _compose(["+sweep=all", "+budget=paper", "hydra/launcher=slurm"], tmp_path, hydra_cfg=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.gpus_per_node == 1 and launcher.timeout_min == 720
    assert OmegaConf.to_container(launcher)["submitit_folder"] == "${hydra.sweep.dir}/.submitit/%j"


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_sweep_job(tmp_path: Path) -> None:
    """The same multirun path the SLURM config uses, executed by submitit on this machine."""
    pytest.importorskip("submitit")
    env = {**os.environ, "CTX_INPAINT_LOG_DIR": str(tmp_path), "WANDB_MODE": "offline"}
    cmd = [
        sys.executable, "-m", "ctx_inpaint.train", "-m", "+experiment=l2_1", "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5", "hydra.launcher.cpus_per_task=1", *TINY, "trainer.max_epochs=1",
        "masks.target_size=16", "masks.overlap=2", "model.encoder.width=8", "model.decoder.width=8",
        "model.bottleneck.units=32",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "multiruns").glob("*/0_l2_1"))
    assert len(runs) == 1
    assert (runs[0] / "metrics.csv").is_file()
    assert '"status": "finished"' in (runs[0] / "run_status.json").read_text()
    assert list((runs[0].parent / ".submitit").iterdir()), "submitit wrote no job folder"


def test_make_train_is_campus_unet_the_shipped_method_on_the_centre_hole_in_29_minutes(
    tmp_path: Path,
) -> None:
    """Issue 27: `make train`'s recipe beats both OpenCV fills on the cross-source centre hole; it is the shipped
    models' method (NS fill, correction, mask channel, skips, channel-wise FC) on the centre hole, trained from
    scratch (no init_from) at the free-form run's lr in campus_cpu's 29-minute budget."""
    assert "campus_unet" in (REPO / "Makefile").read_text().split("EXPERIMENT ?=")[1].splitlines()[0]
    unet, ship = _resolved("campus_unet"), _resolved("ship_freeform")
    assert unet["init_from"] is None and unet["data.source"] == "embedded_wide"
    assert unet["masks._target_"].endswith("CenterMask") and unet["masks.whole_image"] is True
    assert unet["masks.fill"] == "ns" and unet["masks.overlap_weight"] == 1.0
    for key in (
        "model.skips",
        "model.residual",
        "model.mask_channel",
        "model.bottleneck._target_",
        "optim.generator.lr",
        "optim.discriminator.lr",
        "model.ssim_weight",
        "data.batch_size",
    ):
        assert unet[key] == ship[key], key
    assert unet["trainer.max_epochs"] == 60 and unet["trainer.max_time"] == "00:00:29:00"
    cfg = _compose(["+experiment=campus_unet", *TINY, "trainer.fast_dev_run=true"], tmp_path / "run")
    _shrink(cfg)
    metrics = train(cfg)
    assert math.isfinite(metrics["val/psnr"])
    assert load_model(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").kind == "center"


def test_campus_cpu_is_l2_0999_with_the_cpu_training_recipe_only(tmp_path: Path) -> None:
    """The paper's setting fitted to the CPU (`make train` until issue 27) keeps the paper's method (losses' mix,
    masks, encoder/bottleneck kinds) and changes only training and widths; every changed key is one the experiment file documents."""
    assert "campus_cpu" in ALL_EXPERIMENTS and "campus_cpu" not in EXPERIMENTS
    base, cpu = _resolved("l2_0999"), _resolved("campus_cpu")
    changed = {k for k in base.keys() | cpu.keys() if base.get(k, "<missing>") != cpu.get(k, "<missing>")}
    changed -= {"name", "tags", "ablation", "ablation.axis", "ablation.seed_psnr"}
    changed = {k for k in changed if not k.startswith(("ablation.", "logger.", "paths.", "hydra."))}
    assert changed == {
        "model.ssim_weight", "model.encoder.width", "model.decoder.width", "model.discriminator.width",
        "masks.overlap_weight", "data.batch_size", "optim.g_lr_mult",
        "callbacks.budget_cosine._target_", "callbacks.budget_cosine.min_lr_fraction",
        "callbacks.lr_monitor.logging_interval", "trainer.max_epochs", "trainer.max_time",
    }  # fmt: skip
    assert cpu["model.lambda_rec"] == 0.999 and cpu["model.ssim_weight"] == 0.5
    assert cpu["optim.scheduler"] is None and cpu["trainer.max_epochs"] == 60
    cfg = _compose(["+experiment=campus_cpu", *TINY, "trainer.fast_dev_run=true"], tmp_path / "run")
    _shrink(cfg)
    module = build_module(cfg, instantiate(cfg.masks))
    assert module.ssim_weight == 0.5 and module.g_lr_mult == 1.0
    assert len(module.configure_optimizers()) == 2  # G and D optimizers; the lr follows BudgetCosineLR
    assert instantiate(cfg.callbacks.budget_cosine).min_lr_fraction == 0.0
    metrics = train(cfg)
    assert math.isfinite(metrics["val/ssim"])


def test_ship_freeform_tune_is_ship_freeform_with_centre_holes_at_a_quarter_of_the_lr() -> None:
    """Issue 27's last free-form stage changes what its file documents and nothing else: the networks stay
    ship_freeform's (init_from can load them), a fifth of the holes become the centre one, the lr is a quarter of its peak."""
    base, tune = _resolved("ship_freeform"), _resolved("ship_freeform_tune")
    changed = {k for k in base.keys() | tune.keys() if base.get(k, "<missing>") != tune.get(k, "<missing>")}
    changed = {k for k in changed if not k.startswith(("logger.", "paths.", "hydra."))}
    assert changed == {
        "name", "tags", "init_from", "masks.center_probability", "optim.generator.lr",
        "optim.discriminator.lr", "trainer.max_time",
    }  # fmt: skip
    assert tune["init_from"] == "logs/runs/ship/freeform/checkpoints/last.ckpt"
    assert (
        tune["masks.center_probability"] == 0.2
        and tune["optim.generator.lr"] == base["optim.generator.lr"] / 4
    )
    makefile = (REPO / "Makefile").read_text()
    assert "SHIP_TUNE_INIT ?= $(WEIGHTS_RUNS)/freeform/checkpoints/last.ckpt" in makefile
    assert f"SHIP_TUNE_TIME ?= {tune['trainer.max_time']}" in makefile
