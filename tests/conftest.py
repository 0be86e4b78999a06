"""Shared fixtures: the real Hydra config, composed and shrunk for fast CPU runs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig
from PIL import Image

from ctx_inpaint.common import machine
from ctx_inpaint.config.compose import compose_config

# Overrides that make every network tiny: a full GAN step on 32x32 crops takes milliseconds.
# The tiny settings every test runs with: conf/debug/tiny.yaml (users smoke-test with the same `+debug=tiny`).
TINY = ["+debug=tiny"]


@pytest.fixture(scope="session", autouse=True)
def cpu_without_native_bf16() -> Iterator[None]:
    """Every test sees this CPU without its bf16 flags, so ``precision: auto`` (training, the bench, the
    Inpainter) resolves to float32 on an AVX512-BF16 or AMX host as on an AVX2 one: a verdict comparing two float32
    paths bit for bit must not depend on the machine that runs the suite. Tests of the bf16 paths fake the flags
    they need (their monkeypatch comes later and wins) or ask for bf16 explicitly. Session-wide, so it comes
    before every other fixture: the tiny checkpoints and the module-scoped Inpainters see it too. Subprocesses
    read the real flags: a test comparing a subprocess's run with one in this process sets the precision."""
    lines = tuple(
        " ".join(w for w in line.split() if w not in machine.BF16_FLAGS) if line.startswith("flags") else line
        for line in machine._cpuinfo_lines()
    )  # /proc/cpuinfo as read, less the bf16 flags: tests that fake the lines or the flags still win
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(machine, "_cpuinfo_lines", lambda: lines)
        yield


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """``tiny_cfg("+experiment=l2_0999", "key=value", ...)`` -> a composed tiny config writing into tmp_path."""

    def make(*overrides: str) -> DictConfig:
        return compose_config(list(overrides) + TINY, tmp_path / "run")  # +debug=tiny after the experiment

    return make


def write_images(
    folder: Path, n: int, size: tuple[int, int] = (60, 48), seed: int = 0, ext: str = "png"
) -> list[Path]:
    """``n`` random RGB photos of ``size`` (w, h)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        path = folder / f"img_{i:03d}.{ext}"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    write_images(root, 6)
    return root


REPO = Path(__file__).resolve().parent.parent


def run_cli(
    args: list[str], cwd: Path, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m ctx_inpaint.train ARGS`` as a user runs it: no W&B settings, no ~/.netrc (W&B goes offline),
    the repo on PYTHONPATH so test-only callbacks (``tests.*``) import."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB")}
    env.update(HOME=str(cwd), PYTHONPATH=str(REPO), **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "ctx_inpaint.train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def exit_status(main: Callable[..., int], argv: list[str]) -> int:
    """A CLI ``main``'s exit status, whether it returns it or exits (user errors exit 1, ``cli.report_user_errors``)."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
