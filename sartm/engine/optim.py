"""AdamW without weight decay on 1-D parameters, and the per-iteration poly LR with warm-up.

The schedule is a plain function of the global step (no scheduler object), so resuming needs
only the step number, and the same function is used for logging and tests.
"""

from __future__ import annotations

import torch
from torch import nn


def lr_factor(
    step: int, *, total_steps: int, warmup_steps: int, warmup_ratio: float, power: float
) -> float:
    """Multiplier of the base LR at iteration `step` (0-based).

    Poly decay `(1 - step/total)^power` over the whole run, times a linear warm-up factor that
    goes from `warmup_ratio` at step 0 to 1 at `warmup_steps` (mmsegmentation's convention: the
    warm-up scales the regular schedule rather than replacing it).
    """
    progress = min(step, total_steps) / max(total_steps, 1)
    factor = (1.0 - progress) ** power
    if warmup_steps > 0 and step < warmup_steps:
        factor *= warmup_ratio + (1.0 - warmup_ratio) * step / warmup_steps
    return factor


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split into decayed (matrices, kernels) and not decayed (1-D: biases,
    norms, embeddings stored as vectors)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: nn.Module, *, lr: float, weight_decay: float, fused: bool = False
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (`fused` only makes sense on CUDA)."""
    groups = [g for g in parameter_groups(model, weight_decay) if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, fused=fused or None)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
