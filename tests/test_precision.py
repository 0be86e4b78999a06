"""Issue 26 (part 1): the precision chosen for the hardware.

``trainer.precision=auto`` resolves to bf16-mixed where the device computes bf16 natively and to 32-true elsewhere,
an explicit value always wins, the losses stay float32 under bf16 autocast, and the ``Inpainter`` runs its generator
in bf16 where native. This machine may have no native bf16: the capability is faked by patching
``ctx_inpaint.common.machine.cpu_flags`` (the only reader of /proc/cpuinfo) or ``torch.cuda``'s functions. Nothing
here depends on the machine's speed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import Callback

import ctx_inpaint.evaluation.metrics as metrics
import ctx_inpaint.training.objective as objective
from ctx_inpaint.common import machine
from ctx_inpaint.config.build import build_module
from ctx_inpaint.config.check import check_config
from ctx_inpaint.errors import ConfigError, InputError
from ctx_inpaint.inference import inpainter as inpainter_module
from ctx_inpaint.inference.inpainter import Inpainter
from ctx_inpaint.inference.loading import LoadedModel
from ctx_inpaint.masks.generators import apply_mask, crop_box
from tests.commands import restored_logging, run_command

NATIVE = frozenset({"avx512_bf16", "fpu", "sse2"})
EMULATED = frozenset({"fpu", "sse2", "avx2"})
LINE = "[ctx-inpaint] precision:"


def fake_cpu(monkeypatch: pytest.MonkeyPatch, flags: frozenset[str]) -> None:
    monkeypatch.setattr("ctx_inpaint.common.machine.cpu_flags", lambda: flags)


def fake_cuda(monkeypatch: pytest.MonkeyPatch, available: bool, ampere: bool) -> None:
    """CUDA as ``torch.cuda`` reports it: ``ampere`` False is a pre-Ampere card (bf16 only by emulation)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(
        torch.cuda,
        "is_bf16_supported",
        lambda including_emulation=True: available and (ampere or including_emulation),
    )


# ---- resolution ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", sorted(machine.BF16_FLAGS))
def test_auto_is_bf16_mixed_on_a_cpu_with_native_bf16(monkeypatch, flag: str) -> None:
    fake_cpu(monkeypatch, frozenset({flag, "sse2"}))
    fake_cuda(monkeypatch, available=False, ampere=False)
    for accelerator in ("cpu", "auto"):
        assert machine.resolve_precision("auto", accelerator) == (
            "bf16-mixed",
            f"cpu has native bf16: {flag}",
        )


def test_auto_is_32_true_on_a_cpu_without_native_bf16(monkeypatch) -> None:
    fake_cpu(monkeypatch, EMULATED)
    fake_cuda(monkeypatch, available=False, ampere=False)
    assert machine.resolve_precision("auto", "cpu") == ("32-true", "no native bf16 on cpu")
    assert machine.resolve_precision("auto", "auto") == ("32-true", "no native bf16 on cpu")


def test_auto_on_cuda_asks_for_native_bf16_not_emulated(monkeypatch) -> None:
    fake_cpu(monkeypatch, EMULATED)
    fake_cuda(monkeypatch, available=True, ampere=True)
    for accelerator in ("gpu", "cuda", "auto"):
        assert machine.resolve_precision("auto", accelerator) == ("bf16-mixed", "cuda has native bf16")
    # A pre-Ampere card: torch says "supported" counting emulation, which is slower than fp32.
    fake_cuda(monkeypatch, available=True, ampere=False)
    assert machine.resolve_precision("auto", "gpu") == ("32-true", "no native bf16 on cuda")
    # The CPU's flags decide for a CPU run, whatever GPU the machine has.
    fake_cuda(monkeypatch, available=True, ampere=True)
    assert machine.resolve_precision("auto", "cpu") == ("32-true", "no native bf16 on cpu")
    fake_cpu(monkeypatch, NATIVE)
    fake_cuda(monkeypatch, available=True, ampere=False)
    assert machine.resolve_precision("auto", "cpu")[0] == "bf16-mixed"
    assert machine.resolve_precision("auto", "gpu")[0] == "32-true"


@pytest.mark.parametrize("flags", [NATIVE, EMULATED])
@pytest.mark.parametrize(
    "value", ["32-true", "bf16-mixed", "16-mixed", "bf16-true", "32", "bf16", 32, 16, None]
)
def test_an_explicit_precision_always_wins(monkeypatch, flags: frozenset[str], value) -> None:
    fake_cpu(monkeypatch, flags)
    fake_cuda(monkeypatch, available=True, ampere=True)
    for accelerator in ("cpu", "gpu", "auto"):
        assert machine.resolve_precision(value, accelerator) == (value, "set explicitly")


