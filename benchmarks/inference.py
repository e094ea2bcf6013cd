"""Evaluation throughput at the evaluation size, as `sartm evaluate` runs it.

The model is prepared like a loaded checkpoint (eval mode, LoRA merged: `modelio.load_trained`)
and each batch goes through the engine's own `predict_probs` (single scale, or `eval.scales`
with horizontal flips when `eval.flip`, softmax-averaged) and the argmax, at the run's inference
precision. Inputs are random tensors of the padded evaluation size (`data.eval_size` square),
batch `train.batch_size` (what the engine's evaluation loader uses).
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.device import PeakMemory
from benchmarks.timing import StepTimer, summarise
from benchmarks.train_step import build_benchmark_model, random_inputs, release
from sartm.config import Config
from sartm.engine import runtime
from sartm.engine.evaluate import predict_probs


def measure_eval(
    cfg: Config, device: torch.device, *, steps: int, warmup: int, multi_scale: bool
) -> dict[str, Any]:
    """Images/s of evaluation batches, single scale or multi-scale + flip."""
    try:
        return _time_eval(cfg, device, steps=steps, warmup=warmup, multi_scale=multi_scale)
    finally:
        release(device)


def _time_eval(
    cfg: Config, device: torch.device, *, steps: int, warmup: int, multi_scale: bool
) -> dict[str, Any]:
    batch, size = cfg.train.batch_size, cfg.data.eval_size
    scales = tuple(cfg.eval.scales) if multi_scale else (1.0,)
    flip = multi_scale and cfg.eval.flip  # as the engine's evaluation decides
    model = build_benchmark_model(cfg, device).eval()
    model.merge_lora()
    dtype = runtime.amp_dtype(cfg.train.precision, device)
    rgb, thermal, _ = random_inputs(cfg, device, size=size, batch=batch)

    def step() -> None:
        predict_probs(model, rgb, thermal, dtype=dtype, scales=scales, flip=flip).argmax(1)

    warm_timer, timer = StepTimer(device), StepTimer(device)
    with torch.no_grad(), PeakMemory(device) as memory:
        for _ in range(warmup):
            with warm_timer.step():
                step()
        for _ in range(steps):
            with timer.step():
                step()
    stats = summarise(timer.seconds())
    return {
        "mode": (f"{len(scales)} scales" + (" + flip" if flip else ""))
        if multi_scale
        else "single scale",
        "scales": list(scales),
        "flip": flip,
        "batch": batch,
        "eval_size": size,
        "precision": str(dtype).removeprefix("torch.") if dtype else "fp32",
        "warmup_s": warm_timer.seconds(),
        "step": stats,
        "images_per_s": batch / stats["median_s"],
        "memory": memory.result,
        "memory_mb": memory.reported_mb,
    }
