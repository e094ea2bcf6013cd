"""The RGB-T encoder: SAM2's frozen image encoder, LoRA on q and v, one pass for both modalities.

`RGBTEncoder` builds sam2's own `ImageEncoder` (Hiera trunk + FPN neck, scalp 1: the stride-32
level is dropped) for a size of `BACKBONES`, freezes all of it (trunk AND neck, as the authors
do), and adds LoRA to the query and value projections of every block (see `sartm.model.lora`).
The RGB and thermal batches are concatenated and encoded in ONE pass; with per-modality adapters
(the paper) the first half goes through adapter "rgb" and the second through "thermal".
The neck's sine position encodings (inputs of SAM2's video memory) are not computed.

Inputs are ImageNet-normalised images (the data pipeline does it) whose sides are multiples of
`size_multiple` (32 for every size).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from sartm.errors import SartmError
from sartm.model import lora
from sartm.model.backbones import (
    BACKBONES,
    Architecture,
    BackboneSpec,
    architecture,
    build_image_encoder,
    size_multiple,
    spec_of,
)
from sartm.model.sam2_weights import (
    ENCODER_PREFIX,
    CheckpointError,
    LoadReport,
    architecture_of_state,
    describe_state,
)

__all__ = ["BACKBONES", "BackboneSpec", "EncoderInputError", "RGBTEncoder", "SHARING"]

SHARING = {"per_modality": ("rgb", "thermal"), "shared": ("shared",)}
FUSED_QKV = (".attn.qkv.weight", ".attn.qkv.bias")


class EncoderInputError(SartmError, ValueError):
    """Inputs the encoder cannot take (shape, size multiple, RGB/thermal mismatch)."""


class NoPositionEncoding(nn.Module):
    """Stands in for the neck's sine position encoding: SAM2 feeds it to the video-memory
    attention, which SARTM does not build, so it is not computed (it would be a (2B, d, H/4, W/4)
    tensor per level and forward)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.new_empty(0)


