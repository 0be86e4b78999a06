"""Faults: resume after SIGKILL/SIGTERM, atomic checkpoints, non-finite losses, determinism, safe resume."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import signal
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf, open_dict

from ctx_inpaint.config.build import with_resolved_precision
from ctx_inpaint.inference.loading import CheckpointError, load_model
from ctx_inpaint.training.callbacks import NonFiniteLossError, RunStatus
from ctx_inpaint.training.checkpointing import AtomicCheckpointIO, check_resume
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
    "trainer.precision=32-true",  # runs in subprocesses are compared with one in this process (conftest: bf16)
]
KILLER = "+callbacks.killer._target_=tests.helper_callbacks.KillAtBatch"
# The killed and resumed runs are compared with one in this process, value for value: their threads must not
# depend on what else runs on the machine (thread policy auto would give a subprocess one thread beside a busy
# process, and another summation order), so they use torch's default, as this process does.
SAME_THREADS = {"CTX_INPAINT_THREAD_POLICY": "spin"}
# These tests kill runs between epoch ends: last.ckpt at every epoch end, not on a clock (tested on its own below).
EPOCH_END_LAST = "callbacks.model_checkpoint.last_every_s=null"


def run_args(run_dir: Path, logger: str, last_every: str) -> list[str]:
    """The CLI arguments of a RUN in ``run_dir`` that is killed and resumed."""
    return [
        *RUN,
        f"logger={logger}",
        f"callbacks.model_checkpoint.last_every_n_batches={last_every}",
        EPOCH_END_LAST,
        f"hydra.run.dir={run_dir}",
    ]


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        # time/wall_s (RunStatus) is the clock, which differs between any two runs: not compared.
        return [{k: v for k, v in r.items() if v and not k.startswith("time/")} for r in csv.DictReader(f)]


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
    killed = run_cli([*args, KILLER, "+callbacks.killer.at_batch=4"], tmp, SAME_THREADS)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    before = read_rows(run_dir / "metrics.csv")
    assert max(int(r["step"]) for r in before) >= 3  # rows past the checkpoint were on disk at the kill
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0

    resumed = run_cli([*args, "ckpt_path=last"], tmp, SAME_THREADS)
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
        EPOCH_END_LAST,
        "callbacks.model_checkpoint.best_weights_only=false",  # a link to a best file that can resume
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


def test_last_checkpoint_on_a_clock_and_weights_only_best(tiny_cfg) -> None:
    # last_every_s longer than the run: no last.ckpt until the final epoch end (4 batches per epoch, 3 epochs);
    # the best file keeps the weights and config for inference but not the optimizer state.
    cfg = tiny_cfg(
        "+experiment=l2_1",
        "data.samples_per_epoch=16",
        "trainer.max_epochs=3",
        "callbacks.model_checkpoint.last_every_s=3600",
        "callbacks.model_checkpoint.best_weights_only=true",
        "+callbacks.spy._target_=tests.helper_callbacks.LastCheckpointSpy",
    )
    train(cfg)
    assert LastCheckpointSpy.instances[-1].seen == [None] * 12
    folder = Path(cfg.callbacks.model_checkpoint.dirpath)
    last = torch.load(folder / "last.ckpt", weights_only=True)
    assert (last["global_step"], last["epoch"]) == (12, 2) and len(last["optimizer_states"]) == 1
    (best_path,) = folder.glob("epoch*.ckpt")
    best = torch.load(best_path, weights_only=True)
    assert "optimizer_states" not in best and best["state_dict"].keys() == last["state_dict"].keys()
    assert best_path.stat().st_size < (folder / "last.ckpt").stat().st_size
    assert load_model(best_path).input_size == 32  # the inference loader takes it
    with open_dict(cfg):
        cfg.ckpt_path = str(best_path)
    with pytest.raises(CheckpointError, match="holds the weights only") as err:
        check_resume(cfg)  # resuming from it is refused in one line, before any record is touched
    assert "\n" not in str(err.value) and str(best_path) in str(err.value)


def test_last_checkpoint_on_a_short_clock_is_written_after_every_batch(tiny_cfg) -> None:
    cfg = tiny_cfg(
        "+experiment=l2_1",
        "data.samples_per_epoch=16",
        "trainer.max_epochs=2",
        "callbacks.model_checkpoint.last_every_s=1e-9",
        "+callbacks.spy._target_=tests.helper_callbacks.LastCheckpointSpy",
    )
    train(cfg)
    assert LastCheckpointSpy.instances[-1].seen == [None, 1, 2, 3, 4, 5, 6, 7]


def test_linked_last_checkpoint_still_follows_the_latest_epoch(tiny_cfg) -> None:
    # save_last="link" with a top-k save every 2nd epoch: at epoch 2 the link would point at epoch 1's file.
    cfg = tiny_cfg(
        "+experiment=l2_1",
        "trainer.max_epochs=3",
        "callbacks.model_checkpoint.save_last=link",
        "callbacks.model_checkpoint.best_weights_only=false",
        EPOCH_END_LAST,
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
    import ctx_inpaint.training.objective as objective

    real = objective.masked_reconstruction
    calls = {"n": 0}

    def nan_from_fifth_batch(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] >= 5 else loss

    monkeypatch.setattr(objective, "masked_reconstruction", nan_from_fifth_batch)
    cfg = tiny_cfg("+experiment=l2_0999", "data.samples_per_epoch=12", "trainer.max_epochs=3", EPOCH_END_LAST)
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

    from ctx_inpaint.config.build import build_module
    from ctx_inpaint.inference.loading import CheckpointError

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsCode(marker)}, evil)
    cfg = with_resolved_precision(tiny_cfg("+experiment=l2_1"))[0]  # trainer.precision=auto, as train() does
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

    from ctx_inpaint.config.build import build_module
    from ctx_inpaint.training.callbacks import BudgetCosineLR

    seen: list[float] = []

    class Record(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    cfg = tiny_cfg("+experiment=l2_1", "trainer.max_epochs=3", "data.samples_per_epoch=16")
    cfg = with_resolved_precision(cfg)[0]  # trainer.precision=auto, as train() does
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


RECORDS = ("config_resolved.yaml", "run_status.json", "metrics.csv")


def _records(run_dir: Path) -> dict[str, bytes]:
    """The run's records and the names in checkpoints/: what a refused command must leave as it was."""
    files = {name: (run_dir / name).read_bytes() for name in RECORDS}
    files["checkpoints/"] = " ".join(sorted(p.name for p in (run_dir / "checkpoints").iterdir())).encode()
    return files


