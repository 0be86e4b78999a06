"""Markdown report of an ablation sweep: ``python -m ctx_inpaint.report <sweep dir> [--out DIR]``.

Reads every run's ``metrics.csv``, ``config_resolved.yaml`` (or ``.hydra/config.yaml``) and ``run_status.json``;
W&B is not needed. Writes ``report.md`` and its PNGs into ``--out`` (default: ``<sweep dir>/report``).
"""

import ctx_inpaint.common.startup  # noqa: F401  first: the thread policy, set before torch loads

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ctx_inpaint.common.cli import ArgumentParser, report_user_errors
from ctx_inpaint.reporting.report import write_report


def parse_epochs(text: str) -> list[int]:
    """``--epochs 5,10``: sorted, unique, each at least 1."""
    try:
        epochs = sorted({int(e) for e in text.split(",") if e.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--epochs: expected comma-separated integers, got {text!r}"
        ) from None
    if not epochs or epochs[0] < 1:
        raise argparse.ArgumentTypeError(f"--epochs: expected epochs >= 1, got {text!r}")
    return epochs


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = ArgumentParser(prog="python -m ctx_inpaint.report", description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweep_dir", type=Path, help="a Hydra multirun dir, e.g. logs/multiruns/<stamp>_<pid>"
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <sweep_dir>/report)")
    parser.add_argument(
        "--epochs", type=parse_epochs, default=None, help="epochs of the per-run tables, e.g. 5,10"
    )
    parser.add_argument("--images", type=int, default=6, help="val images per row of the grid")
    parser.add_argument("--notes", type=Path, default=None, help="a Markdown file included under the header")
    args = parser.parse_args(argv)
    if args.notes is not None and not args.notes.is_file():
        parser.error(f"--notes: {args.notes} is not a file")
    with report_user_errors():
        path = write_report(
            args.sweep_dir,
            args.out or args.sweep_dir / "report",
            args.epochs,
            args.images,
            args.notes,
            command=argv,
        )
    print(f"[ctx-inpaint] report written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
