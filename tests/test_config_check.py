"""Bad configs are refused before anything is built or trained, with one line naming key, value and options."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ctx_inpaint.config.check import check_config
from ctx_inpaint.errors import ConfigError, UserError
from tests.conftest import TINY, compose_config

BASE = ["+experiment=l2_0999", "model.discriminator.width=8"]
ENC = "ctx_inpaint.models.encoders"

CASES = {
    "weight above 1": (["model.lambda_rec=1.5"], ["model.lambda_rec", "1.5", "[0, 1]"]),
    "weight below 0": (["model.lambda_rec=-0.1"], ["model.lambda_rec", "-0.1", "[0, 1]"]),
    "weight not a number": (["model.lambda_rec=abc"], ["model.lambda_rec", "'abc'", "number"]),
    "ssim weight above 1": (["model.ssim_weight=2"], ["model.ssim_weight", "2", "[0, 1]"]),
    "zero checkpoint interval": (
        ["callbacks.model_checkpoint.last_every_n_batches=0"],
        ["callbacks.model_checkpoint.last_every_n_batches", "0", "positive integer"],
    ),
    "guard interval not a number": (
        ["callbacks.nonfinite_guard.check_every_n_batches=x"],
        ["callbacks.nonfinite_guard.check_every_n_batches", "'x'", "positive integer"],
    ),
    "best checkpoint at train time": (["ckpt_path=best"], ["ckpt_path", "'best'", "'last'"]),
    "discriminator with lambda_rec=1": (
        ["model.lambda_rec=1.0"],
        ["model.discriminator", "lambda_rec=1", "null"],
    ),
    "no discriminator with lambda_rec<1": (
        ["model.discriminator=null"],
        ["model.discriminator", "0.999", "model/discriminator=dcgan"],
    ),
    "unknown rec loss": (["model.rec_loss=l3"], ["model.rec_loss", "'l3'", "l1, l2"]),
    "skips not a boolean": (["model.skips=yes"], ["model.skips", "'yes'", "true or false"]),
    "skips on a centre model": (["model.skips=true"], ["model.skips", "whole-image model"]),
    "whole_image not a boolean": (
        ["+masks.whole_image=maybe"],
        ["masks.whole_image", "'maybe'", "true or false"],
    ),
    "unknown encoder": (
        [f"model.encoder._target_={ENC}.Nope"],
        ["model.encoder._target_", "Nope", "alexnet|alexnet_torchvision|paper"],
    ),
    "unknown bottleneck": (
        ["model.bottleneck._target_=ctx_inpaint.models.bottlenecks.Nope"],
        ["model.bottleneck._target_", "Nope", "channelwise|dense|none"],
    ),
    "unknown mask": (
        ["masks._target_=ctx_inpaint.masks.generators.Nope"],
        ["masks._target_", "Nope", "center|freeform|random_patches|random_region"],
    ),
    "input size the encoder cannot take": (
        ["data.input_size=48", "data.short_side=60"],
        ["model.encoder.input_size", "48", "power of two"],
    ),
    "unknown constructor argument": (["+model.encoder.foo=1"], ["model.encoder", "foo"]),
    "batch of one under BatchNorm": (["data.batch_size=1"], ["data.batch_size", "1", ">= 2"]),
    "zero batch": (["data.batch_size=0"], ["data.batch_size", "0", "positive integer"]),
    "bad-image policy": (["data.on_bad_image=ignore"], ["data.on_bad_image", "'ignore'", "skip, error"]),
    "negative learning rate": (["optim.generator.lr=-1"], ["optim.generator.lr", "-1", "(0, inf]"]),
    "beta outside [0, 1)": (["optim.generator.betas=[0.5,1.5]"], ["optim.generator.betas", "1.5", "[0, 1)"]),
    "missing checkpoint": (["ckpt_path=/nope/last.ckpt"], ["ckpt_path", "/nope/last.ckpt", "'last'"]),
    "epochs not a number": (["trainer.max_epochs=abc"], ["trainer.max_epochs", "'abc'", "integer >= -1"]),
    "fractional epochs": (["trainer.max_epochs=1.5"], ["trainer.max_epochs", "1.5", "integer"]),
    "batch limit not a number": (
        ["trainer.limit_train_batches=abc"],
        ["trainer.limit_train_batches", "'abc'"],
    ),
    "seed not a number": (["seed=abc"], ["seed", "'abc'", "integer >= 0"]),
    "negative workers": (["data.num_workers=-1"], ["data.num_workers", "-1", "integer >= 0"]),
    "monitor nothing logs": (
        ["callbacks.model_checkpoint.monitor=val/nonexistent"],
        ["callbacks.model_checkpoint.monitor", "val/nonexistent", "val/psnr"],
    ),
    "missing data folder": (
        ["data=folder", "data.root=/nope/photos"],
        ["data.root", "/nope/photos", "folder"],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_config_is_refused_in_one_line(name: str, tmp_path: Path) -> None:
    overrides, expected = CASES[name]
    cfg = compose_config(BASE + TINY + overrides, tmp_path / "run")
    with pytest.raises(UserError) as err:
        check_config(cfg)
    message = str(err.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def tiny_without(prefix: str) -> list[str]:
    return list(TINY)


GOOD = {
    "paper GAN": BASE + TINY,
    "channel-wise FC": BASE + tiny_without("model.bottleneck") + ["model/bottleneck=channelwise"],
    "L2 only": ["+experiment=l2_1", *TINY],
    "random regions": BASE + tiny_without("masks.") + ["masks=random_region"],
}


@pytest.mark.parametrize("name", list(GOOD))
def test_good_configs_pass(name: str, tmp_path: Path) -> None:
    check_config(compose_config(GOOD[name], tmp_path / "run"))


def test_alexnet_config_passes_and_its_input_limit_is_enforced(tmp_path: Path) -> None:
    tiny = tiny_without("model.encoder.width")
    check_config(compose_config(BASE + tiny + ["model/encoder=alexnet"], tmp_path / "run"))
    cfg = compose_config(
        BASE + tiny + ["model/encoder=alexnet", "model.encoder.resize_to=30"], tmp_path / "run"
    )
    with pytest.raises(ConfigError, match="model.encoder"):
        check_config(cfg)


@pytest.mark.slow
def test_cli_prints_one_line_and_exits_nonzero_before_training(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB")}
    env["HOME"] = str(tmp_path)
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ctx_inpaint.train",
            *BASE,
            *TINY,
            "model.lambda_rec=2",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["ctx-inpaint: error: model.lambda_rec: got 2; expected a value in [0, 1]"]
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.csv").exists()


def test_constructor_refusals_name_the_config_node() -> None:
    """What ``report_user_errors`` prints for a constructor that refuses its arguments at train time."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from ctx_inpaint.errors import instantiation_message

    cfg = OmegaConf.create(
        {
            "callbacks": {
                "model_checkpoint": {
                    "_target_": "ctx_inpaint.training.checkpointing.ResumableCheckpoint",
                    "every_n": 5,
                }
            }
        }
    )
    with pytest.raises(InstantiationException) as info:
        instantiate(cfg.callbacks.model_checkpoint)
    message = instantiation_message(info.value, "config")
    assert message.startswith("callbacks.model_checkpoint: ") and "'every_n'" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "experiment,encoder",
    [("l2_0999", 8), ("alexnet_l2", [8, 8, 8, 8, 8]), ("random_region", 8), ("l2_1", 8)],
)
def test_debug_tiny_sizes_every_network_and_mask_kind(experiment: str, encoder, tmp_path: Path) -> None:
    """``+debug=tiny`` (conf/debug/tiny.yaml) is what the tests run with; without it the paper's sizes stay."""
    from omegaconf import OmegaConf

    tiny = compose_config([f"+experiment={experiment}", *TINY], tmp_path / "run")
    model = OmegaConf.to_container(tiny.model, resolve=True)
    assert model["encoder"].get("width", model["encoder"].get("widths")) == encoder
    assert model["decoder"]["width"] == 8 and (model.get("discriminator") or {"width": 8})["width"] == 8
    assert tiny.data.input_size == 32 and tiny.trainer.max_epochs == 1 and list(tiny.logger) == ["csv"]
    if "target_size" in tiny.masks:
        assert (tiny.masks.target_size, tiny.masks.overlap) == (16, 2)
    check_config(tiny)
    full = compose_config([f"+experiment={experiment}"], tmp_path / "run")
    assert (
        OmegaConf.to_container(full.model.decoder, resolve=True)["width"] == 64
        and full.data.input_size == 128
    )
