"""A wheel that works: built from this checkout, installed outside it into a fresh environment (reusing this
environment's torch and other dependencies), every CLI starts and finds its configs from another directory."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The package's commands and its module entry points; tools/ holds repository tools, run from a checkout, not
# shipped in the wheel.
CLIS = [
    ["ctx_inpaint.train", "--help"],
    ["ctx_inpaint.prepare", "--help"],
    ["ctx_inpaint.bench", "--help"],
    ["ctx_inpaint.evaluate", "--help"],
    ["ctx_inpaint.inpaint", "--help"],
    ["ctx_inpaint.export", "--help"],
    ["ctx_inpaint.report", "--help"],
    ["ctx_inpaint.benchmark.ab", "--help"],
    ["ctx_inpaint.benchmark.precision_check", "--help"],
    ["ctx_inpaint.demo", "--help"],
]


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
def test_wheel_installs_outside_the_checkout_and_every_cli_finds_its_configs(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    built = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
        ],
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("ctx_inpaint-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {
        n.removeprefix("ctx_inpaint/conf/")
        for n in names
        if n.startswith("ctx_inpaint/conf/") and n.endswith(".yaml")
    }
    in_repo = {p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml")}
    assert shipped == in_repo
    static = {
        f"ctx_inpaint/inference/demo/static/{p.name}"
        for p in (REPO / "ctx_inpaint/inference/demo/static").iterdir()
    }
    assert static and static <= set(names)  # the demo's page travels with the wheel
    cross = {
        f"ctx_inpaint/data/cross_source/{p.name}" for p in (REPO / "ctx_inpaint/data/cross_source").iterdir()
    }
    assert len(cross) == 11 and cross <= set(names)  # evaluate -i embedded:cross: 10 photos + ATTRIBUTION.md

    # A fresh environment: the wheel alone in its site-packages, this environment's packages (torch...) after it.
    env_dir = tmp_path / "env"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    python = env_dir / "bin" / "python"
    purelib = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path
        ).stdout.strip()
    )
    installed = _run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(purelib), str(wheel)],
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    here = [p for p in {*site.getsitepackages(), sysconfig.get_paths()["purelib"]} if Path(p).is_dir()]
    (purelib / "zz_reuse_deps.pth").write_text(
        "\n".join(here) + "\n"
    )  # plain paths: their .pth files do not run

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    where = _run(
        [str(python), "-c", "import ctx_inpaint.config.compose as c; print(c.__file__); print(c.CONFIG_DIR)"],
        elsewhere,
        env,
    )
    assert where.returncode == 0, where.stderr[-2000:]
    module_file, config_dir = where.stdout.split()
    assert Path(module_file).is_relative_to(purelib) and Path(config_dir) == purelib / "ctx_inpaint" / "conf"

    # Each CLI is a fresh interpreter importing torch: two at a time (the suite's 2 cores), checked in order.
    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = list(pool.map(lambda cli: _run([str(python), "-m", *cli], elsewhere, env), CLIS))
    for cli, proc in zip(CLIS, procs):
        assert proc.returncode == 0, f"{' '.join(cli)}: {proc.stderr[-2000:]}"
        if "== Configuration groups ==" in proc.stdout:  # a Hydra CLI: it found the configs' groups
            assert "model/encoder: alexnet, alexnet_torchvision, paper" in proc.stdout, cli
        else:
            assert proc.stdout.startswith("usage: "), cli
    job = _run(
        [str(python), "-m", "ctx_inpaint.train", "+experiment=l2_0999", "--cfg", "job"], elsewhere, env
    )
    assert job.returncode == 0, job.stderr[-2000:]
    assert "name: l2_0999" in job.stdout and "lambda_rec: 0.999" in job.stdout