def test_a_fresh_run_in_a_used_run_dir_is_refused_unless_overwrite(tiny_cfg) -> None:
    """Issue 15.9: a new run (no ckpt_path) would delete metrics.csv and write last-v1.ckpt beside last.ckpt."""
    from ctx_inpaint.training.run import RunDirUsedError

    cfg = tiny_cfg("+experiment=l2_1")
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    before = _records(run_dir)
    with pytest.raises(RunDirUsedError) as err:
        train(cfg)
    message = str(err.value)
    assert "\n" not in message and str(run_dir) in message and "metrics.csv" in message
    assert "ckpt_path=last" in message and "overwrite=true" in message
    assert _records(run_dir) == before

    with open_dict(cfg):
        cfg.overwrite = True
    train(cfg)
    assert (
        sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before["checkpoints/"].decode().split()
    )
    assert [r["epoch"] for r in read_rows(run_dir / "metrics.csv") if "val/psnr" in r] == [
        "0"
    ]  # one run's rows


def test_a_resumed_checkpoint_is_read_once_and_handed_to_lightning(tiny_cfg, monkeypatch) -> None:
    """check_resume reads the checkpoint; the run hands it to the trainer's AtomicCheckpointIO, which gives it to
    Lightning: the file is read once, and nothing is left behind for the next run."""
    import ctx_inpaint.training.checkpointing as checkpointing

    cfg = tiny_cfg("+experiment=l2_1")
    train(cfg)
    real, reads = checkpointing.load_checkpoint, []

    def counted(path):
        reads.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(checkpointing, "load_checkpoint", counted)
    train(tiny_cfg("+experiment=l2_1", "ckpt_path=last", "trainer.max_epochs=2"))
    assert reads == ["last.ckpt"]
    run_dir = Path(cfg.paths.output_dir)
    assert [r["epoch"] for r in read_rows(run_dir / "metrics.csv") if "val/psnr" in r] == ["0", "1"]


