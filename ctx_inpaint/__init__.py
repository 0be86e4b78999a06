"""ctx-inpaint: Context Encoders (Pathak et al., CVPR 2016) on PyTorch Lightning + Hydra.

The names a user scripts with, imported on first use (so ``import ctx_inpaint`` stays cheap)::

    from ctx_inpaint import Inpainter
    filled = Inpainter.load("last.ckpt")(photo, mask)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_PUBLIC = {
    "Inpainter": "ctx_inpaint.inference.inpainter",
    "load_model": "ctx_inpaint.inference.loading",
    "LoadedModel": "ctx_inpaint.inference.loading",
    "ContextEncoderModule": "ctx_inpaint.training.module",
    "InpaintingDataModule": "ctx_inpaint.data.datamodule",
    "build_module": "ctx_inpaint.config.build",
    "compose_config": "ctx_inpaint.config.compose",
    "fit": "ctx_inpaint.training.run",  # training.run.train; not `train`, the CLI module ctx_inpaint.train
}
__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'ctx_inpaint' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), "train" if name == "fit" else name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
