"""Is bf16 autocast numerically safe for this model? ``python -m ctx_inpaint.benchmark.precision_check +experiment=NAME``.

Builds the module twice from the same seed, once for float32 and once under bf16 autocast, and reports
(1) the cosine similarity and relative error of every network's gradient on the same real batch and (2) the
reconstruction loss over ``steps`` training steps on the same batches. Writes ``precision_check.json``
(``out_json``) so the figures in experiments/perf/README.md come from a file a make target regenerates.
"""

from __future__ import annotations

import ctx_inpaint.common.startup  # noqa: F401  first: the thread policy, set before torch loads

import json
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from ctx_inpaint.benchmark.loops import autocast_for, parts_from_module, plain_step
from ctx_inpaint.benchmark.measure import fresh_module
from ctx_inpaint.common.cli import report_user_errors
from ctx_inpaint.config.check import check_config
from ctx_inpaint.config.compose import CONFIG_DIR
from ctx_inpaint.masks.generators import crop_box
from ctx_inpaint.training.objective import discriminator_loss, generator_loss


def gradients(module, batch: dict[str, torch.Tensor], precision: str) -> dict[str, torch.Tensor]:
    """Flattened D and G gradients of the module's losses on ``batch`` (no optimizer step)."""
    g, d = module.generator, module.discriminator
    out = {}
    with autocast_for(precision, torch.device("cpu")):
        target = crop_box(batch["image"], module.masks.target_box)
        pred = g(batch["masked"], batch["mask"])
        if d is not None:
            loss_d, _ = discriminator_loss(d, target, pred)
            out["discriminator"] = torch.cat(
                [x.flatten() for x in torch.autograd.grad(loss_d, list(d.parameters()))]
            )
        loss, _ = generator_loss(d, pred, target, batch, module.lambda_rec, module.reconstruction)
    out["generator"] = torch.cat([x.flatten() for x in torch.autograd.grad(loss, list(g.parameters()))])
    return out


def check(cfg: DictConfig, steps: int, precision: str = "bf16-mixed") -> dict:
    masks = instantiate(cfg.masks)
    torch.manual_seed(int(cfg.seed))
    dm = instantiate(
        cfg.data, masks=masks, num_workers=0, samples_per_epoch=max(steps, 1) * int(cfg.data.batch_size)
    )
    dm.setup("fit")
    batches = list(dm.train_dataloader())[:steps]
    report: dict = {"precision": precision, "batch_size": int(cfg.data.batch_size), "steps": len(batches)}
    ref = gradients(fresh_module(cfg, masks), batches[0], "32-true")
    low = gradients(fresh_module(cfg, masks), batches[0], precision)
    for name in ref:
        a, b = ref[name].double(), low[name].double()
        report[f"{name}_grad_cosine"] = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
        report[f"{name}_grad_rel_error"] = float((a - b).norm() / a.norm())
    for prec in ("32-true", precision):
        parts = parts_from_module(fresh_module(cfg, masks))
        curve = []
        for batch in batches:
            with autocast_for(prec, torch.device("cpu")):
                curve.append(float(plain_step(parts, batch)["loss_rec"]))
        report[f"loss_rec_{prec}"] = curve
    a, b = report["loss_rec_32-true"], report[f"loss_rec_{precision}"]
    report["loss_rec_max_rel_diff"] = max(abs(x - y) / abs(x) for x, y in zip(a, b))
    return report


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="bench")
def main(cfg: DictConfig) -> None:
    with report_user_errors():
        check_config(cfg)
        _main(cfg)


def _main(cfg: DictConfig) -> None:
    steps = int(cfg.get("check_steps", 30))
    with open_dict(cfg):
        cfg.data.batch_size = int(cfg.bench.batch_size)
    report = {"name": str(cfg.name), **check(cfg, steps)}
    line = json.dumps(report)
    out = cfg.get("out_json")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=1) + "\n")
    print(line)


if __name__ == "__main__":
    main()
