"""Training entry point: ``python -m ctx_inpaint.train +experiment=l2_0999 [key=value ...]``.

Hydra reads the configs from ``config.CONFIG_DIR`` (``conf/`` at the repository root, or the copy a wheel carries).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from ctx_inpaint.cli import fail, join_job_log, report_user_errors
from ctx_inpaint.config import CONFIG_DIR, group_options
from ctx_inpaint.training.run import train


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    join_job_log()  # <run dir>/train.log gets what the console shows
    with report_user_errors():
        metrics = train(cfg)
    return metrics.get("val/psnr")


def check_experiment_args(argv: list[str]) -> str | None:
    """The one-line error for an ``experiment=`` argument naming no file in conf/experiment/, else None.

    Checked before Hydra starts: Hydra's own answer is a 25-line listing of its search path."""
    other_configs = ("hydra.searchpath", "--config-path", "--config-dir", "-cp", "-cd")
    if any(arg.lstrip("+~").startswith(other_configs) for arg in argv):
        return None  # experiments may come from elsewhere: Hydra decides
    options = group_options("experiment")
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if key != "experiment" or not sep or "(" in value:  # sweep functions such as choice(...) are Hydra's
            continue
        unknown = [name for name in value.split(",") if name not in options]
        if unknown:
            return f"experiment: got {', '.join(unknown)}; expected one of {', '.join(options)}"
    return None


if __name__ == "__main__":
    if (problem := check_experiment_args(sys.argv[1:])) is not None:
        fail(problem)
    main()
