"""The report's opening lines: how the sweep and the report were made, the budget, the machine, the times, the
runs, and the ``--notes`` Markdown placed under them.

Each line comes from the run folders (configs and ``run_status.json`` records), so a reader can tell what was
compared on what without W&B.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ctx_inpaint.errors import InputError, one_line
from ctx_inpaint.reporting.runs import Run
from ctx_inpaint.reporting.seeds import Experiment
from ctx_inpaint.reporting.tables import DASH, fmt_duration


def header_lines(
    sweep_dir: Path,
    out_dir: Path,
    runs: Sequence[Run],
    experiments: Sequence[Experiment],
    overrides: Sequence[str],
    command: Sequence[str] | None,
) -> list[str]:
    """The bullet list under the title. ``command`` is the report command's arguments (None: rebuilt from the
    folders), so the report says how to make it again."""
    failed = [r for r in runs if not r.ok]
    seeds = sorted({r.seed for r in runs if r.seed is not None})
    again = command if command is not None else [str(sweep_dir), "--out", str(out_dir)]
    return [
        f"- Sweep command: `python -m ctx_inpaint.train -m {' '.join(shlex.quote(o) for o in overrides)}`",
        *budget_lines(runs),
        machine_line(runs),
        *wall_lines(runs),
        f"- Runs: {len(runs)} ({len(runs) - len(failed)} finished, {len(failed)} failed / incomplete / missing); "
        f"{len(experiments)} experiments x seeds {', '.join(map(str, seeds)) or DASH}",
        f"- Report: `python -m ctx_inpaint.report {' '.join(shlex.quote(str(a)) for a in again)}`",
    ]


def budget_lines(runs: Sequence[Run]) -> list[str]:
    """The training budget and the network widths, from the first run that has a config (a sweep shares them)."""
    cfg = next((r.config for r in runs if r.config), {})
    if not cfg:
        return ["- Budget: unknown (no run has a config)"]
    data, trainer = cfg.get("data") or {}, cfg.get("trainer") or {}
    budget = (cfg.get("budget") or {}).get("name", "none (train.yaml defaults)")
    return [
        f"- Budget: `{budget}`: {trainer.get('max_epochs')} epochs x {data.get('samples_per_epoch')} random "
        f"crops, batch {data.get('batch_size')}, {data.get('input_size')}px crops; data `{data.get('source')}`, "
        f"{data.get('val_crops_per_image')} fixed val crops per val photo (identical in every run)",
        f"- Network widths: {widths(runs)} (the paper's: 64, AlexNet 96/256/384/384/256)",
    ]


def widths(runs: Sequence[Run]) -> str:
    """The widths the budget gave the networks, from the first run of each encoder kind."""
    seen: dict[str, str] = {}
    for run in runs:
        model = run.config.get("model") or {}
        enc = model.get("encoder") or {}
        kind = str(enc.get("_target_", "?")).rsplit(".", 1)[-1]
        if kind in seen or not enc:
            continue
        width = enc.get("width") or "/".join(map(str, enc.get("widths") or [])) or "?"
        dec = (model.get("decoder") or {}).get("width", "?")
        disc = (model.get("discriminator") or {}).get("width")
        seen[kind] = f"{kind} {width}, decoder {dec}" + (f", discriminator {disc}" if disc else "")
    return "; ".join(seen.values()) or "unknown"


def machine_line(runs: Sequence[Run]) -> str:
    """Where the runs trained: the first record's ``machine``, as :func:`ctx_inpaint.common.machine.describe`
    writes it (``cpu``, ``cpu_count``, ``torch_threads``, ``platform``, ``gpu``, ``accelerator``, ``devices``)."""
    machine = next((r.record.get("machine") for r in runs if r.record.get("machine")), None)
    if not machine:
        return "- Machine: not recorded"
    return "- Machine: " + describe_machine(machine)


def describe_machine(machine: Mapping[str, Any]) -> str:
    """One phrase for a recorded machine; records written before ``describe`` name the CPU ``processor``."""
    accel = machine.get("accelerator", "?")
    gpu = machine.get("gpu") or ("no GPU" if accel == "cpu" else "?")
    cpu = machine.get("cpu") or machine.get("processor")
    return (
        f"{machine.get('cpu_count')}-core {cpu} CPU, {gpu}; accelerator `{accel}` x {machine.get('devices')}; "
        f"torch threads {machine.get('torch_threads')}; {machine.get('platform')}"
    )


def _when(text: str) -> datetime:
    """A record's ISO time (checked when read) as an aware time: records without a zone are taken as UTC."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def wall_lines(runs: Sequence[Run]) -> list[str]:
    """The sweep's span (first fit start to last record) and the sum of the fits: their gap is the start-up and
    the time between jobs."""
    starts = [r.record["started_at"] for r in runs if r.record.get("started_at")]
    ends = [r.record["updated_at"] for r in runs if r.record.get("updated_at")]
    total = sum(r.wall_time_s or 0.0 for r in runs)
    lines = [f"- Sum of the runs' fit times: {fmt_duration(total)}"]
    if starts and ends:
        first, last = min(starts, key=_when), max(ends, key=_when)
        span = (_when(last) - _when(first)).total_seconds()
        lines.insert(
            0,
            f"- Sweep wall time (first fit start {first} to last record {last}): {fmt_duration(span)}",
        )
    return lines


def read_notes(path: Path) -> str:
    """The ``--notes`` Markdown, or one line naming it when it cannot be read as text."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(
            f"--notes: {path} is not UTF-8 text ({one_line(err)[:120]}); expected a Markdown file"
        ) from None
    except OSError as err:
        raise InputError(f"--notes: {path} cannot be read ({err.strerror or one_line(err)})") from None
