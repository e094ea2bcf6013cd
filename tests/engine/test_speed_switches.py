"""The speed switches compute the same training step: each one on against the plain fp32 eager
step, on the real SARTM (micro Hiera, random weights), same inputs, same initial weights.

GPU-only parts (TF32, cuDNN autotuning) cannot run here; bf16 autocast runs on the CPU too.
"""

from __future__ import annotations

import copy

import pytest
import torch

from sartm import config as cfgmod
from sartm.engine import runtime
from sartm.engine.optim import build_optimizer
from sartm.engine.train import train_step
from sartm.model.sartm import build_model

CPU = torch.device("cpu")
CLASSES = 5


def micro_cfg(*overrides: str) -> cfgmod.Config:
    params = cfgmod.load_params(cfgmod.PROJECT_ROOT / "params.yaml")
    return cfgmod.resolve(
        params,
        dataset="pst900",
        preset="ci",
        overrides=[
            "model.backbone=test_hiera_micro",
            "model.checkpoint=null",
            "train.device=cpu",
            *overrides,
        ],
    )


def batch(size: int = 64, n: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    rgb, thermal = (
        torch.randn(n, 3, size, size, generator=g),
        torch.randn(n, 3, size, size, generator=g),
    )
    label = torch.randint(0, CLASSES, (n, size // 8, size // 8), generator=g)
    label = label.repeat_interleave(8, 1).repeat_interleave(8, 2)
    label[:, :4] = 255
    return rgb, thermal, label


@pytest.fixture(scope="module")
def reference_model() -> torch.nn.Module:
    torch.manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(CLASSES, 512), dim=1)
    return build_model(micro_cfg(), CLASSES, text).train()


def one_step(
    model: torch.nn.Module,
    *,
    forward=None,
    dtype=None,
    memory_format=torch.contiguous_format,
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """The engine's train_step with a zero learning rate: (loss terms, gradients of the trainable
    parameters). Gradients, not updated weights, are compared: Adam turns the rounding noise of
    a parameter with no real gradient (e.g. a bias before BatchNorm) into a full +-lr step."""
    optimizer = build_optimizer(model, lr=0.0, weight_decay=0.0, fused=False)
    rgb, thermal, label = batch()
    rgb = rgb.contiguous(memory_format=memory_format)
    thermal = thermal.contiguous(memory_format=memory_format)
    terms = train_step(
        forward if forward is not None else model,
        model,
        optimizer,
        (rgb, thermal, label),
        device=CPU,
        dtype=dtype,
        grad_clip=0.0,
        info=runtime.Dist(),
    )
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: float(v) for k, v in terms.items()}, grads


def assert_same_step(got, want, *, rtol: float, atol: float) -> None:
    (got_losses, got_grads), (want_losses, want_grads) = got, want
    assert got_losses.keys() == want_losses.keys()
    for name, value in want_losses.items():
        assert got_losses[name] == pytest.approx(value, rel=rtol, abs=atol), name
    assert got_grads.keys() == want_grads.keys()
    # Tolerance: rtol of the tensor's own gradient scale, plus atol of the step's largest
    # gradient (parameters with no real gradient, e.g. a bias before BatchNorm, get rounding
    # noise whose relative error means nothing).
    largest = max(g.abs().max().item() for g in want_grads.values())
    for name, value in want_grads.items():
        scale = value.abs().max().item()
        diff = (got_grads[name] - value).abs().max().item()
        assert diff <= rtol * scale + atol * largest, (
            f"{name}: |diff| {diff:.3g}, scale {scale:.3g}"
        )


@pytest.fixture(scope="module")
def plain_step(reference_model):
    """The fp32 eager step every switch is compared with; it must give the trainable parts
    non-zero gradients, or the comparisons would hold trivially."""
    losses, grads = one_step(copy.deepcopy(reference_model))
    nonzero = sum(bool(g.abs().sum() > 0) for g in grads.values())
    assert nonzero > len(grads) // 2 and losses["loss"] > 0
    return losses, grads


def test_channels_last_matches_the_plain_step(reference_model, plain_step):
    model = copy.deepcopy(reference_model).to(memory_format=torch.channels_last)
    got = one_step(model, memory_format=torch.channels_last)
    assert_same_step(got, plain_step, rtol=1e-4, atol=1e-5)


def test_bf16_autocast_stays_close_to_the_plain_step(reference_model, plain_step):
    """bf16 has an 8-bit mantissa, and the LoRA gradients flow back through the whole encoder:
    losses agree to about 1 %, gradients in direction (cosine), not element by element."""
    losses, grads = one_step(copy.deepcopy(reference_model), dtype=torch.bfloat16)
    want_losses, want_grads = plain_step
    for name, value in want_losses.items():
        assert losses[name] == pytest.approx(value, rel=2e-2), name
    cosine = torch.nn.functional.cosine_similarity
    flat = [torch.cat([g[n].flatten() for n in want_grads]) for g in (grads, want_grads)]
    assert cosine(*flat, dim=0) > 0.99
    largest = max(g.norm() for g in want_grads.values())
    for name, value in want_grads.items():
        if value.norm() > 1e-3 * largest:  # skip rounding-noise gradients (biases before BN)
            assert cosine(grads[name].flatten(), value.flatten(), dim=0) > 0.9, name


@pytest.mark.slow
def test_torch_compile_matches_the_plain_step(reference_model, plain_step):
    """torch.compile (inductor) fuses kernels and may reorder float sums: the same step within
    float32 rounding. Slow on a CPU (compiling even the micro model takes minutes)."""
    model = copy.deepcopy(reference_model)
    got = one_step(model, forward=torch.compile(model))
    assert_same_step(got, plain_step, rtol=1e-4, atol=1e-5)


def test_fused_adamw_makes_the_same_update(reference_model):
    """Given the same gradients, fused AdamW (one kernel per step on a GPU) updates every
    trainable weight like the default implementation, over several steps."""
    models = [copy.deepcopy(reference_model) for _ in range(2)]
    optimizers = [
        build_optimizer(m, lr=1e-3, weight_decay=0.01, fused=fused)
        for m, fused in zip(models, (False, True))
    ]
    g = torch.Generator().manual_seed(1)
    trainable = [n for n, p in models[0].named_parameters() if p.requires_grad]
    for _ in range(3):
        grads = {
            n: torch.randn(p.shape, generator=g)
            for n, p in models[0].named_parameters()
            if p.requires_grad
        }
        for model, optimizer in zip(models, optimizers):
            for n, p in model.named_parameters():
                if p.requires_grad:
                    p.grad = grads[n].clone()
            optimizer.step()
    params = [dict(m.named_parameters()) for m in models]
    for name in trainable:
        torch.testing.assert_close(params[1][name], params[0][name], rtol=1e-6, atol=1e-7)
    assert not torch.equal(
        params[0][trainable[0]], dict(reference_model.named_parameters())[trainable[0]]
    )


@pytest.mark.parametrize(
    ("setting", "device", "expected"),
    [
        ("auto", "cuda", True),
        ("auto", "cpu", False),
        (True, "cpu", True),
        (False, "cuda", False),
    ],
)
def test_compile_auto_means_gpu_only(setting, device, expected):
    assert runtime.compile_enabled(setting, torch.device(device)) is expected


def test_speed_switches_do_not_change_the_run_identity():
    """Turning a speed switch on must not start a new run or refuse a resume."""
    plain = micro_cfg()
    for override in (
        "train.compile=true",
        "train.fused_adamw=false",
        "train.channels_last=true",
        "train.tf32=false",
    ):
        assert micro_cfg(override).hash() == plain.hash(), override
    assert micro_cfg("train.precision=fp32").hash() != micro_cfg("train.precision=bf16").hash()
