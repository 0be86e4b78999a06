"""Export a model to ONNX: ``python -m ctx_inpaint.export [--checkpoint freeform] --out model.onnx``.

Checks onnxruntime's output against PyTorch's on the same inputs (fails above ``--tolerance``) and prints both
runtimes' CPU latency at batch 1. Needs the ``[onnx]`` extra. What the graph takes: ``ctx_inpaint.inference.onnx``.

The graph is written to a temporary file beside ``--out`` and renamed over it only once the parity check passed:
a failed export leaves nothing behind. ``--out`` may replace an earlier export, never the checkpoint, a folder or
any other file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ctx_inpaint.common.cli import ArgumentParser, report_user_errors
from ctx_inpaint.common.files import atomic_path, blocking_file
from ctx_inpaint.errors import InputError
from ctx_inpaint.inference.onnx import import_onnxruntime, is_exported_graph, latency, onnx_bytes, parity
from ctx_inpaint.inference.weights import load_any, source_files

# float32 graphs agree with PyTorch to rounding; 1e-4 leaves room for other kernels' summation order.
TOLERANCE = 1e-4


def check_out(out: Path, checkpoint: str) -> None:
    """Refuse, before the model loads, an ``--out`` that would replace the checkpoint (or its JSON; symlinks and
    hard links included), a folder, a user's other file, or that lies under a file."""
    if out.is_dir():
        raise InputError(f"--out: {out} is a folder; expected the path of the .onnx file to write")
    for source in source_files(checkpoint):
        if out.exists() and source.exists() and os.path.samefile(out, source):
            raise InputError(
                f"--out: {out} is {source}, which --checkpoint {checkpoint} reads; expected another file "
                "(an export never replaces its input)"
            )
    blocker = blocking_file(out)
    if blocker is not None:
        raise InputError(f"--out: {out} cannot be created: {blocker} is a file; expected a folder there")
    import_onnxruntime()  # the [onnx] extra's one-line hint before onnx is imported below
    if out.exists() and not is_exported_graph(out):
        raise InputError(
            f"--out: {out} exists and is not an ONNX graph written by ctx_inpaint.export; expected a new file "
            "or an earlier export (other files are never replaced)"
        )


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m ctx_inpaint.export", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--checkpoint", "-c", default="freeform", help="a shipped model name, .safetensors or .ckpt"
    )
    p.add_argument("--out", "-o", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--tolerance", type=float, default=TOLERANCE, help="largest allowed |onnxruntime - torch|")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    args = p.parse_args(argv)
    with report_user_errors():
        path = Path(args.out).expanduser()
        check_out(path, args.checkpoint)
        model = load_any(args.checkpoint)
        blob = onnx_bytes(model, args.opset)
        with atomic_path(path) as tmp:  # renamed over --out only if parity passes; removed on any failure
            tmp.write_bytes(blob)
            diff = parity(model, tmp)
            if not diff <= args.tolerance:
                raise InputError(
                    f"{path}: not written: onnxruntime differs from PyTorch by {diff:.2e} > --tolerance "
                    f"{args.tolerance:g}"
                )
        print(
            f"[ctx-inpaint] wrote {path}; max |onnxruntime - torch| = {diff:.2e} (tolerance {args.tolerance:g})"
        )
        if not args.no_latency:
            t = latency(model, path)
            print(
                f"[ctx-inpaint] CPU latency, batch 1 ({t['rounds']} alternating rounds, medians): "
                f"PyTorch {t['torch_ms']:.2f} ms, onnxruntime {t['onnxruntime_ms']:.2f} ms "
                f"(PyTorch / onnxruntime {t['torch_over_onnxruntime']:.2f}x)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
