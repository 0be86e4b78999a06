"""Paired A/B timing of one speed option: ``python -m ctx_inpaint.benchmark.ab +experiment=l2_0999 '+candidate="k=v k=v"'``.

A shared machine drifts: another process's burst slows whichever configuration happens to run then. Here the
reference (the composed config) and the candidate (the same with ``candidate`` overrides) are built side by side
and timed in interleaved rounds of bare-loop steps on the same batch (``ctx_inpaint.benchmark.timing.interleaved``, the
benchmark's timer: the order flipped every round); the reported speed-up is the median of the per-round ratios,
with their spread and count. Writes one JSON line (and ``out_json`` when given).
"""

from __future__ import annotations

import ctx_inpaint.common.startup  # noqa: F401  first: the thread policy, set before torch loads

import json
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from ctx_inpaint.benchmark.measure import data_rate, device_of, gan_step_fn, plain_parts, with_overrides
from ctx_inpaint.benchmark.timing import interleaved, put_ratio, ratio
from ctx_inpaint.common.allocator import keep_freed_memory
from ctx_inpaint.common.cli import report_user_errors
from ctx_inpaint.config.check import check_config
from ctx_inpaint.config.compose import CONFIG_DIR
from ctx_inpaint.errors import ConfigError


def paired(cfg: DictConfig, overrides: list[str], rounds: int, steps: int, warmup: int) -> dict:
    device = device_of(cfg)
    masks = instantiate(cfg.masks)
    batch_size = int(cfg.bench.batch_size)
    with open_dict(cfg):
        cfg.bench.data_batches = 1
    _, batch = data_rate(cfg, masks, batch_size)
    runners = {}
    for name, conf in (("reference", cfg), ("candidate", with_overrides(cfg, overrides))):
        parts, prepare = plain_parts(conf, masks, device)
        runners[name] = gan_step_fn(conf, parts, prepare, batch, toggle=True)
    timer = interleaved(runners, rounds, warmup, device, inner=steps)
    speedup = ratio(timer, "reference", "candidate")
    result = {
        "name": str(cfg.name),
        "candidate": list(overrides),
        "batch_size": batch_size,
        "rounds": rounds,
        "steps_per_round": steps,
        "reference_images_per_s": batch_size / timer["median_s"]["reference"],
        "candidate_images_per_s": batch_size / timer["median_s"]["candidate"],
        "speedup_min": speedup["spread"][0],
        "speedup_max": speedup["spread"][1],
        "threads": torch.get_num_threads(),
    }
    put_ratio(result, "speedup", speedup)
    return result


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="bench")
def main(cfg: DictConfig) -> None:
    with report_user_errors():
        check_config(cfg)
        _main(cfg)


def _main(cfg: DictConfig) -> None:
    raw = cfg.get("candidate") or []
    candidate = str(raw).split() if isinstance(raw, str) else [str(x) for x in raw]
    if not candidate:
        raise ConfigError(
            "candidate: give the overrides to compare, e.g. '+candidate=\"model.channels_last=true\"'"
        )
    ab = cfg.get("ab") or {}
    # Process-wide, as in training and the benchmark: both sides run with the configured allocator.
    kept = keep_freed_memory(bool(cfg.get("keep_freed_memory", False)))
    result = paired(
        cfg, candidate, int(ab.get("rounds", 6)), int(ab.get("steps", 2)), int(ab.get("warmup", 2))
    )
    result["keep_freed_memory"] = kept
    skip = ("+candidate=", "+out_json=", "+experiment=", "hydra.", "+ab.")
    result["reference_overrides"] = " ".join(
        o for o in HydraConfig.get().overrides.task if not o.startswith(skip)
    )
    line = json.dumps(result)
    if cfg.get("out_json"):
        Path(cfg.out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.out_json).write_text(line + "\n")
    print(line, flush=True)


if __name__ == "__main__":
    main()
