"""RunStatus on its own: its wall-time arithmetic on a fake clock, and run_status.json written atomically."""

from __future__ import annotations

import builtins
import errno
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ctx_inpaint.training.callbacks import RunStatus


class FakeTrainer(SimpleNamespace):
    """What RunStatus reads of a trainer (rank zero, one CPU device)."""

    def __init__(self, root: Path, ckpt_path: str | None = None) -> None:
        super().__init__(
            is_global_zero=True,
            default_root_dir=str(root),
            ckpt_path=ckpt_path,
            current_epoch=0,
            max_epochs=3,
            global_step=0,
            interrupted=False,
            sanity_checking=False,
            accelerator=SimpleNamespace(),
            num_devices=1,
        )


class Clock:
    """A clock the test sets by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(root: Path) -> dict[str, Any]:
    return json.loads((root / RunStatus.FILENAME).read_text())


def test_wall_time_adds_every_attempt_on_a_fake_clock(tmp_path: Path) -> None:
    clock = Clock(1_800_000_000.0)
    status, trainer = RunStatus(clock), FakeTrainer(tmp_path)
    status.on_fit_start(trainer, None)
    assert record(tmp_path)["wall_time_s"] == 0.0 and record(tmp_path)["status"] == "running"
    clock.now += 3.25
    trainer.current_epoch = 1
    status.on_train_epoch_end(trainer, None)
    assert record(tmp_path)["wall_time_s"] == 3.25 and record(tmp_path)["epochs_completed"] == 1
    clock.now += 0.004  # a few milliseconds still show: the record keeps milliseconds
    status.on_exception(trainer, None, KeyboardInterrupt())
    first = record(tmp_path)
    assert first["status"] == "interrupted" and first["wall_time_s"] == 3.254

    clock.now += 7200.0  # resumed two hours later: the pause is not run time
    resumed, trainer = RunStatus(clock), FakeTrainer(tmp_path, ckpt_path="last")
    resumed.on_fit_start(trainer, None)
    clock.now += 1.5
    resumed.on_fit_end(trainer, None)
    last = record(tmp_path)
    assert last["status"] == "finished" and last["attempts"] == 2
    assert last["wall_time_s"] == 4.754 and last["started_at"] == first["started_at"]


class FullDisk:
    """A file open for writing that takes half of what is written, then fails as a full disk does."""

    def __init__(self, f: Any) -> None:
        self._f = f

    def write(self, data: bytes | str) -> int:
        self._f.write(data[: len(data) // 2])
        self._f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


def fill_disk(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Every write under ``root`` fails half-way, whichever way it opens the file (``open``, ``Path.write_*``)."""
    real_open = builtins.open

    def failing_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = real_open(file, mode, *args, **kwargs)
        inside = isinstance(file, str | Path) and Path(file).resolve().is_relative_to(root.resolve())
        return FullDisk(f) if inside and any(c in mode for c in "wax+") else f

    def failing_write(self: Path, data: Any, *args: Any, **kwargs: Any) -> int:
        with failing_open(self, "wb" if isinstance(data, bytes) else "w") as f:
            return f.write(data)

    monkeypatch.setattr(builtins, "open", failing_open)
    monkeypatch.setattr(Path, "write_text", failing_write)
    monkeypatch.setattr(Path, "write_bytes", failing_write)