def test_a_resume_the_config_cannot_continue_is_refused_before_any_record_changes(tiny_cfg) -> None:
    """Issue 15.7: another architecture gave a size-mismatch traceback after config_resolved.yaml was rewritten
    and run_status.json flipped from finished to failed."""
    from ctx_inpaint.errors import ConfigError
    from ctx_inpaint.training.checkpointing import ResumeMismatchError

    cfg = tiny_cfg("+experiment=l2_1")
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    before = _records(run_dir)
    assert json.loads(before["run_status.json"])["status"] == "finished"
    wider = tiny_cfg("+experiment=l2_1", "ckpt_path=last", "model.encoder.width=16", "trainer.max_epochs=2")
    with pytest.raises(ResumeMismatchError) as err:
        train(wider)
    assert str(err.value) == (
        "ckpt_path=last: the run's model.encoder.width is 8, the new config has 16; resume with the settings the "
        "checkpoint was trained with, or start a new run in another hydra.run.dir"
    )
    assert _records(run_dir) == before
    other_masks = tiny_cfg(
        "+experiment=l2_1", f"ckpt_path={run_dir}/checkpoints/last.ckpt", "masks.overlap=4"
    )
    with pytest.raises(
        ResumeMismatchError, match="the checkpoint's masks.overlap is 2, the new config has 4"
    ):
        train(other_masks)
    with pytest.raises(ConfigError, match="trainer.max_epochs"):
        train(tiny_cfg("+experiment=l2_1", "ckpt_path=last", "trainer.max_epochs=abc"))
    assert _records(run_dir) == before
    # What a resume may change: the budget and runtime-only settings (model.compile, channels_last, matmul).
    train(
        tiny_cfg("+experiment=l2_1", "ckpt_path=last", "trainer.max_epochs=2", "model.decoder.matmul=false")
    )
    assert [r["epoch"] for r in read_rows(run_dir / "metrics.csv") if "val/psnr" in r] == ["0", "1"]


def test_run_status_wall_time_counts_every_attempt(tiny_cfg, monkeypatch) -> None:
    """Issue 15.11: after a resume, wall_time_s was the resumed part's only. The resumed attempt runs on a fake
    clock that reads ``start`` when the fit starts and ``start + 2.5`` at every later reading: an attempt of
    exactly 2.5 s, whatever the machine's speed (a real clock's few milliseconds rounded to nothing)."""
    cfg = tiny_cfg("+experiment=l2_1")
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    path = run_dir / "run_status.json"
    first = json.loads(path.read_text())
    first["wall_time_s"] = 1000.0  # as if the first attempt had run for 1000 s
    path.write_text(json.dumps(first))
    start = 1_800_000_000.0
    readings = iter([start])
    fake = partial(RunStatus, clock=lambda: next(readings, start + 2.5))
    monkeypatch.setattr("ctx_inpaint.training.callbacks.RunStatus", fake)  # what the config's _target_ names
    train(tiny_cfg("+experiment=l2_1", "ckpt_path=last", "trainer.max_epochs=2"))
    record = json.loads(path.read_text())
    assert record["status"] == "finished" and record["attempts"] == 2
    assert record["wall_time_s"] == 1002.5
    assert record["started_at"] == first["started_at"]
    # metrics.csv's time/wall_s at the resumed epoch's validation counts the first attempt too.
    with open(run_dir / "metrics.csv", newline="") as f:
        walls = [r["time/wall_s"] for r in csv.DictReader(f) if r.get("val/psnr")]
    assert float(walls[-1]) == 1002.5


