"""Loggers: metrics.csv and the W&B run continue a run resumed in the same run dir instead of starting it over;
W&B stays offline unless the user configured it; W&B runs are grouped by sweep.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it starts, and buffers rows in memory between
flushes. ``ResumableCSVLogger`` keeps the rows logged before the step the resumed run logs first (rows written
after the checkpoint are dropped: the resumed run logs them again) and flushes whenever a checkpoint is saved,
plus the one row Lightning logs right after it, so a kill loses nothing the checkpoint does not also lose. The W&B run id is kept in the run dir for the same reason.
"""

from __future__ import annotations

import csv
import netrc
import os
import secrets
import string
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from ctx_inpaint.common import run_folder
from ctx_inpaint.common.files import atomic_path

WANDB_ID_FILE = run_folder.WANDB_ID


class _ResumableWriter(ExperimentWriter):
    """Decides what to do with an existing metrics.csv at its first save, once the resume step is known."""

    def __init__(self, log_dir: str) -> None:
        self.resuming = False
        self.validation_owed = False  # the checkpoint was taken during validation: its epoch end is redone
        self._settled = False
        self.flush_next = False
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        """Lightning deletes metrics.csv here; we wait until we know whether the run resumes."""

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        super().log_metrics(metrics_dict, step)
        if self.flush_next:  # the row that completes a just-saved checkpoint goes to disk right away
            self.flush_next = False
            self.save()

    def save(self) -> None:
        try:
            if self.metrics and not self._settled:
                self._settled = True
                self._settle_existing_file()
            super().save()
        except OSError as err:  # a full disk: name the file (a failed write does not)
            if err.filename is not None:
                raise
            raise OSError(err.errno, err.strerror, self.metrics_file_path) from None

    def _settle_existing_file(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        if not self.resuming:  # a fresh run in a used dir: Lightning's behaviour, start over
            path.unlink()
            return
        # The resumed run's first logged step says where the checkpoint was: rows from there on are redone. After
        # a validation owed by the checkpoint, only the epoch-end rows of that step are (its training rows stay).
        first = min(int(m["step"]) for m in self.metrics)
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fieldnames = list(reader.fieldnames or [])
            rows = [r for r in reader if self._kept(r, first)]
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = sorted(set(self.metrics_keys) | set(fieldnames))

    def _kept(self, row: dict[str, str], first: int) -> bool:
        step = _step(row)
        if step is None or step > first:
            return False
        return step < first or (self.validation_owed and not _epoch_end_row(row))


def _epoch_end_row(row: dict[str, str]) -> bool:
    """A row an epoch end logs: validation metrics or ``*_epoch`` means."""
    return any(value and (key.startswith("val/") or key.endswith("_epoch")) for key, value in row.items())


def _step(row: dict[str, str]) -> int | None:
    try:
        return int(float(row.get("step") or ""))
    except ValueError:
        return None


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives a resume (see the module docstring)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> _ResumableWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ResumableWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def mark_resumed(self, validation_owed: bool = False) -> None:
        """Called when training resumes from a checkpoint: continue metrics.csv instead of starting over
        (``validation_owed``: the checkpoint was taken during validation, which the resumed run redoes)."""
        self.experiment.resuming = True
        self.experiment.validation_owed = validation_owed

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        super().after_save_checkpoint(checkpoint_callback)
        if rank_zero_only.rank == 0 and self._experiment is not None:
            self.save()
            self._experiment.flush_next = True


def wandb_run_id(run_dir: str | Path, reuse: bool = True) -> str:
    """The run dir's W&B run id: read from ``wandb_run_id.txt`` (if ``reuse``), else generated and written there.

    A resumed run (same run dir) thus continues the same W&B run, and two run dirs never share one.
    """
    path = Path(run_dir) / WANDB_ID_FILE
    if reuse and path.is_file():
        run_id = path.read_text().strip()
        if run_id:
            return run_id
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))  # W&B's format
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n")
    return run_id


def fill_wandb_resume(cfg: DictConfig, run_dir: str | Path) -> None:
    """Give ``logger.wandb`` the run dir's id and ``resume="allow"`` unless the user set them.

    Only a run that resumes (``ckpt_path`` set) reuses the stored id; a new run in a used dir starts a new W&B run.
    """
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if wandb_cfg is None:
        return
    with open_dict(cfg):
        if wandb_cfg.get("id") is None:
            cfg.logger.wandb.id = wandb_run_id(run_dir, reuse=cfg.get("ckpt_path") is not None)
        if wandb_cfg.get("resume") is None:
            cfg.logger.wandb.resume = "allow"


def fill_wandb_group(cfg: DictConfig) -> None:
    """``logger.wandb.group`` unless set: the sweep dir's name for multirun jobs, ``single`` otherwise, so a
    dashboard shows one sweep's runs together."""
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if wandb_cfg is None or wandb_cfg.get("group") is not None:
        return
    group = "single"
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        group = Path(HydraConfig.get().sweep.dir).name
    with open_dict(cfg):
        cfg.logger.wandb.group = group


# ---- W&B mode: no network access is attempted unless the user configured W&B ---------------------------------
def wandb_configured() -> bool:
    """True when an API key is set in the environment or in ~/.netrc (what ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc(str(Path(os.environ.get("NETRC", Path.home() / ".netrc")))).authenticators(
            "api.wandb.ai"
        )
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return auth is not None


def ensure_wandb_mode() -> str:
    """Set ``WANDB_MODE=offline`` unless the user chose a mode or configured a key; return the mode."""
    if "WANDB_MODE" not in os.environ and not wandb_configured():
        os.environ["WANDB_MODE"] = "offline"
    return os.environ.get("WANDB_MODE", "online")
