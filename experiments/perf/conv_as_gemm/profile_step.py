"""Where the configured l2_0999 GAN step spends its time: torch.profiler over 4 bare-loop steps (batch 64, after 3
warm-up ones), ops by self CPU time, then by input shape.

    .venv/bin/python experiments/perf/conv_as_gemm/profile_step.py > experiments/perf/conv_as_gemm/profile.txt
"""

import sys

import torch
from hydra.utils import instantiate
from torch.profiler import ProfilerActivity, profile

from ctx_inpaint.benchmark import measure
from ctx_inpaint.common.allocator import keep_freed_memory
from ctx_inpaint.config.compose import compose_config

keep_freed_memory(True)
cfg = compose_config(["+experiment=l2_0999", *sys.argv[1:]])
masks = instantiate(cfg.masks)
dm = instantiate(cfg.data, masks=masks, batch_size=64, samples_per_epoch=64 * 4)
dm.setup("fit")
batch = next(iter(dm.train_dataloader()))
parts, prepare = measure.plain_parts(cfg, masks, torch.device("cpu"))
step = measure.gan_step_fn(cfg, parts, prepare, batch, toggle=True)
for _ in range(3):
    step()
with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
    for _ in range(4):
        step()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=25))
