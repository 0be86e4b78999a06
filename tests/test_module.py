import csv
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import open_dict

from ctx_inpaint.config.build import build_module, with_resolved_precision
from ctx_inpaint.training.run import train


def test_l2_only_builds_no_discriminator(tiny_cfg) -> None:
    cfg = tiny_cfg("+experiment=l2_1")
    module = build_module(cfg, instantiate(cfg.masks))
    assert module.discriminator is None
    assert not any(name.startswith("discriminator") for name, _ in module.named_parameters())
    opt = module.configure_optimizers()
    assert len(opt) == 1
    assert opt[0].param_groups[0]["lr"] == pytest.approx(2e-4)  # no 10x G lr without an adversarial term


def test_adversarial_run_has_discriminator_and_10x_g_lr(tiny_cfg) -> None:
    cfg = tiny_cfg("+experiment=l2_0999")
    module = build_module(cfg, instantiate(cfg.masks))
    assert module.discriminator is not None
    opt_g, opt_d = module.configure_optimizers()
    assert opt_g.param_groups[0]["lr"] == pytest.approx(2e-3)
    assert opt_d.param_groups[0]["lr"] == pytest.approx(2e-4)


def test_lambda_rec_one_with_discriminator_is_refused(tiny_cfg) -> None:
    cfg = tiny_cfg("+experiment=l2_0999", "model.lambda_rec=1.0")
    with pytest.raises((ValueError, InstantiationException), match="model.discriminator"):
        build_module(cfg, instantiate(cfg.masks))


def test_training_steps_update_both_networks(tiny_cfg) -> None:
    cfg = tiny_cfg("+experiment=l2_0999")
    masks = instantiate(cfg.masks)
    module = build_module(cfg, masks)
    dm = instantiate(cfg.data, masks=masks)
    before_g = [p.detach().clone() for p in module.generator.parameters()]
    before_d = [p.detach().clone() for p in module.discriminator.parameters()]
    cfg = with_resolved_precision(cfg)[0]  # trainer.precision=auto, as train() resolves it
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False)
    trainer.fit(module, datamodule=dm)
    assert any(not torch.equal(a, b) for a, b in zip(before_g, module.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_d, module.discriminator.parameters()))
    logged = trainer.logged_metrics
    for key in ("train/loss_rec", "train/loss_adv", "train/loss_d", "train/d_real", "train/d_fake"):
        assert key in logged and torch.isfinite(logged[key])
    for key in ("val/l1", "val/l2", "val/psnr", "val/ssim"):
        assert key in logged


def test_composite_keeps_visible_pixels(tiny_cfg) -> None:
    cfg = tiny_cfg("+experiment=l2_1")
    module = build_module(cfg, instantiate(cfg.masks))
    masked = torch.rand(2, 3, 32, 32)
    mask = module.masks.sample().expand(2, 1, 32, 32)
    out = module.composite(torch.full((2, 3, 16, 16), 0.5), masked, mask)
    hidden = mask.bool().expand_as(out)
    assert torch.equal(out[~hidden], masked[~hidden])
    assert torch.all(out[hidden] == 0.5)


def test_ssim_weight_mixes_one_minus_the_metrics_ssim_into_the_reconstruction_loss(tiny_cfg) -> None:
    from ctx_inpaint.evaluation.metrics import HiddenPixelMetrics, to_unit_range
    from ctx_inpaint.masks.generators import apply_mask, crop_box
    from ctx_inpaint.training.objective import masked_reconstruction

    torch.manual_seed(0)
    cfg = tiny_cfg("+experiment=l2_1", "model.ssim_weight=0.25")
    masks = instantiate(cfg.masks)
    module = build_module(cfg, masks)
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    mask = masks.sample().expand(2, 1, 32, 32)
    batch = {
        "image": image,
        "masked": apply_mask(image, mask),
        "mask": mask,
        "weight": masks.loss_weight(masks.sample()).expand(2, 1, 16, 16),
    }
    target = crop_box(image, masks.target_box)
    pred = torch.rand(2, 3, 16, 16, requires_grad=True)
    logs: dict = {}
    loss = module.reconstruction(pred * 2 - 1, target, batch, logs)
    metric = HiddenPixelMetrics()
    output = module.composite(pred.detach() * 2 - 1, image, mask)
    metric.update(to_unit_range(output), to_unit_range(image), mask)
    plain = masked_reconstruction(pred.detach() * 2 - 1, target, batch["weight"])
    expected = 0.75 * plain + 0.25 * (1 - metric.compute()["ssim"])
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    assert logs["loss_ssim"].item() == pytest.approx(1 - metric.compute()["ssim"].item(), abs=1e-5)
    # The SSIM term reaches only hole pixels: the predicted ring is pasted nowhere, so it gets no gradient.
    module.ssim_weight = 1.0
    module.reconstruction(pred * 2 - 1, target, batch, {}).backward()
    hole = crop_box(mask, masks.target_box).bool().expand_as(pred)
    assert torch.all(pred.grad[~hole] == 0) and pred.grad[hole].abs().sum() > 0


