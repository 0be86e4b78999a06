"""Safe checkpoint loading: real checkpoints load weights-only, crafted ones are refused without running."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from ctx_inpaint.config.build import build_module
from ctx_inpaint.config.checkpoint import CheckpointError, load_checkpoint
from ctx_inpaint.inference.loading import load_model
from ctx_inpaint.masks.generators import apply_mask
from tests.conftest import TINY, compose_config
from tests.tiny_checkpoints import tiny_checkpoint


@pytest.fixture(scope="session")
def center_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint("center", tmp_path_factory)


class CreatesMarker:
    """Unpickling this runs ``Path.touch(marker)``; a safe loader must never do it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def one_line_error(err: pytest.ExceptionInfo, path: Path) -> str:
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


def test_real_training_checkpoint_is_weights_only_safe(center_ckpt: Path) -> None:
    # Optimizer states (G and D), scheduler, loops, callbacks: all of it loads without unpickling code.
    ckpt = torch.load(center_ckpt, map_location="cpu", weights_only=True)
    assert {"optimizer_states", "lr_schedulers", "loops", "callbacks", "ctx_inpaint_config"} <= set(ckpt)
    assert len(ckpt["optimizer_states"]) == 2 and ckpt["lr_schedulers"]


def test_generator_rebuilt_from_checkpoint_config_alone(center_ckpt: Path) -> None:
    loaded = load_model(center_ckpt)
    assert loaded.kind == "center" and loaded.input_size == 32 and not loaded.generator.training
    # Same weights and outputs as the LightningModule the trainer saved.
    cfg = compose_config(["+experiment=l2_0999", *TINY, "model.discriminator.width=8"], center_ckpt.parent)
    module = build_module(cfg, instantiate(cfg.masks))
    module.load_state_dict(torch.load(center_ckpt, weights_only=True)["state_dict"])
    module.eval()
    x = apply_mask(torch.rand(2, 3, 32, 32) * 2 - 1, loaded.masks.sample())
    with torch.no_grad():
        assert torch.equal(loaded.generator(x), module(x))


@pytest.mark.parametrize("container", ["torch.save", "raw pickle"])
def test_malicious_pickle_is_refused_and_not_run(tmp_path: Path, container: str) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    payload = {"state_dict": {}, "ctx_inpaint_config": {}, "x": CreatesMarker(marker)}
    if container == "torch.save":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError) as err:
        load_model(evil)
    assert "refused" in one_line_error(err, evil)
    assert not marker.exists()
    # The payload really does run when unpickled unsafely: the test is not vacuous.
    if container == "raw pickle":
        pickle.loads(evil.read_bytes())
        assert marker.exists()


