"""Training entry point: ``python -m ctx_inpaint.train +experiment=l2_0999 [key=value ...]``.

Hydra reads the configs from ``config.CONFIG_DIR`` (``conf/`` at the repository root, or the copy a wheel carries).
"""

import ctx_inpaint.common.startup  # noqa: F401  first: the thread policy, set before torch loads

import sys

import hydra
from omegaconf import DictConfig

from ctx_inpaint.common.cli import fail, join_job_log, report_user_errors
from ctx_inpaint.config.compose import CONFIG_DIR, override_problem
from ctx_inpaint.training.run import train


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    join_job_log()  # <run dir>/train.log gets what the console shows
    with report_user_errors():
        metrics = train(cfg)
    return metrics.get("val/psnr")


if __name__ == "__main__":
    # Unknown group choices and keys in one line, before Hydra starts (its own report is many lines).
    if (problem := override_problem(sys.argv[1:], "train")) is not None:
        fail(problem)
    main()
