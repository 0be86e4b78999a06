"""Build the prepared photo cache ahead of training: ``python -m ctx_inpaint.prepare data=folder data.root=PATH``.

Takes the same overrides as ``train`` and builds the cache exactly as training would (same config check, same
datamodule, same bad-image screening), so training finds it under the same key; training builds the cache
itself on first use when this was not run.
"""

from __future__ import annotations

import sys

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from ctx_inpaint.common.cli import fail, report_user_errors
from ctx_inpaint.config.check import check_config
from ctx_inpaint.config.compose import CONFIG_DIR, override_problem
from ctx_inpaint.data.prepared import PreparedImages
from ctx_inpaint.errors import ConfigError


def prepare(cfg: DictConfig) -> list[PreparedImages]:
    """Builds (or validates) the train and val caches; returns them."""
    check_config(cfg)  # refuse bad keys/values as training does, before anything is read or written
    if not cfg.data.get("prepared_dir"):
        raise ConfigError("data.prepared_dir: null, so there is no cache to prepare (set a folder)")
    datamodule = instantiate(cfg.data, masks=instantiate(cfg.masks))  # as train() builds it
    datamodule.prepare_data()
    for split, store, seconds in datamodule.prepared:
        action = "built" if store.built else "up to date"
        print(f"[ctx-inpaint] {split}: {len(store)} photos {action} in {seconds:.1f} s: {store.dir}")
    return [store for _, store, _ in datamodule.prepared]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    with report_user_errors():
        prepare(cfg)


if __name__ == "__main__":
    if (problem := override_problem(sys.argv[1:], "train")) is not None:
        fail(problem)  # one line, before Hydra starts, as train
    main()
