"""LightningDataModule serving masked crops from the embedded photos, a folder, or Paris StreetView."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from ctx_inpaint.data.datasets import FixedValDataset, ImageStore, RandomCropDataset
from ctx_inpaint.data.sources import resolve_files
from ctx_inpaint.masks import MaskGenerator


class InpaintingDataModule(pl.LightningDataModule):
    def __init__(
        self,
        masks: MaskGenerator,
        source: str = "embedded",
        root: str | None = None,
        val_root: str | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        input_size: int = 128,
        short_side: int = 350,
        samples_per_epoch: int = 1280,
        val_crops_per_image: int = 8,
        val_seed: int = 1234,
        hflip: bool = True,
        cache_images: bool = True,
        batch_size: int = 64,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = True,
    ) -> None:
        super().__init__()
        if masks.image_size != input_size:
            raise ValueError(
                f"data.input_size ({input_size}) differs from the mask's image size ({masks.image_size})"
            )
        if short_side < input_size:
            raise ValueError(f"data.short_side: expected >= data.input_size ({input_size}), got {short_side}")
        for key, value in (("samples_per_epoch", samples_per_epoch), ("batch_size", batch_size)):
            if value < 1:
                raise ValueError(f"data.{key}: expected a positive integer, got {value}")
        if samples_per_epoch < batch_size:
            raise ValueError(
                f"data.samples_per_epoch ({samples_per_epoch}) must be >= data.batch_size ({batch_size}): "
                "incomplete batches are dropped"
            )
        self.masks = masks
        self.source, self.root, self.val_root = source, root, val_root
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.input_size, self.short_side = input_size, short_side
        self.samples_per_epoch = samples_per_epoch
        self.val_crops_per_image, self.val_seed = val_crops_per_image, val_seed
        self.hflip, self.cache_images = hflip, cache_images
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.train_set: RandomCropDataset | None = None
        self.val_set: FixedValDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.val_set is not None:
            return
        train_files, val_files = resolve_files(
            self.source, self.root, self.val_root, self.val_fraction, self.split_seed
        )
        store = ImageStore(train_files, self.short_side, self.input_size, self.cache_images)
        self.train_set = RandomCropDataset(
            store, self.masks, self.input_size, self.samples_per_epoch, self.hflip
        )
        # Val photos are few and read every epoch: always cached.
        val_store = ImageStore(val_files, self.short_side, self.input_size, cache=True)
        self.val_set = FixedValDataset(
            val_store, self.masks, self.input_size, self.val_crops_per_image, self.val_seed
        )

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=False,  # every index is already a fresh random crop
            drop_last=True,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_set,
            batch_size=self.val_batch_size,
            shuffle=False,
            num_workers=0,
            pin_memory=self.pin_memory,
        )
