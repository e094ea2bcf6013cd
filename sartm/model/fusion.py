"""RGB-thermal fusion at one feature level: CMX's Feature Rectify + Feature Fusion modules.

Written from the description in Zhang et al., "CMX: Cross-Modal Fusion for RGB-X Semantic
Segmentation with Transformers" (T-ITS 2023), which SARTM uses unchanged at its three levels
(paper Sec. III-C, docs/method.md section 2.3):

- Feature Rectify Module (FRM): each modality is corrected by the other one, weighted per channel
  (an MLP over global average- and max-pooled features of both) and per pixel (a 1x1 conv stack
  over both); `x_rgb + lc * w_c[thermal] * x_thermal + ls * w_s[thermal] * x_thermal`, lambda 0.5.
- Feature Fusion Module (FFM): stage 1 exchanges information by cross attention whose cost is
  linear in the number of pixels (each modality's key-value product forms a per-head
  channel x channel "global context" that the other modality's queries read); stage 2 merges
  both modalities into one map by a channel embedding (1x1, depthwise 3x3, 1x1, plus a 1x1
  residual, then a norm).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def _heads_for(dim: int, wanted: int) -> int:
    """The largest head count <= wanted that divides dim (tiny test models have small dims)."""
    heads = max(1, min(wanted, dim))
    while dim % heads:
        heads -= 1
    return heads


class ChannelWeights(nn.Module):
    """Per-channel weights for both modalities from pooled statistics of both."""

    def __init__(self, *, dim: int, reduction: int = 1) -> None:
        super().__init__()
        hidden = max(1, 4 * dim // reduction)
        self.mlp = nn.Sequential(
            nn.Linear(4 * dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2 * dim)
        )

    def forward(self, x_rgb: Tensor, x_thermal: Tensor) -> tuple[Tensor, Tensor]:
        both = torch.cat((x_rgb, x_thermal), dim=1)  # (B, 2C, H, W)
        stats = torch.cat((both.mean(dim=(2, 3)), both.amax(dim=(2, 3))), dim=1)  # (B, 4C)
        weights = torch.sigmoid(self.mlp(stats))[:, :, None, None]  # (B, 2C, 1, 1)
        w_rgb, w_thermal = weights.chunk(2, dim=1)
        return w_rgb, w_thermal


class SpatialWeights(nn.Module):
    """Per-pixel weights for both modalities from a 1x1 conv stack over both."""

    def __init__(self, *, dim: int, reduction: int = 1) -> None:
        super().__init__()
        hidden = max(1, dim // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(2 * dim, hidden, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 2, kernel_size=1),
        )

    def forward(self, x_rgb: Tensor, x_thermal: Tensor) -> tuple[Tensor, Tensor]:
        weights = torch.sigmoid(self.mlp(torch.cat((x_rgb, x_thermal), dim=1)))  # (B, 2, H, W)
        w_rgb, w_thermal = weights.chunk(2, dim=1)
        return w_rgb, w_thermal


class FeatureRectify(nn.Module):
    """FRM: rectify each modality with the other's channel- and spatially-weighted features."""

    def __init__(
        self, *, dim: int, reduction: int = 1, lambda_c: float = 0.5, lambda_s: float = 0.5
    ) -> None:
        super().__init__()
        self.lambda_c = lambda_c
        self.lambda_s = lambda_s
        self.channel = ChannelWeights(dim=dim, reduction=reduction)
        self.spatial = SpatialWeights(dim=dim, reduction=reduction)

    def forward(self, x_rgb: Tensor, x_thermal: Tensor) -> tuple[Tensor, Tensor]:
        c_rgb, c_thermal = self.channel(x_rgb, x_thermal)
        s_rgb, s_thermal = self.spatial(x_rgb, x_thermal)
        rgb = x_rgb + (self.lambda_c * c_thermal + self.lambda_s * s_thermal) * x_thermal
        thermal = x_thermal + (self.lambda_c * c_rgb + self.lambda_s * s_rgb) * x_rgb
        return rgb, thermal


