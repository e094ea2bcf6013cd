"""LR schedule (poly + linear warm-up) and AdamW parameter groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sartm.engine.optim import build_optimizer, lr_factor, parameter_groups


def test_lr_schedule_shape():
    kw = {"total_steps": 100, "warmup_steps": 10, "warmup_ratio": 0.1, "power": 0.9}
    factors = [lr_factor(s, **kw) for s in range(101)]
    assert factors[0] == pytest.approx(0.1)  # warm-up starts at warmup_ratio
    assert all(a < b for a, b in zip(factors[:10], factors[1:11]))  # rises during warm-up
    assert factors[10] == pytest.approx((1 - 10 / 100) ** 0.9)  # then the poly curve itself
    assert all(a > b for a, b in zip(factors[10:100], factors[11:101]))  # decays monotonically
    assert factors[100] == 0.0
    assert factors[50] == pytest.approx(0.5**0.9)


def test_no_warmup_is_plain_poly():
    kw = {"total_steps": 8, "warmup_steps": 0, "warmup_ratio": 0.1, "power": 1.0}
    assert [lr_factor(s, **kw) for s in (0, 2, 8)] == pytest.approx([1.0, 0.75, 0.0])


def test_no_weight_decay_on_1d_parameters():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)  # frozen parameters are not optimised at all
    decay, no_decay = parameter_groups(model, 0.01)
    assert [p.shape for p in decay["params"]] == [torch.Size([2, 4])]
    assert all(p.ndim == 1 for p in no_decay["params"]) and len(no_decay["params"]) == 4
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    opt = build_optimizer(model, lr=1e-4, weight_decay=0.01)
    assert isinstance(opt, torch.optim.AdamW)
    assert sum(len(g["params"]) for g in opt.param_groups) == 5
    with pytest.raises(ValueError, match="no trainable"):
        build_optimizer(nn.Linear(2, 2).requires_grad_(False), lr=1e-4, weight_decay=0.0)