def test_the_config_takes_auto_by_default_and_refuses_nonsense_in_one_line(tiny_cfg) -> None:
    cfg = tiny_cfg("+experiment=l2_1")
    assert cfg.trainer.precision == "auto"
    check_config(cfg)
    for value in ("32-true", "bf16-mixed", "16-mixed", "32"):
        check_config(tiny_cfg("+experiment=l2_1", f"trainer.precision={value}"))
    for value in ("fp8", "bf17-mixed", "true", "3.5"):
        with pytest.raises(ConfigError) as err:
            check_config(tiny_cfg("+experiment=l2_1", f"trainer.precision={value}"))
        message = str(err.value)
        assert "\n" not in message and message.startswith("trainer.precision: got ")
        assert "expected auto" in message and "32-true, bf16-mixed" in message


# ---- a real training run -----------------------------------------------------------------------------------------
class PrecisionProbe(Callback):
    """Writes ``precision_probe.json`` into the run dir: the trainer's precision, its plugin, and the dtype of the
    generator's output inside the first training step (bfloat16 only when the step ran under bf16 autocast)."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}
        self._handle = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.seen = {"precision": str(trainer.precision), "plugin": type(trainer.precision_plugin).__name__}

        def hook(module, inputs, output) -> None:
            self.seen.setdefault("generator_output", str(output.dtype))

        self._handle = pl_module.generator.register_forward_hook(hook)

    def on_train_end(self, trainer, pl_module) -> None:
        self._handle.remove()
        (Path(trainer.default_root_dir) / "precision_probe.json").write_text(json.dumps(self.seen))


@pytest.fixture
def own_logging() -> Iterator[None]:
    """The logging set-up as it was before the test (run_command restores it too; kept for the checks between
    runs that read the handlers' files)."""
    with restored_logging():
        yield


def train_command(run_dir: Path, *extra: str) -> list[str]:
    return [
        "+experiment=l2_0999",
        "+debug=tiny",
        f"hydra.run.dir={run_dir}",
        "+callbacks.precision_probe._target_=tests.test_precision.PrecisionProbe",
        *extra,
    ]


def precision_lines(text: str) -> list[str]:
    """The precision lines of a console or ``train.log`` (whose lines start with a time and a logger name)."""
    return [line[line.index(LINE) :] for line in text.splitlines() if LINE in line]


def test_a_tiny_run_with_native_bf16_trains_in_bf16_mixed_and_says_so_once(
    monkeypatch, tmp_path: Path, capfd, own_logging
) -> None:
    """``python -m ctx_inpaint.train`` with the default ``auto``: one line, the trainer in bf16-mixed (the step's
    generator output is bfloat16), the resolved value in ``config_resolved.yaml``; then resumed with ``auto`` on a
    machine without native bf16: the bf16 checkpoint continues in 32-true."""
    run_dir = tmp_path / "run"
    fake_cpu(monkeypatch, frozenset({"avx512_bf16"}))
    assert run_command("train", train_command(run_dir)) == 0
    expected = "[ctx-inpaint] precision: auto -> bf16-mixed (cpu has native bf16: avx512_bf16)"
    assert precision_lines(capfd.readouterr().err) == [expected]
    assert precision_lines((run_dir / "train.log").read_text()) == [expected]
    probe = json.loads((run_dir / "precision_probe.json").read_text())
    assert probe == {
        "precision": "bf16-mixed",
        "plugin": "MixedPrecision",
        "generator_output": "torch.bfloat16",
    }
    recorded = (run_dir / "config_resolved.yaml").read_text()
    assert (
        recorded.splitlines()[0]
        == "# trainer.precision: auto -> bf16-mixed (cpu has native bf16: avx512_bf16)"
    )
    assert OmegaConf.create(recorded).trainer.precision == "bf16-mixed"
    steps = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]

    fake_cpu(monkeypatch, frozenset())
    assert run_command("train", train_command(run_dir, "ckpt_path=last", "trainer.max_epochs=2")) == 0
    resumed = "[ctx-inpaint] precision: auto -> 32-true (no native bf16 on cpu)"
    assert precision_lines(capfd.readouterr().err) == [resumed]
    probe = json.loads((run_dir / "precision_probe.json").read_text())
    assert probe == {"precision": "32-true", "plugin": "Precision", "generator_output": "torch.float32"}
    assert OmegaConf.load(run_dir / "config_resolved.yaml").trainer.precision == "32-true"
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] > steps


# ---- losses under bf16 autocast ----------------------------------------------------------------------------------
def tiny_batch(masks, n: int = 2) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    image = torch.rand(n, 3, 32, 32) * 2 - 1
    mask = masks.sample().expand(n, 1, 32, 32)
    weight = masks.loss_weight(masks.sample())
    return {
        "image": image,
        "masked": apply_mask(image, mask),
        "mask": mask,
        "weight": weight.expand(n, 1, *weight.shape[-2:]),
    }


