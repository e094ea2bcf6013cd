"""Step timing that means the same on a CPU and a GPU, and the statistics reported from it.

On a GPU each step is bracketed by CUDA events, so the time is the device's, not the moment the
host finished queueing work; the events are read (one synchronisation) after the loop. On a CPU
work is synchronous and `perf_counter` is exact.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch


class StepTimer:
    """Collects the duration of each `with timer.step():` block."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._seconds: list[float] = []

    @contextmanager
    def step(self) -> Iterator[None]:
        if self.device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._events.append((start, end))
        else:
            start_s = time.perf_counter()
            yield
            self._seconds.append(time.perf_counter() - start_s)

    def seconds(self) -> list[float]:
        """Every step's duration in seconds (synchronises the GPU once)."""
        if self._events:
            torch.cuda.synchronize(self.device)
            self._seconds.extend(s.elapsed_time(e) / 1000 for s, e in self._events)
            self._events.clear()
        return list(self._seconds)


def summarise(seconds: list[float]) -> dict[str, Any]:
    """Median and 10th / 90th percentiles (robust to the odd slow step), mean, min, max."""
    if not seconds:
        raise ValueError("no timed steps: use --steps >= 1")
    values = np.asarray(seconds, dtype=np.float64)
    return {
        "n": int(values.size),
        "median_s": float(np.median(values)),
        "p10_s": float(np.percentile(values, 10)),
        "p90_s": float(np.percentile(values, 90)),
        "mean_s": float(values.mean()),
        "min_s": float(values.min()),
        "max_s": float(values.max()),
    }
