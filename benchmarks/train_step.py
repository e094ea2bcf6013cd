"""Training-step throughput, memory and FLOPs, configured exactly like `sartm train`.

One step is the engine's own `train_step` (sartm/engine/train.py), the function its loop calls
per batch: forward under the run's autocast, the model's own losses (with their finiteness
check), zero_grad, backward, optional gradient clipping, the AdamW step. The
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
from dataclasses import dataclass, field
from typing import Any

import torch

from benchmarks.device import MIB, PeakMemory, memory_now
from benchmarks.flops import count_flops
from benchmarks.timing import StepTimer, summarise
from sartm.config import Config
from sartm.data.spec import spec_for
from sartm.engine import runtime
from sartm.engine.optim import build_optimizer
from sartm.engine.train import train_step
from sartm.losses import NonFiniteLossError

TEXT_DIM = 512  # CLIP ViT-B/32's text width; random embeddings stand in for the cache
BASELINE_OVERRIDES = (
    "train.precision=fp32",
    "train.compile=false",
    "train.fused_adamw=false",
    "train.channels_last=false",
    "train.tf32=false",
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


def switches(cfg: Config, device: torch.device, tf32_enabled: bool | None = None) -> dict[str, Any]:
    """The optimisation switches in effect for `cfg` on `device`, as the engine applies them
    (TF32: forced on or off, or None for torch's current setting)."""
    dtype = runtime.amp_dtype(cfg.train.precision, device)
    cuda = device.type == "cuda"
    return {
        "autocast": str(dtype).removeprefix("torch.") if dtype else "fp32",
        "compile": runtime.compile_enabled(cfg.train.compile, device),
        "fused_adamw": device.type == "cuda" and cfg.train.fused_adamw,
        "channels_last": cfg.train.channels_last,
        "tf32_matmul": cuda
        and (torch.backends.cuda.matmul.allow_tf32 if tf32_enabled is None else tf32_enabled),
        "tf32_cudnn": cuda
        and (torch.backends.cudnn.allow_tf32 if tf32_enabled is None else tf32_enabled),
    }


def release(device: torch.device) -> None:
    """Free what a finished measurement left behind before the next one is measured."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    torch._dynamo.reset()


class TrainingRunner:
    """One variant's model, optimiser and inputs, taking steps as the engine's loop does."""

    def __init__(self, cfg: Config, device: torch.device, *, tf32_enabled: bool | None) -> None:
        self.cfg, self.device, self.tf32_enabled = cfg, device, tf32_enabled
        self.model = build_benchmark_model(cfg, device).train()
        self.optimizer = build_optimizer(
            self.model,
            lr=cfg.train.lr,
            weight_decay=cfg.train.weight_decay,
            fused=device.type == "cuda" and cfg.train.fused_adamw,
        )
        self.dtype = runtime.amp_dtype(cfg.train.precision, device)
        compiled = runtime.compile_enabled(cfg.train.compile, device)
        self.forward = torch.compile(self.model) if compiled else self.model
        self.inputs = random_inputs(
            cfg, device, size=cfg.data.crop_size, batch=cfg.train.batch_size
        )
        self.last_terms: dict[str, torch.Tensor] = {}

    def tensor_bytes(self) -> int:
        """Bytes of the tensors this variant keeps: weights, buffers, gradients, optimiser state
        and inputs (each storage once)."""
        tensors = [*self.model.parameters(), *self.model.buffers(), *self.inputs]
        tensors += [p.grad for p in self.model.parameters() if p.grad is not None]
        for state in self.optimizer.state.values():
            tensors += [t for t in state.values() if torch.is_tensor(t)]
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
        return sum(storages.values())

    def count_flops(self) -> tuple[int, dict[str, int]]:
        """FLOPs of forward + losses + backward, in eager mode (gradients discarded after)."""
        rgb, thermal, label = self.inputs

        def eager_step() -> None:
            with runtime.autocast(self.device, self.dtype):
                loss, _ = self.model.compute_loss(self.model(rgb, thermal), label)
            loss.backward()

        with tf32(self.tf32_enabled):
            counted = count_flops(eager_step)
        self.optimizer.zero_grad(set_to_none=True)
        return counted

    def step(self) -> None:
        with tf32(self.tf32_enabled):
            try:
                terms = train_step(
                    self.forward,
                    self.model,
                    self.optimizer,
                    self.inputs,
                    device=self.device,
                    dtype=self.dtype,
                    grad_clip=self.cfg.train.grad_clip,
                    info=runtime.Dist(),
                )
            except NonFiniteLossError as exc:
                raise BenchmarkError(f"{exc} in the training step") from exc
        self.last_terms = terms

    @property
    def last_losses(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.last_terms.items()}


@dataclass
class _Variant:
    cfg: Config
    tf32_enabled: bool | None
    runner: TrainingRunner | None = None
    result: dict[str, Any] = field(default_factory=dict)
    timer: StepTimer | None = None
    step_peak_mb: float = 0.0


def measure_training(
    variants: dict[str, tuple[Config, bool | None]],
    device: torch.device,
    *,
    steps: int,
    warmup: int,
    peak_tflops: float | None = None,
    profile: int = 0,
) -> dict[str, dict[str, Any]]:
    """Time training steps of each variant {name: (config, tf32 on/off/None = as is)}.

    Each variant is built and warmed up in turn (`warmup` untimed steps: compilation,
    autotuning, optimiser state), then the timed steps alternate between the variants, so that
    other load on the machine falls on all of them alike. Memory per variant, in MiB:
    `static_mb`, what it keeps between steps (weights, gradients, optimiser state, inputs: GPU
    allocator memory after building and warming it up; on a CPU the bytes of those tensors),
    plus `step_peak_mb`, the largest growth during one of its steps (activations; GPU
    allocator peak, CPU resident set); `memory_mb` is their sum: what it needs on its own.
    Model FLOPs are counted once, on the first variant (the count does not depend on the
    switches). A variant that fails (e.g. out of memory) gets {"error": ...}; the others go on.
    `profile` > 0: that many further steps of the first variant under torch.profiler
    (benchmarks/profile.py), as its "profile".
    """
    state = {name: _Variant(cfg, tf32_on) for name, (cfg, tf32_on) in variants.items()}
    flops: tuple[int, dict[str, int]] | None = None
    try:
        for v in state.values():
            try:
                before = memory_now(device) if device.type == "cuda" else 0
                v.runner = TrainingRunner(v.cfg, device, tf32_enabled=v.tf32_enabled)
                warm = StepTimer(device)
                for _ in range(warmup):
                    with warm.step():
                        v.runner.step()
                v.result["warmup_s"] = warm.seconds()
                # GPU: what the allocator holds for it; CPU: its tensors (the resident set would
                # also count libraries the first variant happens to load)
                if device.type == "cuda":
                    held = memory_now(device) - before
                else:
                    held = v.runner.tensor_bytes()
                v.result["static_mb"] = round(held / MIB, 1)
                if flops is None:  # after the snapshot: the counting pass is not the variant's
                    flops = v.runner.count_flops()
                    v.result["flops_by_op"] = flops[1]
                v.timer = StepTimer(device)
            except (torch.cuda.OutOfMemoryError, BenchmarkError) as exc:
                _fail(v, exc, device)
        for _ in range(steps):
            for v in state.values():
                if v.runner is None:
                    continue
                try:
                    with PeakMemory(device) as memory, v.timer.step():
                        v.runner.step()
                    v.step_peak_mb = max(v.step_peak_mb, memory.result["delta_mb"])
                    v.result["memory_kind"] = memory.result["kind"]
                except (torch.cuda.OutOfMemoryError, BenchmarkError) as exc:
                    _fail(v, exc, device)
        first = next(iter(state.values()))
        if profile and first.runner is not None:
            from benchmarks.profile import profile_steps

            first.result["profile"] = profile_steps(first.runner.step, device, steps=profile)
        return {
            name: v.result if "error" in v.result else _summary(v, device, flops, peak_tflops)
            for name, v in state.items()
        }
    finally:
        for v in state.values():
            v.runner = None
        release(device)


def _fail(v: _Variant, exc: Exception, device: torch.device) -> None:
    v.runner = None
    v.result = {"config_hash": v.cfg.hash(), "error": f"{type(exc).__name__}: {exc}"[:500]}
    release(device)


def _summary(
    v: _Variant,
    device: torch.device,
    flops: tuple[int, dict[str, int]] | None,
    peak_tflops: float | None,
) -> dict[str, Any]:
    cfg = v.cfg
    stats = summarise(v.timer.seconds())
    total = flops[0] if flops else None
    achieved = total / stats["median_s"] / 1e12 if total else None
    return {
        "config_hash": cfg.hash(),
        "switches": switches(cfg, device, v.tf32_enabled),
        "batch": cfg.train.batch_size,
        "crop": cfg.data.crop_size,
        **v.result,
        "step": stats,
        "images_per_s": cfg.train.batch_size / stats["median_s"],
        "step_peak_mb": v.step_peak_mb,
        "memory_mb": round(v.result["static_mb"] + v.step_peak_mb, 1),
        "flops_per_step": total,
        "tflops": achieved,
        "mfu": achieved / peak_tflops if achieved and peak_tflops else None,
        "last_losses": v.runner.last_losses,
    }


CARDS_GB = (24, 40, 48, 80)  # common card sizes (decimal GB, as sold)
CUDA_CONTEXT_GIB = (
    0.6  # what the CUDA context and cuBLAS/cuDNN workspaces take outside torch's allocator
)


def measure_memory(
    cfg: Config, device: torch.device, batches: tuple[int, ...], *, steps: int = 2
) -> dict[str, Any]:
    """Peak training memory of the optimised step at several batch sizes, and what fits where.

    Without torch.compile (each batch size would compile anew, minutes each): an upper bound,
    as compiled steps need less (14 % less at crop 1280 on an H200, benchmarks/README.md).
    Each batch size gets a fresh model and optimiser and `steps` steps; the peak is what the
    allocator reserved (GPU: `max_memory_reserved`, what a card must hold; CPU: peak resident-set
    growth). A straight line through the points (memory grows linearly with the batch) gives
    the largest batch per card size, keeping CUDA_CONTEXT_GIB for the CUDA context.
    """
    rows: list[dict[str, Any]] = []
    for batch in batches:
        c = cfg.with_overrides([f"train.batch_size={batch}", "train.compile=false"])
        release(device)
        runner = None
        try:
            with PeakMemory(device) as memory:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                runner = TrainingRunner(c, device, tf32_enabled=c.train.tf32)
                for _ in range(steps):
                    runner.step()
            peak_mb = memory.result.get("reserved_mb", memory.result["delta_mb"])
            rows.append({"batch": batch, "peak_gib": round(peak_mb / 1024, 2)})
        except (torch.cuda.OutOfMemoryError, BenchmarkError) as exc:
            rows.append({"batch": batch, "error": f"{type(exc).__name__}: {exc}"[:200]})
        finally:
            runner = None
            release(device)
    result: dict[str, Any] = {"crop": cfg.data.crop_size, "steps": steps, "rows": rows}
    points = [(r["batch"], r["peak_gib"]) for r in rows if "peak_gib" in r]
    if len({b for b, _ in points}) >= 2:
        import numpy as np

        slope, intercept = np.polyfit(*zip(*points), deg=1)
        result["per_sample_gib"] = round(float(slope), 3)
        result["fixed_gib"] = round(float(intercept), 2)
        if slope > 0:
            result["max_batch"] = {
                f"{gb}GB": max(0, int((gb * 1e9 / 1024**3 - CUDA_CONTEXT_GIB - intercept) // slope))
                for gb in CARDS_GB
            }
    return result