def spy(monkeypatch, owner, name: str, calls: list[tuple[torch.dtype, bool]]) -> None:
    """Record the first tensor argument's dtype and whether CPU autocast was on, at each call of ``owner.name``."""
    real = getattr(owner, name)

    def wrapper(x, *args, **kwargs):
        calls.append((x.dtype, torch.is_autocast_enabled("cpu")))
        return real(x, *args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


def test_losses_are_float32_under_bf16_autocast(tiny_cfg, monkeypatch) -> None:
    """The generator and discriminator run in bf16; reconstruction, SSIM and the adversarial BCE get float32
    inputs with autocast off, and every loss the GAN step backpropagates is float32."""
    cfg = tiny_cfg("+experiment=l2_0999", "model.ssim_weight=0.25")
    masks = instantiate(cfg.masks)
    module = build_module(cfg, masks)
    batch = tiny_batch(masks)
    target = crop_box(batch["image"], masks.target_box)
    ssim_calls: list = []
    bce_calls: list = []
    spy(monkeypatch, objective, "hole_ssim", ssim_calls)
    spy(monkeypatch, objective.F, "binary_cross_entropy_with_logits", bce_calls)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pred = module.generator(batch["masked"], batch["mask"])
        logs: dict = {}
        loss_rec = module.reconstruction(pred, target, batch, logs)
        loss_d, d_logs = objective.discriminator_loss(module.discriminator, target, pred)
        loss_g, g_logs = objective.generator_loss(
            module.discriminator, pred, target, batch, module.lambda_rec, module.reconstruction
        )
    assert pred.dtype == torch.bfloat16  # autocast was on for the networks
    for loss in (
        loss_rec,
        logs["loss_l2_l1"],
        logs["loss_ssim"],
        loss_d,
        loss_g,
        *d_logs.values(),
        *g_logs.values(),
    ):
        assert loss.dtype == torch.float32
    assert ssim_calls and all(call == (torch.float32, False) for call in ssim_calls)
    assert len(bce_calls) == 3 and all(call == (torch.float32, False) for call in bce_calls)
    # The L2 term is exactly the float32 loss of the cast prediction, as computed without autocast.
    plain = objective.masked_reconstruction(pred.float(), target, batch["weight"])
    assert torch.equal(logs["loss_l2_l1"], plain)
    # A whole GAN step under autocast: every logged loss float32 and finite.
    opt_g, opt_d = (
        module.optimizer_g(module.generator.parameters()),
        module.optimizer_d(module.discriminator.parameters()),
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        step = objective.gan_step(module.gan_parts(opt_g, opt_d), batch)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in step.values())


def test_float32_losses_are_the_plain_formulas_bit_for_bit() -> None:
    """Without autocast the float32 regions and casts change nothing: each loss equals its formula exactly."""
    torch.manual_seed(1)
    pred, target, weight = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16), torch.rand(2, 1, 16, 16)
    assert torch.equal(
        objective.masked_reconstruction(pred, target, weight), ((pred - target).square() * weight).mean()
    )
    assert torch.equal(
        objective.masked_reconstruction(pred, target, weight, "l1"), ((pred - target).abs() * weight).mean()
    )
    logits = torch.randn(8)
    assert torch.equal(
        objective.adversarial(logits, True), F.binary_cross_entropy_with_logits(logits, torch.ones(8))
    )
    assert torch.equal(
        objective.adversarial(logits, False), F.binary_cross_entropy_with_logits(logits, torch.zeros(8))
    )
    mask = (torch.rand(2, 1, 16, 16) > 0.5).float()
    assert torch.equal(
        objective.hole_ssim_loss(pred, target, mask), 1.0 - metrics.hole_ssim(pred, target, mask).mean()
    )
    # A float64 reference stays float64 (only bf16 and fp16 inputs are cast up).
    assert objective.masked_reconstruction(pred.double(), target.double(), weight).dtype == torch.float64


def test_validation_metrics_are_float32_under_bf16_autocast(tiny_cfg, monkeypatch) -> None:
    cfg = tiny_cfg("+experiment=l2_1")
    masks = instantiate(cfg.masks)
    module = build_module(cfg, masks).eval()
    calls: list = []
    spy(monkeypatch, metrics, "hole_ssim", calls)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        module.validation_step(tiny_batch(masks), 0)
    assert calls == [(torch.float32, False)]
    assert module._grid_batch["output"].dtype == torch.float32


