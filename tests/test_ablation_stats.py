"""Issue 11: the statistics of the ablation report on constructed cases, the claims rule on synthetic run dirs,
and seeds that change the training draw but not the validation set."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from ctx_inpaint.config.compose import compose_config
from ctx_inpaint.evaluation.stats import mean_interval, two_way_bootstrap
from ctx_inpaint.reporting import claims
from ctx_inpaint.reporting.runs import load_sweep
from ctx_inpaint.reporting.seeds import group, paired_difference
from tests.conftest import TINY


# ---- statistics -----------------------------------------------------------------------------------------------
def test_mean_interval_is_students_t_over_seeds() -> None:
    stat = mean_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / np.sqrt(3)  # t(0.975, 2 df) * sd 1 / sqrt(3)
    assert stat["mean"] == pytest.approx(2.0)
    assert (stat["lo"], stat["hi"]) == pytest.approx((2.0 - half, 2.0 + half))
    one = mean_interval([5.0])
    assert one["mean"] == 5.0 and np.isnan(one["lo"]) and one["n"] == 1


def test_two_way_bootstrap_recovers_a_known_difference_and_its_spread() -> None:
    """A true difference of 0.4 dB, seed effects of sd 0.2 and crop noise of sd 1 over 3 seeds x 40 crops: the
    interval's width matches the theory (sd of the mean ~ sqrt(0.2^2/3 + 1/120)) and holds 0.4 in most
    repetitions; it excludes 0 when the effect is large and includes it when there is none."""
    rng = np.random.default_rng(0)
    widths, covered = [], 0
    for rep in range(40):
        d = 0.4 + rng.normal(0, 0.2, (3, 1)) + rng.normal(0, 1.0, (3, 40))
        r = two_way_bootstrap(d, resamples=2000, seed=rep)
        assert r["mean"] == pytest.approx(d.mean())
        widths.append(r["hi"] - r["lo"])
        covered += r["lo"] <= 0.4 <= r["hi"]
    sd = np.sqrt(0.2**2 / 3 + 1 / 120)
    # The bootstrap over 3 seeds underestimates a little (its seed variance uses n, not n - 1).
    assert 0.6 * 2 * 1.96 * sd < np.median(widths) < 1.3 * 2 * 1.96 * sd
    assert covered >= 30
    big = two_way_bootstrap(2.0 + rng.normal(0, 1, (3, 40)), resamples=2000)
    assert big["lo"] > 0
    none = two_way_bootstrap(rng.normal(0, 1, (3, 40)), resamples=2000)
    assert none["lo"] < 0 < none["hi"]


def test_two_way_bootstrap_resamples_seeds_too() -> None:
    """Seed effects alone (every crop of a seed alike): the crop-only bootstrap would give a zero-width interval."""
    d = np.array([[0.0] * 10, [1.0] * 10, [2.0] * 10])
    r = two_way_bootstrap(d, resamples=2000)
    assert r["mean"] == pytest.approx(1.0) and r["lo"] < 0.5 and r["hi"] > 1.5
    assert r["seed_means"] == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="seeds, items"):
        two_way_bootstrap(np.zeros((0, 3)))


# ---- the verdict rule -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "lo", "hi", "expected"),
    [
        ("greater", 0.1, 0.9, claims.REPRODUCED),
        ("greater", -0.9, -0.1, claims.CONTRADICTED),
        ("greater", -0.1, 0.9, claims.INCONCLUSIVE),
        ("equivalent", -0.3, 0.4, claims.REPRODUCED),
        ("equivalent", 0.6, 1.2, claims.CONTRADICTED),
        ("equivalent", -1.2, -0.6, claims.CONTRADICTED),
        ("equivalent", 0.2, 0.8, claims.INCONCLUSIVE),
        ("equivalent", -0.7, 0.7, claims.INCONCLUSIVE),
        ("d_wins", 0.05, 0.3, claims.REPRODUCED),
    ],
)
def test_verdict_rule(kind: str, lo: float, hi: float, expected: str) -> None:
    assert claims.verdict(kind, lo, hi, margin=0.5) == expected


def test_a_chain_needs_every_link() -> None:
    rep, con, inc, mis = claims.REPRODUCED, claims.CONTRADICTED, claims.INCONCLUSIVE, claims.MISSING
    assert claims.combine([rep, rep, rep]) == rep
    assert claims.combine([rep, inc, rep]) == inc
    assert claims.combine([rep, con, inc]) == con
    assert claims.combine([rep, mis]) == mis


def _synthetic_run(root: Path, num: int, name: str, seed: int, psnr: np.ndarray, gap: float = 0.0) -> None:
    """A finished run dir as training writes it: config, run_status, metrics.csv (epoch means, D curves) and
    val_images.csv (per crop)."""
    run = root / f"{num}_{name}"
    run.mkdir(parents=True)
    (run / "config_resolved.yaml").write_text(
        f"name: {name}\nseed: {seed}\ntrainer:\n  max_epochs: 2\nablation:\n  axis: x\n  seed_psnr: [20.0]\n"
    )
    (run / "run_status.json").write_text(json.dumps({"status": "finished", "wall_time_s": 3.0}))
    with (run / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["epoch", "step", "val/l1", "val/l2", "val/psnr", "val/ssim", "train/d_real", "train/d_fake"]
        )
        for step in range(8):
            w.writerow([step // 4, step, "", "", "", "", 0.5 + gap / 2, 0.5 - gap / 2])
        for epoch in range(2):
            w.writerow([epoch, 4 * epoch + 3, 0.1, 0.01, psnr.mean() - 1 + epoch, 0.5, "", ""])
    with (run / "val_images.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "index", "l1", "l2", "psnr", "ssim"])
        for epoch in (1, 2):
            for i, value in enumerate(psnr - 1 + epoch - 1):
                w.writerow([epoch, i, 0.1, 0.01, value, 0.5])


def test_claims_on_synthetic_run_dirs_give_each_verdict(tmp_path: Path) -> None:
    """Baseline l2_0999 at 15 dB per crop; l2_1 1 dB above it (reproduced), sgd 1 dB above it (the claim 'SGD is
    below Adam' is contradicted), l1_0999 0.1 dB above (about equal: reproduced), cwfc noisy around +0.2
    (inconclusive); no extra_layer run (missing); alexnet_adv's discriminator leads by 0.9 against 0.2."""
    rng = np.random.default_rng(1)
    crops = 30
    base = 15 + rng.normal(0, 1, (3, crops))
    offsets = {"l2_1": 1.0, "sgd": 1.0, "l1_0999": 0.1, "cwfc": None}
    num = 0
    for seed in range(3):
        _synthetic_run(tmp_path, num, "l2_0999", seed, base[seed], gap=0.2)
        num += 1
        for name, offset in offsets.items():
            noise = rng.normal(0, 3, crops) if offset is None else rng.normal(0, 0.05, crops)
            _synthetic_run(tmp_path, num, name, seed, base[seed] + (offset or 0.2) + noise)
            num += 1
        _synthetic_run(tmp_path, num, "alexnet_adv", seed, base[seed], gap=0.9 + 0.02 * seed)
        num += 1
    experiments = group(load_sweep(tmp_path))
    effect = paired_difference(experiments["l2_1"], experiments["l2_0999"])
    assert (
        effect["mean"] == pytest.approx(1.0, abs=0.03) and effect["seeds"] == 3 and effect["items"] == crops
    )
    verdicts = {j.claim.finding: j.verdict for j in claims.judge_all(experiments)}
    assert verdicts["L2 only scores above L2 + adversarial (PSNR)"] == claims.REPRODUCED
    assert verdicts["SGD is below Adam"] == claims.CONTRADICTED
    assert verdicts["L1 is about L2"] == claims.REPRODUCED
    assert verdicts["The channel-wise FC helps"] == claims.INCONCLUSIVE
    assert verdicts["The extra layer is about the baseline"] == claims.MISSING
    d_claim = next(f for f in verdicts if f.startswith("With AlexNet + discriminator"))
    assert verdicts[d_claim] == claims.REPRODUCED
    # Means over seeds: the baseline's final epoch is each seed's crop mean.
    final = experiments["l2_0999"].over_seeds("psnr", "final")
    assert final["mean"] == pytest.approx(base.mean(axis=1).mean(), abs=1e-3) and final["n"] == 3


# ---- seeds ----------------------------------------------------------------------------------------------------
def _first_batches(seed: int) -> tuple[dict, list]:
    cfg = compose_config([*TINY, "+experiment=l2_0999", f"seed={seed}"])
    pl.seed_everything(cfg.seed, workers=True)
    masks = instantiate(cfg.masks)
    dm = instantiate(cfg.data, masks=masks)
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    val = [dm.val_dataloader().dataset[i] for i in range(len(dm.val_dataloader().dataset))]
    return train, val


def test_seeds_change_the_training_draw_but_not_the_val_set() -> None:
    train_a, val_a = _first_batches(0)
    train_b, val_b = _first_batches(1)
    train_a2, _ = _first_batches(0)
    assert torch.equal(train_a["image"], train_a2["image"])  # a seed reproduces its draw
    assert not torch.equal(train_a["image"], train_b["image"])  # another seed draws other crops
    assert len(val_a) == len(val_b) > 0
    for a, b in zip(val_a, val_b):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
