"""Shared fixtures: the real Hydra config, composed and shrunk for fast CPU runs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig
from PIL import Image

from ctx_inpaint.config.compose import compose_config

# Overrides that make every network tiny: a full GAN step on 32x32 crops takes milliseconds.
# The tiny settings every test runs with: conf/debug/tiny.yaml (users smoke-test with the same `+debug=tiny`).
TINY = ["+debug=tiny"]


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