class GlobalContextCrossAttention(nn.Module):
    """Cross attention through per-head channel x channel context matrices (cost linear in N).

    Each modality's keys and values (one linear each) give `softmax(K^T V / sqrt(c))`, normalised
    over the key channels; the other modality's tokens act as queries directly (as CMX does).
    """

    def __init__(self, *, dim: int, num_heads: int, qkv_bias: bool = False) -> None:
        super().__init__()
        self.num_heads = _heads_for(dim, num_heads)
        self.scale = (dim // self.num_heads) ** -0.5
        self.kv_rgb = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.kv_thermal = nn.Linear(dim, 2 * dim, bias=qkv_bias)

    def _split(self, x: Tensor) -> Tensor:
        b, n, c = x.shape  # (B, N, C) -> (B, heads, N, C/heads)
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def _context(self, x: Tensor, kv: nn.Linear) -> Tensor:
        k, v = kv(x).chunk(2, dim=-1)
        context = self._split(k).transpose(-2, -1) @ self._split(v)  # (B, heads, c, c)
        return (context * self.scale).softmax(dim=-2)

    def forward(self, x_rgb: Tensor, x_thermal: Tensor) -> tuple[Tensor, Tensor]:
        b, n, c = x_rgb.shape
        ctx_rgb = self._context(x_rgb, self.kv_rgb)
        ctx_thermal = self._context(x_thermal, self.kv_thermal)
        rgb = (self._split(x_rgb) @ ctx_thermal).transpose(1, 2).reshape(b, n, c)
        thermal = (self._split(x_thermal) @ ctx_rgb).transpose(1, 2).reshape(b, n, c)
        return rgb, thermal


class CrossPath(nn.Module):
    """FFM stage 1: per modality a residual and an interaction branch, cross attention on the
    interaction branches, projection back, residual and LayerNorm (tokens (B, N, C))."""

    def __init__(self, *, dim: int, num_heads: int, reduction: int = 1) -> None:
        super().__init__()
        inner = max(1, dim // reduction)
        self.embed_rgb = nn.Linear(dim, 2 * inner)
        self.embed_thermal = nn.Linear(dim, 2 * inner)
        self.cross_attn = GlobalContextCrossAttention(dim=inner, num_heads=num_heads)
        self.out_rgb = nn.Linear(2 * inner, dim)
        self.out_thermal = nn.Linear(2 * inner, dim)
        self.norm_rgb = nn.LayerNorm(dim)
        self.norm_thermal = nn.LayerNorm(dim)

    def forward(self, x_rgb: Tensor, x_thermal: Tensor) -> tuple[Tensor, Tensor]:
        keep_rgb, inter_rgb = torch.relu(self.embed_rgb(x_rgb)).chunk(2, dim=-1)
        keep_thermal, inter_thermal = torch.relu(self.embed_thermal(x_thermal)).chunk(2, dim=-1)
        inter_rgb, inter_thermal = self.cross_attn(inter_rgb, inter_thermal)
        rgb = self.norm_rgb(x_rgb + self.out_rgb(torch.cat((keep_rgb, inter_rgb), dim=-1)))
        thermal = self.norm_thermal(
            x_thermal + self.out_thermal(torch.cat((keep_thermal, inter_thermal), dim=-1))
        )
        return rgb, thermal


class ChannelEmbed(nn.Module):
    """FFM stage 2: merge the concatenated modalities (2C) into C channels."""

    def __init__(self, *, in_channels: int, out_channels: int, reduction: int = 1) -> None:
        super().__init__()
        inner = max(1, out_channels // reduction)
        self.residual = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.embed = nn.Sequential(
            nn.Conv2d(in_channels, inner, kernel_size=1),
            nn.Conv2d(inner, inner, kernel_size=3, padding=1, groups=inner),
            nn.ReLU(inplace=True),
            nn.Conv2d(inner, out_channels, kernel_size=1),
            nn.BatchNorm2d(out_channels),
        )
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.residual(x) + self.embed(x))


class FeatureFusion(nn.Module):
    """FFM: cross-path exchange on tokens, then channel embedding of the concatenation."""

    def __init__(self, *, dim: int, num_heads: int, reduction: int = 1) -> None:
        super().__init__()
        self.cross = CrossPath(dim=dim, num_heads=num_heads, reduction=reduction)
        self.channel_embed = ChannelEmbed(
            in_channels=2 * dim, out_channels=dim, reduction=reduction
        )

    def forward(self, x_rgb: Tensor, x_thermal: Tensor) -> Tensor:
        b, c, h, w = x_rgb.shape
        # (B, C, H, W) -> (B, HW, C)
        rgb, thermal = self.cross(
            x_rgb.flatten(2).transpose(1, 2), x_thermal.flatten(2).transpose(1, 2)
        )
        merged = torch.cat((rgb, thermal), dim=-1).transpose(1, 2).reshape(b, 2 * c, h, w)
        return self.channel_embed(merged)


class LevelFusion(nn.Module):
    """FRM then FFM at one level: two (B, C, H, W) maps in, one fused (B, C, H, W) map out."""

    def __init__(self, *, dim: int, num_heads: int, reduction: int = 1) -> None:
        super().__init__()
        self.rectify = FeatureRectify(dim=dim, reduction=reduction)
        self.fuse = FeatureFusion(dim=dim, num_heads=num_heads, reduction=reduction)
        self.apply(_init_weights)

    def forward(self, x_rgb: Tensor, x_thermal: Tensor) -> Tensor:
        return self.fuse(*self.rectify(x_rgb, x_thermal))


def _init_weights(m: nn.Module) -> None:
    """CMX's initialisation: truncated-normal linears, fan-out normal convs, zero biases."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, std=(2.0 / fan_out) ** 0.5)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class RGBTFusion(nn.Module):
    """The three fusion levels of SARTM, high resolution first: FFP (d/8), IFP (d/4), SFM (d).

    Head counts 1, 2, 4 follow the authors' configuration (CMX's per-stage counts).
    """

    def __init__(self, *, channels: Sequence[int], num_heads: Sequence[int] = (1, 2, 4)) -> None:
        super().__init__()
        if len(channels) != len(num_heads):
            raise ValueError(f"fusion: {len(channels)} levels but {len(num_heads)} head counts")
        self.channels = tuple(channels)
        self.levels = nn.ModuleList(
            LevelFusion(dim=c, num_heads=h) for c, h in zip(channels, num_heads)
        )

    def forward(self, rgb: Sequence[Tensor], thermal: Sequence[Tensor]) -> list[Tensor]:
        if not len(rgb) == len(thermal) == len(self.levels):
            raise ValueError(
                f"fusion: expected {len(self.levels)} levels per modality, "
                f"got {len(rgb)} RGB and {len(thermal)} thermal"
            )
        return [level(r, t) for level, r, t in zip(self.levels, rgb, thermal)]
