"""Pre-emption and Ctrl-C as they really arrive (issue 24, part 2): SIGTERM and SIGINT, to the process group or the
main process, with 0, 1 or 2 loader workers, in training or in validation; a second Ctrl-C while saving; SIGKILL
during a checkpoint write.

The runs are real subprocesses in a session of their own (``start_new_session``), signalled with ``os.killpg`` or
``os.kill``. They do not race: ``PauseForSignal`` writes a marker file at a known step and holds the run there
until the signal has been taken; the test waits for that file (timeouts only stop a hang). The resumes run in this
process (quicker than another interpreter start). Representative corners of the matrix run as subprocesses; the
rest, cheaper, in this process with real signals to itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

from ctx_inpaint.common.cli import STOP, report_user_errors
from ctx_inpaint.training.checkpointing import VALIDATION_OWED_KEY, catch_stop_signals
from ctx_inpaint.training.run import train
from tests.conftest import REPO, TINY, compose_config
from tests.test_faults import read_rows, row_key

# 3 epochs of 4 batches (L2 only: one optimizer step per batch), 3 validation batches of 2 crops per epoch.
RUN = [
    "+experiment=l2_1",
    *TINY,
    "data.samples_per_epoch=16",
    "data.val_batch_size=2",
    "trainer.max_epochs=3",
    "callbacks.progress_bar=null",
    "logger=csv",
]
HANG = 900  # seconds: only a hung run takes this long


# ---- test callbacks, built by the runs from the command line (+callbacks.NAME._target_=tests.test_signals.X) ----
class PauseForSignal(pl.Callback):
    """Holds the run at the start of training batch ``batch`` of epoch ``epoch`` (``phase="train"``) or of that
    epoch's validation batch ``batch`` (``phase="val"``) until a stop signal has been taken, after writing
    ``marker``: the test sends its signal knowing which step the run is in."""

    def __init__(self, marker: str, phase: str = "train", epoch: int = 1, batch: int = 1) -> None:
        self.marker, self.phase, self.epoch, self.batch = Path(marker), phase, epoch, batch

    def _pause(self, trainer: pl.Trainer, batch_idx: int) -> None:
        if trainer.sanity_checking or (trainer.current_epoch, batch_idx) != (self.epoch, self.batch):
            return
        self.marker.write_text(str(os.getpid()))
        deadline = time.monotonic() + HANG
        while not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.01)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.phase == "train":
            self._pause(trainer, batch_idx)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if self.phase == "val":
            self._pause(trainer, batch_idx)


class _WaitForSecondInterrupt:
    """Pickled inside ``torch.save`` (the temporary file is open): writes ``marker``, then waits for the second
    Ctrl-C, whose KeyboardInterrupt is raised right here, in the middle of the checkpoint write."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        self.marker.write_text("saving")
        deadline = time.monotonic() + HANG
        while time.monotonic() < deadline:
            time.sleep(0.01)
        return (str, ("no second Ctrl-C came",))


class SecondInterruptDuringSave(pl.Callback):
    """Puts a ``_WaitForSecondInterrupt`` into the checkpoint the stop writes (not into earlier ones)."""

    def __init__(self, marker: str) -> None:
        self.marker = Path(marker)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if STOP.signum is not None:
            checkpoint["test_wait"] = _WaitForSecondInterrupt(self.marker)


class _KillWhenPickled:
    """SIGKILLs its own process while ``torch.save`` writes it: a checkpoint write that never ends."""

    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(HANG)
        return (str, ("",))


class SignalAt(pl.Callback):
    """Sends ``signum`` to its own process in hook ``hook`` (``setup``, or ``val`` after validation batch
    ``batch`` of epoch ``epoch``)."""

    def __init__(self, hook: str, signum: int, epoch: int = 0, batch: int = 0) -> None:
        self.hook, self.signum, self.epoch, self.batch = hook, signum, epoch, batch

    def setup(self, trainer, pl_module, stage) -> None:
        if self.hook == "setup":
            os.kill(os.getpid(), self.signum)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if self.hook == "val" and (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            if not trainer.sanity_checking:
                os.kill(os.getpid(), self.signum)


# ---- running the CLI in a session of its own --------------------------------------------------------------------
class Run:
    """``python -m ctx_inpaint.train RUN ... hydra.run.dir=run_dir`` started in a new session (its own process
    group, as a job under a scheduler or a terminal's foreground job is), its output in files."""

    def __init__(self, tmp: Path, run_dir: Path, *extra: str) -> None:
        self.run_dir = run_dir
        self.out, self.err = tmp / f"{run_dir.name}.out", tmp / f"{run_dir.name}.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB")}
        env.update(HOME=str(tmp), PYTHONPATH=str(REPO))
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ctx_inpaint.train", *RUN, f"hydra.run.dir={run_dir}", *extra],
                cwd=tmp,
                env=env,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def wait_for(self, marker: Path) -> None:
        deadline = time.monotonic() + HANG
        while not marker.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"the run ended ({self.proc.returncode}) first:\n{self.stderr()[-3000:]}")
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"no {marker.name} after {HANG} s")
            time.sleep(0.02)

    def finish(self) -> int:
        try:
            return self.proc.wait(timeout=HANG)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            pytest.fail(f"the run did not end:\n{self.stderr()[-3000:]}")

    def stderr(self) -> str:
        return self.err.read_text()


