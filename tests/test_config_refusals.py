"""Bad configs and command lines are refused in one line before anything is written (issue 24, items 6 and 9).

Item 6: settings the config check let through and training then crashed on, with a traceback, after the run's
records were written: a free-form or random-region mask its generator can never draw, ``data.val_batch_size=-1``
and their siblings (other batch sizes, mask counts and sizes, booleans that are not). Item 9: an unknown config
group choice or key, which Hydra reported in many lines; now one line naming the group and its options or the
key, from every Hydra command (train, prepare, bench), with Hydra's full report behind ``HYDRA_FULL_ERROR=1``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from ctx_inpaint.config.check import check_config
from ctx_inpaint.config.compose import CONFIG_DIR, override_problem
from ctx_inpaint.errors import ConfigError
from tests.conftest import REPO, TINY, compose_config

FREEFORM = ["+experiment=l2_1", *TINY, "masks=freeform"]  # whole-image model, 32 px
# Records a run writes once its config passed the check (Hydra's own .hydra/ and train.log come before it).
RECORDS = ("config_resolved.yaml", "metrics.csv", "checkpoints", "run_status.json", "samples", ".run.lock")


# ---- item 6: the config check --------------------------------------------------------------------------------
REFUSED = {
    "validation batch below 1": (
        ["data.val_batch_size=-1"],
        ["data.val_batch_size", "-1", "positive integer"],
    ),
    "validation batch of 0": (["data.val_batch_size=0"], ["data.val_batch_size", "0", "null"]),
    "fractional validation batch": (["data.val_batch_size=1.5"], ["data.val_batch_size", "1.5"]),
    "free-form coverage below one shape": (
        ["masks.min_coverage=0.0001", "masks.max_coverage=0.0002"],
        ["masks.min_coverage", "0.0001", "masks.max_coverage", "0.0002", "cannot"],
    ),
    "free-form range too narrow for thick strokes": (
        [
            "masks.min_coverage=0.01",
            "masks.max_coverage=0.011",
            "masks.min_width=0.2",
            "masks.max_width=0.22",
            "masks.blob_probability=0",
        ],
        ["masks.min_coverage", "0.01", "masks.min_width"],
    ),
    "random-region fraction no window has": (
        ["masks=random_region", "masks.min_fraction=0.8", "masks.max_fraction=0.9"],
        ["masks.min_fraction", "0.8", "masks.max_fraction", "masks.density"],
    ),
    "random-region pattern smaller than the image": (
        ["masks=random_region", "masks.noise_size=1"],
        ["masks.noise_size", "masks.scale", "data.input_size (32)"],
    ),
    "random-region scale not positive": (["masks=random_region", "masks.scale=-2"], ["masks.scale", "-2"]),
    "no random patches": (
        ["masks=random_patches", "masks.min_size=4", "masks.max_size=12", "masks.max_patches=0"],
        ["masks.max_patches", "0"],
    ),
    "flip not a boolean": (["data.hflip=flase"], ["data.hflip", "'flase'", "true or false"]),
    "pin memory not a boolean": (["data.pin_memory=3"], ["data.pin_memory", "3", "null"]),
    # Refused before this change too (the constructor's own checks): kept here with their siblings.
    "free-form min above max": (
        ["masks.min_coverage=0.5", "masks.max_coverage=0.4"],
        ["masks.min_coverage", "0.5", "masks.max_coverage"],
    ),
    "free-form coverage of 0": (["masks.min_coverage=0"], ["masks.min_coverage", "(0, 1]"]),
    "free-form coverage above 1": (["masks.max_coverage=1.5"], ["masks.max_coverage", "1.5"]),
    "negative workers": (["data.num_workers=-1"], ["data.num_workers", "-1", ">= 0"]),
    # Lightning's Timer refused these only once the run folder held its records
    "budget not DD:HH:MM:SS": (["trainer.max_time=abc"], ["trainer.max_time", "'abc'", "DD:HH:MM:SS"]),
    "budget of three fields": (["trainer.max_time=00:01:30"], ["trainer.max_time", "'00:01:30'", "1 h 30"]),
    "budget mapping of unknown units": (
        ["trainer.max_time={hour: 1}"],
        ["trainer.max_time", "hour", "mapping"],
    ),
    "centre share above 1": (["masks.center_probability=1.5"], ["masks.center_probability", "1.5", "[0, 1]"]),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_config_training_would_crash_on_is_refused_in_one_line(name: str, tmp_path: Path) -> None:
    overrides, expected = REFUSED[name]
    cfg = compose_config(FREEFORM + overrides, tmp_path / "run")
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    message = str(err.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["data.val_batch_size=null"],
        ["data.val_batch_size=4", "data.pin_memory=false"],
        ["masks.min_coverage=0.95", "masks.max_coverage=1.0"],  # high but reachable
        ["masks=random_region"],
        ["masks=random_patches", "masks.min_size=4", "masks.max_size=12"],
        ["trainer.max_time=00:01:30:00", "masks.center_probability=1"],
        ["trainer.max_time={hours: 1, minutes: 30}"],
    ],
)
def test_workable_settings_still_pass(overrides: list[str], tmp_path: Path) -> None:
    check_config(compose_config(FREEFORM + overrides, tmp_path / "run"))


def bench_config(overrides: list[str], output_dir: Path):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="bench", overrides=["+experiment=l2_1", *TINY, *overrides])
    finally:
        GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


@pytest.mark.parametrize(
    "override,expected",
    [
        ("bench.batch_size=-1", "bench.batch_size: got -1; expected a positive integer"),
        ("bench.sizes=[16,0]", "bench.sizes: got 0"),
        ("bench.infer_batches=[-1]", "bench.infer_batches: got -1"),
        ("bench.threads=-2", "bench.threads: got -2"),
    ],
)
def test_the_benchmarks_batch_sizes_are_checked(override: str, expected: str, tmp_path: Path) -> None:
    check_config(bench_config([], tmp_path))  # the defaults pass
    with pytest.raises(ConfigError, match="^" + expected.replace("[", r"\[")):
        check_config(bench_config([override], tmp_path))


# ---- the commands, in subprocesses -------------------------------------------------------------------------------
def run(module: str, args: list[str], cwd: Path, env_extra: dict[str, str] | None = None):
    """``python -m ctx_inpaint.MODULE ARGS`` as a user runs it (no W&B settings; a timeout only against hangs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB", "HYDRA_FULL_ERROR"))}
    env.update(HOME=str(cwd), PYTHONPATH=str(REPO), **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", f"ctx_inpaint.{module}", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ctx-inpaint: error: "), proc.stderr[-3000:]
    return lines[0].removeprefix("ctx-inpaint: error: ")


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["data.val_batch_size=-1"], "data.val_batch_size: got -1"),
        (["masks.min_coverage=0.0001", "masks.max_coverage=0.0002"], "masks.min_coverage: got 0.0001"),
        (["trainer.max_time=abc"], "trainer.max_time: got 'abc'; expected DD:HH:MM:SS"),
    ],
)
def test_train_refuses_them_before_writing_any_record(
    overrides: list[str], expected: str, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    proc = run("train", [*FREEFORM, *overrides, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert one_error_line(proc).startswith(expected)
    assert not [name for name in RECORDS if (run_dir / name).exists()]


# ---- item 9: the command line ------------------------------------------------------------------------------------
MESSAGES = {
    "unknown group choice": (["+debug=nope"], "debug: got nope; expected one of tiny"),
    "nested group": (
        ["model/encoder=nope"],
        "model/encoder: got nope; expected one of alexnet, alexnet_torchvision, paper",
    ),
    "Hydra's own group": (["hydra/launcher=nope"], "hydra/launcher: got nope; expected one of basic, joblib"),
    "a sweep value": (["-m", "model/bottleneck=dense,nope"], "model/bottleneck: got nope; expected one of"),
    "a choice() sweep": (["-m", "+experiment=choice(l2_1,nope)"], "experiment: got nope; expected one of"),
    "a group set to null": (
        ["logger=null"],
        "logger: got null; expected one of csv, default, wandb (or ~logger",
    ),
    "unknown key": (["foo=1"], "foo: not a key of the config; use +foo=1 to add it"),
    "misspelt key": (
        ["trainer.max_epoch=5"],
        "trainer.max_epoch: not a key of the config (did you mean trainer.max_epochs",
    ),
    "unknown key in a sweep": (
        ["-m", "+experiment=l2_1,l2_0999", "foo=1,2"],
        "foo: not a key of the config; use +foo=1,2 to add it",
    ),
    "group not in the defaults": (["debug=tiny"], "debug: not in the defaults list"),
    "a group set as a string": (["model.encoder=alexnet"], "model.encoder: got 'alexnet'"),
    "deleting nothing": (["~foo"], "foo: not in the config"),
    "adding what exists": (["+seed=3"], "seed: already in the config"),
    "a sweep without --multirun": (["seed=1,2"], "seed=1,2: several values need --multirun"),
    "unparsable": (["foo=["], "foo=[: Hydra cannot parse it"),
}


@pytest.mark.parametrize("name", list(MESSAGES))
def test_each_bad_override_is_one_line(name: str) -> None:
    argv, expected = MESSAGES[name]
    message = override_problem(argv)
    assert message is not None and "\n" not in message and message.startswith(expected), message


@pytest.mark.parametrize(
    "argv",
    [
        ["+experiment=l2_0999", "trainer.max_epochs=3", "model/bottleneck=channelwise"],
        ["-m", "+experiment=l2_1,l2_0999", "model.lambda_rec=0.9,0.99"],
        ["-m", "+experiment=glob(l2_*)"],
        ["+model.encoder.foo=1", "++seed=3", "model.discriminator=null"],
        ["+experiment=mine", "hydra.searchpath=[file:///x]"],  # another config source: Hydra decides
        ["--help"],
    ],
)
def test_good_command_lines_pass(argv: list[str]) -> None:
    assert override_problem(argv) is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "module,argv,expected",
    [
        ("train", ["+debug=nope"], "debug: got nope; expected one of tiny"),
        ("train", ["-m", "+experiment=l2_1", "foo=1,2"], "foo: not a key of the config"),
        ("prepare", ["model/encoder=nope"], "model/encoder: got nope; expected one of"),
        ("bench", ["--sizes", "bench.nope=1"], "bench.nope: not a key of the config"),
    ],
)
def test_every_hydra_command_refuses_in_one_line_and_writes_nothing(
    module: str, argv: list[str], expected: str, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    proc = run(module, [*argv, f"paths.log_dir={logs}"], cwd=tmp_path)
    assert one_error_line(proc).startswith(expected)
    assert not logs.exists() and not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


@pytest.mark.slow
def test_hydra_full_error_keeps_hydras_own_report(tmp_path: Path) -> None:
    proc = run(
        "train",
        ["+debug=nope", f"paths.log_dir={tmp_path}"],
        cwd=tmp_path,
        env_extra={"HYDRA_FULL_ERROR": "1"},
    )
    assert proc.returncode != 0
    assert "ctx-inpaint: error:" not in proc.stderr
    assert "Could not find 'debug/nope'" in proc.stderr and "Traceback" in proc.stderr
