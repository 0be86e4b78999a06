"""The one way to load a trained model: :func:`load_model` takes a shipped model name (``freeform``, ``center``), a
``.safetensors`` export or a ``.ckpt`` written by training, and returns its generator in eval mode with the masks
it was trained with (:class:`LoadedModel`).

Every user of a model goes through it: ``Inpainter.load``, the inpaint, evaluate, export and demo commands. The
files are read safely elsewhere: checkpoints by :mod:`ctx_inpaint.config.checkpoint` (weights-only unpickling, class
paths checked), safetensors by :mod:`ctx_inpaint.inference.weights`; this module builds the model from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ctx_inpaint.config.checkpoint import (
    CONFIG_KEY,
    CheckpointError,
    build_generator,
    check_finite,
    generator_state,
    load_checkpoint,
    training_meta,
)
from ctx_inpaint.errors import InputError, one_line
from ctx_inpaint.inference.weights import (
    PRETRAINED,
    PRETRAINED_DIR,
    check_tensors,
    pretrained_path,
    read_weights,
)
from ctx_inpaint.masks.generators import CenterMask, MaskGenerator
from ctx_inpaint.models.generator import Generator

# What load_model takes: a shipped model name, or the path of a .safetensors export or a .ckpt.
ModelSource = str | Path


@dataclass
class LoadedModel:
    """A generator in eval mode plus what is needed to feed it."""

    generator: Generator
    masks: MaskGenerator
    input_size: int
    name: str
    config: dict[str, Any]
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # epoch, global_step, train_seconds (when recorded)

    @property
    def kind(self) -> str:
        """``center``: trained on the centre hole (CenterMask, predicting its square or, with ``whole_image``, the
        whole input); ``whole``: predicts the whole input for any hole (random and free-form masks)."""
        return (
            "center" if isinstance(self.masks, CenterMask) or self.masks.target_box is not None else "whole"
        )


def pick_device(device: str | torch.device | None, name: str = "device") -> torch.device:
    """``auto`` (or ``None``): cuda if available, else cpu; otherwise the torch device named, checked now so
    a bad ``name`` (an argument, or a command's flag) is reported in one line instead of failing deep inside torch."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"{name}: expected auto, cpu, cuda or cuda:N, got {str(device)!r}") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(
                f"{name}: got {str(device)!r} but CUDA is not available here (expected auto or cpu)"
            )
        if dev.index is not None and dev.index >= count:
            raise InputError(
                f"{name}: got {str(device)!r} but there are {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
            )
    return dev


def load_model(source: ModelSource, device: str | torch.device | None = "cpu") -> LoadedModel:
    """The model ``source`` names, its generator in eval mode on ``device`` (``auto``: cuda if available).

    ``source``: a shipped model name (unless a file of that name exists here), a ``.safetensors`` file (its
    ``.json`` beside it) or a checkpoint written by ``ctx_inpaint.train``. Anything else, and any file that is
    not what it claims, is a one-line ``CheckpointError`` naming it; nothing in a file is executed."""
    dev = pick_device(device)
    path = _resolve(source)
    model = _from_weights(path) if path.suffix == ".safetensors" else _from_checkpoint(path)
    model.generator.to(dev).eval()
    return model


def source_files(source: ModelSource) -> list[Path]:
    """The files ``load_model(source)`` reads (a ``.safetensors`` and its ``.json``, or a checkpoint), without
    reading them: a writer checks its output against these so that it never replaces the model it was given."""
    path = Path(source).expanduser()
    if str(source) in PRETRAINED and not path.is_file():
        path = PRETRAINED_DIR / f"{source}.safetensors"
    return [path, path.with_suffix(".json")] if path.suffix == ".safetensors" else [path]


def _resolve(source: ModelSource) -> Path:
    """The file ``source`` names (a shipped name's ``.safetensors``); one line when it names nothing."""
    path = Path(source).expanduser()
    if str(source) in PRETRAINED and not path.is_file():
        return pretrained_path(str(source))
    if not path.is_file() and not path.suffix:
        raise CheckpointError(
            f"{source}: neither a shipped model ({', '.join(PRETRAINED)}) nor an existing .ckpt or .safetensors file"
        )
    return path


def _from_checkpoint(path: Path) -> LoadedModel:
    """A checkpoint's generator: its config rebuilt, its weights checked finite and fitted strictly."""
    ckpt = load_checkpoint(path)
    config = dict(ckpt[CONFIG_KEY])
    generator, masks = build_generator(config, source=str(path))
    weights = generator_state(ckpt["state_dict"])
    check_finite(weights, path)
    try:
        generator.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        detail = one_line(err)[:300]
        raise CheckpointError(
            f"{path}: weights do not match the model config it carries ({detail})"
        ) from None
    return LoadedModel(
        generator=generator,
        masks=masks,
        input_size=int(config["input_size"]),
        name=str(config.get("name", "model")),
        config=config,
        path=path,
        meta=training_meta(ckpt),
    )


def _from_weights(path: Path) -> LoadedModel:
    """A safetensors export's generator: built from its JSON's config, then every tensor's name and shape checked
    before one weight is copied."""
    weights = read_weights(path)
    generator, masks = build_generator(weights.config, source=str(weights.json_path))
    expected = generator.state_dict()
    check_tensors(path, weights.tensors, expected)
    generator.load_state_dict({k: v.to(expected[k].dtype) for k, v in weights.tensors.items()}, strict=True)
    return LoadedModel(
        generator=generator,
        masks=masks,
        input_size=int(weights.config["input_size"]),
        name=str(weights.config.get("name", path.stem)),
        config=weights.config,
        path=weights.path,
        meta=weights.trained,
    )
