"""Where a training step's time goes: torch.profiler over a few steps, summarised by kind of work.

On a GPU the rows are CUDA kernels (device time) and the summary says how busy the GPU was
(kernel time / wall time of the profiled steps: the rest is the GPU waiting for the host:
launches, synchronisations); on a CPU the rows are aten operators (self CPU time). Kernels and
operators are grouped by name into a few kinds (matmul, attention, convolution, normalisation,
optimiser, elementwise/other), which is what decides the next optimisation: matmul-bound work
gains from bf16, elementwise-bound work from fusion (torch.compile), idle time from fewer syncs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

# First match wins; names are lower-cased kernel names (cuBLAS/CUTLASS/nvjet, flash attention,
# cuDNN, ...) or aten operator names.
KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("attention", re.compile(r"flash|fmha|attention|sdpa|softmax_warp")),
    ("convolution", re.compile(r"conv|cudnn|implicit_gemm|wgrad|dgrad|fprop")),
    ("matmul", re.compile(r"gemm|nvjet|xmma|cublas|cutlass|\bmm\b|addmm|bmm|matmul|\blinear\b")),
    ("normalisation", re.compile(r"norm")),
    ("optimiser", re.compile(r"adam|foreach|multi_tensor")),
    ("copy/layout", re.compile(r"copy|cat|contiguous|transpose|permute|index|gather|scatter")),
)


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, pattern in KINDS:
        if pattern.search(low):
            return kind
    return "elementwise/other"


def _self_time_us(event: Any, device: bool) -> float:
    """Self time of a key_averages row, across torch versions' attribute names."""
    names = (
        ("self_device_time_total", "self_cuda_time_total") if device else ("self_cpu_time_total",)
    )
    for name in names:
        if hasattr(event, name):
            return float(getattr(event, name))
    return 0.0


def profile_steps(
    step: Callable[[], None], device: torch.device, *, steps: int = 3, top: int = 25
) -> dict[str, Any]:
    """Profile `steps` calls of `step()` (already warmed up); returns milliseconds per step by
    kind, the `top` rows by self time, and on a GPU the busy fraction."""
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize(device)
    wall_ms = (time.perf_counter() - started) * 1000 / steps
    rows = []
    for event in prof.key_averages():
        if cuda and getattr(event, "device_type", None) != DeviceType.CUDA:
            continue  # CPU-side operators; their kernels are rows of their own
        if not cuda and not event.key.startswith("aten::"):
            continue
        ms = _self_time_us(event, device=cuda) / 1000 / steps
        if ms > 0:
            rows.append(
                {
                    "name": event.key[:160],
                    "kind": kind_of(event.key),
                    "ms": ms,
                    "calls": event.count // steps,
                }
            )
    rows.sort(key=lambda r: r["ms"], reverse=True)
    total = sum(r["ms"] for r in rows)
    by_kind: dict[str, float] = {}
    for r in rows:
        by_kind[r["kind"]] = by_kind.get(r["kind"], 0.0) + r["ms"]
    return {
        "steps": steps,
        "rows_are": "CUDA kernels, device self time" if cuda else "aten operators, CPU self time",
        "wall_ms_per_step": wall_ms,
        "busy_ms_per_step": total,
        # Kernels of one stream do not overlap, so kernel time / wall time is how busy the GPU
        # was; the CPU's operator self times can overlap across intra-op threads: no fraction.
        "gpu_busy_fraction": total / wall_ms if cuda else None,
        "by_kind_ms": dict(sorted(by_kind.items(), key=lambda kv: kv[1], reverse=True)),
        "kernels_per_step": sum(r["calls"] for r in rows),
        "top": rows[:top],
    }


def format_profile(summary: dict[str, Any], top: int = 12) -> list[str]:
    """A few lines for the printed table."""
    busy = summary["gpu_busy_fraction"]
    lines = [
        f"  {summary['rows_are']}: {summary['busy_ms_per_step']:,.1f} ms per step of "
        f"{summary['wall_ms_per_step']:,.1f} ms wall"
        + (f" (GPU busy {100 * busy:.0f}%)" if busy is not None else "")
        + f", {summary['kernels_per_step']:,} "
        + ("kernel launches" if busy is not None else "operator calls")
        + " per step",
        "  by kind: "
        + ", ".join(
            f"{k} {v:,.1f} ms ({100 * v / max(summary['busy_ms_per_step'], 1e-9):.0f}%)"
            for k, v in summary["by_kind_ms"].items()
        ),
    ]
    for r in summary["top"][:top]:
        lines.append(f"    {r['ms']:9.2f} ms  x{r['calls']:<5} {r['kind']:<17} {r['name'][:90]}")
    return lines
