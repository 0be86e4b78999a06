"""What `keep_freed_memory` buys a CPU training step: processes with and without it, alternated.

    python experiments/perf/time_to_quality/allocator_ab.py [--pairs 6] [--steps 12] [--out allocator_ab.json]

glibc's malloc settings are per process, so the two sides cannot share one process as the benchmark's steps do;
instead each pair runs one process of each side back to back (order flipped every pair), each timing the same
bare-loop GAN step of `make train`'s config (campus_cpu: widths 32, batch 16), and the speed-up is the median of
the per-pair ratios, with their spread. Each process also reports its page faults and kernel (system) time per
step and its peak resident memory: the cost of keeping freed memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

CHILD = r"""
import json, resource, sys, time, torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from ctx_inpaint.common.allocator import keep_freed_memory
from ctx_inpaint.config.compose import CONFIG_DIR
from ctx_inpaint.benchmark.measure import data_rate, gan_step_fn, plain_parts
keep = sys.argv[1] == "1"
steps = int(sys.argv[2])
kept = keep_freed_memory(keep)
torch.manual_seed(0)
with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
    cfg = compose("bench", overrides=["+experiment=campus_cpu", "bench.data_batches=2", "data.num_workers=0"])
masks = instantiate(cfg.masks)
_, batch = data_rate(cfg, masks, int(cfg.data.batch_size))
parts, prepare = plain_parts(cfg, masks, torch.device("cpu"))
step = gan_step_fn(cfg, parts, prepare, batch, toggle=True)
for _ in range(3):
    step()
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(steps):
    step()
seconds = (time.perf_counter() - t0) / steps
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "keep_freed_memory": kept,
    "seconds_per_step": seconds,
    "page_faults_per_step": (r1.ru_minflt - r0.ru_minflt) / steps,
    "system_s_per_step": (r1.ru_stime - r0.ru_stime) / steps,
    "user_s_per_step": (r1.ru_utime - r0.ru_utime) / steps,
    "max_rss_mib": r1.ru_maxrss / 1024,
    "threads": torch.get_num_threads(),
}))
"""


def run(keep: bool, steps: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, "1" if keep else "0", str(steps)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=6)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "allocator_ab.json")
    args = p.parse_args()
    pairs = []
    for i in range(args.pairs):
        order = (False, True) if i % 2 == 0 else (True, False)
        got = {keep: run(keep, args.steps) for keep in order}
        ratio = got[False]["seconds_per_step"] / got[True]["seconds_per_step"]
        pairs.append(
            {
                "order": ["keep" if k else "default" for k in order],
                "speedup": ratio,
                **{("keep" if k else "default"): v for k, v in got.items()},
            }
        )
        print(
            f"pair {i}: default {got[False]['seconds_per_step']:.3f} s/step, keep "
            f"{got[True]['seconds_per_step']:.3f} s/step, speed-up {ratio:.2f}",
            flush=True,
        )
    ratios = [p["speedup"] for p in pairs]

    def median(side: str, key: str) -> float:
        return statistics.median(p[side][key] for p in pairs)

    record = {
        "command": f"python experiments/perf/time_to_quality/allocator_ab.py --pairs {args.pairs} --steps {args.steps}",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "step": "bare-loop GAN step of campus_cpu (l2_0999, widths 32, batch 16, float32), after 3 warm-up steps",
        "speedup": statistics.median(ratios),
        "speedup_spread": [min(ratios), max(ratios)],
        "pairs_n": len(pairs),
        "median": {
            side: {
                k: median(side, k)
                for k in (
                    "seconds_per_step",
                    "page_faults_per_step",
                    "system_s_per_step",
                    "user_s_per_step",
                    "max_rss_mib",
                )
            }
            for side in ("default", "keep")
        },
        "pairs": pairs,
    }
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    m = record["median"]
    print(
        f"speed-up {record['speedup']:.2f} [{min(ratios):.2f}..{max(ratios):.2f}] over {len(pairs)} pairs; page faults "
        f"per step {m['default']['page_faults_per_step']:.0f} -> {m['keep']['page_faults_per_step']:.0f}; system time "
        f"per step {m['default']['system_s_per_step']:.3f} -> {m['keep']['system_s_per_step']:.3f} s; peak RSS "
        f"{m['default']['max_rss_mib']:.0f} -> {m['keep']['max_rss_mib']:.0f} MiB"
    )


if __name__ == "__main__":
    main()