def pause(marker: Path, phase: str, epoch: int = 1, batch: int = 1) -> list[str]:
    return [
        "+callbacks.pause._target_=tests.test_signals.PauseForSignal",
        f"+callbacks.pause.marker={marker}",
        f"+callbacks.pause.phase={phase}",
        f"+callbacks.pause.epoch={epoch}",
        f"+callbacks.pause.batch={batch}",
    ]


def resume_line(signame: str, ckpt: Path, step: int, epoch: int, run_dir: Path, owed: bool = False) -> str:
    owes = ", its validation to be rerun" if owed else ""
    return (
        f"[ctx-inpaint] stopped by {signame}: wrote {ckpt} at global step {step} (epoch {epoch}{owes}); resume "
        f"with the same command plus hydra.run.dir={run_dir} ckpt_path=last"
    )


def assert_clean_stop(run: Run, status: int, line: str) -> None:
    """Exit status, the closing line last on stderr, no traceback, and a resumable run_status.json."""
    assert run.finish() == status, run.stderr()[-3000:]
    err = run.stderr()
    assert "Traceback" not in err and "killed by signal" not in err and "exited unexpectedly" not in err, err
    assert err.strip().splitlines()[-1] == line
    assert line in (run.run_dir / "train.log").read_text()
    assert json.loads((run.run_dir / "run_status.json").read_text())["status"] == "interrupted"


def assert_resumed_whole(run_dir: Path, steps: int = 12) -> list[dict[str, str]]:
    """Resume in this process; every training step and every epoch's validation logged exactly once."""
    train(compose_config([*RUN, "ckpt_path=last"], run_dir))
    rows = read_rows(run_dir / "metrics.csv")
    keys = [row_key(r) for r in rows]
    assert len(keys) == len(set(keys)), "duplicated rows"
    assert sorted(s for s, names in keys if "train/loss_rec" in names) == list(range(steps))
    assert [int(r["epoch"]) for r in rows if "val/psnr" in r] == [0, 1, 2]
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["global_step"], last["epoch"]) == (steps, 2)
    status = json.loads((run_dir / "run_status.json").read_text())
    assert (status["status"], status["attempts"], status["global_step"]) == ("finished", 2, steps)
    return rows


# ---- subprocesses: the matrix's corners ---------------------------------------------------------------------------
@pytest.mark.slow
def test_sigterm_to_the_process_group_with_a_loader_worker_in_training(tmp_path: Path) -> None:
    """The issue's run: a worker killed by the group's SIGTERM ended the run in a traceback from Lightning's
    teardown. Now the step under way finishes, last.ckpt holds it, one line names it, exit 143."""
    run_dir, marker = tmp_path / "run", tmp_path / "paused"
    run = Run(tmp_path, run_dir, "data.num_workers=1", *pause(marker, "train", epoch=1, batch=1))
    run.wait_for(marker)
    os.killpg(run.proc.pid, signal.SIGTERM)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert_clean_stop(run, 143, resume_line("SIGTERM", ckpt, 6, 1, run_dir))  # 4 + 2 batches, mid-epoch 1
    saved = torch.load(ckpt, weights_only=True)
    assert (saved["global_step"], saved["epoch"]) == (6, 1) and VALIDATION_OWED_KEY not in saved
    assert not list((run_dir / "checkpoints").glob(".*"))  # no temporary file left
    assert_resumed_whole(run_dir)


@pytest.mark.slow
def test_ctrl_c_to_the_process_group_with_two_loader_workers_in_validation(tmp_path: Path) -> None:
    """A terminal's Ctrl-C: "Detected KeyboardInterrupt", exit 1 and no last.ckpt. Now SIGINT stops the
    validation at its next batch; last.ckpt owes it, the resume runs it (rows, sample grid), exit 130."""
    run_dir, marker = tmp_path / "run", tmp_path / "paused"
    run = Run(tmp_path, run_dir, "data.num_workers=2", *pause(marker, "val", epoch=1, batch=0))
    run.wait_for(marker)
    os.killpg(run.proc.pid, signal.SIGINT)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert_clean_stop(run, 130, resume_line("SIGINT", ckpt, 8, 1, run_dir, owed=True))
    assert torch.load(ckpt, weights_only=True)[VALIDATION_OWED_KEY]["epoch"] == 1
    assert [int(r["epoch"]) for r in read_rows(run_dir / "metrics.csv") if "val/psnr" in r] == [0]
    assert_resumed_whole(run_dir)
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == [f"epoch_000{i}.png" for i in range(3)]


