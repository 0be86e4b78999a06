"""The safetensors weights format: a generator's tensors (no pickle) beside a JSON of its model config.

``ctx_inpaint/inference/pretrained/<name>.safetensors`` + ``<name>.json`` are the shipped models (``freeform``,
``center``), made by ``make weights`` from recorded training runs. This module reads and encodes the two files;
:func:`ctx_inpaint.inference.loading.load_model` builds the generator from them (every ``_target_`` checked as for
checkpoints, then every tensor's name and shape checked before a single weight is copied) and
:func:`ctx_inpaint.inference.export.export` writes them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from ctx_inpaint.config.checkpoint import CONFIG_KEY, CheckpointError, check_finite, current_config
from ctx_inpaint.errors import one_line

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
PRETRAINED = ("freeform", "center")
DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}
FORMAT = "ctx-inpaint generator"  # the JSON's "format": what marks a file pair as one of ours


@dataclass(frozen=True)
class Weights:
    """What a ``.safetensors`` file and its JSON hold, read and checked, nothing built yet."""

    path: Path
    json_path: Path
    config: dict[str, Any]  # the model config, old class paths mapped to their current homes
    tensors: dict[str, torch.Tensor]
    trained: dict[str, Any]  # epoch, global_step, train_seconds (when recorded)


def pretrained_path(name: str) -> Path:
    """The shipped ``.safetensors`` of a model name; one-line error for an unknown or missing one."""
    if name not in PRETRAINED:
        raise CheckpointError(f"pretrained model {name!r}: unknown; expected one of {', '.join(PRETRAINED)}")
    path = PRETRAINED_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise CheckpointError(
            f"pretrained model {name!r}: {path} is missing (run `make weights` to build it)"
        )
    return path


def read_weights(path: str | Path) -> Weights:
    """The tensors of ``path`` and the config of the JSON beside it, refused in one line when either is missing,
    unreadable, or the tensors' sha256 differs from the one the JSON records."""
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
    return Weights(
        path=path,
        json_path=json_path,
        config=current_config(meta[CONFIG_KEY]),
        tensors=tensors,
        trained=meta["trained"] if isinstance(meta.get("trained"), dict) else {},
    )


def check_tensors(
    path: Path, tensors: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> None:
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


def encode_weights(
    state: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    dtype: str = "float16",
    meta: Mapping[str, Any] | None = None,
    source: str = "the model",
    dtype_name: str = "dtype",
) -> tuple[bytes, bytes]:
    """The ``.safetensors`` bytes of a generator ``state`` and the bytes of its JSON (``meta``, then the config).

    Floating tensors are stored as ``dtype`` (float16 halves the file; the quality cost is measured by
    ``make weights``); BatchNorm's integer counters keep their type. A weight beyond the dtype's range (inf) is
    refused naming ``source``. ``dtype_name`` is what an error calls the dtype (a command passes its flag)."""
    if dtype not in DTYPES:
        raise CheckpointError(f"{dtype_name}: got {dtype!r}; expected one of {', '.join(DTYPES)}")
    tensors = {
        k: (v.to(DTYPES[dtype]) if v.is_floating_point() else v).contiguous() for k, v in state.items()
    }
    check_finite(tensors, f"{source} as {dtype}")
    blob = save(tensors, metadata={"format": f"{FORMAT}, {dtype}"})
    record = {
        "format": FORMAT,
        "dtype": dtype,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "parameters": sum(v.numel() for v in tensors.values() if v.is_floating_point()),
        **(meta or {}),
        CONFIG_KEY: dict(config),
    }
    return blob, (json.dumps(record, indent=2, default=str) + "\n").encode()


def is_exported_weights(path: str | Path) -> bool:
    """Whether ``path`` is a weights file this package wrote (the JSON beside it says so): the only kind of
    existing file a safetensors export may replace."""
    try:
        meta = json.loads(Path(path).with_suffix(".json").read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT and isinstance(meta.get(CONFIG_KEY), dict)
