"""Export a model to ONNX: ``python -m ctx_inpaint.export [--checkpoint freeform] --out model.onnx``.

Checks onnxruntime's output against PyTorch's on the same inputs (fails above ``--tolerance``) and prints both
runtimes' CPU latency at batch 1. Needs the ``[onnx]`` extra. What the graph takes: ``ctx_inpaint.onnx_export``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ctx_inpaint.cli import ArgumentParser, report_user_errors
from ctx_inpaint.errors import InputError
from ctx_inpaint.onnx_export import export_onnx, latency, parity
from ctx_inpaint.weights import load_any

# float32 graphs agree with PyTorch to rounding; 1e-4 leaves room for other kernels' summation order.
TOLERANCE = 1e-4


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
        model = load_any(args.checkpoint)
        path = export_onnx(model, Path(args.out), args.opset)
        diff = parity(model, path)
        print(
            f"[ctx-inpaint] wrote {path}; max |onnxruntime - torch| = {diff:.2e} (tolerance {args.tolerance:g})"
        )
        if not diff <= args.tolerance:
            raise InputError(
                f"{path}: onnxruntime differs from PyTorch by {diff:.2e} > --tolerance {args.tolerance:g}"
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
