"""The reconstruction loss on one fixed random batch, centre (ring weight 10) and random-region masks: the figure
behind "L_rec 0.661 before, 2.056 after" in the issue-16 note. Run it on this checkout, and on the code before the
fix to compare:

    .venv/bin/python experiments/faithful/loss_scale.py
    git worktree add /tmp/old d657a2f && PYTHONPATH=/tmp/old .venv/bin/python experiments/faithful/loss_scale.py
"""

from __future__ import annotations

import torch

from ctx_inpaint.masks.generators import CenterMask, RandomRegion
from ctx_inpaint.training.objective import masked_reconstruction


def main() -> None:
    torch.manual_seed(0)
    for name, masks in (("centre, ring 10", CenterMask()), ("random region", RandomRegion())):
        weight = masks.loss_weight(masks.sample(torch.Generator().manual_seed(0)))
        weight = weight.expand(8, 1, *weight.shape[-2:])
        pred = torch.rand(8, 3, *weight.shape[-2:]) * 2 - 1
        target = torch.rand(8, 3, *weight.shape[-2:]) * 2 - 1
        loss = masked_reconstruction(pred, target, weight).item()
        print(
            f"{name}: L_rec = {loss:.4f}, weight sum / elements = {weight.sum().item() / weight.numel():.4f}"
        )


if __name__ == "__main__":
    main()