class RGBTEncoder(nn.Module):
    """SAM2 image encoder shared by RGB and thermal, frozen, with q/v LoRA adapters."""

    def __init__(
        self,
        *,
        backbone: str,
        lora_rank: int = 16,
        lora_alpha: float = 16.0,
        lora_dropout: float = 0.0,
        lora_sharing: str = "per_modality",
    ) -> None:
        super().__init__()
        self.spec = spec_of(backbone)
        if lora_sharing not in SHARING:
            raise ValueError(f"lora_sharing {lora_sharing!r}: expected one of {', '.join(SHARING)}")
        if lora_rank < 1:
            raise ValueError(f"lora_rank must be >= 1, got {lora_rank}")
        self.backbone = backbone
        self.lora_sharing = lora_sharing
        self.adapter_names = SHARING[lora_sharing]
        self.image_encoder = build_image_encoder(backbone)
        self.image_encoder.neck.position_encoding = NoPositionEncoding()
        self.d_model: int = self.image_encoder.neck.d_model
        self.size_multiple = size_multiple(backbone)
        self.routing = lora.AdapterRouting()
        lora.split_qkv(self.image_encoder, self.routing)
        self.lora_settings = lora.LoraSettings(
            rank=lora_rank, alpha=lora_alpha, dropout=lora_dropout, base=backbone
        )
        lora.add_adapters(self.image_encoder, self.lora_settings, self.adapter_names)

    @property
    def architecture(self) -> Architecture:
        return architecture(self.backbone)

    # --- forward ----------------------------------------------------------------------------
    def forward(self, rgb: Tensor, thermal: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Three FPN levels per modality, high resolution first: strides 4, 8, 16, d_model each."""
        self._check(rgb, thermal)
        b = rgb.shape[0]
        x = torch.cat([rgb, thermal])  # (2B, 3, H, W): RGB first, thermal second
        groups = self.adapter_names if self.lora_sharing == "per_modality" else ("shared",)
        feats = self._encode(x, groups)
        return [f[:b] for f in feats], [f[b:] for f in feats]

    def encode(self, images: Tensor, *, adapter: str) -> list[Tensor]:
        """One modality alone through one adapter (the joint forward is the normal path)."""
        if adapter not in self.adapter_names:
            raise ValueError(f"no adapter {adapter!r}; this encoder has {self.adapter_names}")
        self._check(images, images)
        return self._encode(images, (adapter,))

    def _encode(self, x: Tensor, groups: tuple[str, ...]) -> list[Tensor]:
        self.routing.groups = groups
        try:
            return list(self.image_encoder(x)["backbone_fpn"])
        finally:
            self.routing.groups = ()

    def _check(self, rgb: Tensor, thermal: Tensor) -> None:
        if rgb.ndim != 4 or rgb.shape[1] != 3:
            raise EncoderInputError(f"expected (B, 3, H, W) images, got {tuple(rgb.shape)}")
        if rgb.shape != thermal.shape:
            raise EncoderInputError(
                f"RGB {tuple(rgb.shape)} and thermal {tuple(thermal.shape)} differ in shape"
            )
        h, w = rgb.shape[-2:]
        m = self.size_multiple
        if h % m or w % m:
            raise EncoderInputError(
                f"input {h}x{w}: {self.backbone} needs sides that are multiples of {m} "
                "(pad or crop the images)"
            )

    # --- LoRA ---------------------------------------------------------------------------------
    def lora_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if ".lora_" in n]

    def merge_lora(self) -> None:
        """Fold the adapters into cached q/v weights for inference (eval mode); weights unchanged."""
        self.routing.merged = True

    def unmerge_lora(self) -> None:
        self.routing.merged = False
        for module in self._qkv_layers():
            module.clear_merged()

    def save_adapters(self, directory: str | Path) -> list[Path]:
        """peft-format adapter folders, one per adapter name (`rgb`, `thermal` or `shared`)."""
        return lora.save_adapters(
            self.image_encoder, Path(directory), self.adapter_names, self.lora_settings
        )

    def load_adapters(self, directory: str | Path) -> None:
        lora.load_adapters(
            self.image_encoder, Path(directory), self.adapter_names, self.lora_settings
        )

    def _qkv_layers(self) -> list[lora.QKVProjection]:
        return [m for m in self.modules() if isinstance(m, lora.QKVProjection)]

    # --- frozen SAM2 weights --------------------------------------------------------------
    def base_state_dict(self) -> dict[str, Tensor]:
        """The frozen image-encoder weights in the official layout (fused qkv), no adapters."""
        out: dict[str, Tensor] = {}
        for name, tensor in self.image_encoder.state_dict().items():
            if ".lora_" in name or ".attn.qkv." in name:
                continue
            out[name] = tensor
        for name, module in self.image_encoder.named_modules():
            if isinstance(module, lora.QKVProjection):
                weight, bias = module.fused_weight()
                out[f"{name}.weight"], out[f"{name}.bias"] = weight.detach(), bias.detach()
        return out

    @torch.no_grad()
    def load_sam2_state(
        self, state: dict[str, Tensor], *, source: str = "state dict"
    ) -> LoadReport:
        """Load the `image_encoder.*` part of an official SAM2 checkpoint (keys without the prefix;
        prefixed keys are accepted too). A checkpoint of another size raises `CheckpointError`
        naming both sizes; the report's keys carry the `image_encoder.` prefix so that it merges
        with the decoder's."""
        state = {k.removeprefix(ENCODER_PREFIX): v for k, v in state.items()}
        found = architecture_of_state(state, source=source)
        if found != self.architecture:
            raise CheckpointError(
                f"{source}: the checkpoint holds a {describe_state(found)} image encoder "
                f"({found.describe()}), but this model is {self.backbone} "
                f"({self.architecture.describe()}); pick the matching checkpoint or backbone"
            )
        own = self.base_state_dict()
        report = LoadReport(source=source)
        qkv_modules = dict(self.image_encoder.named_modules())
        targets = self.image_encoder.state_dict()  # detached views sharing the parameters' storage
        for key, value in state.items():
            if key not in own:
                report.unexpected.append(ENCODER_PREFIX + key)
                continue
            if tuple(value.shape) != tuple(own[key].shape):
                raise CheckpointError(
                    f"{source}: {ENCODER_PREFIX}{key} has shape {tuple(value.shape)}, "
                    f"{self.backbone} needs {tuple(own[key].shape)}"
                )
            report.loaded.append(ENCODER_PREFIX + key)
        for key in own:
            if key not in state:
                report.missing.append(ENCODER_PREFIX + key)
        # Copy: fused qkv tensors are split into the q/k/v base layers, the rest one to one.
        for name in {k.rsplit(".", 1)[0] for k in state if k.endswith(FUSED_QKV) and k in own}:
            module = qkv_modules[name]
            weight = state.get(f"{name}.weight", module.fused_weight()[0])
            bias = state.get(f"{name}.bias", module.fused_weight()[1])
            module.load_fused(weight, bias)
        for key, value in state.items():
            if key in own and not key.endswith(FUSED_QKV):
                targets[key].copy_(value)
        for module in self._qkv_layers():
            module.clear_merged()
        return report
