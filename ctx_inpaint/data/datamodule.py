"""LightningDataModule serving masked crops from the embedded photos, a folder, or Paris StreetView."""

from __future__ import annotations

import os
import signal
import threading
import time
from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader

from ctx_inpaint.data.datasets import FixedValDataset, ImageStore, RandomCropDataset
from ctx_inpaint.data.prepared import PreparedImages
from ctx_inpaint.data.samplers import UnpaddedDistributedSampler
from ctx_inpaint.data.screening import Screener
from ctx_inpaint.data.sources import resolve_files
from ctx_inpaint.masks.generators import MaskGenerator

# ---- loader workers leave SIGINT and SIGTERM to the main process ----------------------------------------------
# Ctrl-C, `kill -- -PGID` and SLURM's pre-emption signal the whole process group. A worker that died of it (torch's
# worker handler re-raises SIGTERM; SIGINT ends its loop) made the main process fail with "DataLoader worker (pid N)
# is killed by signal" at whatever it was doing, instead of finishing its step and writing last.ckpt.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_CAN_WAIT = hasattr(signal, "pthread_sigmask") and hasattr(signal, "sigwaitinfo")


class SignalSafeDataLoader(DataLoader):
    """A ``DataLoader`` whose worker processes never act on SIGINT or SIGTERM from anyone but the loader itself.

    The workers are started with both signals blocked (no moment in which a group signal can end one), and
    ``worker_init`` keeps them blocked; the loader still shuts them down as usual (and a worker that fails to
    join still ends on the loader's ``terminate()``, see ``_exit_on_the_loaders_sigterm``)."""

    def _get_iterator(self) -> Any:
        if self.num_workers == 0 or not _CAN_WAIT:
            return super()._get_iterator()
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # workers inherit the mask
        try:
            return super()._get_iterator()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)  # what came meanwhile is delivered now


def worker_init(worker_id: int, rank: int = 0) -> None:
    """Every loader worker's init: SIGINT and SIGTERM stay blocked, a thread takes them (see
    ``_exit_on_the_loaders_sigterm``), then Lightning's per-worker seeding (what ``seed_everything(workers=True)``
    adds to a loader without a ``worker_init_fn``) when the run asked for it."""
    if _CAN_WAIT:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        threading.Thread(
            target=_exit_on_the_loaders_sigterm, args=(os.getppid(),), daemon=True, name="stop-signals"
        ).start()
    else:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id, rank=rank)


def _exit_on_the_loaders_sigterm(parent: int) -> None:
    """Take the worker's SIGINT and SIGTERM: a SIGTERM from the main process (the loader's ``terminate()`` of a
    worker that did not stop when asked, or multiprocessing's at exit) ends it at once, as torch's own worker
    handler does; the group's signals (from a terminal, ``kill -- -PGID``, a scheduler) are the main process's."""
    while True:
        info = signal.sigwaitinfo(STOP_SIGNALS)
        if info.si_signo == signal.SIGTERM and info.si_pid == parent:
            os._exit(0)


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
        prepared_dir: str | None = None,
        batch_size: int = 64,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        on_bad_image: str = "skip",
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
        self.prepared_dir = prepared_dir
        self.on_bad_image = on_bad_image
        self._files: tuple[list, list] | None = None
        self.prepared: list[tuple[str, PreparedImages, float]] = []  # filled by prepare_data
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.train_set: RandomCropDataset | None = None
        self.val_set: FixedValDataset | None = None

    def _store(self, files: list, cache: bool) -> ImageStore | PreparedImages:
        """The prepared on-disk cache when ``prepared_dir`` is set (built here if missing or stale), else decoding."""
        if self.prepared_dir:
            return PreparedImages(files, self.short_side, self.input_size, self.prepared_dir)
        return ImageStore(files, self.short_side, self.input_size, cache)

    def files(self) -> tuple[list, list]:
        """Train and val files; unreadable ones in a folder/Paris source are skipped or refused (``on_bad_image``)."""
        if self._files is None:
            screen = Screener(self.on_bad_image, memo_dir=self.prepared_dir)
            self._files = resolve_files(
                self.source, self.root, self.val_root, self.val_fraction, self.split_seed, screen=screen
            )
            screen.warn()
        return self._files

    def prepare_data(self) -> None:
        """Builds the prepared cache once (Lightning calls this on one process per node, before ``setup``).

        The screened file list (``files``) is what is cached, so ``python -m ctx_inpaint.prepare`` (which calls
        this) and training land on the same cache folder. ``self.prepared`` records ``(split, store, seconds)``.
        """
        self.prepared = []
        if self.prepared_dir:
            for split, files in zip(("train", "val"), self.files()):
                t0 = time.perf_counter()
                store = PreparedImages(files, self.short_side, self.input_size, self.prepared_dir)
                self.prepared.append((split, store, time.perf_counter() - t0))

    def setup(self, stage: str | None = None) -> None:
        if self.val_set is not None:
            return
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            # Crops and masks come from the global RNG, which seed_everything seeds alike on every rank:
            # without this, ranks with num_workers=0 would train on identical batches.
            torch.manual_seed(torch.initial_seed() + trainer.global_rank)
        train_files, val_files = self.files()
        store = self._store(train_files, self.cache_images)
        self.train_set = RandomCropDataset(
            store, self.masks, self.input_size, self.samples_per_epoch, self.hflip
        )
        # Val photos are few and read every epoch: always cached.
        val_store = self._store(val_files, cache=True)
        self.val_set = FixedValDataset(
            val_store, self.masks, self.input_size, self.val_crops_per_image, self.val_seed
        )

    def _pin(self) -> bool:
        """``pin_memory=None``: pin when the attached trainer runs on CUDA (pinned pages make the copy asynchronous)."""
        if self.pin_memory is not None:
            return bool(self.pin_memory)
        trainer = self.trainer
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def train_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self.trainer is not None else 0
        return SignalSafeDataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=False,  # every index is already a fresh random crop
            drop_last=True,
            num_workers=self.num_workers,
            pin_memory=self._pin(),
            persistent_workers=self.persistent_workers,
            worker_init_fn=partial(worker_init, rank=rank) if self.num_workers > 0 else None,
        )

    def val_dataloader(self) -> DataLoader:
        trainer = self.trainer
        sampler = None
        if trainer is not None and trainer.world_size > 1:
            # Disjoint shares, none repeated: the reduced metrics are the whole val set's.
            sampler = UnpaddedDistributedSampler(self.val_set, trainer.world_size, trainer.global_rank)
        return SignalSafeDataLoader(
            self.val_set,
            batch_size=self.val_batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=0,
            pin_memory=self._pin(),
        )