def test_config_targets_outside_the_package_are_refused(center_ckpt: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt = torch.load(center_ckpt, weights_only=True)
    ckpt["ctx_inpaint_config"]["model"]["encoder"] = {"_target_": "os.system", "_args_": [f"touch {marker}"]}
    crafted = tmp_path / "crafted.ckpt"
    torch.save(ckpt, crafted)
    with pytest.raises(CheckpointError, match="os.system") as err:
        load_model(crafted)
    one_line_error(err, crafted)
    assert not marker.exists()


def test_truncated_wrong_and_missing_files(center_ckpt: Path, tmp_path: Path) -> None:
    data = center_ckpt.read_bytes()
    cases = {
        "truncated.ckpt": data[: len(data) // 2],
        "text.ckpt": b"not a checkpoint\n",
        "image.ckpt": b"\x89PNG\r\n\x1a\n" + bytes(100),
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        assert "not a readable PyTorch checkpoint" in one_line_error(err, path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_checkpoint_without_config_or_with_other_weights(center_ckpt: Path, tmp_path: Path) -> None:
    ckpt = torch.load(center_ckpt, weights_only=True)
    bare = tmp_path / "bare.ckpt"
    torch.save({"state_dict": ckpt["state_dict"]}, bare)
    with pytest.raises(CheckpointError, match="ctx_inpaint_config") as err:
        load_model(bare)
    one_line_error(err, bare)
    ckpt["ctx_inpaint_config"]["model"]["encoder"]["width"] = 16
    other = tmp_path / "other.ckpt"
    torch.save(ckpt, other)
    with pytest.raises(CheckpointError, match="weights do not match") as err:
        load_model(other)
    one_line_error(err, other)


@pytest.mark.parametrize(
    ("key", "target"),
    [
        # Each starts with an allowed package but resolves, through its imports, to something else.
        ("model.encoder", "ctx_inpaint.models.encoders.torch.save"),
        ("model.encoder", "ctx_inpaint.models.encoders.nn.Module"),  # a class, but torch's
        ("model.decoder", "ctx_inpaint.models.init.dcgan_init"),  # ours, but a function
        ("masks", "ctx_inpaint.masks.generators.torch.save"),
        ("model", "ctx_inpaint.training.module.torch.save"),
    ],
)
def test_config_targets_reexported_into_the_package_are_refused(
    center_ckpt: Path, tmp_path: Path, key: str, target: str
) -> None:
    marker = tmp_path / "pwned"
    ckpt = torch.load(center_ckpt, weights_only=True)
    node = ckpt["ctx_inpaint_config"]
    for part in key.split("."):
        node = node[part]
    node.clear()
    node.update({"_target_": target, "_args_": [{"written": True}, str(marker)]})
    crafted = tmp_path / "crafted.ckpt"
    torch.save(ckpt, crafted)
    with pytest.raises(CheckpointError) as err:
        load_model(crafted)
    message = one_line_error(err, crafted)
    assert f"ctx_inpaint_config.{key}._target_" in message and target in message
    assert not marker.exists()
    # The payload really writes the marker when Hydra builds it: the test is not vacuous.
    if target.endswith("torch.save"):
        instantiate(dict(node))
        assert marker.exists()


def test_config_from_another_version_is_one_error_line(center_ckpt: Path, tmp_path: Path) -> None:
    # Hydra's instantiation error spans lines ("Error in call to target ...:\nTypeError(...)").
    ckpt = torch.load(center_ckpt, weights_only=True)
    ckpt["ctx_inpaint_config"]["model"]["encoder"]["renamed_option"] = 1
    older = tmp_path / "older.ckpt"
    torch.save(ckpt, older)
    with pytest.raises(CheckpointError, match="cannot rebuild the model") as err:
        load_model(older)
    assert "renamed_option" in one_line_error(err, older)


def test_lightning_load_from_checkpoint_rebuilds_the_module_from_its_config(center_ckpt: Path) -> None:
    """``ContextEncoderModule.load_from_checkpoint(path)`` works with nothing but the checkpoint (weights-only)."""
    from ctx_inpaint.training.module import ContextEncoderModule

    module = ContextEncoderModule.load_from_checkpoint(center_ckpt)
    state = torch.load(center_ckpt, weights_only=True)["state_dict"]
    for key, value in module.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert module.discriminator is not None and module.lambda_rec == pytest.approx(0.999)
    module.eval()
    with torch.no_grad():
        out = module(torch.zeros(2, 3, module.masks.image_size, module.masks.image_size))
    assert out.shape == (2, 3, module.masks.output_size, module.masks.output_size)


def test_resume_compatibility_names_what_differs_and_ignores_runtime_settings() -> None:
    """Issue 15.7: what a resume may change (runtime-only settings, options newer than the checkpoint left off)
    and what it may not (architecture, masks, the loss)."""
    from ctx_inpaint.training.checkpointing import config_differences

    stored = {
        "model": {"encoder": {"width": 8}, "discriminator": None, "lambda_rec": 1.0, "compile": False},
        "masks": {"overlap": 2},
        "input_size": 32,
    }
    same = {
        "model": {"encoder": {"width": 8}, "discriminator": None, "lambda_rec": 1.0, "compile": True},
        "masks": {"overlap": 2},
        "input_size": 32,
    }
    assert config_differences(stored, same) == []
    newer = {**same, "model": {**same["model"], "residual": False, "decoder": {"matmul": False}}}
    assert config_differences(stored, newer) == []  # a newer option left off, a runtime one changed
    gan = {**same, "model": {**same["model"], "discriminator": {"width": 8}, "lambda_rec": 0.999}}
    assert [key for key, _, _ in config_differences(stored, gan)] == [
        "model.discriminator.width",
        "model.lambda_rec",
    ]
    other = {**same, "masks": {"overlap": 4}, "input_size": 64}
    assert config_differences(stored, other) == [("data.input_size", 32, 64), ("masks.overlap", 2, 4)]