@pytest.mark.slow
def test_a_second_ctrl_c_while_the_checkpoint_is_written_aborts_at_once(tmp_path: Path) -> None:
    """SIGINT to the main process alone; a second Ctrl-C (to the group) lands inside torch.save of the stop's
    checkpoint: the run aborts there, the temporary file is removed, the previous last.ckpt (epoch 0's) is whole
    and the line says that is what a resume continues from; exit 130."""
    run_dir, paused, saving = tmp_path / "run", tmp_path / "paused", tmp_path / "saving"
    run = Run(
        tmp_path,
        run_dir,
        "callbacks.model_checkpoint.last_every_s=null",  # last.ckpt at epoch 0's end
        *pause(paused, "train", epoch=1, batch=1),
        "+callbacks.second._target_=tests.test_signals.SecondInterruptDuringSave",
        f"+callbacks.second.marker={saving}",
    )
    run.wait_for(paused)
    os.kill(run.proc.pid, signal.SIGINT)
    run.wait_for(saving)
    os.killpg(run.proc.pid, signal.SIGINT)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    line = resume_line("SIGINT", ckpt, 4, 0, run_dir).replace(
        "stopped by SIGINT: wrote",
        "stopped by SIGINT, aborted by a second Ctrl-C before the stop's checkpoint was written: kept",
    )
    assert_clean_stop(run, 130, line)
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())  # no temporary file
    assert len(names) == 2 and names[0].startswith("epoch000-") and names[1] == "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 4


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_write_leaves_nothing_a_later_run_trips_over(tmp_path: Path) -> None:
    """The checkpoint writer killed mid-write leaves its hidden temporary file (as large as a checkpoint); the
    next attempt in that run dir removes it and resumes from the intact last.ckpt."""
    run_dir = tmp_path / "run"
    train(compose_config([*RUN, "trainer.max_epochs=1"], run_dir))
    folder = run_dir / "checkpoints"
    ckpt = folder / "last.ckpt"
    before = ckpt.read_bytes()
    script = (
        "import torch\n"
        "from ctx_inpaint.training.checkpointing import AtomicCheckpointIO\n"
        "from tests.test_signals import _KillWhenPickled\n"
        f"state = torch.load({str(ckpt)!r}, weights_only=True)\n"
        "state['killer'] = _KillWhenPickled()\n"
        f"AtomicCheckpointIO().save_checkpoint(state, {str(ckpt)!r})\n"
    )
    killed = subprocess.run(
        [sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=HANG
    )
    assert killed.returncode == -signal.SIGKILL
    (stale,) = folder.glob(".last.ckpt.tmp-*")
    assert ckpt.read_bytes() == before
    train(compose_config([*RUN, "ckpt_path=last"], run_dir))  # the next attempt
    assert not stale.exists() and not list(folder.glob(".*"))
    assert torch.load(ckpt, weights_only=True)["global_step"] == 12


# ---- in this process: the same handlers, real signals to itself ----------------------------------------------------
@pytest.fixture(scope="module")
def reference_rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    """metrics.csv of the uninterrupted run (no workers: the resume reproduces it exactly)."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    train(compose_config(RUN, run_dir))
    return read_rows(run_dir / "metrics.csv")


def test_ctrl_c_in_the_last_validation_batch_resumes_like_an_uninterrupted_run(
    tmp_path: Path, reference_rows
) -> None:
    """In the last validation batch Lightning lets the validation and the epoch end finish, then stops: last.ckpt
    is the completed epoch's and the resumed rows equal the uninterrupted run's, values included."""
    run_dir = tmp_path / "run"
    signal_at = ["+callbacks.sig._target_=tests.test_signals.SignalAt", "+callbacks.sig.hook=val"]
    cfg = compose_config([*RUN, *signal_at, "+callbacks.sig.signum=2", "+callbacks.sig.epoch=1",
                          "+callbacks.sig.batch=2"], run_dir)  # fmt: skip
    with pytest.raises(SIGTERMException):
        train(cfg)
    assert (STOP.signum, STOP.step, STOP.epoch, STOP.written) == (signal.SIGINT, 8, 2, True)
    assert not STOP.validation_owed
    rows = assert_resumed_whole(run_dir)
    assert [row_key(r) for r in rows] == [row_key(r) for r in reference_rows]
    for got, want in zip(rows, reference_rows):
        assert {k: pytest.approx(float(v), rel=1e-5) for k, v in want.items()} == {
            k: float(v) for k, v in got.items()
        }


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_before_the_first_batch_stops_there_and_writes_nothing(tmp_path: Path, signum: int) -> None:
    """While the data and the model are set up: no batch is trained, no checkpoint written (a fresh run) or
    rewritten (a resumed one: the line names the one it loaded)."""
    run_dir = tmp_path / "run"
    early = ["+callbacks.sig._target_=tests.test_signals.SignalAt", "+callbacks.sig.hook=setup",
             f"+callbacks.sig.signum={int(signum)}"]  # fmt: skip
    with pytest.raises(SIGTERMException):
        train(compose_config([*RUN, *early], run_dir))
    assert STOP.checkpoint is None and STOP.line().startswith(
        f"[ctx-inpaint] stopped by {signal.Signals(signum).name}: no last.ckpt written yet; resume"
    )
    assert not (run_dir / "checkpoints").exists()
    status = json.loads((run_dir / "run_status.json").read_text())
    assert (status["status"], status["global_step"]) == ("interrupted", 0)

    train(compose_config([*RUN, "ckpt_path=last", "trainer.max_epochs=1"], run_dir))  # starts over
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    written = ckpt.stat().st_mtime_ns
    with pytest.raises(SIGTERMException):
        train(compose_config([*RUN, *early, "ckpt_path=last"], run_dir))
    assert (STOP.checkpoint, STOP.step, STOP.epoch, STOP.written) == (str(ckpt), 4, 0, False)
    assert ckpt.stat().st_mtime_ns == written


def test_loader_workers_leave_stop_signals_to_the_main_process() -> None:
    """The group's SIGINT and SIGTERM reach the workers too: they carry on (torch's own handler ended a worker on
    SIGTERM); the loader still ends them, by its shutdown and by terminate() (SIGTERM from the main process)."""
    from ctx_inpaint.data.datamodule import SignalSafeDataLoader, worker_init

    loader = SignalSafeDataLoader(
        list(range(64)), batch_size=2, num_workers=2, worker_init_fn=worker_init, persistent_workers=True
    )
    batches = iter(loader)
    assert next(batches).tolist() == [0, 1]
    workers = list(batches._workers)
    pids = " ".join(str(w.pid) for w in workers)
    # From another process, as a terminal's or a scheduler's signal comes (the loader's own SIGTERM ends a worker).
    subprocess.run(["sh", "-c", f"kill -INT {pids} && kill -TERM {pids}"], check=True, timeout=HANG)
    assert [b.tolist() for b, _ in zip(batches, range(20))][-1] == [40, 41]  # every worker still serving
    assert all(w.is_alive() for w in workers)
    workers[0].terminate()  # what the loader does to a worker that does not join
    workers[0].join(timeout=600)
    assert workers[0].exitcode == 0
    batches._shutdown_workers()
    workers[1].join(timeout=600)
    assert workers[1].exitcode == 0


def test_the_cli_exit_status_and_line_for_each_way_a_stop_ends(tmp_path: Path, capsys) -> None:
    """143 for SIGTERM, 130 for SIGINT (Lightning's own Ctrl-C path exits 1), one line each, no traceback."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    def status_and_line(raise_it, signum: int | None) -> tuple[int, str]:
        with catch_stop_signals(tmp_path):
            STOP.signum = signum
            with pytest.raises(SystemExit) as stop, report_user_errors():
                raise_it()
        (line,) = capsys.readouterr().err.strip().splitlines()
        return stop.value.code, line

    def lightning_ctrl_c() -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            sys.exit(1)

    def stop() -> None:
        raise SIGTERMException

    def interrupt() -> None:
        raise KeyboardInterrupt

    assert status_and_line(stop, signal.SIGTERM)[0] == 143
    code, line = status_and_line(stop, signal.SIGINT)
    assert code == 130 and line.startswith(
        "[ctx-inpaint] stopped by SIGINT: no last.ckpt written yet; resume"
    )
    assert line.endswith(f"hydra.run.dir={tmp_path} ckpt_path=last")
    assert status_and_line(interrupt, None) == (130, line)  # a Ctrl-C outside the run's handlers
    code, line = status_and_line(lightning_ctrl_c, signal.SIGINT)
    assert code == 130 and "aborted by a second Ctrl-C" in line
    with pytest.raises(SystemExit) as other, report_user_errors():
        sys.exit(3)
    assert other.value.code == 3  # other exits pass through
