"""Exporting a model: :func:`export` writes any model :func:`~ctx_inpaint.inference.loading.load_model` takes as an
ONNX graph (``format="onnx"``, extra ``[onnx]``; the graph itself: :mod:`ctx_inpaint.inference.onnx`) or as
safetensors weights beside a JSON of the model config (``format="safetensors"``; :mod:`ctx_inpaint.inference.weights`,
what ``make weights`` ships). "Export" means this one function, whatever the format.

Both formats keep the same promises: the output is checked before the model loads, and it may replace an earlier
export of that format, never the model it reads (symlinks and hard links included), a folder or any other file.
Files are written to a temporary file beside the target and renamed over it once whole; an ONNX graph only once
onnxruntime's output matches PyTorch's within ``tolerance``, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctx_inpaint.common.files import atomic_path, atomic_write, blocking_file
from ctx_inpaint.errors import InputError
from ctx_inpaint.inference.loading import LoadedModel, ModelSource, load_model, source_files
from ctx_inpaint.inference.onnx import import_onnxruntime, is_exported_graph, onnx_bytes, parity
from ctx_inpaint.inference.onnx import latency as measure_latency
from ctx_inpaint.inference.weights import encode_weights, is_exported_weights

FORMATS = ("onnx", "safetensors")
# float32 graphs agree with PyTorch to rounding; 1e-4 leaves room for other kernels' summation order.
TOLERANCE = 1e-4


@dataclass(frozen=True)
class Exported:
    """What :func:`export` wrote, and what it measured."""

    format: str
    files: tuple[Path, ...]  # onnx: the graph; safetensors: the weights, then their JSON
    max_diff: float | None = None  # onnx: the largest |onnxruntime - PyTorch| on the parity inputs
    latency: dict[str, float] | None = None  # onnx with latency=True: both runtimes' CPU milliseconds


def export(
    source: ModelSource | LoadedModel,
    out: str | Path,
    format: str = "onnx",
    *,
    opset: int = 17,
    tolerance: float = TOLERANCE,
    latency: bool = False,
    dtype: str = "float16",
    extra: Mapping[str, Any] | None = None,
    names: Mapping[str, str] | None = None,
) -> Exported:
    """Write the model ``source`` names (or an already loaded model) to ``out`` in ``format``.

    ONNX: opset ``opset``; refused unless onnxruntime agrees with PyTorch within ``tolerance``; ``latency`` also
    times both runtimes at batch 1. Safetensors: ``out`` with the suffix ``.safetensors`` and its ``.json``, floating
    tensors stored as ``dtype``, ``extra`` added to the JSON. ``names`` maps parameters to what errors call them
    (the command passes its flags, ``{"source": "--checkpoint", "out": "--out", ...}``); by default their own names.
    """
    names = names or {}
    if format not in FORMATS:
        flag = names.get("format", "format")
        raise InputError(f"{flag}: got {format!r}; expected one of {', '.join(FORMATS)}")
    out = Path(out).expanduser()
    if format == "safetensors":
        out = out.with_suffix(".safetensors")
    targets = (out,) if format == "onnx" else (out, out.with_suffix(".json"))
    _check_out(targets, source, format, names)  # before the model loads: a bad output costs nothing
    model = source if isinstance(source, LoadedModel) else load_model(source)
    if format == "safetensors":
        return _write_weights(model, source, targets, dtype, extra, names.get("dtype", "dtype"))
    blob = onnx_bytes(model, opset, names.get("opset", "opset"))
    with atomic_path(out) as tmp:  # renamed over ``out`` only if parity passes; removed on any failure
        tmp.write_bytes(blob)
        diff = parity(model, tmp)
        if not diff <= tolerance:
            flag = names.get("tolerance", "tolerance")
            raise InputError(
                f"{out}: not written: onnxruntime differs from PyTorch by {diff:.2e} > {flag} {tolerance:g}"
            )
    return Exported(format, targets, max_diff=diff, latency=measure_latency(model, out) if latency else None)


def _write_weights(
    model: LoadedModel,
    source: ModelSource | LoadedModel,
    targets: tuple[Path, ...],
    dtype: str,
    extra: Mapping[str, Any] | None,
    dtype_name: str,
) -> Exported:
    """The generator as safetensors and its JSON (how far it was trained, ``extra``, the model config)."""
    if isinstance(source, LoadedModel):
        source = source.path or source.name
    meta = {"source_checkpoint": Path(source).name, "trained": model.meta, **(extra or {})}
    blob, record = encode_weights(
        model.generator.state_dict(), model.config, dtype, meta, str(source), dtype_name
    )
    out, json_path = targets
    atomic_write(out, lambda f: f.write(blob))
    atomic_write(json_path, lambda f: f.write(record))
    return Exported("safetensors", targets)


def _check_out(
    targets: tuple[Path, ...], source: ModelSource | LoadedModel, format: str, names: Mapping[str, str]
) -> None:
    """Refuse an output that would replace the model read (or its JSON; symlinks and hard links included), a
    folder, a user's other file, or that lies under a file."""
    out, flag = targets[0], names.get("out", "out")
    if out.is_dir():
        raise InputError(f"{flag}: {out} is a folder; expected the path of the .{format} file to write")
    if isinstance(source, LoadedModel):
        reads = [source.path] if source.path is not None else []
    else:
        reads = source_files(source)
    for target in targets:
        for read in reads:
            if target.exists() and read.exists() and os.path.samefile(target, read):
                raise InputError(
                    f"{flag}: {target} is {read}, which {names.get('source', 'source')} {source} reads; expected "
                    "another file (an export never replaces its input)"
                )
    blocker = blocking_file(out)
    if blocker is not None:
        raise InputError(f"{flag}: {out} cannot be created: {blocker} is a file; expected a folder there")
    if format == "onnx":
        import_onnxruntime()  # the [onnx] extra's one-line hint before onnx is imported below
        if out.exists() and not is_exported_graph(out):
            raise InputError(
                f"{flag}: {out} exists and is not an ONNX graph written by ctx_inpaint.export; expected a new file "
                "or an earlier export (other files are never replaced)"
            )
    elif any(t.exists() for t in targets) and not is_exported_weights(out):
        raise InputError(
            f"{flag}: {out} or its .json exists and is not weights written by ctx_inpaint.export; expected new "
            "files or an earlier export (other files are never replaced)"
        )
