"""Build the prepared photo cache ahead of training: ``python -m ctx_inpaint.prepare data=folder data.root=PATH``.

Takes the same overrides as ``train``; training builds the cache itself on first use when this was not run.
"""

from __future__ import annotations

import time

import hydra
from omegaconf import DictConfig

from ctx_inpaint.data.prepared import PreparedImages
from ctx_inpaint.data.sources import resolve_files
from ctx_inpaint.train import CONFIG_DIR


def prepare(cfg: DictConfig) -> list[PreparedImages]:
    """Builds (or validates) the train and val caches; returns them."""
    d = cfg.data
    if not d.get("prepared_dir"):
        raise ValueError("data.prepared_dir: null, so there is no cache to prepare (set a folder)")
    stores = []
    for split, files in zip(
        ("train", "val"), resolve_files(d.source, d.root, d.val_root, d.val_fraction, d.split_seed)
    ):
        t0 = time.perf_counter()
        store = PreparedImages(files, int(d.short_side), int(d.input_size), d.prepared_dir)
        action = "built" if store.built else "up to date"
        print(
            f"[ctx-inpaint] {split}: {len(store)} photos {action} in {time.perf_counter() - t0:.1f} s: {store.dir}"
        )
        stores.append(store)
    return stores


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    prepare(cfg)


if __name__ == "__main__":
    main()