def test_a_failing_write_leaves_the_previous_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 24.10: run_status.json was rewritten in place, so a full disk or a kill mid-write left half a JSON
    file, which the report cannot read. Now the previous record stays whole, and no temporary file is left."""
    clock = Clock(1_800_000_000.0)
    status, trainer = RunStatus(clock), FakeTrainer(tmp_path)
    status.on_fit_start(trainer, None)
    clock.now += 2.0
    trainer.current_epoch = 1
    status.on_train_epoch_end(trainer, None)
    before = (tmp_path / RunStatus.FILENAME).read_bytes()
    assert json.loads(before)["wall_time_s"] == 2.0

    clock.now += 2.0
    trainer.current_epoch = 2
    with monkeypatch.context() as patch:
        fill_disk(patch, tmp_path)
        with pytest.raises(OSError, match="No space left"):
            status.on_train_epoch_end(trainer, None)
        status.on_exception(trainer, None, RuntimeError("boom"))  # swallows the write's OSError
    assert (tmp_path / RunStatus.FILENAME).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [RunStatus.FILENAME]

    status.on_fit_end(trainer, None)  # the disk has room again: the next write goes through
    assert record(tmp_path)["status"] == "finished" and record(tmp_path)["wall_time_s"] == 4.0


@pytest.mark.parametrize(
    "damaged",
    [
        {"wall_time_s": "abc", "attempts": "two", "started_at": 5},
        {"wall_time_s": [1], "attempts": None},
        {"wall_time_s": -3.0, "attempts": True},
    ],
)
def test_a_damaged_record_does_not_stop_the_resume(tmp_path: Path, damaged: dict[str, Any]) -> None:
    """A hand-edited run_status.json with values of the wrong type costs the earlier time, never the run."""
    (tmp_path / RunStatus.FILENAME).write_text(json.dumps(damaged))
    clock = Clock(1_800_000_000.0)
    status, trainer = RunStatus(clock), FakeTrainer(tmp_path, ckpt_path="last")
    status.on_fit_start(trainer, None)
    clock.now += 1.5
    status.on_fit_end(trainer, None)
    last = record(tmp_path)
    assert last["wall_time_s"] == 1.5 and last["attempts"] == 2 and last["status"] == "finished"
    assert isinstance(last["started_at"], str) and last["started_at"].startswith("2027-")


def test_each_launch_is_recorded_with_its_overrides_and_machine(tmp_path: Path) -> None:
    """A run trained 1 h on two threads, then resumed with another budget: run_status.json keeps both launches'
    overrides (overrides.yaml keeps only the last), each with its start and machine."""
    clock = Clock(1_800_000_000.0)
    first_args = ["+experiment=ship_freeform", "trainer.max_time=00:01:00:00"]
    status, trainer = RunStatus(clock, overrides=lambda: first_args), FakeTrainer(tmp_path)
    status.on_fit_start(trainer, None)
    clock.now += 60.0
    status.on_fit_end(trainer, None)
    second_args = ["+experiment=ship_freeform", "trainer.max_time=00:01:50:00", "ckpt_path=last"]
    clock.now += 10.0
    resumed = RunStatus(clock, overrides=lambda: second_args)
    resumed.on_fit_start(trainer := FakeTrainer(tmp_path, ckpt_path="last"), None)
    resumed.on_fit_end(trainer, None)
    launches = record(tmp_path)["launches"]
    assert [entry["attempt"] for entry in launches] == [1, 2]
    assert launches[0]["overrides"] == first_args and launches[1]["overrides"] == second_args
    assert launches[1]["started_at"] > launches[0]["started_at"]
    assert all(isinstance(entry["machine"], dict) for entry in launches)


def test_outside_a_hydra_run_a_launch_has_no_overrides(tmp_path: Path) -> None:
    """No Hydra run (a test, a notebook): the launch is recorded, its overrides as unknown (None), not as []."""
    status, trainer = RunStatus(Clock(1_800_000_000.0)), FakeTrainer(tmp_path)
    status.on_fit_start(trainer, None)
    assert record(tmp_path)["launches"][0]["overrides"] is None


def _ship_tool() -> Any:
    """experiments/quality/freeform/ship.py (make weights), a repository tool outside the package."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "experiments" / "quality" / "freeform" / "ship.py"
    spec = importlib.util.spec_from_file_location("ship_tool", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_folder(root: Path, last_overrides: list[str]) -> None:
    (root / ".hydra").mkdir(parents=True)
    (root / ".hydra" / "overrides.yaml").write_text(json.dumps(last_overrides))
    (root / ".hydra" / "hydra.yaml").write_text(
        json.dumps({"hydra": {"overrides": {"hydra": [f"hydra.run.dir={root}"]}}})
    )


def test_the_weights_card_gives_each_launch_its_own_command(tmp_path: Path) -> None:
    """make weights writes one command per launch from run_status.json's launches, each with its own budget;
    without them (older runs) only the last launch's line, marked as such, never as the first one's."""
    ship = _ship_tool()
    first = ["+experiment=ship_freeform", "trainer.max_time=00:01:00:00"]
    last = ["+experiment=ship_freeform", "trainer.max_time=00:01:50:00", "ckpt_path=last"]
    _run_folder(tmp_path, last)
    launches = [
        {"attempt": 1, "overrides": first, "machine": {"torch_threads": 2}},
        {"attempt": 2, "overrides": last, "machine": {"torch_threads": 1}},
    ]
    lines = ship.commands(tmp_path, {"attempts": 2, "launches": launches})
    assert lines == [
        f"python -m ctx_inpaint.train {' '.join(first)} hydra.run.dir={tmp_path}",
        f"python -m ctx_inpaint.train {' '.join(last)} hydra.run.dir={tmp_path}",
    ]
    assert ship.threads_per_launch({"launches": launches}) == "; torch threads by launch: 2, 1"
    older = ship.commands(tmp_path, {"attempts": 2})
    assert older[0].startswith("# launch 2 of 2") and "00:01:50:00" in older[1] and len(older) == 2
