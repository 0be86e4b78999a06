"""Export the shipped models (``make weights``): each recorded run's last checkpoint -> float16 safetensors + JSON
in ctx_inpaint/inference/pretrained/, with its training command, the data's attribution, and the float16 cost measured on the
run's own validation masks (float32 vs float16 generator on the same 40 held-out crops); the run's metrics.csv,
run_status.json and overrides go to experiments/quality/freeform/runs/<name>/.

    python experiments/quality/freeform/ship.py --runs logs/runs/shipped
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch
import yaml

from ctx_inpaint.common.files import atomic_write
from ctx_inpaint.common.run_folder import RunFolder
from ctx_inpaint.evaluation.run import evaluate
from ctx_inpaint.inference.export import export
from ctx_inpaint.inference.weights import PRETRAINED, PRETRAINED_DIR

ATTRIBUTION = (
    "Trained on the campus photos of the PyPI package mvtb-data==1.6.1 (mvtbdata/images/campus/*.png, MIT licence, "
    "Peter Corke, Machine Vision Toolbox); validated on campus/holdout."
)
EXPERIMENTS = {"freeform": "campus_freeform", "center": "campus_center"}


def run_files(run: Path) -> list[Path]:
    """What a run dir must hold: the checkpoint to export, then the records copied beside the tables."""
    folder = RunFolder(run)
    return [folder.last_checkpoint, folder.metrics, folder.status, folder.overrides]


def command(run: Path) -> str:
    overrides = yaml.safe_load(RunFolder(run).overrides.read_text())
    return "python -m ctx_inpaint.train " + " ".join(overrides)


def fp16_cost(checkpoint: Path, f16: Path) -> dict[str, float]:
    """Validation metrics (the run's own masks) of the float32 checkpoint and the float16 export."""
    with tempfile.TemporaryDirectory() as tmp:
        a = evaluate(checkpoint, out_dir=Path(tmp) / "a", baselines=())["methods"]["model"]
        b = evaluate(f16, out_dir=Path(tmp) / "b", baselines=())["methods"]["model"]
    return {
        "psnr_float32": a["psnr"],
        "psnr_float16": b["psnr"],
        "ssim_float32": a["ssim"],
        "ssim_float16": b["ssim"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="logs/runs/shipped", help="holds freeform/ and center/ run dirs")
    p.add_argument("--out", default=str(PRETRAINED_DIR))
    p.add_argument(
        "--only", choices=sorted(PRETRAINED), action="append", help="export this model only (repeatable)"
    )
    args = p.parse_args()
    names = args.only or list(PRETRAINED)
    # Every run is checked before anything is written: a missing one must not leave a half-updated pretrained/.
    for name in names:
        for needed in run_files(Path(args.runs) / name):
            if not needed.is_file():
                raise SystemExit(f"ship.py: {needed} is missing; train it with make weights-train")
    for name in names:
        run = Path(args.runs) / name
        checkpoint = RunFolder(run).last_checkpoint
        status = json.loads(RunFolder(run).status.read_text())
        extra = {
            "name": name,
            "experiment": EXPERIMENTS[name],
            "training_command": command(run),
            "made_by": f"make weights-train WEIGHTS_RUNS={args.runs}, then make weights WEIGHTS_RUNS={args.runs}"
            + "".join(f" ARGS='--only {n}'" for n in args.only or ()),
            "run_status": status,
            "data_attribution": ATTRIBUTION,
            "machine": "2 CPU cores (x86_64), no GPU; torch " + torch.__version__,
        }
        path, json_path = export(
            checkpoint, Path(args.out) / f"{name}.safetensors", "safetensors", dtype="float16", extra=extra
        ).files
        meta = json.loads(json_path.read_text())
        meta["float16_check"] = fp16_cost(checkpoint, path)
        data = (json.dumps(meta, indent=2, default=str) + "\n").encode()
        atomic_write(json_path, lambda f, data=data: f.write(data))
        records = Path(__file__).resolve().parent / "runs" / name  # the run's own record, beside the tables
        records.mkdir(parents=True, exist_ok=True)
        for needed in run_files(run)[1:]:
            shutil.copy(needed, records / needed.name)
        size = path.stat().st_size / 2**20
        print(
            f"{path}: {size:.2f} MiB, {meta['parameters']:,} parameters; float16 check {meta['float16_check']}"
        )


if __name__ == "__main__":
    main()
