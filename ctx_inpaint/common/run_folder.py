"""The run folder's layout: every file name a training run writes, in one place.

Training writes these files, resume and ``overwrite=true`` check them, the report and the demo's model registry read
them; all of them take the names from here, so a rename happens once. Torch-free (the report imports it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
METRICS = "metrics.csv"
VAL_IMAGES = "val_images.csv"  # per-image val metrics, one row per (epoch, val crop)
STATUS = "run_status.json"
SAMPLES = "samples"
WANDB_ID = "wandb_run_id.txt"
HYDRA = ".hydra"
# The config as run: interpolations and trainer.precision=auto resolved.
RESOLVED_CONFIG = "config_resolved.yaml"
LOCK = ".run.lock"

# The per-image val metrics the module writes and the report reads: val_images.csv's columns.
VAL_METRICS = ("l1", "l2", "psnr", "ssim")
VAL_IMAGES_COLUMNS = ("epoch", "index", *VAL_METRICS)

# What a run leaves in its run folder: a fresh run there would delete or mix them.
RECORDS = (METRICS, VAL_IMAGES, STATUS, CHECKPOINTS, SAMPLES, WANDB_ID)


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder (``hydra.run.dir``, or one job's folder of a sweep)."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        return self.root / CHECKPOINTS / LAST_CHECKPOINT

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def val_images(self) -> Path:
        return self.root / VAL_IMAGES

    @property
    def status(self) -> Path:
        return self.root / STATUS

    @property
    def samples(self) -> Path:
        return self.root / SAMPLES

    @property
    def wandb_id(self) -> Path:
        return self.root / WANDB_ID

    @property
    def hydra(self) -> Path:
        return self.root / HYDRA

    @property
    def config(self) -> Path:
        """The composed config Hydra saved for the run."""
        return self.root / HYDRA / "config.yaml"

    @property
    def resolved_config(self) -> Path:
        return self.root / RESOLVED_CONFIG

    @property
    def overrides(self) -> Path:
        return self.root / HYDRA / "overrides.yaml"

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    def sample(self, epoch: int) -> Path:
        """The sample grid of a validated epoch."""
        return self.root / SAMPLES / f"epoch_{epoch:04d}.png"
