"""Checkpoint files: reading one safely, the config it carries, and rebuilding the generator from that config.

Checkpoints may come from anyone, so they are read with ``torch.load(weights_only=True)``: a pickle that
would import or call anything beyond tensors and plain containers is refused before it runs. The model
config inside is only instantiated once every ``_target_`` in it (a ``_target_`` is a call) resolves to a class
defined in this package's model or mask code. Class paths stored by older versions are mapped to their current
homes here. Training (resume) and inference (loading a model) both read checkpoints through this module; the
generator is assembled by ``config.build``, as training assembles it.
"""

from __future__ import annotations

import inspect
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.utils import (
    get_object,  # public; resolves a _target_ as hydra.utils.instantiate does
    instantiate,
)

from ctx_inpaint.config.build import assemble_generator
from ctx_inpaint.config.targets import walk_targets
from ctx_inpaint.errors import UserError, one_line
from ctx_inpaint.masks.generators import MaskGenerator
from ctx_inpaint.models.generator import Generator

CONFIG_KEY = "ctx_inpaint_config"
# What a checkpoint config section's _target_s may be: a class defined in one of these packages (not merely
# reachable through one, like ctx_inpaint.models.encoders.torch.save), or one of these exact names.
ALLOWED_TARGETS: dict[str, tuple[str, ...]] = {
    "model": ("ctx_inpaint.models",),
    "masks": ("ctx_inpaint.masks.generators",),
}
ALLOWED_EXACT: dict[str, tuple[str, ...]] = {
    # The module's own target: stored in the config, never built here (matched by name, so not imported).
    "model": ("ctx_inpaint.training.module.ContextEncoderModule",),
}


# Modules renamed by issue 25's redesign: a checkpoint or shipped JSON written before it stores these class
# paths (``ctx_inpaint.module.ContextEncoderModule``, ``ctx_inpaint.masks.CenterMask``); they are read as the
# classes' new homes, so old runs still load for inference, evaluation and resume.
RENAMED_MODULES: dict[str, str] = {
    "ctx_inpaint.module": "ctx_inpaint.training.module",
    "ctx_inpaint.masks": "ctx_inpaint.masks.generators",
    "ctx_inpaint.mask_sets": "ctx_inpaint.masks.sets",
    "ctx_inpaint.gan": "ctx_inpaint.training.objective",
    "ctx_inpaint.losses": "ctx_inpaint.training.objective",
    "ctx_inpaint.metrics": "ctx_inpaint.evaluation.metrics",
}


def current_target(target: str) -> str:
    """``target`` with a module renamed since it was written mapped to its new home (a class name right after
    the old module; anything else is returned as it is)."""
    module, _, name = target.rpartition(".")
    return f"{RENAMED_MODULES[module]}.{name}" if module in RENAMED_MODULES else target


def current_config(node: Any) -> Any:
    """A stored config (plain dicts and lists) with every ``_target_`` read through ``current_target``."""
    if isinstance(node, Mapping):
        return {
            k: current_target(v) if k == "_target_" and isinstance(v, str) else current_config(v)
            for k, v in node.items()
        }
    if isinstance(node, list | tuple):
        return [current_config(v) for v in node]
    return node


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be used; the message is one line naming the file."""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, read without executing any pickled code; one-line errors otherwise."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        magic = f.read(4)
    # torch.save writes a zip archive (PK..); its legacy format is a protocol-2+ pickle (\x80).
    if not (magic.startswith(b"PK\x03\x04") or magic.startswith(b"\x80")):
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint, truncated or another format (neither a zip archive nor a pickle)"
        )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pickle protocol.*")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused, it holds pickled objects other than tensors and plain containers "
            f"(weights-only loading, nothing was executed): {_unsupported_global(str(err))}"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError, IndexError) as err:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint, truncated or another format ({_first_sentence(err)})"
        ) from None
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not a ctx-inpaint checkpoint (expected a dict with a 'state_dict')")
    if CONFIG_KEY not in ckpt or not isinstance(ckpt[CONFIG_KEY], Mapping):
        raise CheckpointError(
            f"{path}: has no '{CONFIG_KEY}' (it was not written by ctx_inpaint.train); cannot rebuild the model"
        )
    return {**ckpt, CONFIG_KEY: current_config(ckpt[CONFIG_KEY])}


def _unsupported_global(message: str) -> str:
    """The line of torch's long weights-only message that names the refused global or opcode."""
    for line in message.splitlines():
        if "GLOBAL" in line or "Unsupported" in line:
            return line.strip()
    return "an object the weights-only unpickler does not allow"


def _first_sentence(err: BaseException) -> str:
    if not str(err).strip():
        return type(err).__name__
    return f"{type(err).__name__}: {one_line(err).split('. ')[0][:160]}"


