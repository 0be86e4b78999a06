"""The LightningModule: the training loop's job for the context encoder and its discriminator.

Its steps, logging, optimizers, sample grids and ``val_images.csv`` rows; the loss and the GAN step are
``training.objective``'s, the generator is assembled by ``config.build``, as checkpoint loading assembles it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchvision.utils import make_grid, save_image

from ctx_inpaint.common import run_folder
from ctx_inpaint.config.build import assemble_generator, module_from_stored
from ctx_inpaint.config.checkpoint import CONFIG_KEY, check_targets, load_checkpoint
from ctx_inpaint.errors import ConfigError, check_range
from ctx_inpaint.evaluation.metrics import HiddenPixelMetrics, to_unit_range
from ctx_inpaint.masks.generators import MaskGenerator, apply_mask, composite
from ctx_inpaint.models.init import dcgan_init
from ctx_inpaint.training.objective import (
    GanParts,
    check_rec_loss,
    float32_region,
    gan_step,
    reconstruction_loss,
)

OptimizerFactory = Callable[..., torch.optim.Optimizer]

VAL_IMAGE_KEYS = run_folder.VAL_METRICS


class ContextEncoderModule(pl.LightningModule):
    """Loss: ``lambda_rec * L_rec + (1 - lambda_rec) * L_adv``.

    ``lambda_rec == 1`` builds no discriminator at all (and spends no compute on one); ``lambda_rec == 0``
    trains with the adversarial loss alone (``L_rec`` is still logged).
    """

    def __init__(
        self,
        encoder: nn.Module,
        bottleneck: Callable[..., nn.Module],
        decoder: Callable[..., nn.Module],
        discriminator: Callable[..., nn.Module] | None,
        masks: MaskGenerator,
        optimizer_g: OptimizerFactory,
        optimizer_d: OptimizerFactory | None = None,
        scheduler: Callable[..., Any] | None = None,
        lambda_rec: float = 0.999,
        rec_loss: str = "l2",
        ssim_weight: float = 0.0,
        g_lr_mult: float = 1.0,
        grid_images: int = 8,
        channels_last: bool | str = "auto",
        compile: bool = False,
        mask_channel: bool = False,
        residual: bool = False,
        skips: bool = False,
    ) -> None:
        super().__init__()
        lambda_rec = check_range("model.lambda_rec", lambda_rec, 0.0, 1.0)
        check_rec_loss(rec_loss)
        ssim_weight = check_range("model.ssim_weight", ssim_weight, 0.0, 1.0)
        g_lr_mult = check_range("optim.g_lr_mult", g_lr_mult, 0.0, math.inf, lo_inclusive=False)
        self.automatic_optimization = False
        self.masks = masks
        self.generator = assemble_generator(
            encoder, bottleneck, decoder, masks, mask_channel=mask_channel, residual=residual, skips=skips
        )
        self.discriminator: nn.Module | None = None
        if lambda_rec == 1.0 and discriminator is not None:
            raise ConfigError(
                "model.discriminator: set, but model.lambda_rec=1 has no adversarial term; "
                "pass model.discriminator=null (or lambda_rec < 1)"
            )
        if lambda_rec < 1.0:
            if discriminator is None:
                raise ConfigError(
                    f"model.discriminator: null, but model.lambda_rec={lambda_rec} < 1 needs one; "
                    "choose model/discriminator=dcgan"
                )
            if optimizer_d is None:
                raise ConfigError(
                    f"optim.discriminator: null, but model.lambda_rec={lambda_rec} < 1 trains a discriminator"
                )
            self.discriminator = discriminator(input_size=masks.output_size)
            self.discriminator.apply(dcgan_init)
        self.optimizer_g, self.optimizer_d, self.scheduler = optimizer_g, optimizer_d, scheduler
        self.lambda_rec, self.rec_loss = float(lambda_rec), rec_loss
        self.ssim_weight = float(ssim_weight)
        # The released code trains G at 10x the D learning rate whenever the loss is mixed (0 < lambda_rec < 1).
        self.g_lr_mult = float(g_lr_mult) if 0.0 < lambda_rec < 1.0 else 1.0
        self.grid_images = grid_images
        if channels_last not in (True, False, "auto"):
            raise ConfigError(f"model.channels_last: expected true, false or auto, got {channels_last!r}")
        self.channels_last, self.compile_networks = channels_last, bool(compile)
        self._nhwc = False  # the resolved memory format, set by apply_speed_settings
        self._speed_applied = False
        self.model_config: dict | None = None  # set by the builder; stored in checkpoints
        self.val_metrics = HiddenPixelMetrics()
        self._grid_batch: dict[str, torch.Tensor] | None = None
        self._val_rows: list[torch.Tensor] = []  # (index, l1, l2, psnr, ssim) per val crop of this epoch

    # ---- speed settings (model.channels_last, model.compile) ---------------------------------------
    def configure_model(self) -> None:
        """Lightning calls this before moving the module to its device; ``.to(device)`` keeps the memory format."""
        self.apply_speed_settings(self._trainer.strategy.root_device if self._trainer is not None else None)

    def apply_speed_settings(self, device: torch.device | None = None) -> None:
        """Channels-last weights and ``torch.compile``d networks, once. Parameters and state_dict keys are unchanged.

        ``channels_last="auto"`` turns NHWC on for CUDA (tensor-core convolutions want it) and off on CPU, where
        the benchmark measured no gain (experiments/perf/README.md).
        """
        if self._speed_applied:
            return
        self._speed_applied = True
        device = device if device is not None else self.device
        self._nhwc = self.channels_last is True or (self.channels_last == "auto" and device.type == "cuda")
        if self._nhwc:
            self.to(memory_format=torch.channels_last)
        if self.compile_networks:
            for net in (self.generator, self.discriminator):
                if net is not None:
                    net.compile()

    def _format(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self._nhwc and x.dim() == 4 else x

    def format_batch(self, batch: Any) -> Any:
        """Image tensors in the networks' memory format (a step's first call; a no-op unless NHWC is on)."""
        if self._nhwc and isinstance(batch, dict):
            batch = {k: self._format(v) if k in ("image", "masked", "mask") else v for k, v in batch.items()}
        return batch

    # ---- forward / helpers -------------------------------------------------------------------------
    def forward(self, masked: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(self._format(masked), None if mask is None else self._format(mask))

    def composite(self, pred: torch.Tensor, masked: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Paste the prediction into the hole only; visible pixels stay those of the input."""
        return composite(pred, masked, mask, self.masks.target_box)

    # ---- optimisation ------------------------------------------------------------------------------
    def configure_optimizers(
        self,
    ) -> list[torch.optim.Optimizer] | tuple[list[torch.optim.Optimizer], list[Any]]:
        opt_g = self.optimizer_g(self.generator.parameters())
        for group in opt_g.param_groups:
            group["lr"] *= self.g_lr_mult
        optimizers = [opt_g]
        if self.discriminator is not None:
            optimizers.append(self.optimizer_d(self.discriminator.parameters()))
        if self.scheduler is None:
            return optimizers
        # Stepped by on_train_epoch_end: under manual optimisation Lightning steps no scheduler itself.
        return optimizers, [self.scheduler(opt) for opt in optimizers]

    def gan_parts(self, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer | None) -> GanParts:
        """The networks, optimizers and loss settings one GAN step needs (``objective.gan_step``)."""
        return GanParts(
            self.generator,
            self.discriminator,
            opt_g,
            opt_d,
            self.masks.target_box,
            self.lambda_rec,
            self.reconstruction,
        )

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        batch = self.format_batch(batch)
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        parts = self.gan_parts(opts[0], opts[1] if len(opts) > 1 else None)
        self._log_train(gan_step(parts, batch, backward=self.manual_backward, only=self.toggled_optimizer))

    def reconstruction(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        batch: dict[str, torch.Tensor],
        logs: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """``L_rec`` with this module's settings, read at each call (``objective.reconstruction_loss``)."""
        return reconstruction_loss(
            pred, target, batch, logs, self.masks.target_box, self.rec_loss, self.ssim_weight
        )

    def _log_train(self, logs: dict[str, torch.Tensor]) -> None:
        self.log_dict(
            {f"train/{k}": v for k, v in logs.items()}, prog_bar=False, on_step=True, on_epoch=False
        )
        self.log("train/loss_rec_epoch", logs["loss_rec"], on_step=False, on_epoch=True, prog_bar=True)

    def on_train_epoch_end(self) -> None:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        for sched in schedulers if isinstance(schedulers, list) else [schedulers]:
            sched.step()

    # ---- validation --------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        """Under DDP, every rank validates rank 0's BatchNorm statistics: DDP broadcasts buffers only before each
        training forward, so after the last step each rank holds its own, and rank 0's are what the checkpoint
        stores."""
        if self.trainer.world_size > 1 and torch.distributed.is_initialized():
            for buf in self.buffers():
                torch.distributed.broadcast(buf, src=0)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        batch = self.format_batch(batch)
        pred = self.generator(batch["masked"], batch["mask"])
        # The composite and the metrics in float32 with autocast off (bf16-mixed validates under autocast): SSIM's
        # window is a convolution autocast would run in bf16, and each metric averages many hidden pixels.
        with float32_region(pred):
            output = self.composite(pred.float(), batch["masked"], batch["mask"])
            per_image = self.val_metrics.update(
                to_unit_range(output), to_unit_range(batch["image"]), batch["mask"]
            )
        if "index" in batch:
            self._val_rows.append(
                torch.stack(
                    [batch["index"].to(per_image["psnr"])] + [per_image[k] for k in VAL_IMAGE_KEYS], 1
                )
            )
        if batch_idx == 0:
            n = self.grid_images
            self._grid_batch = {
                # The hole in the mean colour, whatever the model's input fill: the grid shows what was hidden.
                "masked": apply_mask(batch["image"][:n], batch["mask"][:n]).detach(),
                "output": output[:n].detach(),
                "image": batch["image"][:n].detach(),
            }

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.log_dict({f"val/{k}": v for k, v in values.items()}, prog_bar=True, sync_dist=False)
        self.val_metrics.reset()
        rows, self._val_rows = self._val_rows, []
        if rows and not self.trainer.sanity_checking:
            self._write_val_images(torch.cat(rows))
        if self._grid_batch is not None and not self.trainer.sanity_checking:
            self._log_grid(self._grid_batch)
        self._grid_batch = None

    def _write_val_images(self, rows: torch.Tensor) -> None:
        """Append this validation's per-image metrics to ``val_images.csv``: the report's paired comparisons
        (same val crop, two experiments or seeds) need them, the epoch means in metrics.csv cannot give them."""
        if (
            self.trainer.world_size > 1
        ):  # each rank validated a share of the crops, maybe one fewer than others
            most = int(self.all_gather(torch.tensor(rows.shape[0], device=rows.device)).max())
            pad = rows.new_full((most - rows.shape[0], rows.shape[1]), -1.0)  # index -1: not a crop
            rows = self.all_gather(torch.cat([rows, pad])).flatten(0, 1)
            rows = rows[rows[:, 0] >= 0]
        if not self.trainer.is_global_zero:
            return
        path = run_folder.RunFolder(self.trainer.default_root_dir).val_images
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.is_file()
        epoch = self.current_epoch + 1
        lines = [] if not new else [",".join(run_folder.VAL_IMAGES_COLUMNS)]
        for row in sorted(rows.float().cpu().tolist(), key=lambda r: r[0]):
            lines.append(",".join([str(epoch), str(int(row[0]))] + [f"{v:.6g}" for v in row[1:]]))
        with path.open("a") as f:
            f.write("\n".join(lines) + "\n")

    def _log_grid(self, batch: dict[str, torch.Tensor]) -> None:
        """Rows of (masked | output | truth), saved under the run dir and sent to W&B when it is on."""
        if not self.trainer.is_global_zero:
            return
        rows = torch.stack([batch["masked"], batch["output"], batch["image"]], dim=1).flatten(0, 1)
        grid = make_grid(to_unit_range(rows.float().cpu()), nrow=3, padding=2)
        path = run_folder.RunFolder(self.trainer.default_root_dir).sample(self.current_epoch)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)
        for logger in self.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="val/samples", images=[grid], caption=["masked | output | truth"])

    # ---- checkpoints ---------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain containers only, so the checkpoint loads with torch.load(weights_only=True).
        if self.model_config is not None:
            checkpoint[CONFIG_KEY] = self.model_config

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | Path,
        map_location: Any = None,
        hparams_file: Any = None,
        strict: bool | None = None,
        optimizer_g: OptimizerFactory | None = None,
        optimizer_d: OptimizerFactory | None = None,
        **kwargs: Any,
    ) -> ContextEncoderModule:
        """Lightning's loading for our checkpoints: the module is rebuilt from the config the checkpoint carries
        (read weights-only; every ``_target_`` must be one of this package's model or mask classes), then its
        weights are loaded. Checkpoints carry no optimizer config: ``optimizer_g`` / ``optimizer_d`` default to
        the paper's Adam (lr 2e-4, beta1 0.5); ``kwargs`` override module arguments."""
        path = str(checkpoint_path)
        ckpt = load_checkpoint(path)
        config = dict(ckpt[CONFIG_KEY])
        check_targets(config, path)  # before anything in it is instantiated
        module = module_from_stored(
            config, f"{cls.__module__}.{cls.__qualname__}", optimizer_g, optimizer_d, **kwargs
        )
        module.load_state_dict(ckpt["state_dict"], strict=True if strict is None else strict)
        return module.to(map_location) if isinstance(map_location, str | torch.device) else module
