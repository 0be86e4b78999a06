"""Export a model: ``python -m ctx_inpaint.export [--checkpoint freeform] --out model.onnx [--format onnx]``.

``--format safetensors`` (or an ``--out`` ending in ``.safetensors``) writes fp16 safetensors weights and their
JSON, the format the shipped models use, instead of an ONNX graph.

Checks onnxruntime's output against PyTorch's on the same inputs (fails above ``--tolerance``) and prints both
runtimes' CPU latency at batch 1. Needs the ``[onnx]`` extra. What the graph takes: ``ctx_inpaint.inference.onnx``.

The graph is written to a temporary file beside ``--out`` and renamed over it only once the parity check passed:
a failed export leaves nothing behind. ``--out`` may replace an earlier export, never the checkpoint, a folder or
any other file. The library call: ``ctx_inpaint.inference.export.export``.
"""

import ctx_inpaint.common.startup  # noqa: F401  first: the thread policy, set before torch loads

import sys

from ctx_inpaint.common.cli import ArgumentParser, report_user_errors
from ctx_inpaint.inference.export import FORMATS, TOLERANCE, export

FLAGS = {n: f"--{n}" for n in ("out", "format", "opset", "tolerance")} | {"source": "--checkpoint"}


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m ctx_inpaint.export", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--checkpoint", "-c", default="freeform", help="a shipped model name, .safetensors or .ckpt"
    )
    p.add_argument("--out", "-o", required=True, help="the .onnx (or .safetensors) file to write")
    p.add_argument(
        "--format", choices=FORMATS, help="default: safetensors for a .safetensors --out, else onnx"
    )
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--tolerance", type=float, default=TOLERANCE, help="largest allowed |onnxruntime - torch|")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    args = p.parse_args(argv)
    fmt = args.format or ("safetensors" if args.out.endswith(".safetensors") else "onnx")
    with report_user_errors():
        done = export(
            args.checkpoint,
            args.out,
            fmt,
            opset=args.opset,
            tolerance=args.tolerance,
            latency=not args.no_latency,
            names=FLAGS,
        )
    if fmt == "safetensors":
        print(f"[ctx-inpaint] wrote {', '.join(map(str, done.files))}")
        return 0
    print(
        f"[ctx-inpaint] wrote {done.files[0]}; max |onnxruntime - torch| = {done.max_diff:.2e} "
        f"(tolerance {args.tolerance:g})"
    )
    if done.latency is not None:
        t = done.latency
        print(
            f"[ctx-inpaint] CPU latency, batch 1 ({t['rounds']} alternating rounds, medians): "
            f"PyTorch {t['torch_ms']:.2f} ms, onnxruntime {t['onnxruntime_ms']:.2f} ms "
            f"(PyTorch / onnxruntime {t['torch_over_onnxruntime']:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
