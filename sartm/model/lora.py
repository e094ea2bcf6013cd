"""LoRA on the query and value projections of Hiera's attention (paper Eq. 6-7), through peft.

Hiera computes q, k and v with ONE fused `qkv` Linear (dim -> 3 * dim_out). To adapt q and v
and never k, `QKVProjection` replaces it by three sub-Linears `q`, `k`, `v` holding the slices of
the fused weight; peft then targets `q` and `v` with standard LoRA layers (its parameter layout,
initialisation (B = 0) and adapter file format). The forward still runs ONE fused matmul for the
frozen base (the concatenated weights) and adds the low-rank updates of q and v as x A^T B^T with
A = [A_q; A_v] and B block-diagonal into the q and v rows (zeros for k), batched over the parts
of the batch; so k is never touched and with B = 0 the original encoder is reproduced exactly.
(benchmarks/lora_variants.py: 15-30 % faster to train than three separate q/k/v matmuls or
in-place column updates.)

Per-modality adapters ("rgb", "thermal", the paper) share one encoder pass: the batch is the RGB
images followed by the thermal ones, and every layer sends the first half through adapter "rgb"
and the second through "thermal" (Hiera's window partition keeps the batch order). peft's own
mixed-batch forward is inference-only, so the split lives here, reading peft's per-adapter
modules. `shared` (the authors' code) uses one adapter for both halves.

Merging for inference keeps the weights unchanged and caches, per adapter, the fused weight with
the LoRA update folded into its q and v rows: a per-modality model then runs one batched matmul
over both halves with two merged copies (one weight per modality), as fast as the frozen encoder.
Folding both adapters into ONE weight would be wrong: each half needs its own update. The cache is keyed on the
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

from sartm.errors import SartmError

# Matches the q and v sub-layers of every Hiera block, and nothing else.
TARGET_MODULES = r".*\.attn\.qkv\.(q|v)"
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."  # what PeftModel.save_pretrained puts before every key


class AdapterError(SartmError, ValueError):
    """An adapter folder that does not fit this encoder; the message names the path."""


@dataclass
class AdapterRouting:
    """Which adapter each equal part of the batch goes through; shared by all QKV layers."""

    groups: tuple[str, ...] = ()
    merged: bool = False


class QKVProjection(nn.Module):
    """Hiera's fused qkv projection, split into `q`, `k`, `v` so that LoRA can adapt q and v only."""

    def __init__(
        self, *, dim_in: int, dim_out: int, routing: AdapterRouting, device=None, dtype=None
    ) -> None:
        super().__init__()
        self.dim_in, self.dim_out = dim_in, dim_out
        self.q = nn.Linear(dim_in, dim_out, device=device, dtype=dtype)
        self.k = nn.Linear(dim_in, dim_out, device=device, dtype=dtype)
        self.v = nn.Linear(dim_in, dim_out, device=device, dtype=dtype)
        self.routing = routing
        self._merged: dict[tuple[str, ...], tuple[tuple, Tensor, Tensor]] = {}

    @classmethod
    def from_fused(cls, fused: nn.Linear, *, routing: AdapterRouting) -> QKVProjection:
        w = fused.weight
        # Built empty (no wasted random init), then filled with the fused weight's slices.
        out = cls(
            dim_in=fused.in_features,
            dim_out=fused.out_features // 3,
            routing=routing,
            device="meta",
            dtype=w.dtype,
        ).to_empty(device=w.device)
        out.load_fused(w.detach(), fused.bias.detach())
        return out

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
    def _low_rank(self, adapter: str) -> tuple[Tensor, Tensor]:
        """A (2r, dim_in): q's rows then v's; B (3*dim_out, 2r), scaled, block-diagonal into the
        q and v rows with zeros for k: x A^T B^T is the q/v update and leaves k alone."""
        q, v = self.q, self.v
        a = torch.cat([q.lora_A[adapter].weight, v.lora_A[adapter].weight])
        bq = q.lora_B[adapter].weight * q.scaling[adapter]
        bv = v.lora_B[adapter].weight * v.scaling[adapter]
        b = torch.block_diag(bq, bv)  # (2*dim_out, 2r)
        zeros_k = b.new_zeros(self.dim_out, b.shape[1])
        return a, torch.cat([b[: self.dim_out], zeros_k, b[self.dim_out :]])

    def _dropout(self, adapter: str, x: Tensor) -> Tensor:
        # q and v share the adapter's config, hence its dropout rate; peft gives each its module.
        return self.q.lora_dropout[adapter](x)

    def _merged_weights(self, groups: tuple[str, ...]) -> tuple[Tensor, Tensor]:
        """(parts, 3*dim_out, dim_in) weights with each adapter folded into its q and v rows, and
        (parts, 3*dim_out) biases; cached until one of the tensors they come from changes."""
        sources = [t for g in groups for t in self._source_tensors(g)]
        # Tensor versions move on every in-place update (optimiser step, load_state_dict).
        key = tuple((t.data_ptr(), t._version) for t in sources)
        cached = self._merged.get(groups)
        if cached is None or cached[0] != key:
            with torch.no_grad():
                weight, bias = self.fused_weight()
                d = self.dim_out
                weights = weight.expand(len(groups), -1, -1).clone()
                for i, adapter in enumerate(groups):
                    weights[i, :d] += self.q.get_delta_weight(adapter).to(weight.dtype)
                    weights[i, 2 * d :] += self.v.get_delta_weight(adapter).to(weight.dtype)
                biases = bias.expand(len(groups), -1).clone()
            cached = (key, weights, biases)
            self._merged[groups] = cached
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
        if not groups or not isinstance(self.q, LoraLayer):
            return F.linear(x, *self.fused_weight())  # the frozen SAM2 projection
        parts = len(groups)
        if x.shape[0] % parts:
            raise ValueError(f"batch of {x.shape[0]} cannot be split into adapters {groups}")
        xs = x.reshape(parts, -1, x.shape[-1])  # (parts, M, dim_in): part i -> adapter i
        if self.routing.merged and not self.training:
            w, bias = self._merged_weights(groups)
            out = torch.baddbmm(bias[:, None], xs, w.transpose(1, 2))
            return out.view(*x.shape[:-1], 3 * self.dim_out)
        base = F.linear(x, *self.fused_weight())  # (N, ..., 3*dim_out), rows q | k | v
        a, b = (torch.stack(t) for t in zip(*(self._low_rank(g) for g in groups)))
        if any(not isinstance(self.q.lora_dropout[g], nn.Identity) for g in groups):
            xs = torch.stack([self._dropout(g, xs[i]) for i, g in enumerate(groups)])
        h = torch.bmm(xs, a.transpose(1, 2))  # (parts, M, 2r)
        out = torch.baddbmm(base.view(parts, -1, base.shape[-1]), h, b.transpose(1, 2))
        return out.view_as(base)


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
