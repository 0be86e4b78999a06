"""Shipped weights: safetensors round trip and refusal, pretrained names, the CLIs, ONNX parity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from ctx_inpaint.inference.export import export
from ctx_inpaint.inference.inpainter import Inpainter
from ctx_inpaint.inference.loading import CheckpointError, load_model
from ctx_inpaint.inference.onnx import example_inputs, parity
from ctx_inpaint.inference.weights import PRETRAINED, PRETRAINED_DIR
from tests.commands import run_command
from tests.tiny_checkpoints import tiny_checkpoint

# The tolerance the README states for ONNX parity (ctx_inpaint.inference.export.TOLERANCE).
ONNX_TOLERANCE = 1e-4
MAX_SHIPPED_BYTES = 25 * 1024 * 1024


@pytest.fixture(scope="module")
def freeform_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint("freeform", tmp_path_factory)


@pytest.fixture(scope="module")
def exported(freeform_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    export(freeform_ckpt, out, "safetensors", dtype="float32", extra={"training_command": "test"})
    return out


def _outputs(model, seed: int = 0) -> torch.Tensor:
    masked, mask = example_inputs(model, 3, seed)
    with torch.inference_mode():
        return model.generator(masked, mask)


def test_safetensors_round_trip_gives_the_checkpoints_outputs(freeform_ckpt: Path, exported: Path) -> None:
    ckpt_model, st_model = load_model(freeform_ckpt), load_model(exported)
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
    f32, _ = export(freeform_ckpt, tmp_path / "f32.safetensors", "safetensors", dtype="float32").files
    f16, _ = export(freeform_ckpt, tmp_path / "f16.safetensors", "safetensors", dtype="float16").files
    assert f16.stat().st_size < 0.6 * f32.stat().st_size
    assert load_file(str(f16))["encoder.net.0.weight"].dtype == torch.float16
    diff = (_outputs(load_model(f32)) - _outputs(load_model(f16))).abs().max()
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
        load_model(bad)
    assert "\n" not in str(info.value) and str(bad) in str(info.value)


def test_a_missing_or_broken_config_is_refused(exported: Path, tmp_path: Path) -> None:
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes(exported.read_bytes())
    with pytest.raises(CheckpointError, match="lone.json is missing"):
        load_model(lone)
    lone.with_suffix(".json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(lone)
    meta = json.loads(exported.with_suffix(".json").read_text())
    meta["ctx_inpaint_config"]["model"]["encoder"]["_target_"] = "os.system"
    lone.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="os.system"):
        load_model(lone)
    # A resolver could build a target of its own: interpolations are refused before anything is built.
    meta = json.loads(exported.with_suffix(".json").read_text())
    touched = tmp_path / "touched"
    meta["ctx_inpaint_config"]["model"]["encoder"]["width"] = (
        "${oc.create:{_target_: pathlib.Path.touch, _args_: [" + str(touched) + "]}}"
    )
    lone.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"model.encoder.width holds an interpolation"):
        load_model(lone)
    assert not touched.exists()
    meta = json.loads(exported.with_suffix(".json").read_text())
    meta["ctx_inpaint_config"]["model"]["residual"] = "false"
    lone.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="model.residual is 'false'; expected true or false"):
        load_model(lone)
    meta = json.loads(exported.with_suffix(".json").read_text())
    other = tmp_path / "other.safetensors"
    other.write_bytes(exported.read_bytes())
    meta["sha256"] = "0" * 64
    other.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(other)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    meta = json.loads(exported.with_suffix(".json").read_text())
    del meta["sha256"]
    garbage.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_model(garbage)


def test_load_model_takes_a_shipped_name_weights_or_a_checkpoint(
    freeform_ckpt: Path, exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One entry point: a shipped name, a .safetensors or a .ckpt; anything else is one line naming it."""
    assert load_model(exported).path == exported
    assert load_model(freeform_ckpt).path == freeform_ckpt
    assert load_model("center").path == PRETRAINED_DIR / "center.safetensors"
    assert Inpainter.load("center", device="cpu").kind == "center"
    with pytest.raises(CheckpointError, match="nope: neither a shipped model"):
        Inpainter.load("nope")
    with pytest.raises(ValueError, match="device: expected auto, cpu, cuda or cuda:N, got 'gpu0'"):
        load_model("center", device="gpu0")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model\n")
    for other in (notes, tmp_path / "missing.ckpt", tmp_path / "missing.safetensors", tmp_path):
        with pytest.raises(CheckpointError) as info:
            load_model(other)
        assert str(other) in str(info.value) and "\n" not in str(info.value)
    monkeypatch.chdir(tmp_path)  # a file named like a shipped model is that file, not the shipped model
    Path("center").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="center: not a readable PyTorch checkpoint"):
        load_model("center")


