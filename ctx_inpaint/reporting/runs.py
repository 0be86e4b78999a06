"""Reading one sweep directory: every run's config, metrics.csv and run_status.json, without W&B."""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from ctx_inpaint.common import run_folder
from ctx_inpaint.common.run_folder import RunFolder
from ctx_inpaint.errors import DataError, MissingDataError, one_line

RUN_DIR = re.compile(r"^(\d+)_(.+)$")
# The config with its interpolations resolved, which training writes beside Hydra's own (.hydra/config.yaml).
RESOLVED_CONFIG = "config_resolved.yaml"
VAL_KEYS = run_folder.VAL_METRICS


@dataclass
class EpochMetrics:
    """Validation metrics of one epoch (1-based: ``epoch`` 1 is after the first training epoch)."""

    epoch: int
    l1: float
    l2: float
    psnr: float
    ssim: float


@dataclass
class Run:
    """One run of a sweep, with what is known about it even if it crashed or never started."""

    num: int
    name: str
    path: Path | None
    config: dict[str, Any] = field(default_factory=dict)
    status: str = "not started"  # finished | incomplete | failed | running | not started
    detail: str = ""
    record: dict[str, Any] = field(default_factory=dict)  # run_status.json
    val: list[EpochMetrics] = field(default_factory=list)
    train: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # key -> [(step, value)]
    images: dict[int, dict[int, dict[str, float]]] = field(
        default_factory=dict
    )  # epoch -> val crop -> metrics

    @property
    def ok(self) -> bool:
        return self.status == "finished"

    @property
    def seed(self) -> int | None:
        value = self.config.get("seed")
        return int(value) if isinstance(value, int) else None

    @property
    def axis(self) -> str:
        return str((self.config.get("ablation") or {}).get("axis", "-"))

    @property
    def seed_psnr(self) -> list[float]:
        return [float(v) for v in (self.config.get("ablation") or {}).get("seed_psnr") or []]

    @property
    def max_epochs(self) -> int | None:
        value = (self.config.get("trainer") or {}).get("max_epochs")
        return int(value) if value is not None and int(value) > 0 else None

    @property
    def adversarial(self) -> bool:
        model = self.config.get("model") or {}
        return model.get("discriminator") is not None and float(model.get("lambda_rec", 1.0)) < 1.0

    @property
    def wall_time_s(self) -> float | None:
        value = self.record.get("wall_time_s")
        return float(value) if value is not None else None

    def d_gap(self) -> tuple[list[int], list[float]]:
        """Steps where both D(real) and D(generated) were logged, and D(real) - D(generated) at each."""
        real, fake = dict(self.train.get("d_real", [])), dict(self.train.get("d_fake", []))
        steps = sorted(real.keys() & fake.keys())
        return steps, [real[s] - fake[s] for s in steps]

    def best(self) -> EpochMetrics | None:
        finite = [m for m in self.val if math.isfinite(m.psnr)]
        return max(finite, key=lambda m: m.psnr) if finite else None

    def final(self) -> EpochMetrics | None:
        return self.val[-1] if self.val else None

    def at_epoch(self, epoch: int) -> EpochMetrics | None:
        return next((m for m in self.val if m.epoch == epoch), None)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_time(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


# What each kind of value the report reads must be (None, a missing key, always passes).
KINDS: dict[str, Callable[[object], bool]] = {
    "a mapping": lambda v: isinstance(v, dict),
    "a list": lambda v: isinstance(v, list),
    "a list of numbers": lambda v: isinstance(v, list) and all(_is_number(x) for x in v),
    "an integer": _is_int,
    "a positive integer": lambda v: _is_int(v) and v > 0,
    "a number": _is_number,
    "a string": lambda v: isinstance(v, str),
    "a single value": lambda v: not isinstance(v, dict | list),
    "an ISO 8601 time": _is_time,
}
# The keys of a run's config the report reads, parents before children.
CONFIG_SHAPE = {
    "name": "a single value",
    "seed": "an integer",
    "trainer": "a mapping",
    "trainer.max_epochs": "an integer",
    "data": "a mapping",
    "data.input_size": "a positive integer",
    "budget": "a mapping",
    "budget.name": "a single value",
    "ablation": "a mapping",
    "ablation.axis": "a single value",
    "ablation.seed_psnr": "a list of numbers",
    "masks": "a mapping",
    "masks._target_": "a single value",
    "model": "a mapping",
    "model.lambda_rec": "a number",
    "model.encoder": "a mapping",
    "model.encoder._target_": "a single value",
    "model.encoder.widths": "a list",
    "model.decoder": "a mapping",
    "model.discriminator": "a mapping",
}
STATUS_SHAPE = {
    "status": "a string",
    "wall_time_s": "a number",
    "started_at": "an ISO 8601 time",
    "updated_at": "an ISO 8601 time",
    "machine": "a mapping",
}
MULTIRUN_SHAPE = {
    "name": "a single value",
    "hydra": "a mapping",
    "hydra.sweeper": "a mapping",
    "hydra.sweeper.params": "a mapping",
    "hydra.overrides": "a mapping",
    "hydra.overrides.task": "a list",
}


def check_shape(path: Path, data: dict[str, Any], shape: dict[str, str]) -> None:
    """Refuse (one line naming the file and the key) a value of another kind than the report reads: a damaged or
    hand-edited file would otherwise end in a traceback far from its cause."""
    for key, kind in shape.items():
        value: Any = data
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None and not KINDS[kind](value):
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise DataError(f"{path}: {key} is {shown}; expected {kind}")


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({one_line(err)[:120]}); expected {what}") from None
    except OSError as err:
        raise DataError(
            f"{path}: cannot be read ({err.strerror or one_line(err)}); expected {what}"
        ) from None


def read_mapping(path: Path, what: str, shape: dict[str, str], unresolved: bool = False) -> dict[str, Any]:
    """A YAML (``.json``: JSON) mapping; ``{}`` when the file is missing or an empty YAML file, one line naming the
    file when it is not valid, not a mapping, or holds a key of another kind than ``shape`` says. ``unresolved``:
    the file may hold OmegaConf interpolations (``${...}``), read as unknown (None)."""
    if not path.is_file():
        return {}
    text = _read_text(path, what)
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise DataError(f"{path}: not valid {kind} ({one_line(err)[:120]}); expected {what}") from None
    if data is None and path.suffix != ".json":
        return {}
    if not isinstance(data, dict):
        raise DataError(f"{path}: holds a {type(data).__name__} ({str(data)[:40]}); expected {what}")
    if unresolved:
        data = _without_interpolations(data)
    check_shape(path, data, shape)
    return data


def _without_interpolations(value: Any) -> Any:
    """``value`` with every ``${...}`` string (Hydra's unresolved ``.hydra/config.yaml``) replaced by None."""
    if isinstance(value, dict):
        return {k: _without_interpolations(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_interpolations(v) for v in value]
    return None if isinstance(value, str) and "${" in value else value


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's config: ``config_resolved.yaml`` (interpolations resolved), else Hydra's ``.hydra/config.yaml``
    (a run that stopped before training wrote the resolved one; its interpolations are unknown values)."""
    what = "the mapping of the run's config that training writes"
    return read_mapping(run_dir / RESOLVED_CONFIG, what, CONFIG_SHAPE) or read_mapping(
        RunFolder(run_dir).config, what, CONFIG_SHAPE, unresolved=True
    )


def read_multirun(sweep_dir: Path) -> dict[str, Any]:
    return read_mapping(
        sweep_dir / "multirun.yaml", "the mapping Hydra writes for a multirun", MULTIRUN_SHAPE
    )


def _float(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _int(text: str | None) -> int | None:
    """An epoch or step count (``"3"`` or ``"3.0"``); None for anything else."""
    value = _float(text) if isinstance(text, str) else None
    return int(value) if value is not None and math.isfinite(value) else None


# Columns every metrics.csv of Lightning's CSVLogger has, and those of the module's val_images.csv.
METRICS_COLUMNS = ("epoch", "step")
VAL_IMAGES_COLUMNS = run_folder.VAL_IMAGES_COLUMNS
METRICS_WHAT = (
    "the CSV training writes (a header of step, epoch and metric names, then one row per logged step)"
)


def _rows(path: Path, required: Sequence[str], what: str) -> list[dict[str | None, str | None]]:
    """The file's rows, refused in one line when it is not UTF-8 CSV or its header lacks a ``required`` column;
    an empty file (a run killed before its first log) has no rows."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = reader.fieldnames
    except (csv.Error, UnicodeDecodeError, OSError) as err:
        raise DataError(
            f"{path}: not a readable {path.name} ({type(err).__name__}: {one_line(err)[:160]}); expected {what}"
        ) from None
    if header is None:
        return []
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path}: its header lacks {', '.join(missing)}; expected {what}")
    return rows


def _check_numeric(
    path: Path, rows: list[dict[str | None, str | None]], columns: Sequence[str], what: str
) -> None:
    """A column with values of which not one is a number is not the file training writes (single odd values are
    skipped: a kill mid-write leaves half a row)."""
    for column in columns:
        cells = [row.get(column) for row in rows]
        cells = [c for c in cells if isinstance(c, str) and c != ""]
        if cells and all(_float(c) is None for c in cells):
            shown = cells[0] if len(cells[0]) <= 30 else cells[0][:27] + "..."
            raise DataError(
                f"{path}: column {column} holds no number (first value {shown!r}); expected {what}"
            )


def read_metrics(path: Path) -> tuple[list[EpochMetrics], dict[str, list[tuple[int, float]]]]:
    """Lightning's CSVLogger file: val metrics per epoch and every ``train/*`` series against the step."""
    val: dict[int, dict[str, float]] = {}
    train: dict[str, list[tuple[int, float]]] = {}
    rows = _rows(path, METRICS_COLUMNS, METRICS_WHAT)
    read = [k for k in (rows[0] if rows else {}) if isinstance(k, str) and k.startswith(("val/", "train/"))]
    _check_numeric(path, rows, [*METRICS_COLUMNS, *read], METRICS_WHAT)
    for row in rows:
        epoch, step = _int(row.get("epoch")), _int(row.get("step"))
        for key, text in row.items():
            if key is None or not isinstance(text, str):  # fields beyond the header, or missing ones
                continue
            value = _float(text)
            if value is None:
                continue
            if key.startswith("val/") and key[4:] in VAL_KEYS and epoch is not None:
                val.setdefault(epoch + 1, {})[key[4:]] = value
            elif key.startswith("train/") and step is not None:
                train.setdefault(key[6:], []).append((step, value))
    epochs = [
        EpochMetrics(epoch=e, **{k: v.get(k, math.nan) for k in VAL_KEYS})
        for e, v in sorted(val.items())
        if "psnr" in v
    ]
    return epochs, train


def read_val_images(path: Path) -> dict[int, dict[int, dict[str, float]]]:
    """The module's ``val_images.csv``: per-crop val metrics of every validation. A validation run again after a
    resume appends its rows again; the last row of an (epoch, crop) wins. Rows that do not parse are skipped."""
    what = "the CSV training writes (epoch, index, l1, l2, psnr, ssim)"
    rows = _rows(path, VAL_IMAGES_COLUMNS, what)
    _check_numeric(path, rows, VAL_IMAGES_COLUMNS, what)
    out: dict[int, dict[int, dict[str, float]]] = {}
    for row in rows:
        epoch, index = _int(row.get("epoch")), _int(row.get("index"))
        values = {k: _float(row.get(k)) for k in VAL_KEYS}
        if epoch is None or index is None or any(v is None for v in values.values()):
            continue
        out.setdefault(epoch, {})[index] = values  # type: ignore[assignment]
    return out


def _error_from_log(run_dir: Path) -> str:
    """Last exception line of the Hydra job log, if any (runs that crashed before the trainer started)."""
    for log in sorted(run_dir.glob("*.log")):
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        errors = [ln for ln in lines if re.search(r"(Error|Exception)\b", ln)]
        if errors:
            return errors[-1][:300]
    return ""


def classify(run: Run) -> None:
    """Set ``status`` and ``detail`` from the run's record, its metrics and its configured epochs."""
    rec, expected = run.record, run.max_epochs
    done = len(run.val)
    if rec.get("status") == "failed":
        run.status, run.detail = "failed", str(rec.get("error", "exception during training"))
    elif rec.get("status") == "interrupted":
        run.status, run.detail = "incomplete", f"interrupted after {done} epoch(s)"
    elif rec.get("status") == "finished":
        if expected is not None and done < expected:
            run.status, run.detail = "incomplete", f"stopped after {done}/{expected} epochs"
        else:
            run.status = "finished"
    elif rec.get("status") == "running":
        run.status = "incomplete"
        run.detail = f"no end record: killed or still running after {done}/{expected or '?'} epochs"
    elif done:
        run.status, run.detail = "incomplete", f"no {run_folder.STATUS}; {done} epoch(s) of metrics"
    else:
        run.status = "failed"
        run.detail = _error_from_log(run.path) if run.path else ""
        run.detail = run.detail or "no metrics and no run record (crashed before training)"


def load_run(run_dir: Path) -> Run:
    match = RUN_DIR.match(run_dir.name)
    num, name = (int(match.group(1)), match.group(2)) if match else (-1, run_dir.name)
    run = Run(num=num, name=name, path=run_dir)
    run.config = read_config(run_dir)
    run.name = str(run.config.get("name", name))
    folder = RunFolder(run_dir)
    run.record = read_mapping(
        folder.status, "the JSON object training writes (status, times, machine)", STATUS_SHAPE
    )
    if folder.metrics.is_file():
        run.val, run.train = read_metrics(folder.metrics)
    if folder.val_images.is_file():
        run.images = read_val_images(folder.val_images)
    classify(run)
    return run


@dataclass
class PlannedJob:
    """One job of the sweep as Hydra's basic sweeper numbers it: ``num``, its run name, and the overrides
    that set it apart from the sweep's other jobs."""

    num: int
    name: str
    varying: list[str]


def planned_jobs(sweep_dir: Path) -> list[PlannedJob]:
    """Every job the sweep asked for, from ``multirun.yaml`` (the sweeper's params, then the command's overrides,
    expanded as Hydra's basic sweeper does: the product of the swept values, in order). Empty when the file is
    missing or holds a sweep this cannot expand (another sweeper's syntax)."""
    cfg = read_multirun(sweep_dir)
    hydra_cfg = cfg.get("hydra") or {}
    params = (hydra_cfg.get("sweeper") or {}).get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + task_overrides(sweep_dir)
    if not arguments:
        return []
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        jobs = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(arguments), None)[0]
    except Exception:  # noqa: BLE001 - a sweep this cannot expand: report the run dirs only
        return []
    values: dict[str, set[str]] = {}
    for job in jobs:
        for override in job:
            key, _, value = override.partition("=")
            values.setdefault(key, set()).add(value)
    swept = {key for key, seen in values.items() if len(seen) > 1}
    default = str(cfg.get("name", "?"))
    return [
        PlannedJob(num, _job_name(job, default), [o for o in job if o.partition("=")[0] in swept])
        for num, job in enumerate(jobs)
    ]


