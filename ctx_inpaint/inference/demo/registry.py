"""The demo's models by name: shipped ones, checkpoints and run folders (their ``checkpoints/last.ckpt``), each
loaded on first use and called by one request at a time (a lock per model), so concurrent requests queue instead of
each holding a model's working memory."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ctx_inpaint.common.run_folder import RunFolder
from ctx_inpaint.errors import InputError
from ctx_inpaint.inference.inpainter import Inpainter
from ctx_inpaint.inference.weights import PRETRAINED

# name -> what ``Inpainter.load`` loads (a shipped name or a path)
DEFAULT_MODELS = {name: name for name in PRETRAINED}
DESCRIPTIONS = {
    "freeform": "shipped free-form model (brushed holes of any shape)",
    "center": "shipped centre model (the paper's; fills each hole as a centre square)",
}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

Loader = Callable[[str, torch.device | str | None], Inpainter]


class UnknownModelError(InputError):
    """A model name the server does not hold."""


class ModelLoadError(InputError):
    """A registered model whose file could not be loaded when first asked for."""


@dataclass
class Entry:
    name: str
    spec: str
    description: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    inpainter: Inpainter | None = None
    calls: int = 0
    seconds: float = 0.0


def checkpoint_models(specs: list[str], taken: set[str], key: str = "checkpoints") -> dict[str, str]:
    """``PATH`` or ``NAME=PATH`` per spec -> {name: checkpoint path}. ``PATH`` is a ``.ckpt`` or ``.safetensors``
    file, named by its stem (``model.ckpt`` -> ``model``, then ``model-2``... when taken), or a training run folder,
    meaning its ``checkpoints/last.ckpt`` and named by the folder. Missing files and bad names are one-line
    ``InputError``s naming ``key`` (what the caller calls the list: the command passes its flag)."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not NAME_PATTERN.match(name):
            name, path = "", spec
        file, stem = Path(path).expanduser(), None
        if file.is_dir() and RunFolder(file).last_checkpoint.is_file():
            file, stem = RunFolder(file).last_checkpoint, file.resolve().name
        if not file.is_file():
            raise InputError(
                f"{key}: {path} is not a file (expected a .ckpt or .safetensors file, a run folder, or NAME=PATH)"
            )
        if not name:
            stem = re.sub(r"[^A-Za-z0-9_.-]", "-", stem or file.stem).lstrip("-._") or "model"
            name, i = stem, 2
            while name in taken or name in out:
                name, i = f"{stem}-{i}", i + 1
        elif name in taken or name in out:
            raise InputError(f"{key}: the name {name!r} is already taken; choose another NAME=PATH")
        out[name] = str(file)
    return out


class ModelRegistry:
    """Models by name (``models``: name -> shipped name or checkpoint path); the first is the default."""

    def __init__(
        self,
        models: Mapping[str, str] | None = None,
        device: torch.device | str | None = "cpu",
        loader: Loader | None = None,
    ) -> None:
        models = dict(DEFAULT_MODELS if models is None else models)
        if not models:
            raise InputError("models: expected at least one model")
        self.device = device
        self.loader: Loader = loader or (lambda spec, device: Inpainter.load(spec, device=device))
        self.entries = {
            name: Entry(name, spec, DESCRIPTIONS.get(spec, f"checkpoint {Path(spec).name}"))
            for name, spec in models.items()
        }
        self.default = next(iter(self.entries))

    def names(self) -> list[str]:
        return list(self.entries)

    def get(self, name: str) -> Entry:
        if name not in self.entries:
            raise UnknownModelError(
                f"model: unknown model {name!r}; expected one of {', '.join(self.entries)}"
            )
        return self.entries[name]

    def describe(self) -> list[dict]:
        return [
            {
                "name": e.name,
                "description": e.description,
                "default": e.name == self.default,
                "loaded": e.inpainter is not None,
            }
            for e in self.entries.values()
        ]

    def load(self, name: str) -> Inpainter:
        """The model, loaded now if it was not (under its lock: one load, whoever asks first)."""
        entry = self.get(name)
        with entry.lock:
            return self._loaded(entry)

    def _loaded(self, entry: Entry) -> Inpainter:
        if entry.inpainter is None:
            try:
                entry.inpainter = self.loader(entry.spec, self.device)
            except Exception as err:  # noqa: BLE001 - CheckpointError and OSErrors alike: the file is the problem
                message = " ".join(str(err).split()) or type(err).__name__
                raise ModelLoadError(f"model: {entry.name!r} could not be loaded ({message})") from err
        return entry.inpainter

    def inpaint(
        self,
        name: str,
        image: torch.Tensor,
        hole: torch.Tensor,
        should_stop: Callable[[], bool] | None = None,
    ) -> tuple[torch.Tensor, float]:
        """``image`` (3, H, W) uint8 with ``hole`` (H, W) bool filled by model ``name``, and the call's seconds (not
        counting a first load or the wait): one call at a time per model (other requests for it wait here; other
        models and the OpenCV fills run meanwhile). The work is bounded by the photo (``Inpainter.plan``) and
        ``should_stop`` (the client gone) ends it between windows with ``Cancelled``, releasing the model."""
        entry = self.get(name)
        with entry.lock:
            inpainter = self._loaded(entry)
            start = time.perf_counter()
            out = inpainter(image, hole, should_stop=should_stop)
            seconds = time.perf_counter() - start
            entry.calls += 1
            entry.seconds += seconds
        return out, seconds