@pytest.mark.parametrize("name", PRETRAINED)
def test_shipped_weights_load_and_fill_a_hole(name: str) -> None:
    path = PRETRAINED_DIR / f"{name}.safetensors"
    assert path.is_file(), f"{path} is not committed (make weights)"
    assert path.stat().st_size <= MAX_SHIPPED_BYTES
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["training_command"] and "mvtb-data" in meta["data_attribution"]
    inpainter = Inpainter.load(name)
    image = torch.rand(3, 96, 160)
    hole = torch.zeros(96, 160, dtype=torch.bool)
    hole[30:60, 40:90] = True
    out = inpainter(image, hole)
    assert torch.equal(out[:, ~hole], image[:, ~hole]) and not torch.equal(out[:, hole], image[:, hole])


def test_onnx_matches_pytorch_within_tolerance(
    exported: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    model = load_model(exported)
    (path,) = export(model, tmp_path / "tiny.onnx").files
    assert parity(model, path) <= ONNX_TOLERANCE
    # A barely trained residual model returns about its input, which a wrong graph could match: the same
    # network without the residual (the decoder's own output) must match too.
    model.generator.residual = False
    masked, mask = example_inputs(model, 2, 5)
    with torch.inference_mode():
        assert (model.generator(masked, mask) - masked).abs().max() > 0.1
    raw = export(model, tmp_path / "raw.onnx")
    assert raw.max_diff <= ONNX_TOLERANCE and parity(model, raw.files[0]) <= ONNX_TOLERANCE
    # A centre model ignores the mask: its graph has no mask input, and parity still runs.
    center = load_model(tiny_checkpoint("center", tmp_path_factory))
    (center_path,) = export(center, tmp_path / "center.onnx").files
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
    assert run_command("inpaint", argv) == 0
    assert Image.open(tmp_path / "out" / "photo.png").size == (56, 40)
    assert run_command("export", ["-c", str(exported), "-o", str(tmp_path / "m.onnx"), "--no-latency"]) == 0
    assert "max |onnxruntime - torch|" in capsys.readouterr().out
    assert run_command("export", ["-c", str(exported), "-o", str(tmp_path / "o.onnx"), "--opset", "3"]) == 1
    assert "--opset: 3 cannot be exported" in capsys.readouterr().err
    assert not (tmp_path / "o.onnx").exists()
    assert run_command("export", ["-c", "nope", "-o", str(tmp_path / "x.onnx")]) == 1
    assert "nope: neither a shipped model (freeform, center) nor an existing" in capsys.readouterr().err


def test_one_export_for_both_formats_keeps_the_same_promises(exported: Path, tmp_path: Path) -> None:
    """``export`` writes safetensors as it writes ONNX: never over its own input or a user's file, an earlier
    export replaced; errors name the parameters (the command names its flags instead)."""
    with pytest.raises(ValueError, match="^format: got 'png'; expected one of onnx, safetensors"):
        export(exported, tmp_path / "m.png", "png")
    with pytest.raises(ValueError, match=f"^out: {exported} is {exported}, which source {exported} reads"):
        export(exported, exported, "safetensors")
    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(b"my own file")
    with pytest.raises(ValueError, match="exists and is not weights written by ctx_inpaint.export"):
        export(exported, mine, "safetensors")
    assert mine.read_bytes() == b"my own file"
    again = tmp_path / "again"  # the suffix is .safetensors whatever was given
    first = export(exported, again, "safetensors", dtype="float32")
    assert first.files == (again.with_suffix(".safetensors"), again.with_suffix(".json"))
    second = export(exported, again, "safetensors", dtype="float16", extra={"note": "re-exported"})
    meta = json.loads(second.files[1].read_text())
    assert meta["dtype"] == "float16" and meta["note"] == "re-exported"
    assert meta["source_checkpoint"] == exported.name
    assert torch.allclose(_outputs(load_model(second.files[0])), _outputs(load_model(exported)), atol=0.02)


def test_the_export_command_writes_safetensors_by_format_or_suffix(tmp_path: Path) -> None:
    """``--format safetensors`` (or a .safetensors --out) writes weights that load back with the same outputs."""
    assert (
        run_command("export", ["-c", "center", "-o", str(tmp_path / "a.bin"), "--format", "safetensors"]) == 0
    )
    assert run_command("export", ["-c", "center", "-o", str(tmp_path / "b.safetensors")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.json",
        "a.safetensors",
        "b.json",
        "b.safetensors",
    ]
    assert not list(tmp_path.glob("*.onnx"))
    shipped, a, b = (
        load_model(s) for s in ("center", tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    )
    x = torch.rand(1, 3, shipped.input_size, shipped.input_size) * 2 - 1
    # the hole mask too: a model told where the hole is (mask_channel) needs it; others ignore it
    hole = torch.zeros(1, 1, shipped.input_size, shipped.input_size)
    hole[..., 32:96, 32:96] = 1.0
    with torch.no_grad():
        ref = shipped.generator(x, hole)
        assert torch.equal(a.generator(x, hole), b.generator(x, hole))
        assert torch.allclose(a.generator(x, hole), ref, atol=2e-2)
