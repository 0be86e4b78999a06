"""Export the shipped models (``make weights``): each recorded run's last checkpoint -> float16 safetensors + JSON
in ctx_inpaint/inference/pretrained/ (``--out``), with its training commands, how far and how long it trained and
on what machine (run_status.json), the data's attribution (derived from the run's ``data.source``), its training
config, the earlier stage it was fine-tuned from (``starts_from``, when the run has an ``init_from``), and the
float16 cost measured on the run's own validation masks (float32 vs float16 generator on the same held-out crops);
the run's metrics.csv, run_status.json, overrides.yaml and config.yaml go to
experiments/quality/shipped/runs/<name>/ (``--records``), beside the tables of ``make quality-shipped``.

Which run each model comes from (``SHIPPED``): ``freeform`` <- ``<runs>/freeform_tune`` (``ship_freeform_tune``,
``make weights-tune``: the ``<runs>/freeform`` run of ``make weights-train`` fine-tuned with a share of centre
holes), ``center`` <- ``<runs>/center`` (``ship_center``, ``make weights-train``).

    python experiments/quality/freeform/ship.py --runs logs/runs/ship [--only freeform] [--out DIR] [--records DIR]

A run whose run_status.json does not say ``finished`` is refused unless ``--allow-unfinished`` is given.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from ctx_inpaint.common.files import atomic_write
from ctx_inpaint.common.run_folder import RunFolder
from ctx_inpaint.config.checkpoint import load_checkpoint, training_meta
from ctx_inpaint.data.sources import embedded_files, embedded_wide_files
from ctx_inpaint.evaluation.run import evaluate
from ctx_inpaint.inference.export import export
from ctx_inpaint.inference.loading import source_files
from ctx_inpaint.inference.weights import PRETRAINED, PRETRAINED_DIR

ROOT = Path(__file__).resolve().parents[3]
RECORDS = ROOT / "experiments" / "quality" / "shipped" / "runs"
# Each shipped model: (its run dir under --runs, the experiment that run must have trained).
SHIPPED = {"freeform": ("freeform_tune", "ship_freeform_tune"), "center": ("center", "ship_center")}
# The make target that trains (and, with ARGS=ckpt_path=last, resumes) each run.
TRAIN_TARGET = {"freeform": "weights-tune", "center": "weights-train"}
DATA_PACKAGE = "mvtb-data"
# What the JSON keeps of the run's composed config: what was trained, on what, how (not loggers, paths, callbacks).
CONFIG_KEYS = ("name", "seed", "data", "masks", "model", "optim")
TRAINER_KEYS = ("max_epochs", "max_steps", "max_time", "accelerator", "devices", "precision")
RESUME = "ckpt_path="


def run_files(run: Path) -> list[Path]:
    """What a run dir must hold: the checkpoint to export, the composed config, then the records copied beside the
    tables."""
    folder = RunFolder(run)
    return [folder.last_checkpoint, folder.config, folder.metrics, folder.status, folder.overrides]


def package_record(name: str) -> dict[str, str]:
    """The data package as installed: version, licence (its trove classifier), author, summary."""
    meta = importlib.metadata.metadata(name)
    licences = [
        c.split("::")[-1].strip().removesuffix(" License")
        for c in meta.get_all("Classifier") or []
        if c.startswith("License ::")
    ]
    author = (meta.get("Author") or meta.get("Author-email") or "").split("<")[0].strip()
    return {
        "package": f"{name}=={importlib.metadata.version(name)}",
        "licence": meta.get("License-Expression") or meta.get("License") or ", ".join(licences) or "unknown",
        "author": author,
        "summary": meta.get("Summary") or "",
    }


def data_record(cfg: dict[str, Any]) -> dict[str, Any]:
    """The photos a run trained and validated on, counted from ``ctx_inpaint.data.sources``, with the package's
    own version, licence and author, and the attribution line the JSON carries."""
    source = (cfg.get("data") or {}).get("source")
    if source not in ("embedded", "embedded_wide"):
        root = (cfg.get("data") or {}).get("root")
        return {
            "source": source,
            "root": root,
            "attribution": f"Trained on data.source={source} (data.root={root}); see that data's own licence.",
        }
    campus, holdout = embedded_files()
    train = embedded_wide_files()[0] if source == "embedded_wide" else campus
    images = campus[0].parents[1]  # mvtbdata/images
    pkg = package_record(DATA_PACKAGE)
    val_dir = holdout[0].parent.relative_to(images).as_posix()
    campus_dir = campus[0].parent.relative_to(images).as_posix()
    credit = f"{pkg['licence']} licence, by {pkg['author']}: {pkg['summary'].removesuffix('.')}"
    if source == "embedded_wide":
        # sources.EMBEDDED_WIDE_EXTRA, as embedded_wide_files() found them (FORBIDDEN_NAMES left out)
        extra = [p.relative_to(images).as_posix() for p in train[len(campus) :]]
        what = (
            f"the {len(campus)} {campus_dir} photos (mvtbdata/images/{campus_dir}/*.png) and {len(extra)} other "
            f"scenes ({', '.join(extra)}; mvtbdata/images/) of the PyPI package {pkg['package']}"
        )
    else:
        extra = []
        what = (
            f"the {len(campus)} {campus_dir} photos (mvtbdata/images/{campus_dir}/*.png) of the PyPI package "
            f"{pkg['package']}"
        )
    return {
        "source": source,
        "train_photos": len(train),
        "campus_photos": len(campus),
        "extra_photos": extra,
        "validation": val_dir,
        "validation_photos": len(holdout),
        **pkg,
        "attribution": f"Trained on {what} ({credit}); validated on the {len(holdout)} photos of {val_dir}.",
    }


def commands(run: Path, status: dict[str, Any]) -> list[str]:
    """The training command line of each launch of the run: from run_status.json's ``launches`` (each launch's
    overrides, recorded since 2026-12-06), else from overrides.yaml, which keeps only the last launch's: for a run
    launched more than once that line is marked as the last of them (earlier launches may have had other budgets
    or threads), not written as if the earlier ones were known. hydra.yaml holds the run dir."""
    folder = RunFolder(run)
    hydra_file = folder.hydra / "hydra.yaml"
    hydra_overrides: list[str] = []
    if hydra_file.is_file():
        recorded = ((yaml.safe_load(hydra_file.read_text()) or {}).get("hydra") or {}).get("overrides") or {}
        hydra_overrides = [str(o) for o in recorded.get("hydra") or [] if str(o).startswith("hydra.run.dir=")]
    attempts = int(status.get("attempts") or 1)
    launches = status.get("launches")
    if (
        isinstance(launches, list)
        and len(launches) == attempts
        and all(isinstance(e, dict) and isinstance(e.get("overrides"), list) for e in launches)
    ):
        return [
            " ".join(["python -m ctx_inpaint.train", *map(str, e["overrides"]), *hydra_overrides])
            for e in launches
        ]
    overrides = [str(o) for o in yaml.safe_load(folder.overrides.read_text()) or []]
    base = [o for o in overrides if not o.startswith(RESUME)] + hydra_overrides
    resume = [o for o in overrides if o.startswith(RESUME)]
    line = " ".join(["python -m ctx_inpaint.train", *base, *resume])
    if attempts > 1:
        return [
            f"# launch {attempts} of {attempts} (the run folder keeps the last launch's overrides only)",
            line,
        ]
    return [line]


def threads_per_launch(status: dict[str, Any]) -> str:
    """``; torch threads by launch: 2, 1`` for a run whose launches had different thread counts, else ''."""
    launches = status.get("launches")
    if not isinstance(launches, list) or len(launches) < 2:
        return ""
    threads = [
        (e.get("machine") or {}).get("torch_threads") if isinstance(e, dict) else None for e in launches
    ]
    return "; torch threads by launch: " + ", ".join(str(t) for t in threads) if len(set(threads)) > 1 else ""


def training_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """What was trained, on what and how: ``CONFIG_KEYS`` resolved, the trainer's budget, the callbacks' names."""
    conf = OmegaConf.create(cfg)
    out = {k: OmegaConf.select(conf, k) for k in CONFIG_KEYS if k in conf}
    out = {
        k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in out.items()
    }
    out["trainer"] = {k: (cfg.get("trainer") or {}).get(k) for k in TRAINER_KEYS}
    out["callbacks"] = sorted(cfg.get("callbacks") or {})
    return out


def machine_line(m: dict[str, Any]) -> str:
    threads = m.get("torch_threads")
    where = m.get("gpu") or (
        f"{m['accelerator']} only" if m.get("accelerator") == "cpu" else m.get("accelerator")
    )
    return (
        f"{m.get('cpu', 'unknown CPU')} ({m.get('cpu_count')} CPUs), {threads} torch thread"
        f"{'' if threads == 1 else 's'}, {where}; torch {m.get('torch', '?')}, Python {m.get('python', '?')}, "
        f"{m.get('platform', '?')}"
    )


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _dig(record: Any, *keys: str) -> Any:
    """``record[k1][k2]...``, None where a level is missing or not a dict."""
    for key in keys:
        record = record.get(key) if isinstance(record, dict) else None
    return record


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def init_path(value: str) -> Path | None:
    """The file ``init_from=value`` names, as the training run would have found it (``source_files``: a path, else a
    shipped model's name as its ``.safetensors``; relative paths from here or the repository root); None when there
    is none."""
    path = source_files(value)[0]
    candidates = [path] if path.is_absolute() else [path, ROOT / path]
    return next((p for p in candidates if p.is_file()), None)


def export_summary(meta: dict[str, Any]) -> dict[str, Any]:
    """What an earlier stage's export JSON says of its training (keys it lacks are left out)."""
    status = meta.get("run_status") if isinstance(meta.get("run_status"), dict) else {}
    trained = meta.get("trained") if isinstance(meta.get("trained"), dict) else {}
    commands = meta.get("training_commands") or (
        [meta["training_command"]] if meta.get("training_command") else None
    )
    out = {
        "sha256": meta.get("sha256"),
        "experiment": meta.get("experiment"),
        "trained": {k: trained[k] for k in ("epoch", "global_step", "train_seconds") if k in trained} or None,
        "training_commands": commands,
        "made_by": meta.get("made_by"),
        "machine": meta.get("machine"),
        "precision": _dig(meta, "training_config", "trainer", "precision"),
        "bf16_native": _dig(meta, "run_status", "machine", "bf16_native"),  # what precision auto became
        "started_at": status.get("started_at"),
        "updated_at": status.get("updated_at"),
        "wall_time_s": status.get("wall_time_s"),
        "attempts": status.get("attempts"),
        "starts_from": meta.get("starts_from"),  # that stage's own earlier stage, if any
    }
    return {k: v for k, v in out.items() if v is not None}


def checkpoint_summary(path: Path) -> dict[str, Any]:
    """A training checkpoint as found now: size, sha256, how far it had trained, and (``<run>/checkpoints/x.ckpt``)
    its run's record: run_status.json, experiment, precision, commands, machine."""
    out: dict[str, Any] = {
        "kind": "training checkpoint",
        "size_bytes": path.stat().st_size,
        "sha256": _sha256(path),
    }
    try:
        out["trained"] = training_meta(load_checkpoint(path)) or None
    except Exception:  # noqa: BLE001 - a record, not a check: an unreadable checkpoint only loses its steps
        out["trained"] = None
    run = path.parents[1] if path.parent.name == "checkpoints" else None
    folder = RunFolder(run) if run is not None else None
    try:
        status = json.loads(folder.status.read_text()) if folder and folder.status.is_file() else None
    except (OSError, ValueError):
        status = None
    if isinstance(status, dict) and folder is not None:
        cfg = _read_yaml(folder.config)
        resolved = _read_yaml(folder.resolved_config)
        try:
            lines = commands(folder.root, status) if folder.overrides.is_file() else None
        except (OSError, yaml.YAMLError, TypeError):
            lines = None
        machine = status.get("machine")
        out |= {
            "run": str(folder.root),
            "experiment": cfg.get("name"),
            "status": status.get("status"),
            "global_step": status.get("global_step"),
            "wall_time_s": status.get("wall_time_s"),
            "started_at": status.get("started_at"),
            "updated_at": status.get("updated_at"),
            "attempts": status.get("attempts"),
            "precision": _dig(resolved, "trainer", "precision") or _dig(cfg, "trainer", "precision"),
            "training_commands": lines,
            "machine": machine_line(machine) if isinstance(machine, dict) and machine else None,
        }
    return {k: v for k, v in out.items() if v is not None}


def starts_from(value: Any, experiment: str | None = None) -> dict[str, Any] | None:
    """The JSON's ``starts_from``: the earlier stage a run with ``init_from=value`` was fine-tuned from, as found
    when exported (None for a run without ``init_from``). A ``.safetensors`` export is summarised from its JSON, a
    training checkpoint from the file and its run's records; a path gone since is said to be so."""
    if value is None:
        return None
    value = str(value)
    out: dict[str, Any] = {"init_from": value}
    path = init_path(value)
    if path is None:
        return out | {"note": "not found when exported"}
    if str(path) != value:
        out["path"] = str(path)
    if path.suffix != ".safetensors":
        return out | checkpoint_summary(path)
    out["kind"] = "safetensors export"
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        return out | {
            "size_bytes": path.stat().st_size,
            "sha256": _sha256(path),
            "note": "no readable JSON beside it",
        }
    if experiment is not None and meta.get("experiment") == experiment:
        # a shipped name whose file is already this stage's own export (an earlier make weights): keep its record
        earlier = meta.get("starts_from")
        if isinstance(earlier, dict) and earlier.get("init_from") == value:
            return earlier
        return out | {"note": f"{path} is already this stage's own export; the earlier stage is not recorded"}
    out |= export_summary(meta)
    actual = _sha256(path)
    if out.get("sha256") != actual:
        out["note"] = f"the file's sha256 {actual[:16]} differs from its JSON's"
    return out


def made_by(name: str, runs: str, attempts: Any, init_from: Any, only: list[str]) -> str:
    """The make targets that produced the run, then its export."""
    note = f" ({attempts} launches of this run)" if int(attempts or 1) > 1 else ""
    if name == "freeform":
        default = Path(runs) / "freeform" / "checkpoints" / "last.ckpt"
        if init_from is None or Path(str(init_from)).expanduser().resolve() == default.resolve():
            steps = [
                f"make weights-train WEIGHTS_RUNS={runs}",
                f"make weights-tune WEIGHTS_RUNS={runs}{note}",
            ]
        else:  # the earlier stage is not weights-train's run: starts_from records what it was
            steps = [f"make weights-tune WEIGHTS_RUNS={runs} SHIP_TUNE_INIT={init_from}{note}"]
    else:
        steps = [f"make {TRAIN_TARGET.get(name, 'weights-train')} WEIGHTS_RUNS={runs}{note}"]
    steps.append(f"make weights WEIGHTS_RUNS={runs}" + "".join(f" ARGS='--only {n}'" for n in only))
    return ", then ".join(steps)


def fp16_cost(checkpoint: Path, f16: Path) -> dict[str, float]:
    """Validation metrics (the run's own masks) of the float32 checkpoint and the float16 export."""
    with tempfile.TemporaryDirectory() as tmp:
        a = evaluate(checkpoint, out_dir=Path(tmp) / "a", baselines=())
        b = evaluate(f16, out_dir=Path(tmp) / "b", baselines=())
    ma, mb = a["methods"]["model"], b["methods"]["model"]
    return {
        "images": a["images"],
        "crops": a["samples"],
        "psnr_float32": ma["psnr"],
        "psnr_float16": mb["psnr"],
        "ssim_float32": ma["ssim"],
        "ssim_float16": mb["ssim"],
    }


def check(run: Path, name: str, allow_unfinished: bool) -> None:
    """Refuse, in one line, a run dir that lacks a file, trained another experiment or has not finished."""
    experiment, target = SHIPPED[name][1], TRAIN_TARGET[name]
    for needed in run_files(run):
        if not needed.is_file():
            raise SystemExit(f"ship.py: {needed} is missing; train it with make {target}")
    cfg = yaml.safe_load(RunFolder(run).config.read_text()) or {}
    if cfg.get("name") != experiment:
        raise SystemExit(
            f"ship.py: {run} trained {cfg.get('name')!r}; the shipped {name!r} model is {experiment!r}"
        )
    status = json.loads(RunFolder(run).status.read_text()).get("status")
    if status != "finished" and not allow_unfinished:
        raise SystemExit(
            f"ship.py: {RunFolder(run).status} says {status!r}, not 'finished'; resume it (make {target} "
            "ARGS=ckpt_path=last) or pass --allow-unfinished"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--runs",
        default="logs/runs/ship",
        help="holds the run dirs: " + ", ".join(f"{d}/ ({n})" for n, (d, _) in SHIPPED.items()),
    )
    p.add_argument("--out", default=str(PRETRAINED_DIR), help="where the .safetensors + .json go")
    p.add_argument("--records", default=str(RECORDS), help="where each run's records go (<records>/<name>/)")
    p.add_argument(
        "--only",
        choices=sorted(PRETRAINED),
        action="append",
        help="export this model only (repeatable): "
        + ", ".join(f"{n} from {d}/" for n, (d, _) in SHIPPED.items()),
    )
    p.add_argument("--allow-unfinished", action="store_true", help="export a run that has not finished")
    args = p.parse_args()
    names = args.only or list(PRETRAINED)
    # Every run is checked before anything is written: a missing one must not leave a half-updated pretrained/.
    for name in names:
        check(Path(args.runs) / SHIPPED[name][0], name, args.allow_unfinished)
    for name in names:
        run_dir, experiment = SHIPPED[name]
        run = Path(args.runs) / run_dir
        folder = RunFolder(run)
        status = json.loads(folder.status.read_text())
        cfg = yaml.safe_load(folder.config.read_text()) or {}
        data = data_record(cfg)
        lines = commands(run, status)
        machine = status.get("machine") or {}
        # read before the export: init_from may name this very shipped file
        earlier = starts_from(cfg.get("init_from"), experiment)
        extra = {
            "name": name,
            "experiment": experiment,
            "training_command": lines[-1] if lines[0].startswith("#") else lines[0],
            "training_commands": lines,
            "made_by": made_by(
                name, args.runs, status.get("attempts"), cfg.get("init_from"), args.only or []
            ),
            "run_status": status,
            "data": data,
            "data_attribution": data["attribution"],
            "machine": machine_line(machine)
            + (" (the last launch's)" if int(status.get("attempts") or 1) > 1 else "")
            + threads_per_launch(status),
            "training_config": training_config(cfg),
            **({"starts_from": earlier} if earlier is not None else {}),
        }
        path, json_path = export(
            folder.last_checkpoint,
            Path(args.out) / f"{name}.safetensors",
            "safetensors",
            dtype="float16",
            extra=extra,
        ).files
        meta = json.loads(json_path.read_text())
        trained = meta.get("trained") or {}
        same_step = status.get("global_step") == trained.get("global_step")
        meta["training"] = {
            "status": status.get("status"),
            "attempts": status.get("attempts"),
            "global_step": trained.get("global_step"),
            "epoch": trained.get("epoch"),  # Lightning's epoch counter when last.ckpt was written
            "epochs_completed": status.get("epochs_completed") if same_step else None,
            "train_seconds": trained.get("train_seconds"),  # the Timer's, in the checkpoint: all attempts
            "wall_time_s": status.get("wall_time_s"),  # run_status.json's fit wall time, all attempts
            "run_status_global_step": status.get("global_step"),
            "machine": machine,
        }
        meta["float16_check"] = fp16_cost(folder.last_checkpoint, path)
        blob = (json.dumps(meta, indent=2, default=str) + "\n").encode()
        atomic_write(json_path, lambda f, blob=blob: f.write(blob))
        records = Path(args.records) / name  # the run's own record, beside the tables
        records.mkdir(parents=True, exist_ok=True)
        for needed in run_files(run)[1:]:
            shutil.copy(needed, records / needed.name)
        size = path.stat().st_size / 2**20
        note = (
            "" if same_step else f" (run_status.json is at step {status.get('global_step')}: still running?)"
        )
        print(
            f"{path}: {size:.2f} MiB, {meta['parameters']:,} parameters, step {trained.get('global_step')}{note}; "
            f"float16 check {meta['float16_check']}; records in {records}"
        )


if __name__ == "__main__":
    main()
