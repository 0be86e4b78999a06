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


def _repo_tool(*parts: str) -> Any:
    """A repository tool outside the package (experiments/...), loaded from its file."""
    import importlib.util

    path = Path(__file__).resolve().parents[1].joinpath(*parts)
    spec = importlib.util.spec_from_file_location(f"tool_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ship_tool() -> Any:
    """experiments/quality/freeform/ship.py (make weights)."""
    return _repo_tool("experiments", "quality", "freeform", "ship.py")


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


def test_starts_from_summarises_an_earlier_export_and_says_when_it_is_gone(tmp_path: Path) -> None:
    """make weights records the stage a fine-tune started from: a .safetensors export from its JSON (what it is,
    how far and how long it trained, its commands), a path gone since as such, nothing without init_from."""
    import hashlib

    ship = _ship_tool()
    weights = tmp_path / "init" / "freeform.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"not really tensors")
    sha = hashlib.sha256(b"not really tensors").hexdigest()
    earlier = {
        "sha256": sha,
        "experiment": "ship_freeform",
        "trained": {"epoch": 96, "global_step": 15330, "train_seconds": 6601.1, "other": 1},
        "training_commands": ["python -m ctx_inpaint.train +experiment=ship_freeform"],
        "made_by": "make weights-train WEIGHTS_RUNS=X, then make weights WEIGHTS_RUNS=X",
        "machine": "AMD EPYC (2 CPUs)",
        "training_config": {"trainer": {"precision": "bf16-mixed"}},
        "run_status": {
            "started_at": "2026-12-06T19:47:49",
            "updated_at": "2026-12-06T21:38:03",
            "wall_time_s": 6601.5,
        },
    }
    weights.with_suffix(".json").write_text(json.dumps(earlier))
    record = ship.starts_from(str(weights), "ship_freeform_tune")
    assert record == {
        "init_from": str(weights),
        "kind": "safetensors export",
        "sha256": sha,
        "experiment": "ship_freeform",
        "trained": {"epoch": 96, "global_step": 15330, "train_seconds": 6601.1},
        "training_commands": ["python -m ctx_inpaint.train +experiment=ship_freeform"],
        "made_by": "make weights-train WEIGHTS_RUNS=X, then make weights WEIGHTS_RUNS=X",
        "machine": "AMD EPYC (2 CPUs)",
        "precision": "bf16-mixed",
        "started_at": "2026-12-06T19:47:49",
        "updated_at": "2026-12-06T21:38:03",
        "wall_time_s": 6601.5,
    }
    # a file that is not the one its JSON describes is said to be so
    weights.write_bytes(b"other bytes")
    assert "differs from its JSON's" in ship.starts_from(str(weights))["note"]
    # a JSON that cannot be read: the file itself, hashed
    weights.with_suffix(".json").write_text("{not json")
    broken = ship.starts_from(str(weights))
    assert broken["sha256"] == hashlib.sha256(b"other bytes").hexdigest()
    assert broken["note"] == "no readable JSON beside it"
    gone = str(tmp_path / "gone" / "last.ckpt")
    assert ship.starts_from(gone) == {"init_from": gone, "note": "not found when exported"}
    assert ship.starts_from(None) is None


def test_starts_from_a_checkpoint_reads_its_run_record(tmp_path: Path) -> None:
    """A training checkpoint init: its size and sha256, and its run's run_status.json, experiment and commands;
    made_by names the make targets of each stage."""
    import hashlib

    ship = _ship_tool()
    run = tmp_path / "freeform"
    _run_folder(run, ["+experiment=ship_freeform", "trainer.max_time=00:01:50:00"])
    (run / ".hydra" / "config.yaml").write_text("name: ship_freeform\ntrainer:\n  precision: auto\n")
    (run / "config_resolved.yaml").write_text("trainer:\n  precision: 32-true\n")
    status = {"status": "finished", "global_step": 15330, "wall_time_s": 6601.5, "attempts": 1}
    status |= {"started_at": "a", "updated_at": "b", "machine": {"cpu": "AMD EPYC", "torch_threads": 2}}
    (run / "run_status.json").write_text(json.dumps(status))
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"a checkpoint, unreadable as one")
    record = ship.starts_from(str(ckpt))
    assert (
        record["kind"] == "training checkpoint" and "trained" not in record
    )  # unreadable: no steps invented
    assert record["size_bytes"] == len(b"a checkpoint, unreadable as one")
    assert record["sha256"] == hashlib.sha256(b"a checkpoint, unreadable as one").hexdigest()
    assert (record["experiment"], record["global_step"], record["wall_time_s"]) == (
        "ship_freeform",
        15330,
        6601.5,
    )
    assert (record["started_at"], record["updated_at"], record["attempts"]) == ("a", "b", 1)
    assert record["precision"] == "32-true" and record["machine"].startswith("AMD EPYC")
    assert record["training_commands"] == [
        f"python -m ctx_inpaint.train +experiment=ship_freeform trainer.max_time=00:01:50:00 hydra.run.dir={run}"
    ]
    assert ship.made_by("freeform", str(tmp_path), 1, str(ckpt), []) == (
        f"make weights-train WEIGHTS_RUNS={tmp_path}, then make weights-tune WEIGHTS_RUNS={tmp_path}, then "
        f"make weights WEIGHTS_RUNS={tmp_path}"
    )
    assert ship.made_by("freeform", str(tmp_path), 1, "/elsewhere/f.safetensors", ["freeform"]) == (
        f"make weights-tune WEIGHTS_RUNS={tmp_path} SHIP_TUNE_INIT=/elsewhere/f.safetensors, then "
        f"make weights WEIGHTS_RUNS={tmp_path} ARGS='--only freeform'"
    )
    assert ship.SHIPPED["freeform"] == ("freeform_tune", "ship_freeform_tune")
    assert ship.SHIPPED["center"] == ("center", "ship_center")


