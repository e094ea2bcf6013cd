"""LoRA on the query and value projections of Hiera's attention (paper Eq. 6-7), in peft's layout.

Hiera computes q, k and v with ONE fused `qkv` Linear (dim -> 3 * dim_out). To adapt q and v
and never k, `QKVProjection` replaces it by three sub-Linears `q`, `k`, `v` holding the slices of
the fused weight; `q` and `v` then become `LoRALinear`s. The forward still runs ONE fused matmul
for the frozen base (the concatenated weights) and adds the low-rank updates of q and v as
x A^T B^T with A = [A_q; A_v] and B block-diagonal into the q and v rows (zeros for k), batched
over the parts of the batch; so k is never touched and with B = 0 the original encoder is
reproduced exactly. (benchmarks/lora_variants.py: 15-30 % faster to train than three separate
q/k/v matmuls or in-place column updates.)

Why not peft itself: importing peft loads transformers, about 5 s per process, over the start-up
budget of a `sartm train` / `sartm evaluate` process (3 s beyond torch; benchmarks/README.md),
and this module already did the forward itself (peft's mixed-batch forward is inference-only).
What peft gave is kept exactly: parameter names (`base_layer`, `lora_A.<adapter>`,
`lora_B.<adapter>`), initialisation (A Kaiming-uniform, B zero, in peft's order of random draws),
scaling alpha / r, and the adapter folder format (`adapter_config.json` +
`adapter_model.safetensors`). tests/model/test_encoder.py checks all of them against peft.

Per-modality adapters ("rgb", "thermal", the paper) share one encoder pass: the batch is the RGB
images followed by the thermal ones, and every layer sends the first half through adapter "rgb"
and the second through "thermal" (Hiera's window partition keeps the batch order). `shared`
(the authors' code) uses one adapter for both halves.

Merging for inference keeps the weights unchanged and caches, per adapter, the fused weight with
the LoRA update folded into its q and v rows: a per-modality model then runs one batched matmul
over both halves with two merged copies (one weight per modality), as fast as the frozen encoder.
Folding both adapters into ONE weight would be wrong: each half needs its own update. The cache
is keyed on the versions of the tensors it was computed from, so an optimiser step or a
state-dict load recomputes it, and saved state dicts always mean "base weights + adapters".
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
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


@dataclass(frozen=True)
class LoraSettings:
    """One adapter's hyper-parameters, saved as peft's `adapter_config.json`."""

    rank: int
    alpha: float
    dropout: float
    base: str  # the backbone the adapter was trained on

    def peft_config(self) -> dict:
        """The keys peft's `LoraConfig.from_pretrained` reads (the others take its defaults)."""
        return {
            "peft_type": "LORA",
            "task_type": None,
            "r": self.rank,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "target_modules": TARGET_MODULES,
            "bias": "none",
            "init_lora_weights": True,
            "fan_in_fan_out": False,
            "use_dora": False,
            "use_rslora": False,
            "base_model_name_or_path": self.base,
        }


