"""What the numbers were measured on: machine facts, the device's peak throughput, memory meters.

MFU (model FLOPs utilisation) is the achieved model FLOP/s divided by the device's peak dense
bf16 tensor-core FLOP/s. The peak comes from the vendor's specification (without sparsity) in
`PEAK_BF16_TFLOPS`, keyed by the CUDA device name, or from `--peak-tflops`. Specifications are
optimistic: on an H200 a large bf16 matmul reaches about 790 of the 989 TFLOP/s specified, so the
benchmark also measures that matmul ceiling on a GPU (`matmul_tflops`) and reports it beside the
MFU. CPUs have no entry: their MFU is n/a.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import platform
import resource
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# (substring of torch.cuda.get_device_name(), dense bf16 TFLOP/s). First match wins, so more
# specific names come before the names they contain ("H100 PCIe" before "H100", "L40S" before "L4").
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("B200", 2250.0),
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM5 (HBM3)
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)
PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")
MIB = 1024**2


@dataclass(frozen=True)
class Peak:
    """The peak the MFU is computed against, and where the value came from."""

    tflops: float | None
    source: str


def peak_tflops(device_name: str, override: float | None = None) -> Peak:
    """Peak dense bf16 TFLOP/s of a device (None for CPUs and unlisted GPUs)."""
    if override is not None:
        if override <= 0:
            raise ValueError(f"--peak-tflops must be positive, got {override}")
        return Peak(float(override), "--peak-tflops")
    if device_name.startswith("cpu"):
        return Peak(None, "n/a on a CPU")
    for key, value in PEAK_BF16_TFLOPS:
        if key in device_name:
            return Peak(value, f"specification of {key} (dense bf16)")
    return Peak(None, f"{device_name!r} is not in the peak table; pass --peak-tflops")


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def environment(device: torch.device) -> dict[str, Any]:
    """Host, device, library versions and git state: enough to compare two result files."""
    from sartm.engine.provenance import provenance

    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpus": cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device_type": device.type,
        **provenance(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            cuda_runtime=torch.version.cuda,
            cuda_capability=f"{props.major}.{props.minor}",
            device_memory_gb=round(props.total_memory / 1024**3, 1),
            device_count=torch.cuda.device_count(),
        )
    return info


def matmul_tflops(device: torch.device, *, size: int = 8192, reps: int = 20) -> float | None:
    """TFLOP/s of a large square bf16 matmul: the reachable ceiling on this GPU (None on a CPU)."""
    if device.type != "cuda":
        return None
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        a @ b
    end.record()
    torch.cuda.synchronize(device)
    seconds = start.elapsed_time(end) / 1000
    del a, b
    torch.cuda.empty_cache()
    return 2 * size**3 * reps / seconds / 1e12


def _return_freed_memory() -> None:
    """Hand memory freed by earlier work back to the OS (glibc keeps it otherwise), so that a
    block's resident-set growth is not hidden by reuse of pages an earlier measurement left."""
    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc:
        try:
            ctypes.CDLL(libc).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


def _status_kb(field: str) -> int | None:
    try:
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def memory_now(device: torch.device) -> int:
    """Bytes held now: CUDA tensors allocated, or the CPU process's resident set."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.memory_allocated(device)
    _return_freed_memory()
    return (_status_kb("VmRSS") or 0) * 1024


class PeakMemory:
    """Peak memory of the enclosed block, in MiB.

    GPU: the caching allocator's peak (`torch.cuda.max_memory_allocated`, reset on entry); the
    figure to report is `peak_mb`. CPU: the peak resident set (VmHWM, reset on entry through
    /proc/self/clear_refs) minus the resident set on entry; the figure to report is `delta_mb`
    (the process also holds the interpreter and libraries). Where the reset is impossible the
    lifetime peak is used and `exact` is False.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.result: dict[str, Any] = {}

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            self._exact = True
        else:
            _return_freed_memory()
            try:
                PROC_CLEAR_REFS.write_text("5")  # 5: reset the peak RSS (Linux >= 4.0)
                self._exact = True
            except OSError:
                self._exact = False
            self._start = (_status_kb("VmRSS") or 0) * 1024
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            extra = {"reserved_mb": round(torch.cuda.max_memory_reserved(self.device) / MIB, 1)}
            kind, report = "cuda max_memory_allocated", "peak_mb"
        else:
            hwm_kb = _status_kb("VmHWM") if self._exact else None
            if hwm_kb is None:  # lifetime peak (ru_maxrss is in kB on Linux)
                hwm_kb, self._exact = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, False
            peak, extra = hwm_kb * 1024, {}
            kind, report = "cpu peak resident set", "delta_mb"
        self.result = {
            "kind": kind,
            "report": report,
            "peak_mb": round(peak / MIB, 1),
            "start_mb": round(self._start / MIB, 1),
            "delta_mb": round(max(peak - self._start, 0) / MIB, 1),
            "exact": self._exact,
            **extra,
        }

    @property
    def reported_mb(self) -> float | None:
        """The one figure to show: the GPU peak, or the CPU peak's growth over the start."""
        return self.result.get(self.result.get("report", ""))
