"""GAN steps per second of campus_cpu in the bare loop, for the code at ROOT (a checkout): run it alternately on
two checkouts to compare them on a noisy machine (the "1.53/1.57 and 1.64/1.65 steps/s, old/new" figures):

    git worktree add /tmp/old <commit>
    for i in 1 2; do .venv/bin/python experiments/faithful/speed_ab.py /tmp/old; \\
                     .venv/bin/python experiments/faithful/speed_ab.py $PWD; done

Both checkouts need this layout (ctx_inpaint.config.build, ctx_inpaint.benchmark.loops). The recorded figures
compared d657a2f with the code of the commit that added this script (a12fceb); that comparison runs with the
script as it was then, which read both of those layouts:
``git show a12fceb:experiments/faithful/speed_ab.py > /tmp/speed_ab_a12fceb.py``.
"""

from __future__ import annotations

import sys
import time

ROOT = sys.argv[1]
sys.path.insert(0, ROOT)

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from ctx_inpaint.benchmark.loops import parts_from_module, plain_step  # noqa: E402
from ctx_inpaint.config.build import build_module  # noqa: E402

with initialize_config_dir(config_dir=ROOT + "/conf", version_base="1.3"):
    cfg = compose("train", overrides=["+experiment=campus_cpu", "data.num_workers=0"])
torch.manual_seed(0)
masks = instantiate(cfg.masks)
dm = instantiate(cfg.data, masks=masks)
dm.setup("fit")
batch = next(iter(dm.train_dataloader()))
parts = parts_from_module(build_module(cfg, masks))
for _ in range(3):  # warm-up
    plain_step(parts, batch)
start = time.perf_counter()
for _ in range(15):
    plain_step(parts, batch)
print(f"{ROOT}: {15 / (time.perf_counter() - start):.2f} GAN steps/s")
