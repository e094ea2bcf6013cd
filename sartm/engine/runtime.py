"""Where the work runs: device choice, mixed precision, and torch.distributed (torchrun) setup.

The same `sartm train` command runs single-process or under `torchrun --nproc_per_node N`: the
environment variables torchrun sets (WORLD_SIZE, RANK, LOCAL_RANK) switch on DDP, with NCCL on
GPUs and gloo on CPUs.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """`auto`: the GPU of this rank when CUDA is available, else the CPU."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("train.device is 'cuda' but no CUDA device is available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(preference: str) -> tuple[Dist, torch.device]:
    """Join the process group when started by torchrun; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), resolve_device(preference)
    info = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(preference, info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def configure_backends(device: torch.device, *, tf32: bool) -> None:
    """GPU math settings: TF32 for the matmuls and convolutions left in fp32 (the LoRA-frozen
    encoder outside autocast, the losses), and cuDNN autotuning, which pays off because crops
    have a fixed size. No effect on the CPU."""
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """`auto`: bf16 on a GPU that supports it, fp32 (no autocast) on the CPU."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def compile_enabled(setting: str | bool, device: torch.device) -> bool:
    """`train.compile`: `auto` compiles on a GPU only. Measured (benchmarks/README.md): 1.22x
    faster training steps on an H200; on a CPU the compiled step was 6x slower and compiling
    took minutes."""
    return setting is True or (setting == "auto" and device.type == "cuda")
