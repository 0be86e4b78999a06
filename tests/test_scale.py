"""Scale-out on existing engines: Lightning DDP on CPU (gloo), and parallel Hydra sweep jobs (joblib)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ctx_inpaint.config.build import build_module
from ctx_inpaint.evaluation.metrics import HiddenPixelMetrics, to_unit_range
from tests.conftest import TINY, run_cli

REPO = Path(__file__).resolve().parent.parent
SMALL = list(TINY)


def val_rows(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items() if v} for r in csv.DictReader(f) if r.get("val/psnr")]


def evaluate(run_dir: Path, indices: list[int]) -> dict[str, float]:
    """Val metrics of last.ckpt in one process over the val crops ``indices`` (repeats allowed)."""
    cfg = OmegaConf.load(run_dir / "config_resolved.yaml")
    masks = instantiate(cfg.masks)
    module = build_module(cfg, masks).eval()
    module.load_state_dict(torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"])
    dm = instantiate(cfg.data, masks=masks)
    dm.setup("fit")
    metrics = HiddenPixelMetrics()
    with torch.no_grad():
        for i in indices:
            batch = {k: v.unsqueeze(0) for k, v in dm.val_set[i].items()}
            out = module.composite(module(batch["masked"]), batch["masked"], batch["mask"])
            metrics.update(to_unit_range(out), to_unit_range(batch["image"]), batch["mask"])
    return {f"val/{k}": float(v) for k, v in metrics.compute().items()}


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli(
        [
            "+experiment=l2_0999",
            *SMALL,
            "model.discriminator.width=8",
            "data.samples_per_epoch=16",
            "trainer.max_epochs=2",
            "trainer=ddp_cpu",
            "logger=csv",
            "callbacks.progress_bar=null",
            "+callbacks.report._target_=tests.helper_callbacks.RankReport",
            f"hydra.run.dir={run_dir}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((run_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    # Both ranks finished; each trained 2 of the 4 batches of every epoch (16 crops, batch 4), on its own crops.
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["batches"] for r in ranks] == [4, 4]
    assert ranks[0]["first_batch_sum"] != ranks[1]["first_batch_sum"]
    assert sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("metrics.csv")) == ["metrics.csv"]
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert len(ckpts) == 2 and "last.ckpt" in ckpts and ckpts[0].startswith("epoch001-psnr")
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8

    rows = val_rows(run_dir / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    # The logged metrics are those of the whole val set (5 crops, split 3 + 2 over the ranks, none repeated).
    whole = evaluate(run_dir, list(range(5)))
    for key, value in whole.items():
        assert rows[-1][key] == pytest.approx(value, rel=1e-4, abs=1e-5)
    padded = evaluate(run_dir, [0, 1, 2, 3, 4, 1])  # what a padding DistributedSampler would have scored
    assert abs(padded["val/psnr"] - rows[-1]["val/psnr"]) > 10 * abs(whole["val/psnr"] - rows[-1]["val/psnr"])


@pytest.mark.slow
def test_parallel_sweep_jobs_never_share_a_run_dir_or_wandb_run(tmp_path: Path) -> None:
    proc = run_cli(
        [
            "-m",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "+experiment=l2_1",
            *SMALL,
            "trainer.max_epochs=1",
            "data.samples_per_epoch=8",
            "seed=1,2",
            "logger=default",
            f"paths.log_dir={tmp_path / 'logs'}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = list((tmp_path / "logs" / "multiruns").iterdir())
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in jobs] == ["0_l2_1", "1_l2_1"]
    ids = [(job / "wandb_run_id.txt").read_text().strip() for job in jobs]
    assert ids[0] != ids[1]
    for job, run_id in zip(jobs, ids):
        assert len(val_rows(job / "metrics.csv")) == 1
        (offline,) = list((job / "wandb").glob("offline-run-*"))
        assert offline.name.endswith(f"-{run_id}")
