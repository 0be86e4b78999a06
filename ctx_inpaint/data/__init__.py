"""Image sources, datasets and the LightningDataModule."""

from ctx_inpaint.data.datamodule import InpaintingDataModule

__all__ = ["InpaintingDataModule"]