def test_train_log_keeps_lightning_messages_the_closing_line_and_one_line_errors(
    tiny_cfg, tmp_path: Path
) -> None:
    """Issue 15.11: train.log was always empty (Lightning logs through its own handler, our lines were prints).
    Also 15.7 from the CLI: a refused resume is one line, without a traceback."""
    cfg = tiny_cfg("+experiment=l2_1")
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    base = ["+experiment=l2_1", *TINY, f"hydra.run.dir={run_dir}", "ckpt_path=last"]
    refused = run_cli([*base, "model.encoder.width=16"], tmp_path)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    error = refused.stderr.strip().splitlines()[-1]
    assert error.startswith("ctx-inpaint: error: ckpt_path=last: the run's model.encoder.width is 8")
    assert error in (run_dir / "train.log").read_text()

    resumed = run_cli([*base, "trainer.max_epochs=2"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "[ctx-inpaint] done:" in resumed.stdout and "resuming from" in resumed.stderr
    log = (run_dir / "train.log").read_text()
    assert "resuming from" in log and "[ctx-inpaint] done:" in log and "GPU available" in log


def test_a_moved_run_dir_resumes_with_its_best_and_last_checkpoints(tiny_cfg, tmp_path: Path, capsys) -> None:
    """Issue 15.10: Lightning stores absolute paths; in a moved run dir it wrote last-v1.ckpt (while the closing
    line named last.ckpt) and forgot the best epoch."""
    import shutil

    cfg = tiny_cfg("+experiment=l2_1")
    train(cfg)
    old_dir = Path(cfg.paths.output_dir)
    last = old_dir / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    (key,) = [k for k in ckpt["callbacks"] if k.startswith("ResumableCheckpoint")]
    best = Path(ckpt["callbacks"][key]["best_model_path"])
    ckpt["callbacks"][key]["best_model_score"] = torch.tensor(99.0)  # a best no later epoch can beat
    ckpt["callbacks"][key]["best_k_models"] = {str(best): torch.tensor(99.0)}
    torch.save(ckpt, last)
    new_dir = tmp_path / "moved"
    shutil.move(old_dir, new_dir)
    capsys.readouterr()
    moved = tiny_cfg("+experiment=l2_1", "ckpt_path=last", "trainer.max_epochs=2")
    with open_dict(moved):
        moved.paths.output_dir = str(new_dir)
        moved.callbacks.model_checkpoint.dirpath = str(new_dir / "checkpoints")
    train(moved)
    closing = [ln for ln in capsys.readouterr().out.splitlines() if "[ctx-inpaint] done:" in ln][-1]
    assert sorted(p.name for p in (new_dir / "checkpoints").iterdir()) == sorted([best.name, "last.ckpt"])
    assert f"best checkpoint {new_dir / 'checkpoints' / best.name} (val/psnr 99.00 dB)" in closing
    assert f"last {new_dir / 'checkpoints' / 'last.ckpt'}" in closing
    state = torch.load(new_dir / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"][key]
    assert state["best_model_path"] == str(new_dir / "checkpoints" / best.name) and state["dirpath"] == str(
        new_dir / "checkpoints"
    )


class TermInValidation(pl.Callback):
    """Sends SIGTERM to its own process after the first validation batch of epoch ``epoch`` (not the last one:
    Lightning stops the validation there)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if not trainer.sanity_checking and trainer.current_epoch == self.epoch and batch_idx == 0:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_during_validation_is_made_good_by_the_resume(tiny_cfg, tmp_path: Path) -> None:
    """Issue 15.8: the resume skipped the interrupted validation: no val/* or train/*_epoch rows and no sample
    grid for that epoch. Now the SIGTERM checkpoint owes it and the resume runs it: the rows equal an
    uninterrupted run's."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    run = [
        "+experiment=l2_0999",
        "trainer.max_epochs=2",
        "data.val_batch_size=2",
        "callbacks.progress_bar=null",
    ]
    killer = ["+callbacks.killer._target_=tests.test_faults.TermInValidation", "+callbacks.killer.epoch=0"]
    cfg = tiny_cfg(*run, *killer)
    with pytest.raises(SIGTERMException):
        train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert not (run_dir / "samples").exists() and not [
        r for r in read_rows(run_dir / "metrics.csv") if "val/psnr" in r
    ]
    train(tiny_cfg(*run, "ckpt_path=last"))
    rows = read_rows(run_dir / "metrics.csv")
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["epoch_0000.png", "epoch_0001.png"]

    reference = tiny_cfg(*run)
    with open_dict(reference):
        reference.paths.output_dir = str(tmp_path / "reference")
    train(reference)
    ref_rows = read_rows(tmp_path / "reference" / "metrics.csv")
    assert [row_key(r) for r in rows] == [row_key(r) for r in ref_rows]
    for got, want in zip(rows, ref_rows):
        assert {k: pytest.approx(float(v), rel=1e-5) for k, v in want.items()} == {
            k: float(v) for k, v in got.items()
        }


class _FullDisk(io.RawIOBase):
    """A file that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, room: int) -> None:
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return len(data)


def _one_error_line(capsys, run) -> str:
    """``run()`` under the CLIs' error policy: its exit status must be 1 and stderr one error line."""
    from ctx_inpaint.common.cli import report_user_errors

    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        with report_user_errors():
            run()
    assert stop.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ctx-inpaint: error: "), lines
    return lines[0]


def test_a_full_disk_while_writing_a_checkpoint_is_one_line(tiny_cfg, monkeypatch, capsys) -> None:
    """Issue 15.12: torch reports a full disk as "unexpected pos" after about 90 lines of C++ frames."""
    import ctx_inpaint.training.checkpointing as checkpointing

    real, saves = checkpointing.atomic_write, []

    def fills_up(path, write) -> None:
        saves.append(Path(path).name)
        if len(saves) == 1:
            return real(path, write)  # the first checkpoint fits
        write(io.BufferedWriter(_FullDisk(room=2000)))

    monkeypatch.setattr(checkpointing, "atomic_write", fills_up)
    cfg = tiny_cfg("+experiment=l2_1", "trainer.max_epochs=2")
    line = _one_error_line(capsys, lambda: train(cfg))
    folder = Path(cfg.paths.output_dir) / "checkpoints"
    assert f"{folder / saves[1]}: could not write the checkpoint" in line and "ckpt_path=last" in line
    assert torch.load(folder / saves[0], weights_only=True)["epoch"] == 0  # the written one is whole
    assert json.loads((Path(cfg.paths.output_dir) / "run_status.json").read_text())["status"] == "failed"


def test_a_full_disk_while_writing_metrics_names_the_file_in_one_line(tiny_cfg, monkeypatch, capsys) -> None:
    from pytorch_lightning.loggers.csv_logs import ExperimentWriter

    def full(self) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ExperimentWriter, "save", full)
    cfg = tiny_cfg("+experiment=l2_1")
    line = _one_error_line(capsys, lambda: train(cfg))
    assert line == (
        f"ctx-inpaint: error: {Path(cfg.paths.output_dir) / 'metrics.csv'}: No space left on device; free some "
        "space, then run the command again"
    )


def test_a_run_dir_that_cannot_be_written_is_refused_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """Issue 15.12: Hydra creates the run dir itself, with a traceback when it cannot (a read-only file system,
    a path through a file). As root, chmod 555 does not stop writes: a path through a file, and a monkeypatched
    os.access for a read-only folder."""
    from ctx_inpaint.common.cli import RunDirCheck

    (tmp_path / "a_file").write_text("")
    proc = run_cli(["+experiment=l2_1", *TINY, f"paths.log_dir={tmp_path / 'a_file' / 'logs'}"], tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(
        f"ctx-inpaint: error: hydra.run.dir: cannot create or write {tmp_path / 'a_file'}/logs/runs/"
    )
    assert "(Not a directory); choose a writable paths.log_dir" in line

    read_only = tmp_path / "read_only"
    read_only.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != read_only)
    config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(read_only)}}, "paths": {"log_dir": str(tmp_path)}}
    )
    line = _one_error_line(capsys, lambda: RunDirCheck().on_multirun_start(config))
    assert line.startswith(
        f"ctx-inpaint: error: hydra.sweep.dir: cannot create or write {read_only} (not writable)"
    )


def test_a_resume_with_another_optimizer_is_refused_before_any_record_changes(tiny_cfg, capsys) -> None:
    """Issue 24, 3.5: optim=sgd after adam ended in ``KeyError: 'momentum'`` after metrics.csv was rewritten. Now
    one line names the key, and nothing of the run changes; older checkpoints (without the optimizer classes) are
    told apart by their optimizer state. The learning rate may change."""
    from ctx_inpaint.training.checkpointing import OPTIM_KEY, ResumeMismatchError

    cfg = tiny_cfg("+experiment=l2_1")
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    before = _records(run_dir)
    sgd = tiny_cfg("+experiment=l2_1", "ckpt_path=last", "trainer.max_epochs=2", "optim=sgd")
    expected = (
        "ckpt_path=last: the run's optim.generator._target_ is torch.optim.adam.Adam, the new config has "
        "torch.optim.SGD; resume with the settings the checkpoint was trained with, or start a new run in another "
        "hydra.run.dir"
    )
    assert _one_error_line(capsys, lambda: train(sgd)) == f"ctx-inpaint: error: {expected}"
    assert _records(run_dir) == before

    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    assert ckpt[OPTIM_KEY] == {"optimizers": ["torch.optim.adam.Adam"], "schedulers": []}
    del ckpt[OPTIM_KEY]  # as checkpoints written before it
    torch.save(ckpt, last)
    with pytest.raises(
        ResumeMismatchError, match=r"the run's optim.generator._target_ is an optimizer with .*betas"
    ):
        train(sgd)
    train(tiny_cfg("+experiment=l2_1", "ckpt_path=last", "trainer.max_epochs=2", "optim.generator.lr=1e-5"))
    assert [r["epoch"] for r in read_rows(run_dir / "metrics.csv") if "val/psnr" in r] == ["0", "1"]


def test_overwrite_deletes_only_what_a_run_wrote(tiny_cfg, caplog) -> None:
    """Issue 24, 3.10: overwrite=true deleted the whole checkpoints/ and samples/ folders, whatever else was in
    them. Now only our checkpoints, sample grids and records go; other files stay (one line names them) and do
    not make a run dir count as used."""
    cfg = tiny_cfg("+experiment=l2_1")
    run_dir = Path(cfg.paths.output_dir)
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "samples").mkdir()
    (run_dir / "checkpoints" / "notes.txt").write_text("mine")
    (run_dir / "checkpoints" / "pretrained.ckpt").write_text("mine")
    (run_dir / "samples" / "figure.png").write_text("mine")
    train(cfg)  # foreign files alone are not a run: no refusal
    ours = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt") if p.name != "pretrained.ckpt")
    assert ours[-1] == "last.ckpt" and (run_dir / "samples" / "epoch_0000.png").exists()
    with open_dict(cfg):
        cfg.overwrite = True
        cfg.trainer.max_epochs = 2
    train(cfg)
    assert (run_dir / "checkpoints" / "notes.txt").read_text() == "mine"
    assert (run_dir / "checkpoints" / "pretrained.ckpt").read_text() == "mine"
    assert (run_dir / "samples" / "figure.png").read_text() == "mine"
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1  # the new run's
    assert sorted(p.name for p in (run_dir / "samples").glob("epoch_*")) == [
        "epoch_0000.png",
        "epoch_0001.png",
    ]
    assert [r["epoch"] for r in read_rows(run_dir / "metrics.csv") if "val/psnr" in r] == ["0", "1"]
    assert "kept checkpoints/notes.txt, checkpoints/pretrained.ckpt, samples/figure.png" in caplog.text


@pytest.mark.parametrize("seed", [2**32, 2**64 + 5])
def test_a_seed_numpy_cannot_take_is_refused_in_one_line(tiny_cfg, capsys, seed: int) -> None:
    """Issue 24, 3.10: seeds above 2^32-1 collapsed to 0 (older Lightning) or failed with a traceback."""
    cfg = tiny_cfg("+experiment=l2_1", f"seed={seed}")
    line = _one_error_line(capsys, lambda: train(cfg))
    assert line == f"ctx-inpaint: error: seed: got {seed}; expected an integer from 0 to 4294967295 (2^32-1)"
    assert not Path(cfg.paths.output_dir).exists()


def test_init_from_starts_a_new_run_from_another_runs_weights(tmp_path: Path, tiny_cfg) -> None:
    """Fine-tuning (issue 27: the centre model starts from the free-form run): the generator and discriminator
    weights of another run, its masks free to differ; its steps, optimizer and records are not carried over."""
    from hydra.utils import instantiate

    from ctx_inpaint.config.build import build_module
    from ctx_inpaint.errors import ConfigError
    from ctx_inpaint.training.checkpointing import ResumeMismatchError, check_init_from

    source = tiny_cfg("+experiment=l2_0999")
    train(source)
    ckpt = Path(source.paths.output_dir) / "checkpoints" / "last.ckpt"
    stored = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]

    def cfg_in(name: str, *overrides: str):
        return compose_config(["+experiment=l2_0999", *overrides, *TINY], tmp_path / name)

    tuned = cfg_in("tuned", f"init_from={ckpt}", "masks.overlap=4", "trainer.max_epochs=1")
    module = build_module(tuned, instantiate(tuned.masks))
    assert not torch.equal(
        module.generator.state_dict()["encoder.net.0.weight"], stored["generator.encoder.net.0.weight"]
    )
    check_init_from(tuned).load_into(module)
    loaded = [n for n in module.state_dict() if n.startswith(("generator.", "discriminator."))]
    assert any(n.startswith("discriminator.") for n in loaded)
    assert all(torch.equal(module.state_dict()[n], stored[n]) for n in loaded)
    train(tuned)
    status = json.loads((tmp_path / "tuned" / "run_status.json").read_text())
    steps = json.loads((Path(source.paths.output_dir) / "run_status.json").read_text())["global_step"]
    assert status["global_step"] == steps and status["attempts"] == 1  # its own steps, from 0: one epoch each
    assert f"init_from: {ckpt}" in (tmp_path / "tuned" / "config_resolved.yaml").read_text()

    # Other networks, or no such file: one line, before the new run dir holds anything.
    with pytest.raises(ResumeMismatchError) as err:
        train(cfg_in("wider", f"init_from={ckpt}", "model.encoder.width=16"))
    assert str(err.value) == (
        f"init_from: {ckpt}'s model.encoder.width is 8, the new config has 16; expected the same networks"
    )
    assert not (tmp_path / "wider").exists() or not any((tmp_path / "wider").rglob("*.csv"))
    with pytest.raises(ConfigError, match=r"^init_from: /nope.ckpt is not a file; expected a checkpoint"):
        train(cfg_in("missing", "init_from=/nope.ckpt"))
    # A resumed fine-tune keeps its own weights: init_from is not read again (here it would be refused).
    wider_source = cfg_in("wide_src", "model.encoder.width=16")
    train(wider_source)
    resumed = cfg_in(
        "tuned", f"init_from={tmp_path / 'wide_src' / 'checkpoints' / 'last.ckpt'}", "ckpt_path=last",
        "masks.overlap=4", "trainer.max_epochs=2",
    )  # fmt: skip
    train(resumed)
    assert json.loads((tmp_path / "tuned" / "run_status.json").read_text())["attempts"] == 2


def test_init_from_a_safetensors_export_or_shipped_name_loads_its_generator_only(
    tmp_path: Path, tiny_cfg
) -> None:
    """Issue 27's last stage starts from the shipped free-form weights: init_from takes a .safetensors export or a
    shipped model's name; the generator is the export's, the discriminator (not exported) starts anew."""
    from hydra.utils import instantiate

    from ctx_inpaint.config.build import build_module
    from ctx_inpaint.inference.export import export
    from ctx_inpaint.training.checkpointing import ResumeMismatchError, check_init_from

    source = tiny_cfg("+experiment=l2_0999")
    train(source)
    ckpt = Path(source.paths.output_dir) / "checkpoints" / "last.ckpt"
    stored = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    weights = tmp_path / "exported.safetensors"
    export(str(ckpt), weights, "safetensors", dtype="float32")

    def cfg_in(name: str, *overrides: str):
        return compose_config(["+experiment=l2_0999", *overrides, *TINY], tmp_path / name)

    tuned = cfg_in("tuned", f"init_from={weights}", "masks.overlap=4", "trainer.max_epochs=1")
    module = build_module(tuned, instantiate(tuned.masks))
    fresh = {k: v.clone() for k, v in module.discriminator.state_dict().items()}
    init = check_init_from(tuned)
    assert init.generator_only and init.path == weights
    init.load_into(module)
    state = module.state_dict()
    generator = [n for n in state if n.startswith("generator.")]
    assert generator and all(torch.equal(state[n], stored[n]) for n in generator)
    assert all(torch.equal(v, fresh[k]) for k, v in module.discriminator.state_dict().items())
    assert not torch.equal(state["discriminator.net.0.weight"], stored["discriminator.net.0.weight"])
    train(tuned)
    assert f"init_from: {weights}" in (tmp_path / "tuned" / "config_resolved.yaml").read_text()

    # A name that is no shipped model, or a shipped model of other networks: one line, before any record.
    with pytest.raises(
        ResumeMismatchError, match=r"^init_from: nope: neither a shipped model \(freeform, center\)"
    ):
        train(cfg_in("nope", "init_from=nope"))
    with pytest.raises(
        ResumeMismatchError,
        match=r"^init_from: \S+/freeform.safetensors's data.input_size is 128, the new config has 32; ",
    ):
        train(cfg_in("shipped", "init_from=freeform"))
    assert not any((tmp_path / "nope").rglob("*.csv")) and not any((tmp_path / "shipped").rglob("*.csv"))
