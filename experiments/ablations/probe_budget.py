"""Probe for the CPU budget: seconds per optimizer step of each experiment of the `all` sweep at given widths /
batch, with a given number of torch threads (the module's GAN step in a plain loop, random 128 crops).

Run by probe_budget.sh: once with 2 threads alone, then twice side by side with 1 thread each, so the JSONs say
whether two single-thread jobs at once do more steps per CPU second than one two-thread job.

    python experiments/ablations/probe_budget.py --threads 1 --steps 12 --out /tmp/p.json [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch.utils.data import default_collate

from ctx_inpaint.benchmark.loops import autocast_for, plain_step
from ctx_inpaint.benchmark.measure import plain_parts
from ctx_inpaint.config.compose import compose_config
from ctx_inpaint.data.datasets import make_sample

ALL = (
    "l2_0999,l2_1,l2_0,l2_05,l2_09,l2_09999,l1_0999,sgd,lr_scheduler,cwfc,extra_layer,alexnet_l2,alexnet_adv,"
    "random_patches,random_region"
)


def step_seconds(experiment: str, sets: list[str], steps: int, warmup: int) -> float:
    cfg = compose_config([f"+experiment={experiment}", *sets])
    masks = instantiate(cfg.masks)
    parts, prepare = plain_parts(cfg, masks, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    size, batch_size = int(cfg.data.input_size), int(cfg.data.batch_size)
    items = [
        make_sample(torch.rand(3, size, size, generator=g) * 2 - 1, masks.sample(generator=g), masks)
        for _ in range(batch_size)
    ]
    batch = prepare(default_collate(items))
    autocast = autocast_for(cfg.trainer.precision, torch.device("cpu"))
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        with autocast:
            plain_step(parts, batch)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--experiments", default=ALL)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="a Hydra override")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {"threads": args.threads, "overrides": args.sets, "steps": args.steps, "seconds_per_step": {}}
    t0 = time.perf_counter()
    for name in args.experiments.split(","):
        result["seconds_per_step"][name] = step_seconds(name, args.sets, args.steps, args.warmup)
        print(f"{name}: {result['seconds_per_step'][name]:.3f} s/step", flush=True)
    result["wall_s"] = time.perf_counter() - t0
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
