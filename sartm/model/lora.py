"""LoRA on the query and value projections of Hiera's attention (paper Eq. 6-7), through peft.

Hiera computes q, k and v with ONE fused `qkv` Linear (dim -> 3 * dim_out). To adapt q and v
and never k, `QKVProjection` replaces it by three sub-Linears `q`, `k`, `v` holding the slices of
the fused weight; peft then targets `q` and `v` with standard LoRA layers (its parameter layout,
initialisation (B = 0) and adapter file format). The forward still runs ONE fused matmul for the
frozen base (the concatenated weights) and adds the low-rank updates into the q and v columns
only, so with B = 0 it reproduces the original encoder exactly.

Per-modality adapters ("rgb", "thermal", the paper) share one encoder pass: the batch is the RGB
images followed by the thermal ones, and every layer sends the first half through adapter "rgb"
and the second through "thermal" (Hiera's window partition keeps the batch order). peft's own
mixed-batch forward is inference-only, so the split lives here, reading peft's per-adapter
modules. `shared` (the authors' code) uses one adapter for both halves.

Merging for inference keeps the weights unchanged and caches, per adapter, the fused weight with
the LoRA update folded into its q and v rows: a per-modality model then runs one batched matmul
over both halves with two merged copies, as fast as the frozen encoder. The cache is keyed on the
versions of the tensors it was computed from, so an optimiser step or a state-dict load
recomputes it, and saved state dicts always mean "base weights + adapters".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import (
    LoraConfig,
    get_peft_model_state_dict,
    inject_adapter_in_model,
    set_peft_model_state_dict,
)
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

# Matches the q and v sub-layers of every Hiera block, and nothing else.
TARGET_MODULES = r".*\.attn\.qkv\.(q|v)"
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."  # what PeftModel.save_pretrained puts before every key


class AdapterError(ValueError):
    """An adapter folder that does not fit this encoder; the message names the path."""


@dataclass
class AdapterRouting:
    """Which adapter each equal part of the batch goes through; shared by all QKV layers."""

    groups: tuple[str, ...] = ()
    merged: bool = False


class QKVProjection(nn.Module):
    """Hiera's fused qkv projection, split into `q`, `k`, `v` so that LoRA can adapt q and v only."""

    def __init__(self, *, dim_in: int, dim_out: int, routing: AdapterRouting) -> None:
        super().__init__()
        self.dim_in, self.dim_out = dim_in, dim_out
        self.q = nn.Linear(dim_in, dim_out)
        self.k = nn.Linear(dim_in, dim_out)
        self.v = nn.Linear(dim_in, dim_out)
        self.routing = routing
        self._merged: dict[str, tuple[tuple, Tensor, Tensor]] = {}

    @classmethod
    def from_fused(cls, fused: nn.Linear, *, routing: AdapterRouting) -> QKVProjection:
        dim_out = fused.out_features // 3
        out = cls(dim_in=fused.in_features, dim_out=dim_out, routing=routing)
        out.load_fused(fused.weight.detach(), fused.bias.detach())
        return out.to(fused.weight.device, fused.weight.dtype)

    # --- the frozen base, in the official (fused) layout ---------------------------------
    def base_linear(self, name: str) -> nn.Linear:
        layer = getattr(self, name)
        return layer.get_base_layer() if isinstance(layer, LoraLayer) else layer

    def fused_weight(self) -> tuple[Tensor, Tensor]:
        """(3*dim_out, dim_in) weight and (3*dim_out,) bias, rows q then k then v like Hiera's."""
        parts = [self.base_linear(n) for n in ("q", "k", "v")]
        return torch.cat([p.weight for p in parts]), torch.cat([p.bias for p in parts])

    @torch.no_grad()
    def load_fused(self, weight: Tensor, bias: Tensor) -> None:
        d = self.dim_out
        for i, name in enumerate(("q", "k", "v")):
            base = self.base_linear(name)
            base.weight.copy_(weight[i * d : (i + 1) * d])
            base.bias.copy_(bias[i * d : (i + 1) * d])

    # --- LoRA -----------------------------------------------------------------------------
    def _delta(self, name: str, adapter: str, x: Tensor) -> Tensor:
        layer = getattr(self, name)
        a, b = layer.lora_A[adapter], layer.lora_B[adapter]
        return b(a(layer.lora_dropout[adapter](x))) * layer.scaling[adapter]

    def _merged_weight(self, adapter: str) -> tuple[Tensor, Tensor]:
        q, v = self.q, self.v
        # Tensor versions move on every in-place update (optimiser step, load_state_dict).
        key = tuple((t.data_ptr(), t._version) for t in self._source_tensors(adapter))
        cached = self._merged.get(adapter)
        if cached is None or cached[0] != key:
            with torch.no_grad():
                weight, bias = self.fused_weight()
                d = self.dim_out
                weight = weight.clone()
                weight[:d] += q.get_delta_weight(adapter).to(weight.dtype)
                weight[2 * d :] += v.get_delta_weight(adapter).to(weight.dtype)
            cached = (key, weight, bias.clone())
            self._merged[adapter] = cached
        return cached[1], cached[2]

    def _source_tensors(self, adapter: str) -> list[Tensor]:
        out = []
        for name in ("q", "k", "v"):
            base = self.base_linear(name)
            out += [base.weight, base.bias]
        for layer in (self.q, self.v):
            out += [layer.lora_A[adapter].weight, layer.lora_B[adapter].weight]
        return out

    def clear_merged(self) -> None:
        self._merged.clear()

    def forward(self, x: Tensor) -> Tensor:
        groups = self.routing.groups
        adapted = isinstance(self.q, LoraLayer) and groups
        if not adapted:
            return F.linear(x, *self.fused_weight())
        n = x.shape[0] // len(groups)
        if n * len(groups) != x.shape[0]:
            raise ValueError(f"batch of {x.shape[0]} cannot be split into adapters {groups}")
        if self.routing.merged and not self.training:
            if len(groups) == 1:
                return F.linear(x, *self._merged_weight(groups[0]))
            # One batched matmul over the parts, each with its own merged weight.
            ws, bs = zip(*(self._merged_weight(g) for g in groups))
            xs = x.reshape(len(groups), -1, x.shape[-1])
            out = torch.baddbmm(torch.stack(bs)[:, None], xs, torch.stack(ws).transpose(1, 2))
            return out.reshape(*x.shape[:-1], 3 * self.dim_out)
        out = F.linear(x, *self.fused_weight())  # (N, ..., 3*dim_out), rows q | k | v
        d = self.dim_out
        for i, adapter in enumerate(groups):
            part = slice(i * n, (i + 1) * n)
            xs = x[part]
            out[part, ..., :d] += self._delta("q", adapter, xs)
            out[part, ..., 2 * d :] += self._delta("v", adapter, xs)
        return out


