"""Training crops drawn at random, and a fixed validation set identical across runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ctx_inpaint.data.images import load_rgb, resize_short_side, to_model_range
from ctx_inpaint.masks.generators import MaskGenerator


def make_sample(image: torch.Tensor, mask: torch.Tensor, masks: MaskGenerator) -> dict[str, torch.Tensor]:
    """The batch dict every stage shares: truth, masked input, hole mask and loss weights."""
    return {
        "image": image,
        "masked": masks.hide(image, mask),
        "mask": mask,
        "weight": masks.loss_weight(mask),
    }


class ImageStore:
    """Resized uint8 photos, decoded once when ``cache`` is set, else on every access."""

    def __init__(self, files: Sequence[Path], short_side: int, min_side: int, cache: bool) -> None:
        self.files = list(files)
        self.short_side = short_side
        self.min_side = min_side
        self._cache: list[torch.Tensor] | None = [self._load(f) for f in self.files] if cache else None

    def _load(self, path: Path) -> torch.Tensor:
        return resize_short_side(load_rgb(path), self.short_side, self.min_side)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self._cache[i] if self._cache is not None else self._load(self.files[i])


class RandomCropDataset(Dataset):
    """An "epoch" is ``samples_per_epoch`` random crops from photos drawn with replacement (as the original).

    Randomness comes from torch's global RNG, which Lightning seeds per worker (``seed_everything(workers=True)``).
    """

    def __init__(
        self,
        store: ImageStore,
        masks: MaskGenerator,
        crop_size: int,
        samples_per_epoch: int,
        hflip: bool = True,
    ) -> None:
        self.store = store
        self.masks = masks
        self.crop_size = crop_size
        self.samples_per_epoch = samples_per_epoch
        self.hflip = hflip

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        img = self.store[int(torch.randint(len(self.store), (1,)))]
        h, w = img.shape[-2:]
        c = self.crop_size
        y = int(torch.randint(h - c + 1, (1,)))
        x = int(torch.randint(w - c + 1, (1,)))
        crop = img[:, y : y + c, x : x + c]
        if self.hflip and bool(torch.rand(()) < 0.5):
            crop = crop.flip(-1)
        return make_sample(to_model_range(crop), self.masks.sample(), self.masks)


class FixedValDataset(Dataset):
    """``crops_per_image`` crops per photo, positions and masks drawn once from ``seed``: every run and every
    experiment with the same data and mask settings validates on the same pixels.
    """

    def __init__(
        self, store: ImageStore, masks: MaskGenerator, crop_size: int, crops_per_image: int, seed: int = 1234
    ) -> None:
        g = torch.Generator().manual_seed(seed)
        self.items: list[tuple[int, int, int]] = []
        self.masks_list: list[torch.Tensor] = []
        self.store = store
        self.masks = masks
        self.crop_size = crop_size
        for i in range(len(store)):
            h, w = store[i].shape[-2:]
            for _ in range(crops_per_image):
                y = int(torch.randint(h - crop_size + 1, (1,), generator=g))
                x = int(torch.randint(w - crop_size + 1, (1,), generator=g))
                self.items.append((i, y, x))
                self.masks_list.append(masks.sample(generator=g))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        i, y, x = self.items[index]
        c = self.crop_size
        crop = self.store[i][:, y : y + c, x : x + c]
        sample = make_sample(to_model_range(crop), self.masks_list[index], self.masks)
        sample["index"] = torch.tensor(index)
        return sample
