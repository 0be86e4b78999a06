"""Shipped weights: safetensors round trip and refusal, pretrained names, the CLIs, ONNX parity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from ctx_inpaint.export import main as export_main
from ctx_inpaint.inference.inpainter import Inpainter
from ctx_inpaint.inference.loading import CheckpointError, load_model
from ctx_inpaint.inference.onnx import example_inputs, export_onnx, parity
from ctx_inpaint.inference.weights import PRETRAINED, PRETRAINED_DIR, export_weights, load_any, load_weights
from ctx_inpaint.inpaint import main as inpaint_main
from tests.conftest import exit_status
from tests.tiny_checkpoints import tiny_checkpoint

# The tolerance the README states for ONNX parity (export.TOLERANCE).
ONNX_TOLERANCE = 1e-4
MAX_SHIPPED_BYTES = 25 * 1024 * 1024


@pytest.fixture(scope="module")
def freeform_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint("freeform", tmp_path_factory)


@pytest.fixture(scope="module")
def exported(freeform_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    export_weights(freeform_ckpt, out, dtype="float32", extra={"training_command": "test"})
    return out


def _outputs(model, seed: int = 0) -> torch.Tensor:
    masked, mask = example_inputs(model, 3, seed)
    with torch.inference_mode():
        return model.generator(masked, mask)


def test_safetensors_round_trip_gives_the_checkpoints_outputs(freeform_ckpt: Path, exported: Path) -> None:
    ckpt_model, st_model = load_model(freeform_ckpt), load_weights(exported)
    assert torch.equal(_outputs(ckpt_model), _outputs(st_model))
    assert st_model.kind == "whole" and st_model.masks.fill == "ns" and st_model.generator.residual
    meta = json.loads(exported.with_suffix(".json").read_text())
    assert meta["dtype"] == "float32" and meta["training_command"] == "test"
    assert meta["parameters"] == sum(p.numel() for p in ckpt_model.generator.parameters()) + sum(
        b.numel() for n, b in ckpt_model.generator.named_buffers() if "running" in n
    )
    # No pickle anywhere: the file is a safetensors header + raw tensors.
    assert exported.read_bytes()[8:9] == b"{"


def test_float16_export_is_half_the_size_and_close(freeform_ckpt: Path, tmp_path: Path) -> None:
    f32, _ = export_weights(freeform_ckpt, tmp_path / "f32.safetensors", dtype="float32")
    f16, _ = export_weights(freeform_ckpt, tmp_path / "f16.safetensors", dtype="float16")
    assert f16.stat().st_size < 0.6 * f32.stat().st_size
    assert load_file(str(f16))["encoder.net.0.weight"].dtype == torch.float16
    diff = (_outputs(load_weights(f32)) - _outputs(load_weights(f16))).abs().max()
    assert 0 < diff < 0.02


def _tamper(exported: Path, tmp_path: Path, change) -> Path:
    tensors = load_file(str(exported))
    change(tensors)
    out = tmp_path / "bad.safetensors"
    save_file(tensors, str(out))
    meta = json.loads(exported.with_suffix(".json").read_text())
    del meta["sha256"]  # a hand-made JSON without the digest: the names and shapes must still be checked
    out.with_suffix(".json").write_text(json.dumps(meta))
    return out


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.__setitem__("evil.weight", torch.zeros(1)), "unexpected tensor 'evil.weight'"),
        (lambda t: t.pop("decoder.net.0.weight"), "tensor 'decoder.net.0.weight' is missing"),
        (
            lambda t: t.__setitem__("encoder.net.0.weight", torch.zeros(8, 4, 3, 3)),
            r"tensor 'encoder.net.0.weight' has shape \(8, 4, 3, 3\); the model expects \(8, 4, 4, 4\)",
        ),
        (lambda t: t["encoder.net.0.weight"].fill_(float("nan")), "NaN or inf"),
    ],
)
def test_unexpected_names_and_shapes_are_refused_in_one_line(
    exported: Path, tmp_path: Path, change, message: str
) -> None:
    bad = _tamper(exported, tmp_path, change)
    with pytest.raises(CheckpointError, match=message) as info:
        load_weights(bad)
    assert "\n" not in str(info.value) and str(bad) in str(info.value)


def test_a_missing_or_broken_config_is_refused(exported: Path, tmp_path: Path) -> None:
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes(exported.read_bytes())
    with pytest.raises(CheckpointError, match="lone.json is missing"):
        load_weights(lone)
    lone.with_suffix(".json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_weights(lone)
    meta = json.loads(exported.with_suffix(".json").read_text())
    meta["ctx_inpaint_config"]["model"]["encoder"]["_target_"] = "os.system"
    lone.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="os.system"):
        load_weights(lone)
    # A resolver could build a target of its own: interpolations are refused before anything is built.
    meta = json.loads(exported.with_suffix(".json").read_text())
    touched = tmp_path / "touched"
    meta["ctx_inpaint_config"]["model"]["encoder"]["width"] = (
        "${oc.create:{_target_: pathlib.Path.touch, _args_: [" + str(touched) + "]}}"
    )
    lone.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"model.encoder.width holds an interpolation"):
        load_weights(lone)
    assert not touched.exists()
    meta = json.loads(exported.with_suffix(".json").read_text())
    meta["ctx_inpaint_config"]["model"]["residual"] = "false"
    lone.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="model.residual is 'false'; expected true or false"):
        load_weights(lone)
    meta = json.loads(exported.with_suffix(".json").read_text())
    other = tmp_path / "other.safetensors"
    other.write_bytes(exported.read_bytes())
    meta["sha256"] = "0" * 64
    other.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="sha256"):
        load_weights(other)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    meta = json.loads(exported.with_suffix(".json").read_text())
    del meta["sha256"]
    garbage.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_weights(garbage)


def test_load_any_dispatches_and_names_are_checked(freeform_ckpt: Path, exported: Path) -> None:
    assert load_any(exported).path == exported
    assert load_any(freeform_ckpt).path == freeform_ckpt
    with pytest.raises(CheckpointError, match="unknown; expected one of freeform, center"):
        Inpainter.from_pretrained("nope")


@pytest.mark.parametrize("name", PRETRAINED)
def test_shipped_weights_load_and_fill_a_hole(name: str) -> None:
    path = PRETRAINED_DIR / f"{name}.safetensors"
    assert path.is_file(), f"{path} is not committed (make weights)"
    assert path.stat().st_size <= MAX_SHIPPED_BYTES
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["training_command"] and "mvtb-data" in meta["data_attribution"]
    inpainter = Inpainter.from_pretrained(name)
    image = torch.rand(3, 96, 160)
    hole = torch.zeros(96, 160, dtype=torch.bool)
    hole[30:60, 40:90] = True
    out = inpainter(image, hole)
    assert torch.equal(out[:, ~hole], image[:, ~hole]) and not torch.equal(out[:, hole], image[:, hole])


def test_onnx_matches_pytorch_within_tolerance(
    exported: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    model = load_weights(exported)
    path = export_onnx(model, tmp_path / "tiny.onnx")
    assert parity(model, path) <= ONNX_TOLERANCE
    # A barely trained residual model returns about its input, which a wrong graph could match: the same
    # network without the residual (the decoder's own output) must match too.
    model.generator.residual = False
    masked, mask = example_inputs(model, 2, 5)
    with torch.inference_mode():
        assert (model.generator(masked, mask) - masked).abs().max() > 0.1
    raw = export_onnx(model, tmp_path / "raw.onnx")
    assert parity(model, raw) <= ONNX_TOLERANCE
    # A centre model ignores the mask: its graph has no mask input, and parity still runs.
    center = load_model(tiny_checkpoint("center", tmp_path_factory))
    center_path = export_onnx(center, tmp_path / "center.onnx")
    assert parity(center, center_path) <= ONNX_TOLERANCE
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["ctx_inpaint_config"])["masks"]["fill"] == "ns"


def test_inpaint_and_export_clis_take_weights(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    photo = tmp_path / "in" / "photo.png"
    photo.parent.mkdir()
    Image.fromarray((torch.rand(40, 56, 3) * 255).byte().numpy()).save(photo)
    argv = ["-c", str(exported), "-i", str(photo), "-o", str(tmp_path / "out")]
    assert exit_status(inpaint_main, argv) == 0
    assert Image.open(tmp_path / "out" / "photo.png").size == (56, 40)
    assert (
        exit_status(export_main, ["-c", str(exported), "-o", str(tmp_path / "m.onnx"), "--no-latency"]) == 0
    )
    assert "max |onnxruntime - torch|" in capsys.readouterr().out
    assert (
        exit_status(export_main, ["-c", str(exported), "-o", str(tmp_path / "o.onnx"), "--opset", "3"]) == 1
    )
    assert "--opset: 3 cannot be exported" in capsys.readouterr().err
    assert not (tmp_path / "o.onnx").exists()
    assert exit_status(export_main, ["-c", "nope", "-o", str(tmp_path / "x.onnx")]) == 1
    assert "nope: neither a shipped model (freeform, center) nor an existing" in capsys.readouterr().err
