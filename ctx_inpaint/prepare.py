"""Build the prepared photo cache ahead of training: ``python -m ctx_inpaint.prepare data=folder data.root=PATH``.

Takes the same overrides as ``train`` and builds the cache exactly as training would (``training.run.prepare``),
so training finds it under the same key; training builds the cache itself on first use when this was not run.
"""

import ctx_inpaint.common.startup  # noqa: F401  first: the thread policy, set before torch loads

import sys

import hydra
from omegaconf import DictConfig

from ctx_inpaint.common.cli import fail, report_user_errors
from ctx_inpaint.config.compose import CONFIG_DIR, override_problem
from ctx_inpaint.training.run import prepare


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    with report_user_errors():
        prepare(cfg)


if __name__ == "__main__":
    if (problem := override_problem(sys.argv[1:], "train")) is not None:
        fail(problem)  # one line, before Hydra starts, as train
    main()
