"""Can campus_freeform's residual generator express a correction of its fill at all? Fit one training batch
(plain weighted L2, Adam lr 1e-3, 60 steps) and print the hole L2 of the fill and of the model.

    .venv/bin/python experiments/quality/freeform/overfit_one_batch.py
"""

from __future__ import annotations

import tempfile

import torch
from hydra.utils import instantiate

from ctx_inpaint.config.build import build_module
from ctx_inpaint.config.compose import compose_config


def main() -> None:
    torch.manual_seed(0)
    cfg = compose_config(["+experiment=campus_freeform", "data.num_workers=0"], tempfile.mkdtemp())
    masks = instantiate(cfg.masks)
    data = instantiate(cfg.data, masks=masks)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    g = build_module(cfg, masks).generator
    opt = torch.optim.Adam(g.parameters(), lr=1e-3, betas=(0.5, 0.999))
    hole = batch["mask"].bool().expand_as(batch["image"])

    def hole_l2(x: torch.Tensor) -> float:
        return float((x - batch["image"])[hole].square().mean())

    print(f"fill ({cfg.masks.fill}) hole L2 {hole_l2(batch['masked']):.4f}")
    for step in range(60):
        pred = g(batch["masked"], batch["mask"])
        loss = ((pred - batch["image"]).square() * batch["weight"]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == 59:
            print(f"step {step}: model hole L2 {hole_l2(pred.detach()):.4f}")


if __name__ == "__main__":
    main()
