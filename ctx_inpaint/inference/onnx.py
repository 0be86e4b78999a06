"""The ONNX format: the generator as a graph, and its parity and latency against PyTorch (optional extra ``[onnx]``).
Writing a graph to a file is :func:`ctx_inpaint.inference.export.export`'s job.

The graph takes what the generator takes: ``masked`` (B, 3, N, N) in [-1, 1], the image with its hole already
filled as the model was trained (``masks.fill``: mean colour, or OpenCV Navier-Stokes for the free-form model;
the classical fill is OpenCV code, not part of the graph) and ``mask`` (B, 1, N, N), 1 = hidden (models that do
not use it, the mean-fill centre models, export without that input). It returns the
prediction of the region the model predicts (the whole image, or the centre square). The model config travels in
the graph's metadata (``ctx_inpaint_config``).
"""

from __future__ import annotations

import io
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from ctx_inpaint.config.checkpoint import CONFIG_KEY
from ctx_inpaint.errors import InputError, one_line
from ctx_inpaint.inference.loading import LoadedModel


class _Graph(nn.Module):
    """Fixes the generator's call to two positional inputs, as ONNX sees it."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, masked: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.generator(masked, mask)


def example_inputs(model: LoadedModel, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of model inputs from the model's own masks (for export tracing and parity checks)."""
    g = torch.Generator().manual_seed(seed)
    n = model.input_size
    image = torch.rand(batch, 3, n, n, generator=g) * 2 - 1
    mask = torch.stack([model.masks.sample(g) for _ in range(batch)])
    return model.masks.hide(image, mask), mask


def import_onnxruntime():
    """onnxruntime, or a one-line hint to install the ``[onnx]`` extra (the extra is optional)."""
    try:
        import onnxruntime
    except ImportError:
        raise InputError(
            'ONNX export needs the optional dependencies: pip install -e ".[onnx]" (onnx, onnxruntime)'
        ) from None
    return onnxruntime


def onnx_bytes(model: LoadedModel, opset: int = 17, opset_name: str = "opset") -> bytes:
    """The generator as a checked ONNX model with a dynamic batch axis and the config as metadata: the bytes
    :func:`ctx_inpaint.inference.export.export` checks (``parity``) before they replace its target.
    ``opset_name`` is what an error calls the opset (a command passes its flag)."""
    import_onnxruntime()
    import onnx

    graph = _Graph(model.generator.float().cpu().eval())
    buffer = io.BytesIO()
    try:
        torch.onnx.export(
            graph,
            example_inputs(model),
            buffer,
            input_names=["masked", "mask"],
            output_names=["pred"],
            dynamic_axes={"masked": {0: "batch"}, "mask": {0: "batch"}, "pred": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    except (RuntimeError, ValueError) as err:
        if "opset" not in str(err).lower():
            raise
        raise InputError(
            f"{opset_name}: {opset} cannot be exported ({one_line(err)}); the default is 17"
        ) from None
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = CONFIG_KEY, json.dumps(model.config, default=str)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def is_exported_graph(path: str | Path) -> bool:
    """Whether ``path`` is an ONNX graph this package wrote (it carries the model config in its metadata): the
    only kind of existing file an ONNX export may replace."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - whatever the parser refuses is not a graph of ours
        return False
    return any(p.key == CONFIG_KEY for p in proto.metadata_props) and len(proto.graph.node) > 0


def session(path: str | Path):
    """An onnxruntime CPU session on the graph at ``path``."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def feed_for(sess, masked: torch.Tensor, mask: torch.Tensor) -> dict:
    """The inputs the graph declares: models that ignore the mask (mean-fill centre models) export without it."""
    arrays = {"masked": masked.numpy(), "mask": mask.numpy()}
    return {i.name: arrays[i.name] for i in sess.get_inputs()}


def parity(model: LoadedModel, path: str | Path, batch: int = 4, seed: int = 1) -> float:
    """Largest absolute difference between onnxruntime's and PyTorch's outputs on the same inputs."""
    masked, mask = example_inputs(model, batch, seed)
    with torch.inference_mode():
        expected = model.generator.float().cpu().eval()(masked, mask)
    sess = session(path)
    (got,) = sess.run(None, feed_for(sess, masked, mask))
    return float((torch.from_numpy(got) - expected).abs().max())


def latency(model: LoadedModel, path: str | Path, rounds: int = 30) -> dict[str, float]:
    """Median milliseconds of one batch-1 call of each runtime, timed alternately (ORT then PyTorch, flipped
    every round) so a busy machine slows both alike; ``ratio`` = the median of per-round PyTorch / ORT."""
    masked, mask = example_inputs(model, 1, 2)
    sess = session(path)
    feed = feed_for(sess, masked, mask)
    generator = model.generator.float().cpu().eval()

    def run_torch() -> None:
        with torch.inference_mode():
            generator(masked, mask)

    def run_ort() -> None:
        sess.run(None, feed)

    for _ in range(3):
        run_torch(), run_ort()
    times: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
    for r in range(rounds):
        pair = [("torch", run_torch), ("onnxruntime", run_ort)]
        for name, fn in pair if r % 2 == 0 else pair[::-1]:
            t0 = time.perf_counter()
            fn()
            times[name].append(1000 * (time.perf_counter() - t0))
    ratios = [t / o for t, o in zip(times["torch"], times["onnxruntime"])]
    return {
        "torch_ms": statistics.median(times["torch"]),
        "onnxruntime_ms": statistics.median(times["onnxruntime"]),
        "torch_over_onnxruntime": statistics.median(ratios),
        "rounds": rounds,
    }
