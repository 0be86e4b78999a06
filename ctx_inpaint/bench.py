"""Benchmark: ``python -m ctx_inpaint.bench +experiment=l2_0999 [--sizes] [key=value ...]``.

Times the training step (Lightning, the bare loop, the straightforward fp32 port, bf16 where the hardware has it),
batch making and the matmul peak in interleaved rounds, and reports each ratio as the median of the per-round
ratios with their spread (``ctx_inpaint.benchmark.run``). Prints a table and, last, one JSON line (also written
to ``bench.out_json``). ``--sizes`` adds a sweep of the batch size over 16, 32, 64 and 128.
"""

import ctx_inpaint.common.startup  # noqa: F401  first: the thread policy, set before torch loads

import sys

import hydra
from omegaconf import DictConfig

from ctx_inpaint.benchmark.run import expand_sizes_flag, run_bench
from ctx_inpaint.common.cli import fail, report_user_errors
from ctx_inpaint.config.check import check_config
from ctx_inpaint.config.compose import CONFIG_DIR, override_problem


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="bench")
def main(cfg: DictConfig) -> None:
    with report_user_errors():
        check_config(cfg)
        run_bench(cfg)


if __name__ == "__main__":
    sys.argv = expand_sizes_flag(sys.argv)
    if (problem := override_problem(sys.argv[1:], "bench")) is not None:
        fail(problem)  # one line, before Hydra starts, as train
    main()