def _model_cards_tool() -> Any:
    """experiments/quality/shipped/model_cards.py (make model-cards)."""
    return _repo_tool("experiments", "quality", "shipped", "model_cards.py")


def test_the_model_card_says_where_a_fine_tune_starts_from() -> None:
    """The Training section names the earlier stage, its commands and the total training time; the holes of a
    FreeForm with a centre share say so; a record without either renders as before."""
    cards = _model_cards_tool()
    meta: dict[str, Any] = {
        "trained": {"epoch": 50, "global_step": 8000, "train_seconds": 5400.0},
        "run_status": {"global_step": 8000, "attempts": 1, "status": "finished"},
        "training_commands": ["python -m ctx_inpaint.train +experiment=ship_freeform_tune"],
        "made_by": "make weights-tune",
    }
    plain = cards.training_lines(meta)
    assert not any("Starts from" in line for line in plain)
    meta["starts_from"] = {
        "init_from": "/work/ship/init/freeform.safetensors",
        "kind": "safetensors export",
        "sha256": "97fc59fc2015e3b2edc6edf03d9cdb90",
        "experiment": "ship_freeform",
        "trained": {"global_step": 15330, "train_seconds": 6600.0},
        "training_commands": ["python -m ctx_inpaint.train +experiment=ship_freeform"],
    }
    lines = cards.training_lines(meta)
    start = next(i for i, line in enumerate(lines) if line.startswith("- **Starts from**"))
    head = lines[start]
    assert lines[start - 1].startswith("- **Time**: 5,400 s")  # after this stage's steps and time
    assert "`init_from=/work/ship/init/freeform.safetensors`, a safetensors export of `ship_freeform`" in head
    assert "sha256 `97fc59fc2015e3b2`" in head and "15,330 optimizer steps" in head
    assert "this stage's only; 12,000 s (3.33 h) of training in all" in head
    assert lines[start + 1 : start + 5] == [
        "",
        "    ```bash",
        "    python -m ctx_inpaint.train +experiment=ship_freeform",
        "    ```",
    ]
    meta["starts_from"] = {"init_from": "/gone.ckpt", "note": "not found when exported"}
    gone = next(line for line in cards.training_lines(meta) if "Starts from" in line)
    assert gone == (
        "- **Starts from**: `init_from=/gone.ckpt` (not found when exported). The steps and time above are this "
        "stage's only."
    )
    masks = {
        "_target_": "ctx_inpaint.masks.FreeForm",
        "image_size": 128,
        "min_coverage": 0.1,
        "max_coverage": 0.4,
    }
    assert (
        cards.masks_text(masks)
        == "free-form strokes and blobs hiding 10% to 40% of the 128-px input (`FreeForm`)"
    )
    assert cards.purpose_text(masks) == "holes of any shape (brush strokes and blobs)"
    masks["center_probability"] = 0.2
    assert cards.masks_text(masks) == (
        "free-form strokes and blobs hiding 10% to 40% of the 128-px input, and the centre 56-px hole in 20% of "
        "the samples (`FreeForm`, `center_probability`)"
    )
    assert cards.purpose_text(masks).startswith(
        "holes of any shape (brush strokes and blobs) and the centre hole"
    )
    assert cards.purpose_title(masks) == "free-form holes and the centre hole"