def _inside(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _refusal(section: str, target: str) -> str | None:
    """Why ``target`` may not be built for ``section`` (resolved the way Hydra does, never called), or None."""
    packages, exact = ALLOWED_TARGETS.get(section, ()), ALLOWED_EXACT.get(section, ())
    if target in exact:
        return None
    if not _inside(target, packages):
        return "outside the allowed packages"
    try:
        obj = get_object(target)  # imports only modules inside the allowed packages (checked just above)
    except Exception:  # noqa: BLE001 - any failure to resolve is a refusal
        return "it does not resolve"
    if not inspect.isclass(obj):
        return f"it resolves to a {type(obj).__name__}, not a class"
    if not _inside(obj.__module__, packages):
        return f"it resolves to {obj.__module__}.{obj.__qualname__}, defined outside the allowed packages"
    return None


def _interpolation(node: Any, prefix: str = "") -> str | None:
    """The key path of the first string holding an OmegaConf interpolation (``${...}``), or None."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            found = _interpolation(value, f"{prefix}.{key}" if prefix else str(key))
            if found is not None:
                return found
    elif isinstance(node, list | tuple):
        for i, item in enumerate(node):
            found = _interpolation(item, f"{prefix}[{i}]")
            if found is not None:
                return found
    elif isinstance(node, str) and "${" in node:
        return prefix
    return None


def check_targets(config: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Refuse the config unless every ``_target_`` in it is a class defined in this package's model (``model``)
    or mask (``masks``) code: instantiating a config calls its targets, so all of them are checked first.
    Interpolations are refused too: stored configs are resolved, and a resolver (``oc.create``) could build a
    target of its own that this check never saw."""
    where = _interpolation(config)
    if where is not None:
        raise CheckpointError(
            f"{source}: {CONFIG_KEY}.{where} holds an interpolation ('${{...}}'); expected resolved values, "
            "nothing was built"
        )
    for key, target in walk_targets(config):
        section = key.split(".")[0].split("[")[0]
        why = _refusal(section, target)
        if why is not None:
            allowed = [*ALLOWED_TARGETS.get(section, ()), *ALLOWED_EXACT.get(section, ())]
            expected = (
                f"a class defined in {' or '.join(allowed)}"
                if allowed
                else f"no _target_ in {CONFIG_KEY}.{section}"
            )
            where = f"{CONFIG_KEY}.{key}" if key else CONFIG_KEY
            raise CheckpointError(
                f"{source}: {where}._target_ is {target!r} ({why}); expected {expected}, nothing was built"
            )


def build_generator(config: Mapping[str, Any], source: str = "checkpoint") -> tuple[Generator, MaskGenerator]:
    """Generator and mask generator from a checkpoint's ``ctx_inpaint_config`` (no Hydra composition)."""
    for key in ("model", "masks", "input_size"):
        if key not in config:
            raise CheckpointError(f"{source}: {CONFIG_KEY} lacks '{key}'")
    check_targets(config, source)
    model = config["model"]
    for flag in ("mask_channel", "residual", "skips"):
        if not isinstance(model.get(flag, False), bool):
            raise CheckpointError(
                f"{source}: {CONFIG_KEY}.model.{flag} is {model[flag]!r}; expected true or false"
            )
    try:
        input_size = int(config["input_size"])
        masks: MaskGenerator = instantiate(dict(config["masks"]))
        encoder = instantiate(dict(model["encoder"]))
        bottleneck = instantiate(dict(model["bottleneck"]))
        decoder = instantiate(dict(model["decoder"]))
        generator = assemble_generator(
            encoder,
            bottleneck,
            decoder,
            masks,
            mask_channel=model.get("mask_channel", False),
            residual=model.get("residual", False),
            skips=model.get("skips", False),
        )
    except Exception as err:  # a config from another version; keep it to one line
        raise CheckpointError(
            f"{source}: cannot rebuild the model from {CONFIG_KEY} ({one_line(err)})"
        ) from None
    if masks.image_size != input_size:
        raise CheckpointError(
            f"{source}: {CONFIG_KEY}.masks.image_size {masks.image_size} differs from input_size {config['input_size']}"
        )
    return generator, masks


def generator_state(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``generator.*`` entries of a LightningModule state dict, prefix removed."""
    prefix = "generator."
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def check_finite(weights: Mapping[str, Any], source: str | Path) -> None:
    """Refuse (one line) weights holding NaN or inf: such a model fills holes black, silently."""
    bad = [
        k
        for k, v in weights.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if bad:
        raise CheckpointError(
            f"{source}: {len(bad)} generator tensor(s) hold NaN or inf values (first: {bad[0]}); expected finite "
            "weights (the run diverged before this save, or a value overflows the storage dtype)"
        )


def training_meta(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """How far the checkpoint was trained: epoch, optimizer steps and the Timer callback's training seconds."""
    meta: dict[str, Any] = {k: ckpt[k] for k in ("epoch", "global_step") if isinstance(ckpt.get(k), int)}
    timer = (ckpt.get("callbacks") or {}).get("Timer") or {}
    seconds = (timer.get("time_elapsed") or {}).get("train")
    if isinstance(seconds, int | float):
        meta["train_seconds"] = round(float(seconds), 1)
    return meta