# ---- inference -----------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_model(tiny_cfg) -> LoadedModel:
    """A tiny whole-image generator in eval mode whose outputs span the range as a trained model's do, without
    training: a fresh generator's eval-mode outputs are ~1e-8 (BatchNorm's initial statistics do not normalise,
    DCGAN's 0.02 weights shrink every layer), so the BatchNorm statistics are taken from one batch and the last
    layer is scaled up (hole outputs then average |x| ~ 0.3 in [-1, 1])."""
    torch.manual_seed(0)
    cfg = tiny_cfg("+experiment=l2_1", "masks=random_region")
    masks = instantiate(cfg.masks)
    generator = build_module(cfg, masks).generator
    for layer in generator.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.reset_running_stats()
            layer.momentum = None  # a cumulative average: one batch's statistics exactly
    images = torch.rand(16, 3, 32, 32) * 2 - 1
    mask = torch.stack([masks.sample() for _ in range(16)])
    with torch.no_grad():
        generator.train()(masks.hide(images, mask), mask)
        convs = [m for m in generator.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
        convs[-1].weight.mul_(10)
    return LoadedModel(generator=generator.eval(), masks=masks, input_size=32, name="tiny", config={})


def generator_autocast(inpainter: Inpainter) -> list[bool]:
    seen: list[bool] = []
    inpainter.generator.register_forward_hook(lambda m, i, o: seen.append(torch.is_autocast_enabled("cpu")))
    return seen


def test_inpainter_runs_its_generator_in_bf16_only_where_native_or_asked(monkeypatch, tiny_model) -> None:
    image = torch.rand(3, 40, 48) * 2 - 1
    hole = torch.zeros(40, 48, dtype=torch.bool)
    hole[10:20, 12:30] = True
    for flags, precision, expected in [
        (NATIVE, "auto", True),
        (EMULATED, "auto", False),
        (NATIVE, "32", False),
        (EMULATED, "bf16", True),
    ]:
        fake_cpu(monkeypatch, flags)
        inpainter = Inpainter(tiny_model, device="cpu", precision=precision)
        seen = generator_autocast(inpainter)
        inpainter.predict(image, hole)
        assert inpainter.bf16 is expected and seen and set(seen) == {expected}, (flags, precision)
        inpainter.generator._forward_hooks.clear()
    with pytest.raises(InputError, match="precision: expected one of auto, 32, bf16, got 'fp16'"):
        Inpainter(tiny_model, device="cpu", precision="fp16")


def test_inpainter_load_checks_and_passes_the_precision(monkeypatch, tiny_model) -> None:
    loaded: list = []
    monkeypatch.setattr(
        inpainter_module, "load_model", lambda source, device: loaded.append(source) or tiny_model
    )
    with pytest.raises(InputError, match="precision: expected one of auto, 32, bf16"):
        Inpainter.load("tiny.safetensors", device="cpu", precision="half")
    assert loaded == []  # refused before the model was read
    assert Inpainter.load("tiny.safetensors", device="cpu", precision="bf16").bf16 is True
    assert Inpainter.load("tiny.safetensors", device="cpu", precision="32").bf16 is False


def test_bf16_inference_is_close_to_float32_on_holes_and_identical_elsewhere(monkeypatch, tiny_model) -> None:
    fake_cpu(monkeypatch, NATIVE)
    torch.manual_seed(2)
    image = torch.rand(3, 40, 56) * 2 - 1
    hole = torch.zeros(40, 56, dtype=torch.bool)
    hole[6:18, 8:22] = True  # one window at model size, one resized (a larger hole)
    hole[20:38, 24:54] = True
    fp32 = Inpainter(tiny_model, device="cpu", precision="32").predict(image, hole)
    bf16 = Inpainter(tiny_model, device="cpu", precision="auto").predict(image, hole)
    assert fp32.dtype == bf16.dtype == torch.float32
    # Visible pixels: the paste writes hole pixels only, in float32: bit-identical whatever the precision.
    assert torch.equal(bf16[:, ~hole], image[:, ~hole]) and torch.equal(fp32[:, ~hole], image[:, ~hole])
    # Hole pixels: bf16 keeps 8 mantissa bits, a relative rounding of 2^-9 (0.002) per value; through the few
    # layers of this network to a tanh output of |x| ~ 0.3 that leaves a mean error of a few 1e-3 (4e-3 measured).
    # 0.02 is 1% of the [-1, 1] range, 2.5 grey levels of 255: above it bf16 would cost visible quality, not
    # rounding. The difference is not 0 either: bf16 was used.
    assert fp32[:, hole].abs().mean() > 0.1  # outputs of a real magnitude, or the bound would say nothing
    diff = (bf16[:, hole] - fp32[:, hole]).abs().mean().item()
    assert 0 < diff < 0.02
    # uint8 photos: visible pixels untouched too.
    photo = (torch.rand(3, 40, 56) * 255).to(torch.uint8)
    out = Inpainter(tiny_model, device="cpu", precision="auto")(photo, hole)
    assert out.dtype == torch.uint8 and torch.equal(out[:, ~hole], photo[:, ~hole])