@pytest.mark.parametrize("weight", [-0.1, 1.5])
def test_ssim_weight_outside_unit_interval_is_refused(tiny_cfg, weight: float) -> None:
    cfg = tiny_cfg("+experiment=l2_1", f"model.ssim_weight={weight}")
    with pytest.raises((ValueError, InstantiationException), match="model.ssim_weight"):
        build_module(cfg, instantiate(cfg.masks))


@pytest.mark.slow
def test_two_epoch_run_writes_metrics_and_reloadable_checkpoint(tiny_cfg, tmp_path: Path) -> None:
    cfg = tiny_cfg("+experiment=l2_0999", "trainer.max_epochs=2")
    metrics = train(cfg)
    assert "val/psnr" in metrics and metrics["val/psnr"] > 0
    run = Path(cfg.paths.output_dir)
    with open(run / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/psnr")]
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert (run / "config_resolved.yaml").exists()
    assert list((run / "samples").glob("epoch_*.png"))
    last = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1
    assert ckpt["ctx_inpaint_config"]["model"]["lambda_rec"] == pytest.approx(0.999)
    module = build_module(cfg, instantiate(cfg.masks))
    module.load_state_dict(ckpt["state_dict"])
    x = torch.zeros(1, 3, 32, 32)
    module.eval()
    assert module(x).shape == (1, 3, 16, 16)


@pytest.mark.slow
def test_last_checkpoint_is_the_latest_epoch_even_without_a_new_best(tiny_cfg) -> None:
    # every_n_epochs=2: the top-k save happens at epoch 1 only; last.ckpt must still follow epoch 2.
    cfg = tiny_cfg("+experiment=l2_1", "trainer.max_epochs=3", "+callbacks.model_checkpoint.every_n_epochs=2")
    train(cfg)
    ckpt = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 2


def _visible_error(module, batch: dict[str, torch.Tensor]) -> float:
    """Mean squared error of the raw generator output on the visible pixels (what the discriminator sees)."""
    with torch.no_grad():
        pred = module.generator(batch["masked"])
    visible = (1 - batch["mask"]).expand_as(pred).bool()
    return float((pred - batch["image"])[visible].square().mean())


@pytest.mark.parametrize("visible_weight", [1.0, 0.0])
def test_random_mask_gan_reconstructs_the_visible_pixels(tmp_path: Path, visible_weight: float) -> None:
    """train_random.lua: the whole-image L2 holds the raw output close to the input outside the hole. 40 GAN
    steps on one fixed batch: with the released weights the visible-pixel error falls by more than half; with
    visible_weight=0 (hole-only L2, the old objective) it falls far less (only the adversarial term and the
    shared weights pull on those pixels)."""
    from torch.utils.data import DataLoader

    from tests.conftest import TINY, compose_config

    tiny = list(TINY)
    overrides = [
        "+experiment=random_region",
        f"masks.visible_weight={visible_weight}",
        "model.bottleneck.units=256",
    ]
    cfg = compose_config(overrides + tiny, tmp_path / "run")
    with open_dict(cfg):
        cfg.model.discriminator.width = 8
    torch.manual_seed(0)
    masks = instantiate(cfg.masks)
    module = build_module(cfg, masks)
    dm = instantiate(cfg.data, masks=masks)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    before = _visible_error(module, batch)
    cfg = with_resolved_precision(cfg)[0]  # trainer.precision=auto, as train() resolves it
    trainer = instantiate(
        cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False, max_steps=40, limit_val_batches=0
    )
    trainer.fit(module, train_dataloaders=DataLoader([batch] * 40, batch_size=None))
    after = _visible_error(module, batch)
    print(f"visible_weight={visible_weight}: visible-pixel MSE {before:.4f} -> {after:.4f}")
    if visible_weight > 0:
        assert after < 0.5 * before
    else:
        assert after > 0.5 * before