class LoRALinear(nn.Module):
    """A frozen Linear plus, per adapter, a rank-r update scaling * B A (peft's LoRA Linear).

    It holds the parameters only: `QKVProjection` computes the forward for q and v together.
    """

    def __init__(self, base_layer: nn.Linear) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.lora_dropout = nn.ModuleDict()
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.scaling: dict[str, float] = {}

    def add_adapter(self, name: str, settings: LoraSettings) -> None:
        """A new adapter, initialised as peft does: A Kaiming-uniform, B zero (so training starts
        at the frozen model), with peft's random draws (both Linears' own init, then A's)."""
        base, r = self.base_layer, settings.rank
        self.lora_dropout[name] = (
            nn.Dropout(settings.dropout) if settings.dropout else nn.Identity()
        )
        a = nn.Linear(base.in_features, r, bias=False)  # drawn on the CPU, as in peft
        b = nn.Linear(r, base.out_features, bias=False)
        nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))
        nn.init.zeros_(b.weight)
        self.lora_A[name] = a.to(base.weight.device, base.weight.dtype)
        self.lora_B[name] = b.to(base.weight.device, base.weight.dtype)
        self.scaling[name] = settings.alpha / r

    def delta_weight(self, name: str) -> Tensor:
        """The adapter's update of the base weight: scaling * B A, (out, in)."""
        return self.lora_B[name].weight @ self.lora_A[name].weight * self.scaling[name]


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
        w, b = fused.weight.detach(), fused.bias.detach()
        # Built on the meta device (no wasted random init), then given the fused weight's slices
        # as parameters (not `to_empty`, whose first call imports torch's symbolic shapes, ~0.3 s).
        out = cls(
            dim_in=fused.in_features,
            dim_out=fused.out_features // 3,
            routing=routing,
            device="meta",
        )
        d = out.dim_out
        for i, name in enumerate(("q", "k", "v")):
            layer = getattr(out, name)
            layer.weight = nn.Parameter(w[i * d : (i + 1) * d].clone())
            layer.bias = nn.Parameter(b[i * d : (i + 1) * d].clone())
        return out

    # --- the frozen base, in the official (fused) layout ---------------------------------
    def base_linear(self, name: str) -> nn.Linear:
        layer = getattr(self, name)
        return layer.base_layer if isinstance(layer, LoRALinear) else layer

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
        # q and v share the adapter's settings, hence its dropout rate (as in peft, each has one).
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
                    weights[i, :d] += self.q.delta_weight(adapter).to(weight.dtype)
                    weights[i, 2 * d :] += self.v.delta_weight(adapter).to(weight.dtype)
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
        if not groups or not isinstance(self.q, LoRALinear):
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


def add_adapters(module: nn.Module, settings: LoraSettings, names: tuple[str, ...]) -> None:
    """One LoRA adapter per name on the q/v sub-layers (module order, then name order, as peft
    injects them); only the adapters stay trainable."""
    targets = [
        (parent, child)
        for parent in module.modules()
        if isinstance(parent, QKVProjection)
        for child in ("q", "v")
    ]
    for parent, child in targets:
        setattr(parent, child, LoRALinear(getattr(parent, child)))
    for name in names:
        for parent, child in targets:
            getattr(parent, child).add_adapter(name, settings)
    for pname, param in module.named_parameters():
        param.requires_grad_(".lora_" in pname)


def _adapter_state(module: nn.Module, name: str) -> dict[str, Tensor]:
    """One adapter's weights under peft's keys (`...q.lora_A.weight`: the adapter name dropped)."""
    pattern = re.compile(rf"\.(lora_[AB])\.{re.escape(name)}\.weight$")
    return {
        pattern.sub(r".\1.weight", key): value
        for key, value in module.state_dict().items()
        if pattern.search(key)
    }


def save_adapters(
    module: nn.Module, directory: Path, names: tuple[str, ...], settings: LoraSettings
) -> list[Path]:
    """One peft-format folder per adapter: `<dir>/<name>/adapter_config.json` +
    `adapter_model.safetensors` (keys as `PeftModel.save_pretrained` writes them)."""
    written = []
    for name in names:
        folder = Path(directory) / name
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(settings.peft_config(), indent=2, sort_keys=True)
        (folder / CONFIG_NAME).write_text(text + "\n")
        weights = _adapter_state(module, name)
        weights = {PEFT_PREFIX + k: v.detach().contiguous().cpu() for k, v in weights.items()}
        save_file(weights, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
        written.append(folder)
    return written


def load_adapters(
    module: nn.Module, directory: Path, names: tuple[str, ...], settings: LoraSettings
) -> None:
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
        try:
            saved = json.loads((folder / CONFIG_NAME).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise AdapterError(
                f"{folder / CONFIG_NAME}: not a readable adapter config ({err})"
            ) from None
        mine = settings.peft_config()
        for key in ("peft_type", "r", "lora_alpha", "target_modules"):
            if not isinstance(saved, dict) or saved.get(key) != mine[key]:
                found = saved.get(key) if isinstance(saved, dict) else saved
                raise AdapterError(
                    f"{folder / CONFIG_NAME}: {key} is {found!r}, this encoder has {mine[key]!r}"
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
        own = module.state_dict()
        with torch.no_grad():
            for k, v in weights.items():
                layer, kind, _ = k.rsplit(".", 2)
                own[f"{layer}.{kind}.{name}.weight"].copy_(v)