def split_qkv(image_encoder: nn.Module, routing: AdapterRouting) -> list[str]:
    """Replace every Hiera block's `attn.qkv` by a `QKVProjection`; returns the module names."""
    names = []
    for i, block in enumerate(image_encoder.trunk.blocks):
        block.attn.qkv = QKVProjection.from_fused(block.attn.qkv, routing=routing)
        names.append(f"trunk.blocks.{i}.attn.qkv")
    return names


def lora_config(*, rank: int, alpha: float, dropout: float, base: str) -> LoraConfig:
    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=TARGET_MODULES,
        bias="none",
        init_lora_weights=True,  # A Kaiming-uniform, B zero: training starts at the frozen model
        base_model_name_or_path=base,
    )


def add_adapters(module: nn.Module, config: LoraConfig, names: tuple[str, ...]) -> None:
    """Inject one peft LoRA adapter per name into the q/v sub-layers, all active and trainable."""
    for name in names:
        with warnings.catch_warnings():
            # peft warns that a second adapter makes a multi-adapter model: that is the point.
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            inject_adapter_in_model(config, module, adapter_name=name)
    for layer in module.modules():
        if isinstance(layer, LoraLayer):
            layer.set_adapter(list(names))
    for pname, param in module.named_parameters():
        param.requires_grad_(".lora_" in pname)


def _adapter_state(module: nn.Module, name: str) -> dict[str, Tensor]:
    # save_embedding_layers=False: "auto" would look the base model up on the Hugging Face Hub.
    return get_peft_model_state_dict(module, adapter_name=name, save_embedding_layers=False)


def save_adapters(module: nn.Module, directory: Path, names: tuple[str, ...]) -> list[Path]:
    """One peft-format folder per adapter: `<dir>/<name>/adapter_config.json` +
    `adapter_model.safetensors` (keys as `PeftModel.save_pretrained` writes them)."""
    written = []
    for name in names:
        folder = Path(directory) / name
        folder.mkdir(parents=True, exist_ok=True)
        module.peft_config[name].save_pretrained(str(folder))
        weights = _adapter_state(module, name)
        weights = {PEFT_PREFIX + k: v.detach().contiguous().cpu() for k, v in weights.items()}
        save_file(weights, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
        written.append(folder)
    return written


def load_adapters(module: nn.Module, directory: Path, names: tuple[str, ...]) -> None:
    """Load adapters saved by `save_adapters`, refusing any that do not fit (rank, targets, keys)."""
    directory = Path(directory)
    present = (
        sorted(p.name for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else []
    )
    for name in names:
        folder = directory / name
        if not (folder / CONFIG_NAME).is_file() or not (folder / WEIGHTS_NAME).is_file():
            raise AdapterError(
                f"{folder}: no adapter {name!r} ({CONFIG_NAME} + {WEIGHTS_NAME}); this encoder "
                f"needs {', '.join(names)}; the folder has: {', '.join(present) or 'nothing'}"
            )
        saved = LoraConfig.from_pretrained(str(folder))
        mine = module.peft_config[name]
        for key in ("r", "lora_alpha", "target_modules"):
            if getattr(saved, key) != getattr(mine, key):
                raise AdapterError(
                    f"{folder / CONFIG_NAME}: {key} is {getattr(saved, key)!r}, "
                    f"this encoder has {getattr(mine, key)!r}"
                )
        weights = load_file(str(folder / WEIGHTS_NAME))
        weights = {k.removeprefix(PEFT_PREFIX): v for k, v in weights.items()}
        shapes = {k: v.shape for k, v in _adapter_state(module, name).items()}
        if set(weights) != set(shapes):
            extra, lacking = sorted(set(weights) - set(shapes)), sorted(set(shapes) - set(weights))
            raise AdapterError(
                f"{folder / WEIGHTS_NAME}: adapter keys do not fit this encoder "
                f"(unexpected: {extra[:3]}, missing: {lacking[:3]})"
            )
        for k, v in weights.items():
            if v.shape != shapes[k]:
                raise AdapterError(
                    f"{folder / WEIGHTS_NAME}: {k} has shape {tuple(v.shape)}, "
                    f"this encoder needs {tuple(shapes[k])}"
                )
        set_peft_model_state_dict(module, weights, adapter_name=name)
