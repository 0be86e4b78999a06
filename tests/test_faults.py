"""Faults: resume after SIGKILL/SIGTERM, atomic checkpoints, non-finite losses, determinism, safe resume."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from ctx_inpaint.loading import CheckpointError
from ctx_inpaint.training.callbacks import NonFiniteLossError
from ctx_inpaint.training.checkpointing import AtomicCheckpointIO
from ctx_inpaint.training.loggers import ResumableCSVLogger, fill_wandb_resume
from ctx_inpaint.training.run import train
from tests.conftest import TINY, compose_config, run_cli
from tests.helper_callbacks import LastCheckpointSpy

REPO = Path(__file__).resolve().parent.parent
STEP_LR = "optim.scheduler={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:1,gamma:0.5}"
# 3 epochs of 3 batches, a GAN (two optimizer steps per batch) and a StepLR schedule: every kind of state.
RUN = [
    "+experiment=l2_0999",
    *TINY,
    "model.discriminator.width=8",
    "data.samples_per_epoch=12",
    "trainer.max_epochs=3",
    "callbacks.progress_bar=null",
    STEP_LR,
]
KILLER = "+callbacks.killer._target_=tests.helper_callbacks.KillAtBatch"


def run_args(run_dir: Path, logger: str, last_every: str) -> list[str]:
    """The CLI arguments of a RUN in ``run_dir`` that is killed and resumed."""
    return [
        *RUN,
        f"logger={logger}",
        f"callbacks.model_checkpoint.last_every_n_batches={last_every}",
        f"hydra.run.dir={run_dir}",
    ]


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if v} for r in csv.DictReader(f)]


def row_key(row: dict[str, str]) -> tuple[int, tuple[str, ...]]:
    """What a row is: its step and which metrics it holds (a step has train, val, epoch and lr rows)."""
    return int(row["step"]), tuple(sorted(k for k in row if k not in ("step", "epoch")))


def assert_each_row_once(rows: list[dict[str, str]], steps: int) -> None:
    keys = [row_key(r) for r in rows]
    assert len(keys) == len(set(keys)), "duplicated rows"
    train_steps = sorted(s for s, names in keys if "train/loss_g" in names)
    assert train_steps == list(range(steps)), "lost or repeated training steps"
    assert [int(r["epoch"]) for r in rows if "val/psnr" in r] == [0, 1, 2]


@pytest.mark.slow
def test_sigkill_mid_epoch_resumes_exactly_like_an_uninterrupted_run(tmp_path: Path) -> None:
    tmp = tmp_path
    run_dir = tmp / "killed"
    args = run_args(run_dir, logger="default", last_every="null")
    # SIGKILL at the start of batch 4 (epoch 1, batch 1): last.ckpt is the end-of-epoch-0 one.
    killed = run_cli([*args, KILLER, "+callbacks.killer.at_batch=4"], tmp)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    before = read_rows(run_dir / "metrics.csv")
    assert max(int(r["step"]) for r in before) >= 3  # rows past the checkpoint were on disk at the kill
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0

    resumed = run_cli([*args, "ckpt_path=last"], tmp)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = read_rows(run_dir / "metrics.csv")
    assert_each_row_once(rows, steps=9)
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert (ckpt["epoch"], ckpt["global_step"]) == (2, 18)
    assert ckpt["lr_schedulers"][0]["last_epoch"] == 3  # stepped once per epoch, none lost or repeated

    # The same run without a kill (same seed; in this process, which is quicker): identical rows, values
    # included, so counters, optimizer and scheduler states and the RNG streams all continued.
    reference = tmp / "reference"
    train(compose_config([*RUN, "logger=csv"], reference))
    ref_rows = read_rows(reference / "metrics.csv")
    assert [row_key(r) for r in rows] == [row_key(r) for r in ref_rows]
    for got, want in zip(rows, ref_rows):
        assert {k: pytest.approx(float(v), rel=1e-5) for k, v in want.items()} == {
            k: float(v) for k, v in got.items()
        }

    # W&B: both processes wrote to the run id kept in the run dir.
    run_id = (run_dir / "wandb_run_id.txt").read_text().strip()
    offline = sorted(p.name for p in (run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(name.endswith(f"-{run_id}") for name in offline)


@pytest.mark.slow
def test_sigterm_writes_last_checkpoint_and_resume_loses_nothing(tmp_path: Path) -> None:
    tmp = tmp_path
    run_dir = tmp / "run"
    args = run_args(run_dir, logger="csv", last_every="2")
    # SIGTERM during batch 4: Lightning finishes that batch, we save, the process exits 143.
    term = run_cli([*args, KILLER, "+callbacks.killer.at_batch=4", "+callbacks.killer.signum=15"], tmp)
    assert term.returncode == 143, term.stderr[-2000:]
    assert "SIGTERM" in term.stderr and "ckpt_path=last" in term.stderr
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert (ckpt["epoch"], ckpt["global_step"]) == (1, 10)  # 5 batches done, mid-epoch 1
    status = json.loads((run_dir / "run_status.json").read_text())
    assert status["status"] == "interrupted"  # pre-empted and resumable, not failed

    resumed = run_cli([*args, "ckpt_path=last"], tmp)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout + resumed.stderr
    assert_each_row_once(read_rows(run_dir / "metrics.csv"), steps=9)


@pytest.mark.parametrize("save_last", ["true", "link"])
def test_last_checkpoint_is_refreshed_mid_epoch(tiny_cfg, save_last: str) -> None:
    cfg = tiny_cfg(
        "+experiment=l2_1",
        "data.samples_per_epoch=16",
        "trainer.max_epochs=2",
        f"callbacks.model_checkpoint.save_last={save_last}",
        "callbacks.model_checkpoint.last_every_n_batches=2",
        "+callbacks.spy._target_=tests.helper_callbacks.LastCheckpointSpy",
    )
    train(cfg)
    spy = LastCheckpointSpy.instances[-1]
    # L2 only: one optimizer step per batch, 4 batches per epoch. Saved after batches 2 and 6; the epoch-end
    # save (step 4) comes from Lightning. Under "link", last.ckpt is a link to the best file at epoch ends and a
    # file of its own in between; the best file is never overwritten.
    assert spy.seen == [None, None, 2, 2, 4, 4, 6, 6]
    best = Path(cfg.callbacks.model_checkpoint.dirpath).glob("epoch*.ckpt")
    assert [torch.load(p, weights_only=True)["global_step"] for p in best] in ([4], [8])


def test_linked_last_checkpoint_still_follows_the_latest_epoch(tiny_cfg) -> None:
    # save_last="link" with a top-k save every 2nd epoch: at epoch 2 the link would point at epoch 1's file.
    cfg = tiny_cfg(
        "+experiment=l2_1",
        "trainer.max_epochs=3",
        "callbacks.model_checkpoint.save_last=link",
        "+callbacks.model_checkpoint.every_n_epochs=2",
    )
    train(cfg)
    folder = Path(cfg.paths.output_dir) / "checkpoints"
    assert torch.load(folder / "last.ckpt", weights_only=True)["epoch"] == 2
    (best,) = folder.glob("epoch*.ckpt")
    assert torch.load(best, weights_only=True)["epoch"] == 1  # the top-k file was not written through


def test_nonfinite_loss_stops_with_step_and_term_and_keeps_last_good_checkpoint(
    tiny_cfg, monkeypatch
) -> None:
    import ctx_inpaint.module as module_mod

    real = module_mod.masked_reconstruction
    calls = {"n": 0}

    def nan_from_fifth_batch(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] >= 5 else loss

    monkeypatch.setattr(module_mod, "masked_reconstruction", nan_from_fifth_batch)
    cfg = tiny_cfg("+experiment=l2_0999", "data.samples_per_epoch=12", "trainer.max_epochs=3")
    with pytest.raises(NonFiniteLossError) as err:
        train(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert "global step 10 (epoch 1, batch 1)" in message  # the fifth batch; two optimizer steps per batch
    assert "train/loss_rec=nan" in message and "last.ckpt" in message
    ckpt = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 6  # end of epoch 0, before the NaN
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


class _Boom:
    def __reduce__(self):
        raise RuntimeError("disk full")


def test_interrupted_save_leaves_the_previous_checkpoint_whole(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(1000)}, "epoch": 1}, path)
    with pytest.raises(RuntimeError, match="disk full"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(1000)}, "epoch": 2, "x": _Boom()}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temporary file left


@pytest.mark.slow
def test_same_seed_same_val_metrics(tiny_cfg, tmp_path: Path) -> None:
    values = []
    for i in range(2):
        cfg = tiny_cfg(
            "+experiment=l2_0999", "trainer.max_epochs=2", "data.num_workers=1"
        )  # the default loader
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / f"run{i}")
        train(cfg)
        values.append([r for r in read_rows(tmp_path / f"run{i}" / "metrics.csv") if "val/psnr" in r])
    assert len(values[0]) == 2 and values[0] == values[1]


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_checkpoint_is_refused_on_resume(tiny_cfg, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "ctx_inpaint_config": {}, "payload": _RunsCode(marker)}, evil)
    cfg = tiny_cfg("+experiment=l2_1", f"ckpt_path={evil}")
    with pytest.raises(CheckpointError, match="refused"):
        train(cfg)
    assert not marker.exists()


def test_lightning_resume_path_is_weights_only(tiny_cfg, tmp_path: Path) -> None:
    """fit(ckpt_path=...) reads the file once, through our checkpoint IO: refused in one line, nothing executed.
    Without our IO plugin Lightning 2.6 itself refuses it when fit() gets weights_only=True."""
    import pickle

    from hydra.utils import instantiate

    from ctx_inpaint.config import build_module
    from ctx_inpaint.loading import CheckpointError

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsCode(marker)}, evil)
    cfg = tiny_cfg("+experiment=l2_1")
    masks = instantiate(cfg.masks)
    for plugins, error in ((None, CheckpointError), ([], pickle.UnpicklingError)):
        extra = {} if plugins is None else {"plugins": plugins}
        trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False, **extra)
        with pytest.raises(error) as info:
            trainer.fit(
                build_module(cfg, masks),
                datamodule=instantiate(cfg.data, masks=masks),
                ckpt_path=evil,
                weights_only=True,
            )
        if error is CheckpointError:
            assert "\n" not in str(info.value) and str(evil) in str(info.value)
    assert not marker.exists()


def test_truncated_last_checkpoint_is_reported_in_one_line(tiny_cfg, tmp_path: Path) -> None:
    cfg = tiny_cfg("+experiment=l2_1")
    train(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    with open_dict(cfg):
        cfg.ckpt_path = "last"
    with pytest.raises(CheckpointError) as err:
        train(cfg)
    assert str(last) in str(err.value) and "\n" not in str(err.value)


def test_csv_logger_continues_on_resume_and_starts_over_otherwise(tmp_path: Path) -> None:
    first = ResumableCSVLogger(tmp_path, name="", version="")
    for step in range(5):
        first.log_metrics({"train/loss": float(step)}, step=step)
    first.log_metrics({"val/psnr": 20.0}, step=4)
    first.save()

    resumed = ResumableCSVLogger(tmp_path, name="", version="")
    resumed.mark_resumed()
    resumed.log_metrics({"train/loss": 30.0, "train/extra": 1.0}, step=3)  # the checkpoint was after step 2
    resumed.save()
    rows = read_rows(tmp_path / "metrics.csv")
    assert [(int(r["step"]), float(r["train/loss"])) for r in rows] == [
        (0, 0.0),
        (1, 1.0),
        (2, 2.0),
        (3, 30.0),
    ]
    assert rows[-1]["train/extra"] == "1.0"

    fresh = ResumableCSVLogger(tmp_path, name="", version="")
    fresh.log_metrics({"train/loss": 7.0}, step=0)
    fresh.save()
    assert [float(r["train/loss"]) for r in read_rows(tmp_path / "metrics.csv")] == [7.0]


def test_wandb_run_id_follows_the_run_dir(tiny_cfg, tmp_path: Path) -> None:
    ids = []
    # new run in a, resumed in a, new run in b, a new (not resumed) run in a again
    for run_dir, resume in (("a", []), ("a", ["ckpt_path=last"]), ("b", []), ("a", [])):
        cfg = tiny_cfg("+experiment=l2_1", "logger=wandb", *resume)
        fill_wandb_resume(cfg, tmp_path / run_dir)
        assert cfg.logger.wandb.resume == "allow"
        ids.append(cfg.logger.wandb.id)
    assert ids[0] == ids[1] and len({ids[0], ids[2], ids[3]}) == 3


def test_budget_fraction_takes_whichever_budget_ends_first() -> None:
    from ctx_inpaint.training.callbacks import budget_fraction

    assert budget_fraction(50, 100, None, None) == 0.5
    assert budget_fraction(10, 100, 30.0, 60.0) == 0.5  # time runs out first
    assert budget_fraction(90, 100, 30.0, 60.0) == 0.9
    assert budget_fraction(10, None, 90.0, 60.0) == 1.0  # clipped
    assert budget_fraction(10, None, None, None) == 0.0
    from ctx_inpaint.errors import ConfigError
    from ctx_inpaint.training.callbacks import BudgetCosineLR

    with pytest.raises(
        ConfigError, match=r"callbacks.budget_cosine.min_lr_fraction: got 1.5; expected a value in \[0, 1\]"
    ):
        BudgetCosineLR(min_lr_fraction=1.5)


def test_budget_cosine_anneals_the_lr_per_batch_over_the_epochs(tiny_cfg, tmp_path: Path) -> None:
    """Per batch, lr = initial * 0.5 * (1 + cos(pi * batches / (max_epochs * batches per epoch)))."""
    import math

    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import Callback

    from ctx_inpaint.config import build_module
    from ctx_inpaint.training.callbacks import BudgetCosineLR

    seen: list[float] = []

    class Record(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    cfg = tiny_cfg("+experiment=l2_1", "trainer.max_epochs=3", "data.samples_per_epoch=16")
    masks = instantiate(cfg.masks)
    module = build_module(cfg, masks)
    trainer = instantiate(
        cfg.trainer, logger=False, enable_checkpointing=False, callbacks=[BudgetCosineLR(), Record()]
    )
    trainer.fit(module, datamodule=instantiate(cfg.data, masks=masks))
    total = 3 * 4  # 16 crops, batch 4
    expected = [2e-4 * 0.5 * (1 + math.cos(math.pi * i / total)) for i in range(total)]
    assert seen == pytest.approx(expected, rel=1e-6)
    assert trainer.optimizers[0].param_groups[0]["initial_lr"] == pytest.approx(2e-4)


def test_a_second_run_in_a_busy_run_dir_is_refused_naming_the_holder(tiny_cfg) -> None:
    """While one run holds the run dir, another is refused in one line before it writes anything."""
    import fcntl

    from ctx_inpaint.errors import UserError
    from ctx_inpaint.training.run import LOCK_FILE

    cfg = tiny_cfg("+experiment=l2_1")
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True)
    with open(run_dir / LOCK_FILE, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242\n")
        held.flush()
        with pytest.raises(UserError) as err:
            train(cfg)
        assert "pid 4242" in str(err.value) and str(run_dir) in str(err.value) and "\n" not in str(err.value)
        assert not (run_dir / "config_resolved.yaml").exists() and not (run_dir / "metrics.csv").exists()
    metrics = train(cfg)  # released: the run goes ahead
    assert "val/psnr" in metrics