def _job_name(overrides: list[str], default: str) -> str:
    """The run name a job gets: its ``name=`` override, else its experiment's (experiment files set ``name`` to
    their own), else the sweep's."""
    values = {o.partition("=")[0].lstrip("+~"): o.partition("=")[2] for o in overrides}
    return values.get("name") or values.get("experiment") or default


def task_overrides(sweep_dir: Path) -> list[str]:
    cfg = read_multirun(sweep_dir)
    return [str(o) for o in ((cfg.get("hydra") or {}).get("overrides") or {}).get("task") or []]


def load_sweep(sweep_dir: Path) -> list[Run]:
    """Every run dir (``<num>_<name>``) in launch order, plus a placeholder for each asked-for experiment
    that has no run dir (the sweep was stopped before it started)."""
    if not sweep_dir.is_dir():
        raise MissingDataError(f"sweep dir: {sweep_dir} does not exist or is not a folder")
    dirs = [d for d in sweep_dir.iterdir() if d.is_dir() and RUN_DIR.match(d.name)]
    runs = sorted((load_run(d) for d in dirs), key=lambda r: r.num)
    if not runs and not (sweep_dir / "multirun.yaml").is_file():
        raise MissingDataError(
            f"sweep dir: {sweep_dir} holds no run dirs (<num>_<name>/) and no multirun.yaml; "
            "expected a Hydra multirun dir such as logs/multiruns/<stamp>"
        )
    started = {(r.num, r.name) for r in runs}
    for job in planned_jobs(sweep_dir):
        if (job.num, job.name) not in started:
            which = f" ({' '.join(job.varying)})" if job.varying else ""
            runs.append(
                Run(
                    num=job.num,
                    name=job.name,
                    path=None,
                    detail=f"no run dir yet{which}: the sweep is still running or stopped before it",
                )
            )
    return sorted(runs, key=lambda r: r.num)
