"""Training-step throughput, memory and FLOPs, configured exactly like `sartm train`.

One step is what the engine's loop does per batch (sartm/engine/train.py): forward under the
run's autocast, the model's own losses, the finiteness check (a host sync), zero_grad, backward,
optional gradient clipping, the AdamW step, and reading the loss terms back (host syncs). The
model is the real SARTM of the configuration with random weights (speed does not depend on
them) and inputs are random tensors of the training crop already on the device, so the
measurement excludes data loading (measured separately by benchmarks/loading.py).

The optimised variant uses the configuration's switches as the engine applies them (bf16
autocast on GPUs when `train.precision` is auto, fused AdamW on CUDA, `train.compile`,
`train.channels_last`). The baseline is the same model in plain fp32 eager mode: those switches
off and TF32 off for matmuls and convolutions.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any

import torch

from benchmarks.device import PeakMemory
from benchmarks.flops import count_flops
from benchmarks.timing import StepTimer, summarise
from sartm.config import Config
from sartm.data.spec import spec_for
from sartm.engine import runtime
from sartm.engine.optim import build_optimizer

TEXT_DIM = 512  # CLIP ViT-B/32's text width; random embeddings stand in for the cache
BASELINE_OVERRIDES = (
    "train.precision=fp32",
    "train.compile=false",
    "train.fused_adamw=false",
    "train.channels_last=false",
)


class BenchmarkError(RuntimeError):
    """A measurement that cannot produce a meaningful number (the message says why)."""


def baseline_config(cfg: Config) -> Config:
    """`cfg` without our optimisations: fp32 eager, no fused AdamW, no channels_last."""
    return cfg.with_overrides(list(BASELINE_OVERRIDES))


def num_classes_of(cfg: Config) -> int:
    return len(spec_for(cfg.data.dataset).classes)


def build_benchmark_model(cfg: Config, device: torch.device) -> torch.nn.Module:
    """The run's SARTM with seeded random weights on `device` (random text embeddings when
    L_se is on: the teacher's values do not change the cost)."""
    from sartm.model.sartm import build_model

    classes = num_classes_of(cfg)
    text = None
    if cfg.loss.w3 > 0:
        gen = torch.Generator().manual_seed(cfg.train.seed)
        text = torch.nn.functional.normalize(torch.randn(classes, TEXT_DIM, generator=gen), dim=1)
    model = build_model(cfg, classes, text).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def random_inputs(
    cfg: Config, device: torch.device, *, size: int, batch: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised-looking RGB and thermal (B, 3, size, size) and a label map with every class."""
    gen = torch.Generator().manual_seed(cfg.train.seed)
    fmt = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    rgb = torch.randn(batch, 3, size, size, generator=gen)
    thermal = torch.randn(batch, 3, size, size, generator=gen)
    # Blocks of 16x16 pixels: every class present, region shapes closer to real label maps.
    coarse = torch.randint(
        0, num_classes_of(cfg), (batch, 1, -(-size // 16), -(-size // 16)), generator=gen
    )
    label = torch.nn.functional.interpolate(coarse.float(), scale_factor=16, mode="nearest")
    label = label[:, 0, :size, :size].long()
    return (
        rgb.to(device).contiguous(memory_format=fmt),
        thermal.to(device).contiguous(memory_format=fmt),
        label.to(device),
    )


@contextlib.contextmanager
def tf32(enabled: bool | None) -> Iterator[None]:
    """Set TF32 for CUDA matmuls and cuDNN convolutions inside the block (None: leave as is)."""
    if enabled is None:
        yield
        return
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def switches(cfg: Config, device: torch.device) -> dict[str, Any]:
    """The optimisation switches in effect for `cfg` on `device`, as the engine applies them."""
    dtype = runtime.amp_dtype(cfg.train.precision, device)
    return {
        "autocast": str(dtype).removeprefix("torch.") if dtype else "fp32",
        "compile": cfg.train.compile,
        "fused_adamw": device.type == "cuda" and cfg.train.fused_adamw,
        "channels_last": cfg.train.channels_last,
        "tf32_matmul": device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": device.type == "cuda" and torch.backends.cudnn.allow_tf32,
    }


def release(device: torch.device) -> None:
    """Free what a finished measurement left behind before the next one is measured."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    torch._dynamo.reset()


def measure_training(
    cfg: Config,
    device: torch.device,
    *,
    steps: int,
    warmup: int,
    tf32_enabled: bool | None = None,
    flops: int | None = None,
    peak_tflops: float | None = None,
) -> dict[str, Any]:
    """Time `warmup` + `steps` training steps of `cfg` on random inputs.

    tf32_enabled: force TF32 on or off for the measurement (None: as the engine leaves it).
    flops: model FLOPs per step when already known (the count does not depend on the switches);
    None counts them once here, in an extra eager step that is not timed.
    """
    try:
        with tf32(tf32_enabled):
            result = _time_training(cfg, device, steps=steps, warmup=warmup, flops=flops)
    finally:
        release(device)
    achieved = result["flops_per_step"] / result["step"]["median_s"] / 1e12
    result["tflops"] = achieved
    result["mfu"] = achieved / peak_tflops if peak_tflops else None
    return result


def _time_training(
    cfg: Config, device: torch.device, *, steps: int, warmup: int, flops: int | None
) -> dict[str, Any]:
    batch, size = cfg.train.batch_size, cfg.data.crop_size
    model = build_benchmark_model(cfg, device)
    model.train()
    optimizer = build_optimizer(
        model,
        lr=cfg.train.lr,
        weight_decay=cfg.train.weight_decay,
        fused=device.type == "cuda" and cfg.train.fused_adamw,
    )
    dtype = runtime.amp_dtype(cfg.train.precision, device)
    forward = torch.compile(model) if cfg.train.compile else model
    rgb, thermal, label = random_inputs(cfg, device, size=size, batch=batch)
    result: dict[str, Any] = {
        "config_hash": cfg.hash(),
        "switches": switches(cfg, device),
        "batch": batch,
        "crop": size,
    }

    if flops is None:

        def eager_step() -> None:
            with runtime.autocast(device, dtype):
                loss, _ = model.compute_loss(model(rgb, thermal), label)
            loss.backward()

        flops, result["flops_by_op"] = count_flops(eager_step)
        optimizer.zero_grad(set_to_none=True)

    last: dict[str, float] = {}

    def step() -> None:
        with runtime.autocast(device, dtype):
            outputs = forward(rgb, thermal)
            loss, terms = model.compute_loss(outputs, label)
        if not torch.isfinite(loss):
            raise BenchmarkError(f"non-finite loss {float(loss)} in the training step")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        last["loss"] = float(loss.detach())
        last.update({k: float(v) for k, v in terms.items()})

    warm_timer, timer = StepTimer(device), StepTimer(device)
    with PeakMemory(device) as memory:
        for _ in range(warmup):
            with warm_timer.step():
                step()
        for _ in range(steps):
            with timer.step():
                step()
    stats = summarise(timer.seconds())
    return {
        **result,
        "warmup_s": warm_timer.seconds(),
        "step": stats,
        "images_per_s": batch / stats["median_s"],
        "memory": memory.result,
        "memory_mb": memory.reported_mb,
        "flops_per_step": flops,
        "last_losses": last,
    }
