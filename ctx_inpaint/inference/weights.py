"""Shipped weights: a generator as safetensors (tensors only, no pickle) beside a JSON of its model config.

``ctx_inpaint/inference/pretrained/<name>.safetensors`` + ``<name>.json`` are the pretrained models (``freeform``, ``center``),
made by ``make weights`` from recorded training runs. Loading builds the generator from the JSON (every
``_target_`` checked as for checkpoints), then refuses any tensor whose name or shape the model does not have
before a single weight is copied.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from ctx_inpaint.common.files import atomic_write
from ctx_inpaint.config.checkpoint import (
    CONFIG_KEY,
    CheckpointError,
    build_generator,
    check_finite,
    current_config,
)
from ctx_inpaint.errors import one_line
from ctx_inpaint.inference.loading import LoadedModel, load_model

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
PRETRAINED = ("freeform", "center")
DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}


def pretrained_path(name: str) -> Path:
    """The shipped ``.safetensors`` of a pretrained model name; one-line error for an unknown or missing one."""
    if name not in PRETRAINED:
        raise CheckpointError(f"pretrained model {name!r}: unknown; expected one of {', '.join(PRETRAINED)}")
    path = PRETRAINED_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise CheckpointError(
            f"pretrained model {name!r}: {path} is missing (run `make weights` to build it)"
        )
    return path


def load_any(spec: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """``spec``: a pretrained name (``freeform``, ``center``), a ``.safetensors`` file, or a ``.ckpt``."""
    path = Path(spec).expanduser()
    if str(spec) in PRETRAINED and not path.is_file():
        return load_weights(pretrained_path(str(spec)), device)
    if not path.is_file() and not path.suffix:
        raise CheckpointError(
            f"{spec}: neither a shipped model ({', '.join(PRETRAINED)}) nor an existing .ckpt or .safetensors file"
        )
    if path.suffix == ".safetensors":
        return load_weights(path, device)
    return load_model(path, device)


def source_files(spec: str | Path) -> list[Path]:
    """The files ``load_any(spec)`` reads (a ``.safetensors`` and its ``.json``, or a ``.ckpt``), without reading
    them: a writer checks its output against these so that it never replaces the model it was given."""
    path = Path(spec).expanduser()
    if str(spec) in PRETRAINED and not path.is_file():
        path = PRETRAINED_DIR / f"{spec}.safetensors"
    return [path, path.with_suffix(".json")] if path.suffix == ".safetensors" else [path]


def export_weights(
    checkpoint: str | Path, out: str | Path, dtype: str = "float16", extra: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write the generator of ``checkpoint`` to ``out`` (``.safetensors``) and its config to ``out`` + ``.json``.

    Floating tensors are stored as ``dtype`` (float16 halves the file; the quality cost is measured by
    ``make weights``); BatchNorm's integer counters keep their type. Both files are written atomically."""
    if dtype not in DTYPES:
        raise CheckpointError(f"--dtype: got {dtype!r}; expected one of {', '.join(DTYPES)}")
    model = load_model(checkpoint)  # the checkpoint's own checks: targets, finite weights, a strict fit
    tensors = {
        k: (v.to(DTYPES[dtype]) if v.is_floating_point() else v).contiguous()
        for k, v in model.generator.state_dict().items()
    }
    check_finite(tensors, f"{checkpoint} as {dtype}")  # a weight beyond float16's range becomes inf
    blob = save(tensors, metadata={"format": f"ctx-inpaint generator, {dtype}"})
    out = Path(out).with_suffix(".safetensors")
    meta = {
        "format": "ctx-inpaint generator",
        "dtype": dtype,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "parameters": sum(v.numel() for v in tensors.values() if v.is_floating_point()),
        "source_checkpoint": Path(checkpoint).name,
        "trained": model.meta,
        **(extra or {}),
        CONFIG_KEY: model.config,
    }
    atomic_write(out, lambda f: f.write(blob))
    json_path = out.with_suffix(".json")
    atomic_write(json_path, lambda f: f.write((json.dumps(meta, indent=2, default=str) + "\n").encode()))
    return out, json_path


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """A generator from a ``.safetensors`` file and the ``.json`` beside it (see the module docstring)."""
    path = Path(path).expanduser()
    json_path = path.with_suffix(".json")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    try:
        meta = json.loads(json_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: its model config {json_path.name} is missing beside it") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{json_path}: not valid JSON ({one_line(err)})") from None
    except OSError as err:
        raise CheckpointError(f"{json_path}: cannot be read ({one_line(err)})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get(CONFIG_KEY), dict):
        raise CheckpointError(f"{json_path}: has no '{CONFIG_KEY}' object; cannot rebuild the model")
    config = current_config(meta[CONFIG_KEY])
    generator, masks = build_generator(config, source=str(json_path))
    blob = path.read_bytes()  # read once: hashed, then parsed
    if isinstance(meta.get("sha256"), str):
        digest = hashlib.sha256(blob).hexdigest()
        if digest != meta["sha256"]:
            raise CheckpointError(
                f"{path}: its sha256 {digest[:12]}... differs from the {meta['sha256'][:12]}... {json_path.name} "
                "records; expected the weights that JSON was written with"
            )
    try:
        tensors = load(blob)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({one_line(err)})") from None
    expected = generator.state_dict()
    check_tensors(path, tensors, expected)
    generator.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=True)
    generator.to(device).eval()
    return LoadedModel(
        generator=generator,
        masks=masks,
        input_size=int(config["input_size"]),
        name=str(config.get("name", path.stem)),
        config=config,
        path=path,
        meta=meta["trained"] if isinstance(meta.get("trained"), dict) else {},
    )


def check_tensors(path: Path, tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Refuse (one line) unexpected or missing names, other shapes and non-finite values (``check_finite``)."""
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise CheckpointError(
            f"{path}: unexpected tensor {unexpected[0]!r} ({len(unexpected)} in all); the model config has no such weight"
        )
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise CheckpointError(f"{path}: tensor {missing[0]!r} is missing ({len(missing)} in all)")
    for name, value in tensors.items():
        if tuple(value.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{path}: tensor {name!r} has shape {tuple(value.shape)}; the model expects {tuple(expected[name].shape)}"
            )
    check_finite(tensors, path)
